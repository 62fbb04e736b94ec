"""``wikiref run FLOW``: run one flow here, with its parameters given as ``--param key=value``."""

from __future__ import annotations

import inspect
import json
import logging
import typing
from typing import Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.markup import escape
from rich.pretty import Pretty

from wikiref.flows.cli.embed_commands import setting_option
from wikiref.flows.cli.output import (
    JSON_OPTION,
    MAX_CELL_CHARS,
    console,
    errors,
    print_json,
    print_table,
    records,
)
from wikiref.flows.errors import UserError
from wikiref.flows.orphans import mark_as_owner, reap_orphaned_servers, start_watchdog
from wikiref.flows.secrets import has_credentials, mask_credentials
from wikiref.flows.settings import get_settings

log = logging.getLogger(__name__)

FLOW_NAMES = ("scrape", "train", "embed", "pipeline")
_NULLS = {"none", "null"}


class ParameterError(UserError):
    """A ``--param`` that names no parameter of the flow or whose value does not fit its type."""


def _accepts_list(annotation: Any) -> bool:
    """Whether the parameter takes a list (so repeated ``--param key=...`` accumulate)."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    return any(_accepts_list(arg) for arg in typing.get_args(annotation) if origin is not None)


def _accepts_none(annotation: Any) -> bool:
    return annotation is type(None) or type(None) in typing.get_args(annotation)


def _annotations(flow) -> dict[str, Any]:
    signature = inspect.signature(flow.fn)
    try:
        hints = typing.get_type_hints(flow.fn)
    except (NameError, TypeError):
        hints = {}
    return {name: hints.get(name, parameter.annotation) for name, parameter in signature.parameters.items()}


def _parse_list_item(raw: str) -> list[Any]:
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc.msg})") from None
        if not isinstance(value, list):
            raise ValueError("not a JSON list")
        return value
    return [raw]


def parse_parameters(flow, flow_name: str, pairs: list[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into the flow's typed parameters, or raise one ``ParameterError`` line.

    Values are validated against the flow signature's types the way Prefect validates a run form (pydantic's
    lax mode): ``5`` becomes an int, ``true`` a bool, a path a ``Path``. A list parameter takes a JSON list or
    repeated ``--param key=item``; ``none``/``null`` is ``None`` where the parameter allows it.
    """
    annotations = _annotations(flow)
    raw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ParameterError(f"--param expects key=value, got {mask_credentials(pair)!r}")
        reject_credentials(key, value)
        if key not in annotations:
            known = ", ".join(annotations) or "none"
            raise ParameterError(f"flow {flow_name!r} has no parameter {key!r} (its parameters: {known})")
        annotation = annotations[key]
        if value.strip().lower() in _NULLS and _accepts_none(annotation):
            raw[key] = None
        elif _accepts_list(annotation):
            try:
                raw.setdefault(key, []).extend(_parse_list_item(value))
            except ValueError as exc:
                raise ParameterError(f"parameter {key!r} of flow {flow_name!r}: {exc}") from None
        elif key in raw:
            raise ParameterError(f"parameter {key!r} given twice and it takes one value")
        else:
            raw[key] = value
    return {key: _validate(flow_name, key, annotations[key], value) for key, value in raw.items()}


def reject_credentials(name: str, value: object) -> None:
    """Flow parameters are stored and shown in clear by Prefect: a URL with a password must not be one."""
    if has_credentials(value):
        raise ParameterError(
            f"parameter {name!r} is a URL with credentials ({mask_credentials(str(value))}); Prefect stores "
            "flow parameters in clear: set WIKIREF_API_URL in the environment (or, for a deployment, its "
            "job variables or a Prefect Secret block) instead"
        )


def _validate(flow_name: str, key: str, annotation: Any, value: Any) -> Any:
    if annotation is inspect.Parameter.empty:
        return value
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise ParameterError(f"parameter {key!r} of flow {flow_name!r}: {reason} (got {value!r})") from None


def _load(flow_name: str):
    from wikiref.flows.deploy import FLOWS, load_flow

    if flow_name not in FLOWS:
        raise UserError(f"unknown flow {flow_name!r}; choose one of: {', '.join(FLOWS)}")
    return load_flow(FLOWS[flow_name])


def _print_parameters(flow, flow_name: str, *, as_json: bool = False) -> None:
    schema = flow.parameters.model_dump()
    properties = schema.get("properties", {})
    signature = inspect.signature(flow.fn).parameters
    rows = [
        (
            name,
            _type_name(annotation),
            "" if signature[name].default is inspect.Parameter.empty else repr(signature[name].default),
            " ".join(properties.get(name, {}).get("description", "").split()),
        )
        for name, annotation in _annotations(flow).items()
    ]
    columns = ("parameter", "type", "default", "description")
    if as_json:
        print_json({"flow": flow_name, "parameters": records(columns, rows)})
        return
    print_table(columns, rows, title=f"wikiref run {flow_name} --param KEY=VALUE")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pathlib.", "").replace("datetime.", "")


