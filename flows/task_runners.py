"""Which Prefect task runner executes a flow's fan-out tasks (page fetches, encoding batches).

``default`` keeps the task runner each flow declares (a thread pool sized for its work); ``dask`` hands the
tasks to Dask through prefect-dask: a temporary ``distributed.LocalCluster`` per flow run, or an existing
cluster when a scheduler address is given. ``wikiref run``, ``wikiref serve`` and the pipeline all choose
here, so the choice means the same everywhere.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, TypeVar

from prefect import Flow
from prefect.task_runners import TaskRunner

from wikiref.flows.errors import UserError
from wikiref.flows.settings import Settings

log = logging.getLogger(__name__)

TaskRunnerKind = Literal["default", "dask"]
TASK_RUNNER_KINDS: tuple[TaskRunnerKind, ...] = ("default", "dask")

F = TypeVar("F", bound=Flow)


class TaskRunnerError(UserError):
    """A task runner choice that cannot work, described in one line."""


def build_task_runner(
    kind: TaskRunnerKind, *, dask_address: str | None = None, dask_workers: int | None = None
) -> TaskRunner | None:
    """The task runner for ``kind``; ``None`` means "keep the flow's own"."""
    if kind == "default":
        if dask_address:
            raise TaskRunnerError(
                "a Dask address is set but the task runner is 'default': choose 'dask' to use it"
            )
        return None
    if kind != "dask":
        raise TaskRunnerError(f"unknown task runner {kind!r}; choose one of {', '.join(TASK_RUNNER_KINDS)}")
    from prefect_dask import DaskTaskRunner

    if dask_address:
        if dask_workers is not None:
            raise TaskRunnerError(
                "the number of Dask workers applies to a LocalCluster, not to a cluster address"
            )
        return DaskTaskRunner(address=dask_address)
    cluster_kwargs: dict[str, Any] = {}
    if dask_workers is not None:
        cluster_kwargs["n_workers"] = dask_workers
    return DaskTaskRunner(cluster_kwargs=cluster_kwargs or None)


def task_runner_from_settings(
    settings: Settings, *, kind: TaskRunnerKind | None = None, dask_address: str | None = None
) -> TaskRunner | None:
    """The task runner the settings ask for; ``kind`` / ``dask_address`` (CLI flags) take precedence.

    A Dask address implies the Dask runner; an explicit ``kind="default"`` ignores the configured address.
    """
    if kind == "default":
        return build_task_runner("default", dask_address=dask_address)
    address = dask_address or settings.dask_address
    chosen: TaskRunnerKind = kind or ("dask" if address else settings.task_runner)
    workers = None if address else settings.dask_workers
    return build_task_runner(chosen, dask_address=address, dask_workers=workers)


def with_task_runner(flow: F, task_runner: TaskRunner | None) -> F:
    """``flow`` with its fan-out tasks on ``task_runner``, or unchanged when that is ``None``."""
    if task_runner is None:
        return flow
    log.info("flow %s runs its tasks on %s", flow.name, describe_task_runner(task_runner))
    return flow.with_options(task_runner=task_runner)


def describe_task_runner(task_runner: TaskRunner | None) -> str:
    if task_runner is None:
        return "the flow's own task runner"
    from prefect_dask import DaskTaskRunner

    if isinstance(task_runner, DaskTaskRunner):
        return (
            f"the Dask cluster at {task_runner.address}"
            if task_runner.address
            else "a temporary Dask LocalCluster"
        )
    return type(task_runner).__name__
