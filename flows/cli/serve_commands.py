"""``wikiref serve``: register the scheduled deployments with the Prefect API and run them here."""

from __future__ import annotations

import logging
import os
import time

import httpx
import typer

from wikiref.flows.errors import UserError
from wikiref.flows.orphans import mark_as_owner, reap_orphaned_servers, start_watchdog
from wikiref.flows.secrets import mask_credentials
from wikiref.flows.settings import get_settings

log = logging.getLogger(__name__)


def wait_for_prefect_api(api_url: str, seconds: float) -> None:
    """Return once ``{api_url}/health`` answers 200; after ``seconds`` raise one line naming PREFECT_API_URL."""
    shown = mask_credentials(api_url)
    deadline = time.monotonic() + seconds
    told = False
    while True:
        try:
            if httpx.get(f"{api_url.rstrip('/')}/health", timeout=5).status_code == 200:
                return
            problem = "it answers, but /health is not 200"
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        if time.monotonic() >= deadline:
            raise UserError(
                f"the Prefect API at PREFECT_API_URL={shown} did not answer within {seconds:g} s ({problem}): "
                "start it (`prefect server start`) or fix PREFECT_API_URL"
            )
        if not told:
            log.warning("waiting up to %g s for the Prefect API at %s (%s)", seconds, shown, problem)
            told = True
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def serve(
    task_runner: str | None = typer.Option(
        None,
        "--task-runner",
        help="Where fan-out tasks run: default (each flow's thread pool) or dask. "
        "Default: WIKIREF_TASK_RUNNER.",
    ),
    dask_address: str | None = typer.Option(
        None,
        "--dask-address",
        help="Scheduler address of an existing Dask cluster (implies --task-runner dask).",
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Most flow runs this process executes at once. Default: no limit."
    ),
) -> None:
    """Serve the scheduled deployments (Prefect UI) and run them here."""
    reap_orphaned_servers()
    mark_as_owner()
    start_watchdog()
    from prefect.settings import PREFECT_API_URL

    from wikiref.flows.database import prepare_database
    from wikiref.flows.deploy import serve_deployments
    from wikiref.flows.task_runners import TASK_RUNNER_KINDS, task_runner_from_settings

    if task_runner is not None and task_runner not in TASK_RUNNER_KINDS:
        raise UserError(f"unknown task runner {task_runner!r}; choose one of: {', '.join(TASK_RUNNER_KINDS)}")
    # The flags act as the settings for every flow run served from here, the pipeline's sub-flows included
    # (served runs are child processes that read the settings again).
    if task_runner == "default" and dask_address:
        raise UserError("--dask-address needs --task-runner dask (or no --task-runner)")
    if task_runner is not None:
        os.environ["WIKIREF_TASK_RUNNER"] = task_runner
    if task_runner == "default":
        os.environ["WIKIREF_DASK_ADDRESS"] = ""  # an explicit default ignores a configured cluster
    if dask_address is not None:
        os.environ["WIKIREF_DASK_ADDRESS"] = dask_address
    get_settings.cache_clear()
    settings = get_settings()
    runner = task_runner_from_settings(settings)
    prepare_database(settings)
    api_url = PREFECT_API_URL.value()
    if not api_url:
        log.warning(
            "PREFECT_API_URL is not set: the deployments go to a temporary Prefect server that ends with "
            "this process; run `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api "
            "to keep them"
        )
    else:
        wait_for_prefect_api(api_url, settings.serve_api_wait_seconds)
    serve_deployments(settings, task_runner=runner, limit=limit)
