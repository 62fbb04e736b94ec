"""``wikiref serve`` against a real Prefect server: the deployments, their schedules and trigger through the
API, runs of served deployments, the Prefect UI (headless Chromium) listing them, and ``prefect deploy``."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.schedules import CronSchedule
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy.orm import Session

from tests.conftest import (
    REPO_ROOT,
    SHARED_WIKIPEDIA,
    TEMPLATE_DATABASE,
    create_database,
    drop_database,
    register_base_version,
)
from tests.flows.conftest import PrefectServer, clean_environment
from tests.flows.flow_runs import rows
from wikiref.db.corpora import SourceSpec, add_sources
from wikiref.db.engine import make_engine
from wikiref.flows.deploy import deployment_specs, load_flow
from wikiref.flows.settings import Settings

pytestmark = pytest.mark.server

SERVE_TIMEOUT = 90
SPECS = deployment_specs(Settings())


def _full_name(spec) -> str:
    return f"{load_flow(spec.entrypoint).name}/{spec.name}"


async def _deployments(api_url: str) -> dict:
    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            return {d.name: d for d in await client.read_deployments()}


@pytest.fixture(scope="module")
def served_database(server_url: str, template_url: str, onnx_cache_dir: Path) -> Iterator[str]:
    """The database of the served flows: no articles yet, the base model registered as the active version."""
    database_url = create_database(server_url, template=TEMPLATE_DATABASE)
    engine = make_engine(database_url)
    with Session(engine) as session:
        register_base_version(session)
        session.commit()
    engine.dispose()
    yield database_url
    drop_database(server_url, database_url)


@pytest.fixture(scope="module")
def served(
    prefect_server: PrefectServer, served_database: str, onnx_cache_dir: Path, tmp_path_factory
) -> Iterator[dict]:
    """``wikiref serve`` running against ``prefect_server``; yields the deployments it registered."""
    workdir = tmp_path_factory.mktemp("serve")
    log = workdir / "serve.log"
    environment = clean_environment(
        PREFECT_API_URL=prefect_server.api_url,
        PREFECT_HOME=str(workdir / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        WIKIREF_DATABASE_URL=served_database,
        WIKIREF_DATA_DIR=str(workdir / "data"),
        WIKIREF_EMBED_CACHE_DIR=str(onnx_cache_dir),
        PYTHONPATH=str(REPO_ROOT),
        HF_HUB_OFFLINE="1",
    )
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "wikiref.flows.cli", "serve"],
            env=environment,
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT
        while True:
            deployments = asyncio.run(_deployments(prefect_server.api_url))
            if {spec.name for spec in SPECS} <= set(deployments):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"wikiref serve did not register the deployments:\n{log.read_text()[-3000:]}"
                )
            time.sleep(1)
        yield deployments
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_each_deployment_exists_with_its_schedule(served: dict, prefect_server: PrefectServer) -> None:
    async def check() -> None:
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            async with get_client() as client:
                for spec in SPECS:
                    deployment = await client.read_deployment_by_name(_full_name(spec))
                    assert deployment.id == served[spec.name].id
                    schedules = [
                        (s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules
                    ]
                    assert all(isinstance(s.schedule, CronSchedule) for s in deployment.schedules)
                    expected = [(spec.cron, spec.timezone, True)] if spec.cron else []
                    assert schedules == expected, spec.name
                    assert deployment.parameters == spec.parameters
                    assert deployment.description == spec.description
                    assert deployment.global_concurrency_limit.limit == 1
                    assert deployment.paused is False
                embed = served["embed-after-train"]
                automations = await client.read_resource_related_automations(f"prefect.deployment.{embed.id}")
                (automation,) = automations
                assert automation.name == "after-train-weekly" and automation.enabled
                assert automation.trigger.expect == {"prefect.flow-run.Completed"}
                assert automation.trigger.match_related.model_dump() == {
                    "prefect.resource.role": "deployment",
                    "prefect.resource.name": "train-weekly",
                }
                (action,) = automation.actions
                assert action.deployment_id == embed.id
                # The MediaWiki rate limit every scheduled scrape takes slots of, from the settings' defaults.
                rate_limit = await client.read_global_concurrency_limit_by_name("mediawiki-api")
                assert (rate_limit.limit, rate_limit.slot_decay_per_second) == (10, 10.0)

    asyncio.run(check())


def test_a_completed_train_weekly_run_starts_embed_after_train(
    served: dict, prefect_server: PrefectServer
) -> None:
    """The trigger, end to end on the server: a finished train-weekly run's event creates an embed run."""
    from prefect.events import Event
    from prefect.events.clients import get_events_client

    train, embed = served["train-weekly"], served["embed-after-train"]

    async def embed_runs_not_from_cron(client) -> list:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[embed.id])),
            flow_run_filter=FlowRunFilter(),
        )
        return [run for run in runs if not run.auto_scheduled]

    async def check() -> None:
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            async with get_client() as client:
                assert await embed_runs_not_from_cron(client) == []
                async with get_events_client() as events:
                    await events.emit(
                        Event(
                            event="prefect.flow-run.Completed",
                            resource={"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}"},
                            related=[
                                {
                                    "prefect.resource.id": f"prefect.deployment.{train.id}",
                                    "prefect.resource.role": "deployment",
                                    "prefect.resource.name": "train-weekly",
                                }
                            ],
                        )
                    )
                deadline = time.monotonic() + 60
                while not (runs := await embed_runs_not_from_cron(client)):
                    assert time.monotonic() < deadline, (
                        "no embed-after-train run 60 s after the train-weekly event"
                    )
                    await asyncio.sleep(1)
                assert len(runs) == 1
                assert runs[0].created_by is not None and runs[0].created_by.type == "AUTOMATION"
                # Proven; the served process need not spend the other tests' time on embedding nothing.
                await client.delete_flow_run(runs[0].id)

    asyncio.run(check())


