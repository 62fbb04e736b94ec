"""``wikiref train``: fine-tune on the stored articles, evaluate, register, and promote if better."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from flows.database import prepare_database
from flows.settings import get_settings
from flows.steps import training
from models.evaluate import METRICS

console = Console()


class Sampler(StrEnum):
    batch = "batch"
    no_duplicates = "no_duplicates"


class Loss(StrEnum):
    mnrl = "mnrl"
    cached_mnrl = "cached_mnrl"


def metrics_table(base: dict[str, float], finetuned: dict[str, float], title: str) -> Table:
    table = Table("metric", "base", "fine-tuned", "change", title=title)
    for metric in METRICS:
        change = finetuned[metric] - base[metric]
        style = "green" if change > 0 else "red" if change < 0 else ""
        table.add_row(
            metric,
            f"{base[metric]:.4f}",
            f"{finetuned[metric]:.4f}",
            f"[{style}]{change:+.4f}[/]" if style else f"{change:+.4f}",
        )
    return table


def train(
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="Stop after N steps (quick runs); default: full epochs."
    ),
    epochs: float | None = typer.Option(None, help="Passes over the training pairs (setting: 1)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Pairs per batch (setting: 8)."),
    learning_rate: float | None = typer.Option(
        None, "--learning-rate", "--lr", help="Peak learning rate (setting: 5e-5)."
    ),
    warmup_ratio: float | None = typer.Option(
        None, "--warmup-ratio", help="Warm-up fraction of steps (setting: 0)."
    ),
    sampler: Sampler | None = typer.Option(
        None, help="no_duplicates: a title at most once per batch (setting)."
    ),
    loss: Loss | None = typer.Option(
        None, help="mnrl, or cached_mnrl for big batches in flat memory (setting)."
    ),
    mini_batch_size: int | None = typer.Option(None, "--mini-batch-size", help="Mini-batch of cached_mnrl."),
    gate_metric: str | None = typer.Option(
        None, "--gate-metric", help=f"Promotion gate: one of {', '.join(METRICS)}."
    ),
    base_model: str | None = typer.Option(
        None, "--base-model", help="Hub id or folder to fine-tune (setting)."
    ),
    limit_articles: int | None = typer.Option(
        None, "--limit-articles", help="Use only the first N articles."
    ),
    device: str | None = typer.Option(None, help="auto, cpu, cuda[:N] or mps (setting: auto)."),
    promote: bool = typer.Option(
        True, "--promote/--no-promote", help="Apply the promotion rule after training."
    ),
    resume_from: Path | None = typer.Option(
        None, "--resume-from", help="Checkpoint folder of an interrupted run."
    ),
) -> None:
    """Fine-tune on the stored articles, evaluate, register a version, promote it if better.

    Trains on (title, reference chunk) pairs, compares base and fine-tuned models on held-out articles,
    registers the version, and makes it active if its gate metric is at least the active version's on the
    same held-out set. Options left out take their WIKIREF_TRAIN_* setting.
    """
    settings = get_settings()
    request = training.TrainRequest.from_settings(
        settings,
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_ratio=warmup_ratio,
        sampler=sampler.value if sampler else None,
        loss=loss.value if loss else None,
        mini_batch_size=mini_batch_size,
        gate_metric=gate_metric,
        base_model=base_model,
        limit_articles=limit_articles,
        device=device,
        promote=promote,
        resume_from=resume_from,
    )
    training.offline_hub()
    _, engine = prepare_database(settings)
    with console.status("building pairs from the database"):
        split = training.load_pairs(engine, request)
    counts = split.counts
    console.print(
        f"pairs: {counts['train_pairs']:,} training from {counts['train_articles']:,} articles, "
        f"{counts['heldout_pairs']:,} held-out from {counts['heldout_articles']:,} articles "
        f"(mean chunk {counts['mean_chunk_tokens']} tokens; fingerprint {split.fingerprint[:12]})"
    )
    with console.status("evaluating the base model on the held-out articles"):
        base_metrics = training.evaluate_model(request.base_model, split, device=request.device)
    name = training.new_version_name(settings.models_dir)

    with Progress(
        TextColumn("[bold]training[/] {task.fields[name]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("train", total=None, name=name, loss="-")

        def report(step: int, total: int, logs: dict[str, float]) -> None:
            if logs:
                progress.console.log(
                    f"step {step}/{total} loss {logs['loss']:.4f} lr {logs.get('learning_rate', 0):.2e}"
                )
                progress.update(bar, loss=f"{logs['loss']:.4f}")
            progress.update(bar, completed=step, total=total)

        result = training.train_version(
            split,
            request,
            name=name,
            models_dir=settings.models_dir,
            checkpoints_dir=settings.checkpoints_dir,
            on_progress=report,
        )
    with console.status("evaluating the fine-tuned model"):
        finetuned_metrics = training.evaluate_model(str(result.artifact_path), split, device=request.device)
    with console.status("scoring the active version on the same held-out set"):
        active = training.score_active_version(engine, split, request, base_metrics)
    outcome = training.register_version(
        engine,
        name=name,
        request=request,
        split=split,
        result=result,
        base_metrics=base_metrics,
        finetuned_metrics=finetuned_metrics,
        active=active,
    )

    console.print(metrics_table(base_metrics, finetuned_metrics, f"held-out metrics of {outcome.version}"))
    console.print(
        f"{result.steps} steps, {result.samples_per_second:.1f} samples/s on {result.device} ({result.precision}); "
        f"saved to {outcome.artifact_path}"
    )
    verdict = "[green]promoted to active[/]" if outcome.promoted else "[yellow]stays candidate[/]"
    console.print(f"{outcome.version} {verdict}: {outcome.reason}")
