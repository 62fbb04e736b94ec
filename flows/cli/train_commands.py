"""``wikiref train``: the training sequence of flows/steps/training.py, reported on the terminal.

Its knob options are generated from ``wikiref.flows.settings.TrainKnobs``: the help is the knob's description, the
default shown is the knob's, and a knob left out takes its WIKIREF_TRAIN_* setting.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

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

from wikiref.flows.cli.output import JSON_OPTION, console, errors, print_json, progress
from wikiref.flows.database import prepare_database
from wikiref.flows.settings import TrainKnobs, get_settings
from wikiref.flows.steps import training
from wikiref.models.evaluate import METRICS


def metrics_table(
    base: dict[str, float],
    finetuned: dict[str, float],
    title: str,
    deltas: dict[str, dict[str, float]] | None = None,
    base_on_titles: dict[str, float] | None = None,
) -> Table:
    """Base vs fine-tuned per metric, with the paired bootstrap CI of the change when known."""
    columns = ["metric", *(["base on titles"] if base_on_titles else []), "base", "fine-tuned", "change"]
    table = Table(*columns, *(["95% CI"] if deltas else []), title=title)
    for metric in METRICS:
        if metric not in base or metric not in finetuned:
            continue
        change = finetuned[metric] - base[metric]
        style = "green" if change > 0 else "red" if change < 0 else ""
        row = [metric, *([f"{base_on_titles[metric]:.4f}"] if base_on_titles else [])]
        row += [
            f"{base[metric]:.4f}",
            f"{finetuned[metric]:.4f}",
            f"[{style}]{change:+.4f}[/]" if style else f"{change:+.4f}",
        ]
        if deltas:
            ci = deltas.get(metric)
            row.append(f"[{ci['ci_low']:+.4f}, {ci['ci_high']:+.4f}]" if ci else "-")
        table.add_row(*row)
    return table


class TerminalReporter(training.Reporter):
    """A spinner per stage and a progress bar with the loss while training, on stderr and only on a terminal;
    the loss of each logged step as a line on stderr; messages on ``out``."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.bar: Progress | None = None
        self.task = None

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def stage(self, description: str) -> AbstractContextManager[None]:
        @contextmanager
        def spinning() -> Iterator[None]:
            self._close_bar()
            if not errors.is_terminal:
                errors.print(description, markup=False, highlight=False)
                yield
                return
            with errors.status(description):
                yield

        return spinning()

    def progress(self, step: int, total: int, logs: dict[str, float]) -> None:
        if self.bar is None:
            self.bar = progress(
                TextColumn("[bold]training[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, loss="-")
        if logs:
            # print, not log: a log line is padded to the console's width, which is unlimited when piped.
            errors.print(
                f"step {step}/{total} loss {logs['loss']:.4f} lr {logs.get('learning_rate', 0):.2e}",
                highlight=False,
            )
            self.bar.update(self.task, loss=f"{logs['loss']:.4f}")
        self.bar.update(self.task, completed=step, total=total)

    def message(self, text: str) -> None:
        self._close_bar()
        self.out.print(text)


def _option_type(name: str, annotation: Any) -> Any:
    """Typer takes enums, not Literals: a Literal knob becomes a StrEnum of its values."""
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
        return StrEnum("".join(part.title() for part in name.split("_")), {v: v for v in values})
    return annotation


def _knob_parameters() -> list[inspect.Parameter]:
    parameters = []
    for name, knob in TrainKnobs.model_fields.items():
        flag = "--" + name.replace("_", "-")
        declaration = f"{flag}/--no-{flag[2:]}" if knob.annotation is bool else flag
        option = typer.Option(
            None,
            declaration,
            help=f"{knob.description} [setting WIKIREF_TRAIN_{name.upper()}, default: {knob.default}]",
            show_default=False,
            rich_help_panel="Training knobs",
        )
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=option,
                annotation=_option_type(name, knob.annotation) | None,
            )
        )
    return parameters


def train(
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="Stop after N steps (quick runs); default: --max-pairs and --epochs decide."
    ),
    base_model: str | None = typer.Option(
        None, "--base-model", help="Hub id or folder to fine-tune (setting WIKIREF_BASE_MODEL)."
    ),
    limit_articles: int | None = typer.Option(
        None, "--limit-articles", help="Use only the first N articles."
    ),
    promote: bool = typer.Option(True, "--promote/--no-promote", help="Apply the gate after training."),
    resume_from: Path | None = typer.Option(
        None, "--resume-from", help="Checkpoint folder of an interrupted run."
    ),
    as_json: bool = JSON_OPTION,
    **knobs: Any,
) -> None:
    """Fine-tune on the stored articles, evaluate, register a version, promote it if the gate says so.

    Trains on (article text, reference) pairs, scores base and fine-tuned models on held-out articles, and
    promotes the version only if the 95% CI of its gate-metric gain over the base model is above zero and over
    the active version at least zero. Knobs left out take their WIKIREF_TRAIN_* setting.
    """
    settings = get_settings()
    overrides = {name: value.value if isinstance(value, Enum) else value for name, value in knobs.items()}
    request = training.TrainRequest.from_settings(
        settings,
        overrides,
        max_steps=max_steps,
        base_model=base_model,
        limit_articles=limit_articles,
        resume_from=resume_from,
        promote=promote,
    )
    _, engine = prepare_database(settings)
    # With --json, stdout holds the one JSON document: the run's messages go to stderr with its progress.
    reporter = TerminalReporter(errors if as_json else console)
    outcome = training.run_training(
        engine,
        request,
        models_dir=settings.models_dir,
        checkpoints_dir=settings.checkpoints_dir,
        reporter=reporter,
    )
    if as_json:
        print_json(
            {
                **outcome.summary(),
                "counts": outcome.counts,
                "steps": outcome.steps,
                "device": outcome.device,
                "precision": outcome.precision,
                "wise_ft_weight": outcome.wise_ft_weight,
            }
        )
        return
    reporter.message("")
    console.print(
        metrics_table(
            outcome.base_metrics,
            outcome.finetuned_metrics,
            f"held-out metrics of {outcome.version} ({outcome.counts['heldout_articles']} articles)",
            deltas=outcome.deltas["vs_base"],
            base_on_titles=outcome.base_title_metrics
            if outcome.base_title_metrics != outcome.base_metrics
            else None,
        )
    )
    console.print(
        metrics_table(
            outcome.base_embedding_metrics,
            outcome.finetuned_embedding_metrics,
            "the embeddings alone (fusion => false)",
            deltas=outcome.deltas["embeddings_alone_vs_base"],
        )
    )
    console.print(f"fusion weights: {json.dumps(outcome.fusion_weights['weights'], sort_keys=True)}")
    console.print(
        f"{outcome.steps} steps, {outcome.samples_per_second:.1f} samples/s on {outcome.device} "
        f"({outcome.precision}); saved to {outcome.artifact_path}"
        + (f"; WiSE-FT weight {outcome.wise_ft_weight}" if outcome.wise_ft_weight is not None else "")
    )
    verdict = "[green]promoted to active[/]" if outcome.promoted else "[yellow]stays candidate[/]"
    console.print(f"{outcome.version} {verdict}: {outcome.reason}")


train.__signature__ = inspect.Signature(
    [
        *(
            p
            for p in inspect.signature(train).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ),
        *_knob_parameters(),
    ]
)
