"""``wikiref models``: list, inspect, promote and retire registered model versions."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.text import Text
from sqlalchemy.orm import Session

from wikiref.db import registry
from wikiref.flows.cli.output import JSON_OPTION, console, print_json, print_table
from wikiref.flows.cli.train_commands import metrics_table
from wikiref.flows.database import prepare_database

app = typer.Typer(help="List, inspect, promote and retire model versions.", no_args_is_help=True)
_STATUS_STYLE = {"active": "bold green", "candidate": "yellow", "superseded": "dim", "retired": "red"}


def _gate_value(version) -> tuple[str, float | None]:
    metric = (version.metrics or {}).get("gate_metric", "ndcg@10")
    return metric, (version.metrics or {}).get("finetuned", {}).get(metric)


def _gate(version) -> str:
    metric, value = _gate_value(version)
    return f"{metric} {value:.4f}" if value is not None else "-"


def version_record(version) -> dict:
    """One version for ``--json`` (docs/operations.md, 'JSON output')."""
    metric, value = _gate_value(version)
    return {
        "id": version.id,
        "name": version.name,
        "status": version.status,
        "status_reason": version.status_reason,
        "base_model": version.base_model,
        "gate_metric": metric,
        "gate_value": value,
        "train_pairs": (version.dataset_counts or {}).get("train_pairs"),
        "created_at": version.created_at,
        "activated_at": version.activated_at,
        "artifact_path": version.artifact_path,
    }


@app.command("list")
def list_versions(as_json: bool = JSON_OPTION) -> None:
    """Every version, newest first, with its status and gate metric."""
    _, engine = prepare_database()
    with Session(engine) as session:
        versions = registry.list_versions(session=session)
        if as_json:
            print_json({"versions": [version_record(version) for version in versions]})
            return
        if not versions:
            console.print("no model versions yet: run `wikiref train`")
            return
        print_table(
            ("id", "name", "status", "base model", "held-out", "pairs", "created", "reason"),
            [
                (
                    version.id,
                    version.name,
                    Text(version.status, style=_STATUS_STYLE.get(version.status, "")),
                    version.base_model,
                    _gate(version),
                    (version.dataset_counts or {}).get("train_pairs", "-"),
                    f"{version.created_at:%Y-%m-%d %H:%M}",
                    version.status_reason,
                )
                for version in versions
            ],
        )


@app.command()
def show(name: str = typer.Argument(..., help="Version name or id."), as_json: bool = JSON_OPTION) -> None:
    """One version: status, hyperparameters, dataset, fusion weights, metrics (fused as served, and the
    embeddings alone), artifact."""
    _, engine = prepare_database()
    with Session(engine) as session:
        version = registry.get_version(session=session, name=name)
        if as_json:
            print_json(
                {
                    **version_record(version),
                    "dataset_fingerprint": version.dataset_fingerprint,
                    "dataset_counts": version.dataset_counts,
                    "params": version.params,
                    "fusion_weights": version.fusion_weights,
                    "metrics": version.metrics,
                    "loss_log": version.loss_log,
                }
            )
            return
        console.print(
            f"[bold]{escape(version.name)}[/] (id {version.id}): "
            f"[{_STATUS_STYLE.get(version.status, '')}]{version.status}[/]"
        )
        if version.status_reason:
            console.print(f"reason: {version.status_reason}", markup=False)
        console.print(f"base model: {version.base_model}", markup=False)
        console.print(f"artifact: {version.artifact_path or '-'}", markup=False)
        console.print(
            f"created: {version.created_at:%Y-%m-%d %H:%M:%S %Z}; activated: {version.activated_at or '-'}"
        )
        console.print(f"dataset fingerprint: {version.dataset_fingerprint or '-'}")
        console.print(f"dataset counts: {json.dumps(version.dataset_counts)}", markup=False)
        console.print(f"params: {json.dumps(version.params, sort_keys=True)}", markup=False)
        signals = sorted({signal for weights in version.fusion_weights.values() for signal in weights})
        print_table(
            ("SQL function", "embeddings", *signals),
            [
                (function, 1, *(weights.get(signal, "-") for signal in signals))
                for function, weights in version.fusion_weights.items()
            ],
            title="fusion weights (relative to the embeddings)",
        )
        metrics = version.metrics or {}
        if "base" in metrics and "finetuned" in metrics:
            console.print(
                metrics_table(
                    metrics["base"],
                    metrics["finetuned"],
                    "held-out metrics",
                    deltas=metrics.get("deltas", {}).get("vs_base"),
                    base_on_titles=metrics.get("base_on_titles"),
                )
            )
        if "base_embeddings_alone" in metrics:
            console.print(
                metrics_table(
                    metrics["base_embeddings_alone"],
                    metrics["finetuned_embeddings_alone"],
                    "the embeddings alone (fusion => false)",
                    deltas=metrics.get("deltas", {}).get("embeddings_alone_vs_base"),
                )
            )
        if version.loss_log:
            first, last = version.loss_log[0], version.loss_log[-1]
            console.print(
                f"loss: {first['loss']:.4f} at step {first['step']} -> {last['loss']:.4f} at step {last['step']} "
                f"({len(version.loss_log)} log entries)"
            )


@app.command()
def promote(name: str = typer.Argument(..., help="Version name or id.")) -> None:
    """Make a version active now (no metric gate: your decision); the active one becomes superseded."""
    _, engine = prepare_database()
    with Session(engine) as session:
        version = registry.get_version(session=session, name=name)
        previous = registry.active_version(session=session)
        previous_name = previous.name if previous else None
        registry.activate_version(session=session, version_id=version.id)
        if previous_name == version.name:
            console.print(f"{version.name} is already active")
        else:
            console.print(
                f"{version.name} is active" + (f"; {previous_name} is superseded" if previous_name else "")
            )


@app.command()
def retire(name: str = typer.Argument(..., help="Version name or id.")) -> None:
    """Retire a version and delete its embeddings (its artifact folder stays on disk)."""
    _, engine = prepare_database()
    with Session(engine) as session:
        version = registry.get_version(session=session, name=name)
        registry.retire_version(session=session, version_id=version.id)
        console.print(f"{version.name} is retired; its embeddings are deleted")
