"""``wikiref serve``: register the scheduled deployments with the Prefect API and run them here."""

from __future__ import annotations

import logging
from typing import Optional

import typer

from flows.errors import UserError
from flows.settings import get_settings

log = logging.getLogger(__name__)


def serve(
    task_runner: Optional[str] = typer.Option(
        None,
        "--task-runner",
        help="Where fan-out tasks run: default (each flow's thread pool) or dask. "
        "Default: WIKIREF_TASK_RUNNER.",
    ),
    dask_address: Optional[str] = typer.Option(
        None,
        "--dask-address",
        help="Scheduler address of an existing Dask cluster (implies --task-runner dask).",
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", min=1, help="Most flow runs this process executes at once. Default: no limit."
    ),
) -> None:
    """Serve the scheduled deployments (Prefect UI) and run them here."""
    from prefect.settings import PREFECT_API_URL

    from flows.deploy import serve_deployments
    from flows.runners import TASK_RUNNER_KINDS, task_runner_from_settings
    from flows.runtime import prepare_database

    if task_runner is not None and task_runner not in TASK_RUNNER_KINDS:
        raise UserError(f"unknown task runner {task_runner!r}; choose one of: {', '.join(TASK_RUNNER_KINDS)}")
    settings = get_settings()
    runner = task_runner_from_settings(settings, kind=task_runner, dask_address=dask_address)  # type: ignore[arg-type]
    prepare_database(settings)
    if not PREFECT_API_URL.value():
        log.warning(
            "PREFECT_API_URL is not set: the deployments go to a temporary Prefect server that ends with "
            "this process; run `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api "
            "to keep them"
        )
    serve_deployments(settings, task_runner=runner, limit=limit)