def print_result(result: Any, *, as_json: bool = False) -> None:
    """The flow's return value (as it is with ``as_json``); the pipeline's as one line per step, then its
    query's SQL and rows."""
    if as_json:
        print_json(result)
        return
    if isinstance(result, dict) and {"scrape", "train", "embed", "query"} <= set(result):
        for line in pipeline_summary(result):
            console.print(escape(line), highlight=False)
        print_query(result["query"])
        return
    console.print(Pretty(result))


def pipeline_summary(result: dict[str, Any]) -> list[str]:
    scrape, train, embed = result["scrape"], result["train"], result["embed"]
    metric = get_settings().train_gate_metric
    if metric not in train["metrics"]["finetuned"]:
        metric = next(iter(train["metrics"]["finetuned"]), None)
    articles = [
        f"{scrape.get(f'articles {what}', 0)} {what}" for what in ("new", "updated", "unchanged", "missing")
    ]
    if scrape.get("articles older, skipped"):
        articles.append(f"{scrape['articles older, skipped']} older, skipped")
    decision = "promoted" if train["promoted"] else "stays a candidate"
    lines = [
        f"scrape: articles {', '.join(articles)}; references {scrape.get('references added', 0)} added, "
        f"{scrape.get('references removed', 0)} removed",
        f"train: {train['version']} {decision} ({train['reason']})",
    ]
    if metric:
        lines.append(
            f"       held-out {metric}: base {train['metrics']['base'][metric]:.4f}, "
            f"fine-tuned {train['metrics']['finetuned'][metric]:.4f}"
        )
    encoded = embed["encoded"]
    held = embed["embeddings"]
    lines.append(
        f"embed: {embed['model_version']}: {encoded['references']} references and {encoded['titles']} titles "
        f"encoded; the version holds {held['references']} and {held['titles']}"
    )
    return lines


def print_query(query: dict[str, Any]) -> None:
    console.print(f"\n[bold]{escape(query['sql'])}[/bold]")
    rows = query.get("rows") or []
    if not rows:
        console.print("(0 rows)")
        return
    print_table(list(rows[0].keys()), [list(row.values()) for row in rows], max_chars=MAX_CELL_CHARS)
    console.print(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")


def run(
    flow_name: str = typer.Argument(..., metavar="FLOW", help=f"Which flow: {' | '.join(FLOW_NAMES)}."),
    param: list[str] = typer.Option(
        [],
        "--param",
        "-p",
        metavar="KEY=VALUE",
        help="A flow parameter; repeat for several (and for list items). See --show-params.",
    ),
    task_runner: str | None = typer.Option(
        None,
        "--task-runner",
        help="Where fan-out tasks run: default (the flow's thread pool) or dask. "
        "Default: WIKIREF_TASK_RUNNER.",
    ),
    dask_address: str | None = typer.Option(
        None,
        "--dask-address",
        help="Scheduler address of an existing Dask cluster (implies --task-runner dask).",
    ),
    show_params: bool = typer.Option(False, "--show-params", help="List the flow's parameters and exit."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run a flow here: scrape, train, embed or pipeline (the main job)."""
    # Before Prefect loads: a temporary server it starts for this run inherits the mark.
    reap_orphaned_servers()
    mark_as_owner()
    start_watchdog()
    from prefect.states import State

    from wikiref.flows.database import prepare_database
    from wikiref.flows.steps.scraping import check_reachable, client_config
    from wikiref.flows.task_runners import (
        TASK_RUNNER_KINDS,
        describe_task_runner,
        task_runner_from_settings,
        with_task_runner,
    )

    flow = _load(flow_name)
    if show_params:
        _print_parameters(flow, flow_name, as_json=as_json)
        return
    if task_runner is not None and task_runner not in TASK_RUNNER_KINDS:
        raise UserError(f"unknown task runner {task_runner!r}; choose one of: {', '.join(TASK_RUNNER_KINDS)}")
    dask_address = setting_option("--dask-address", "dask_address", dask_address)
    parameters = parse_parameters(flow, flow_name, param)
    settings = get_settings()
    runner = task_runner_from_settings(settings, kind=task_runner, dask_address=dask_address)  # type: ignore[arg-type]
    # A database that cannot work, or a wiki that cannot be reached, is one line here rather than a failed flow
    # run with tracebacks (and, for the wiki, minutes of retries).
    prepare_database(settings)
    if flow_name in ("scrape", "pipeline") and not (
        parameters.get("mirror_dir") or parameters.get("dump_path")
    ):
        check_reachable(client_config(settings, parameters.get("api_url")))
    if flow_name == "pipeline":
        # The pipeline has no tasks of its own to distribute: it hands the choice on to its sub-flows.
        if task_runner is not None:
            parameters.setdefault("task_runner", task_runner)
        if dask_address is not None:
            parameters.setdefault("dask_address", dask_address)
    else:
        flow = with_task_runner(flow, runner)
    # With --json, stdout holds only the result's JSON document.
    (errors if as_json else console).print(
        f"running flow [bold]{escape(flow.name)}[/bold] with {describe_task_runner(runner)}"
    )
    state: State = flow(**parameters, return_state=True)
    if not state.is_completed():
        errors.print(
            f"[red]wikiref: flow {escape(flow.name)} ended {state.name}: {escape(str(state.message))}[/red]"
        )
        raise typer.Exit(1)
    print_result(state.result(), as_json=as_json)
