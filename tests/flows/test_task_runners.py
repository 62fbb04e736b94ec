import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from wikiref.flows.settings import Settings
from wikiref.flows.task_runners import (
    TaskRunnerError,
    build_task_runner,
    describe_task_runner,
    task_runner_from_settings,
    with_task_runner,
)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
def fan_out() -> int:
    return 1


def test_default_keeps_the_flows_own_task_runner() -> None:
    runner = task_runner_from_settings(Settings())
    assert runner is None
    assert with_task_runner(fan_out, runner) is fan_out
    assert isinstance(fan_out.task_runner, ThreadPoolTaskRunner)


def test_dask_setting_gives_a_local_cluster_with_the_configured_workers() -> None:
    runner = task_runner_from_settings(Settings(task_runner="dask", dask_workers=2))
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address is None and runner.cluster_kwargs == {"n_workers": 2}
    assert describe_task_runner(runner) == "a temporary Dask LocalCluster"
    assert with_task_runner(fan_out, runner).task_runner is runner


def test_an_address_implies_dask_and_connects_to_that_cluster() -> None:
    runner = task_runner_from_settings(Settings(dask_address="tcp://10.0.0.5:8786"))
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://10.0.0.5:8786"
    assert describe_task_runner(runner) == "the Dask cluster at tcp://10.0.0.5:8786"
    flag = task_runner_from_settings(Settings(), dask_address="tcp://127.0.0.1:8786")
    assert flag.address == "tcp://127.0.0.1:8786"


def test_flags_take_precedence_over_settings() -> None:
    settings = Settings(task_runner="dask", dask_address="tcp://10.0.0.5:8786")
    assert task_runner_from_settings(settings, kind="default") is None
    assert task_runner_from_settings(Settings(), kind="dask").address is None


@pytest.mark.parametrize(
    ("kind", "address", "workers", "message"),
    [
        ("default", "tcp://x:8786", None, "a Dask address is set but the task runner is 'default'"),
        ("dask", "tcp://x:8786", 2, "the number of Dask workers applies to a LocalCluster"),
        ("ray", None, None, "unknown task runner 'ray'"),
    ],
)
def test_impossible_choices_are_one_line_errors(kind, address, workers, message) -> None:
    with pytest.raises(TaskRunnerError, match=message):
        build_task_runner(kind, dask_address=address, dask_workers=workers)
