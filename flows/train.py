"""Prefect flow ``train_model``: the training sequence of flows/steps/training.py, reported to Prefect.

The flow takes every training knob through one typed parameter (``knobs``, a ``TrainOverrides``: the
``TrainKnobs`` fields, each optional), which Prefect's UI shows as a form of parameters; a knob left empty takes
its WIKIREF_TRAIN_* setting.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from wikiref.flows.database import prepare_database
from wikiref.flows.settings import TrainOverrides, get_settings
from wikiref.flows.steps import training
from wikiref.models import card


class PrefectReporter(training.Reporter):
    """Stages and training progress as run logs and a progress artifact."""

    def __init__(self) -> None:
        self.logger = get_run_logger()
        self.artifact_id = None

    def stage(self, description: str) -> AbstractContextManager[None]:
        @contextmanager
        def logged():
            self.logger.info("%s", description)
            yield

        return logged()

    def progress(self, step: int, total: int, logs: dict[str, float]) -> None:
        # Only on logged steps: one API call per log line, not per batch.
        if not logs or not total:
            return
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(progress=0.0, key="training-progress")
        update_progress_artifact(artifact_id=self.artifact_id, progress=100.0 * step / total)
        self.logger.info("step %d/%d loss %.4f", step, total, logs["loss"])

    def message(self, text: str) -> None:
        self.logger.info("%s", text)


def publish_artifacts(outcome: training.RunOutcome) -> None:
    """The loss (table and plot) and the metrics with their CIs, as artifacts of this run."""
    create_table_artifact(
        key="training-loss",
        table=[
            {"step": e["step"], "epoch": e["epoch"], "loss": e["loss"], "learning_rate": e["learning_rate"]}
            for e in outcome.loss_log
        ],
        description=f"Training loss of {outcome.version}",
    )
    verdict = "promoted" if outcome.promoted else "stays candidate"
    create_table_artifact(
        key="training-metrics",
        table=card.metrics_rows(
            outcome.base_title_metrics, outcome.base_metrics, outcome.finetuned_metrics, outcome.deltas
        ),
        description=f"Held-out metrics of {outcome.version} ({outcome.counts['heldout_articles']} articles): "
        f"{verdict}: {outcome.reason}",
    )
    create_markdown_artifact(
        key="training-loss-plot",
        markdown=f"### Training loss of {outcome.version}\n\n"
        f"![training loss]({card.svg_data_uri(card.loss_plot_svg(outcome.loss_log))})\n\n"
        f"{card.gate_line(outcome.gate_metric, verdict, outcome.reason)}\n",
        description=f"Training loss and gate of {outcome.version}",
    )


@flow(name="train_model")
def train_model(
    knobs: TrainOverrides | None = None,
    max_steps: int | None = None,
    base_model: str | None = None,
    limit_articles: int | None = None,
    promote: bool = True,
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Fine-tune the base model on (article text, reference) pairs, evaluate, register, and gate.

    Args:
        knobs: Training knobs (recipe, batch size, learning rate, sampler, loss, article text, gate, ...); each one
            left empty takes its WIKIREF_TRAIN_* setting.
        max_steps: Stop after this many optimizer steps (a quick run); empty: max_pairs and epochs decide.
        base_model: Hub id or local folder to fine-tune; recorded as given. Empty: WIKIREF_BASE_MODEL.
        limit_articles: Train on the first N articles only (development runs).
        promote: Apply the gate; off registers the version as a candidate.
        resume_from: Checkpoint folder of an interrupted run to continue from.
    """
    settings = get_settings()
    request = training.TrainRequest.from_settings(
        settings,
        (knobs or TrainOverrides()).model_dump(exclude_none=True),
        max_steps=max_steps,
        base_model=base_model,
        limit_articles=limit_articles,
        resume_from=resume_from,
        promote=promote,
    )
    _, engine = prepare_database(settings)
    outcome = training.run_training(
        engine,
        request,
        models_dir=settings.models_dir,
        checkpoints_dir=settings.checkpoints_dir,
        reporter=PrefectReporter(),
    )
    publish_artifacts(outcome)
    get_run_logger().info(
        "%s %s: %s", outcome.version, "promoted" if outcome.promoted else "stays candidate", outcome.reason
    )
    return outcome.summary()
