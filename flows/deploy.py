"""The scheduled deployments: declared once here, served by ``wikiref serve``, mirrored in ``prefect.yaml``.

- ``scrape-daily`` refreshes every corpus (``wikiref corpus``): re-resolves its sources, re-checks every
  stored article's revision 50 titles per query, fetches only what changed;
- ``train-weekly`` fine-tunes a new version on everything scraped and promotes it if it passes the gate;
- ``embed-after-train`` encodes with the active version whatever has no embedding yet. It has two reasons to
  run: an event trigger on every completed ``train-weekly`` run (a promotion makes every row pending for the
  new version; without one it only picks up new rows), and a daily cron after the scrape, so that new
  articles become queryable without waiting for the next training. Embedding is incremental, so an extra run
  costs one query.
- ``pipeline-on-demand`` has no schedule: it is the main job's run form in the UI.

The trigger matches the *deployment* ``train-weekly`` rather than every run of the train flow, so a pipeline
run (which embeds by itself) does not start a second, concurrent embedding.

Serving also creates the Prefect global rate limit the scrape flow takes a slot of per MediaWiki request
(``WIKIREF_SCRAPE_PREFECT_RATE_LIMIT``), so that scheduled scrapes respect one request rate across all flow
runs and Dask workers, not one per process.
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron
from prefect.task_runners import TaskRunner

from wikiref.flows.settings import Settings
from wikiref.flows.task_runners import with_task_runner

log = logging.getLogger(__name__)

COMPLETED_EVENT = "prefect.flow-run.Completed"

# The flows users run by name (``wikiref run NAME``), as prefect.yaml entrypoints.
FLOWS: dict[str, str] = {
    "scrape": "flows/scrape.py:scrape_wikipedia",
    "train": "flows/train.py:train_model",
    "embed": "flows/embed.py:embed_texts",
    "pipeline": "flows/pipeline.py:pipeline",
}


@dataclass(frozen=True)
class DeploymentSpec:
    """What ``prefect.yaml`` also declares: name, flow entrypoint, schedule, parameters, triggers."""

    name: str
    entrypoint: str
    description: str
    cron: str | None = None
    timezone: str = "UTC"
    parameters: dict[str, Any] = field(default_factory=dict)
    after_deployment: str | None = None
    tags: tuple[str, ...] = ("wikiref",)


def deployment_specs(settings: Settings) -> list[DeploymentSpec]:
    tz = settings.schedule_timezone
    return [
        DeploymentSpec(
            name="scrape-daily",
            entrypoint=FLOWS["scrape"],
            description="Refresh every corpus: re-resolve its sources, re-check every stored article's "
            "revision, fetch what changed.",
            cron=settings.schedule_scrape,
            timezone=tz,
            parameters={"refresh": True},
        ),
        DeploymentSpec(
            name="train-weekly",
            entrypoint=FLOWS["train"],
            description="Fine-tune a new model version on all scraped references; "
            "promote it if it passes the gate.",
            cron=settings.schedule_train,
            timezone=tz,
        ),
        DeploymentSpec(
            name="embed-after-train",
            entrypoint=FLOWS["embed"],
            description="Encode pending titles and references with the active model version "
            "(after every train-weekly run, and daily for newly scraped rows).",
            cron=settings.schedule_embed,
            timezone=tz,
            after_deployment="train-weekly",
        ),
        DeploymentSpec(
            name="pipeline-on-demand",
            entrypoint=FLOWS["pipeline"],
            description="The main job: scrape, train (promote if better), embed, "
            "then answer a similarity query.",
        ),
    ]


def trigger_after(deployment_name: str) -> DeploymentEventTrigger:
    """Fire when a run of the deployment called ``deployment_name`` completes."""
    return DeploymentEventTrigger(
        name=f"after-{deployment_name}",
        expect={COMPLETED_EVENT},
        match_related={"prefect.resource.role": "deployment", "prefect.resource.name": deployment_name},
    )


def load_flow(entrypoint: str) -> Flow:
    """The flow behind a ``flows/<file>.py:<function>`` entrypoint, imported as a module of this package
    (``wikiref.flows.<file>``: the folder ``flows/`` installs as ``wikiref.flows``, and a bare ``flows`` is
    importable only from the repository's root)."""
    path, _, function = entrypoint.partition(":")
    module = importlib.import_module(f"wikiref.{path.removesuffix('.py').replace('/', '.')}")
    found = getattr(module, function)
    if not isinstance(found, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return found


def build_deployments(settings: Settings, *, task_runner: TaskRunner | None = None) -> list[RunnerDeployment]:
    """One ``RunnerDeployment`` per spec, its flow's fan-out tasks on ``task_runner`` when one is given."""
    deployments = []
    for spec in deployment_specs(settings):
        flow = with_task_runner(load_flow(spec.entrypoint), task_runner)
        deployments.append(
            flow.to_deployment(
                name=spec.name,
                description=spec.description,
                schedules=[Cron(spec.cron, timezone=spec.timezone)] if spec.cron else None,
                parameters=spec.parameters,
                triggers=[trigger_after(spec.after_deployment)] if spec.after_deployment else None,
                tags=list(spec.tags),
                # One run at a time per deployment: two scrapes or trainings at once would only compete.
                concurrency_limit=1,
            )
        )
    return deployments


def ensure_mediawiki_rate_limit(settings: Settings) -> str | None:
    """Create the global rate limit of MediaWiki requests if it does not exist; its name, or None if disabled.

    ``WIKIREF_SCRAPE_REQUESTS_PER_SECOND`` slots decay per second, so requests across all processes keep to
    that rate with bursts of at most that many. An existing limit is left as its owner configured it.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    name = settings.scrape_prefect_rate_limit
    if not name:
        return None
    rate = settings.scrape_requests_per_second
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=name, limit=max(1, math.ceil(rate)), slot_decay_per_second=rate
                )
            )
            log.info("created the global rate limit %r: %s MediaWiki requests/s across all runs", name, rate)
        else:
            log.info(
                "global rate limit %r exists: limit %d, %s slots/s",
                name,
                existing.limit,
                existing.slot_decay_per_second,
            )
    return name


def serve_deployments(
    settings: Settings, *, task_runner: TaskRunner | None = None, limit: int | None = None
) -> None:
    """Register every deployment with the Prefect API and run their flow runs here until interrupted."""
    from prefect import serve

    deployments = build_deployments(settings, task_runner=task_runner)
    ensure_mediawiki_rate_limit(settings)
    log.info("serving %d deployments: %s", len(deployments), ", ".join(d.name for d in deployments))
    serve(*deployments, limit=limit)