def test_scrape_daily_run_by_hand_refreshes_every_corpus(
    served: dict, served_database: str, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    """The README's way to trigger a served deployment by hand; `wikiref serve` executes the run, which
    refreshes every corpus defined in the database."""
    engine = make_engine(served_database)
    with Session(engine) as session:
        add_sources(
            session=session,
            corpus="cats",
            wiki="en.wikipedia.org",
            sources=[SourceSpec("titles", {"titles": ["Cat"]})],
        )
        add_sources(
            session=session,
            corpus="ducks",
            wiki="en.wikipedia.org",
            sources=[SourceSpec("titles", {"titles": ["Duck"]})],
        )
    engine.dispose()
    environment = clean_environment(
        PREFECT_API_URL=prefect_server.api_url, PREFECT_HOME=str(tmp_path / "home")
    )
    command = [sys.executable, "-m", "prefect", "deployment", "run", "scrape-wikipedia/scrape-daily"]
    parameters = ["--param", f"mirror_dir={SHARED_WIKIPEDIA}"]
    triggered = subprocess.run(
        [*command, *parameters, "--watch", "--watch-timeout", "240"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert triggered.returncode == 0, triggered.stdout[-3000:] + triggered.stderr[-3000:]
    assert "Completed" in triggered.stdout
    stored = rows(served_database, "SELECT title FROM articles ORDER BY title")
    assert stored == [("Cat",), ("Duck",)]
    refreshed = rows(
        served_database, "SELECT name, last_counts->>'articles' FROM corpora WHERE refreshed_at IS NOT NULL"
    )
    assert sorted(refreshed) == [("cats", "1"), ("ducks", "1")]

    async def check() -> None:
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            async with get_client() as client:
                runs = await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(
                        id=DeploymentFilterId(any_=[served["scrape-daily"].id])
                    )
                )
                (manual,) = [run for run in runs if not run.auto_scheduled]
                assert manual.state.is_completed()
                assert manual.parameters["refresh"] is True
                artifacts = await client.read_artifacts(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[manual.id]))
                )
                by_key = {artifact.key: artifact for artifact in artifacts}
                assert {"scrape-summary", "scrape-counts", "corpus-refresh"} <= set(by_key)
                table = by_key["corpus-refresh"].data
                assert "cats" in str(table) and "ducks" in str(table)

    asyncio.run(check())


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_prefect_ui_lists_the_deployments(
    served: dict, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail(
                "chromium is not installed (apt-get install -y chromium), and CI must run the browser test"
            )
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        f"{prefect_server.url}/deployments",
    ]
    texts = ""
    for _ in range(3):  # the SPA may still be loading its data when the virtual time runs out
        dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
        texts = " ".join(part.strip() for part in _strip_tags(dom))
        if all(spec.name in texts for spec in SPECS):
            break
    assert "Deployments" in texts
    for spec in SPECS:
        assert spec.name in texts, f"{spec.name} not shown in the UI: {texts[:2000]}"
        assert load_flow(spec.entrypoint).name in texts
    assert f"{len(SPECS)} Deployments" in texts
    # The UI renders each cron schedule in words.
    assert "At 02:00 AM every day" in texts
    assert "At 04:00 AM, only on Sunday" in texts


def _strip_tags(html: str) -> list[str]:
    from html.parser import HTMLParser

    parts: list[str] = []

    class Collector(HTMLParser):
        def handle_data(self, data: str) -> None:
            if data.strip():
                parts.append(data)

    Collector().feed(html)
    return parts


def test_prefect_deploy_all_creates_the_same_deployments_for_a_work_pool(
    served: dict, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    """prefect.yaml, read by Prefect itself: the same deployments and schedules, now on the work pool."""
    from prefect.client.schemas.actions import WorkPoolCreate

    async def create_pool() -> None:
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            async with get_client() as client:
                await client.create_work_pool(WorkPoolCreate(name="wikiref", type="process"))

    asyncio.run(create_pool())
    environment = clean_environment(
        PREFECT_API_URL=prefect_server.api_url,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PYTHONPATH=str(REPO_ROOT),
    )
    deployed = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    async def check() -> None:
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            async with get_client() as client:
                for spec in SPECS:
                    deployment = await client.read_deployment_by_name(_full_name(spec))
                    assert deployment.work_pool_name == "wikiref"
                    assert deployment.entrypoint == spec.entrypoint
                    schedules = [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]
                    assert schedules == ([(spec.cron, spec.timezone)] if spec.cron else []), spec.name
                    assert deployment.parameters == spec.parameters
                    assert deployment.global_concurrency_limit.limit == 1
                embed = await client.read_deployment_by_name(_full_name(SPECS[2]))
                (automation,) = await client.read_resource_related_automations(
                    f"prefect.deployment.{embed.id}"
                )
                assert (
                    automation.trigger.match_related.model_dump()["prefect.resource.name"] == "train-weekly"
                )

    asyncio.run(check())
