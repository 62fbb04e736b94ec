"""flows/deploy.py (``wikiref serve``) and prefect.yaml (``prefect deploy --all``) declare the same
deployments."""

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.schedules import CronSchedule

from tests.conftest import REPO_ROOT
from wikiref.flows.deploy import FLOWS, build_deployments, deployment_specs, load_flow
from wikiref.flows.settings import Settings

PREFECT_YAML = REPO_ROOT / "prefect.yaml"


def _yaml_deployments() -> dict[str, dict]:
    document = yaml.safe_load(PREFECT_YAML.read_text())
    PrefectYamlModel.model_validate(document)  # Prefect's own schema of prefect.yaml
    return {entry["name"]: entry for entry in document["deployments"]}


def test_prefect_yaml_declares_the_deployments_of_deploy_py() -> None:
    declared = _yaml_deployments()
    specs = {spec.name: spec for spec in deployment_specs(Settings())}
    assert list(declared) == list(specs)
    for name, spec in specs.items():
        entry = declared[name]
        assert entry["entrypoint"] == spec.entrypoint
        assert entry["description"] == spec.description
        assert entry["tags"] == list(spec.tags)
        assert entry["concurrency_limit"] == 1
        assert entry["parameters"] == spec.parameters, name
        expected_schedules = [{"cron": spec.cron, "timezone": spec.timezone}] if spec.cron else []
        assert entry["schedules"] == expected_schedules, name
        triggers = entry.get("triggers", [])
        if spec.after_deployment:
            assert [t["match_related"]["prefect.resource.name"] for t in triggers] == [spec.after_deployment]
            assert triggers[0]["expect"] == ["prefect.flow-run.Completed"]
            assert triggers[0]["match_related"]["prefect.resource.role"] == "deployment"
        else:
            assert triggers == []
        assert entry["work_pool"]["name"] == "wikiref"


def test_every_entrypoint_is_a_flow_file_of_this_repository() -> None:
    for entrypoint in {spec.entrypoint for spec in deployment_specs(Settings())} | set(FLOWS.values()):
        path, function = entrypoint.split(":")
        assert (REPO_ROOT / path).is_file(), entrypoint
        assert load_flow(entrypoint).fn.__name__ == function


def test_schedules_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKIREF_SCHEDULE_SCRAPE", "15 1 * * *")
    monkeypatch.setenv("WIKIREF_SCHEDULE_TIMEZONE", "Europe/Berlin")
    deployments = {d.name: d for d in build_deployments(Settings())}
    assert set(deployments) == {"scrape-daily", "train-weekly", "embed-after-train", "pipeline-on-demand"}
    scrape = deployments["scrape-daily"]
    (schedule,) = scrape.schedules
    assert isinstance(schedule.schedule, CronSchedule)
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("15 1 * * *", "Europe/Berlin")
    assert scrape.parameters == {"refresh": True}
    assert deployments["train-weekly"].schedules[0].schedule.cron == "0 4 * * 0"
    embed = deployments["embed-after-train"]
    assert embed.schedules[0].schedule.cron == "0 5 * * *"
    (trigger,) = embed.triggers
    assert trigger.expect == {"prefect.flow-run.Completed"}
    assert trigger.match_related.model_dump() == {
        "prefect.resource.role": "deployment",
        "prefect.resource.name": "train-weekly",
    }
    assert deployments["pipeline-on-demand"].schedules == []
    assert all(d.concurrency_limit == 1 for d in deployments.values())


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WIKIREF_SCHEDULE_SCRAPE", "0 2 * *", "not a cron expression: '0 2 * *'"),
        ("WIKIREF_SCHEDULE_TIMEZONE", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_schedule_setting_stops_serve_with_one_line(
    run_cli, variable: str, value: str, message: str
) -> None:
    result = run_cli("serve", env={variable: value})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"wikiref: error: invalid settings: {variable}: ") and message in line
