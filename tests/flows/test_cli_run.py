"""``wikiref run``: parameters typed from the flow's signature, one-line errors for what cannot work."""

import json
from pathlib import Path
from typing import Literal

import pytest
from prefect import flow

from wikiref.flows.cli.run_commands import ParameterError, parse_parameters


@flow
def example(
    titles: list[str] | None = None,
    limit: int | None = None,
    rate: float = 1.5,
    dry_run: bool = False,
    mirror_dir: Path | None = None,
    mode: Literal["fast", "slow"] = "fast",
    note: str = "",
) -> None:
    """An example flow with the parameter types the wikiref flows use."""


def test_values_are_converted_to_the_parameter_types() -> None:
    parsed = parse_parameters(
        example,
        "example",
        ["limit=5", "rate=0.25", "dry-run=true", "mirror_dir=../shared/data", "mode=slow", "note=a=b"],
    )
    assert parsed["limit"] == 5 and parsed["rate"] == 0.25 and parsed["dry_run"] is True
    assert parsed["mirror_dir"] == Path("../shared/data")
    assert parsed["mode"] == "slow"
    assert parsed["note"] == "a=b"


def test_list_parameters_take_repeats_or_a_json_list() -> None:
    repeated = parse_parameters(example, "example", ["titles=Dog", "titles=Washington, D.C."])
    assert repeated["titles"] == ["Dog", "Washington, D.C."]
    as_json = parse_parameters(example, "example", ['titles=["Cat", "Duck"]', "titles=Rust"])
    assert as_json["titles"] == ["Cat", "Duck", "Rust"]


def test_none_where_the_parameter_allows_it() -> None:
    assert parse_parameters(example, "example", ["limit=none"])["limit"] is None
    with pytest.raises(ParameterError, match="rate"):
        parse_parameters(example, "example", ["rate=none"])


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["limt=5"], "flow 'example' has no parameter 'limt' \\(its parameters: titles, limit, rate,"),
        (["limit"], "--param expects key=value, got 'limit'"),
        (["limit=many"], "parameter .limit. of flow .example.: Input should be a valid integer.*got .many."),
        (["mode=medium"], "parameter .mode. of flow .example.: Input should be .fast. or .slow."),
        (["limit=1", "limit=2"], "parameter 'limit' given twice"),
        (["titles=[Dog"], "parameter 'titles' of flow 'example': not a JSON list"),
    ],
)
def test_bad_parameters_are_one_line_errors(pairs: list[str], message: str) -> None:
    with pytest.raises(ParameterError, match=message) as caught:
        parse_parameters(example, "example", pairs)
    assert "\n" not in str(caught.value)


def test_unknown_flow_is_one_line_error(run_cli) -> None:
    result = run_cli("run", "scrap")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "wikiref: error: unknown flow 'scrap'; choose one of: scrape, train, embed, pipeline"
    )


def test_unknown_parameter_of_a_real_flow_is_one_line_error(run_cli) -> None:
    result = run_cli("run", "train", "--param", "max_stepz=3")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "wikiref: error: flow 'train' has no parameter 'max_stepz'"
    )
    assert "max_steps" in lines[0]


def test_show_params_lists_the_pipeline_parameters(run_cli) -> None:
    result = run_cli("run", "pipeline", "--show-params")
    assert result.returncode == 0, result.stderr
    for name in ("titles", "mirror_dir", "dump_path", "max_steps", "query_title", "task_runner"):
        assert name in result.stdout


def test_show_params_as_json_lists_every_parameter(run_cli) -> None:
    result = run_cli("run", "embed", "--show-params", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["flow"] == "embed"
    assert all(list(row) == ["parameter", "type", "default", "description"] for row in document["parameters"])
    assert "model_version" in [row["parameter"] for row in document["parameters"]]
