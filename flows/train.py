"""Prefect flow ``train_model``: pairs from the database, fine-tune, evaluate, register and promote."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from flows import markdown
from flows.database import prepare_database
from flows.settings import get_settings
from flows.steps import training
from models.evaluate import METRICS
from models.finetune import TrainingResult
from models.pairs import PairSplit


@task(retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def build_pairs(request: training.TrainRequest) -> PairSplit:
    _, engine = prepare_database()
    split = training.load_pairs(engine, request)
    get_run_logger().info("pairs: %s (fingerprint %s)", split.counts, split.fingerprint[:12])
    return split


@task(cache_policy=NO_CACHE)
def evaluate_model(name_or_path: str, split: PairSplit, device: str) -> dict[str, float]:
    return training.evaluate_model(name_or_path, split, device=device)


@task(cache_policy=NO_CACHE)
def train_version(split: PairSplit, request: training.TrainRequest, name: str) -> TrainingResult:
    settings = get_settings()
    artifact_id = create_progress_artifact(
        progress=0.0, key="training-progress", description=f"training {markdown.escape(name)}"
    )

    def report(step: int, total: int, logs: dict[str, float]) -> None:
        # Only on logged steps: one API call per log line, not per batch.
        if logs and total:
            update_progress_artifact(artifact_id=artifact_id, progress=100.0 * step / total)

    result = training.train_version(
        split,
        request,
        name=name,
        models_dir=settings.models_dir,
        checkpoints_dir=settings.checkpoints_dir,
        on_progress=report,
    )
    update_progress_artifact(artifact_id=artifact_id, progress=100.0)
    return result


@task(retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def score_active_version(
    split: PairSplit, request: training.TrainRequest, base_metrics: dict[str, float]
) -> training.ActiveScore:
    _, engine = prepare_database()
    return training.score_active_version(engine, split, request, base_metrics)


@task(retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def register_version(
    name: str,
    request: training.TrainRequest,
    split: PairSplit,
    result: TrainingResult,
    base_metrics: dict[str, float],
    finetuned_metrics: dict[str, float],
    active: training.ActiveScore,
) -> training.RunOutcome:
    _, engine = prepare_database()
    return training.register_version(
        engine,
        name=name,
        request=request,
        split=split,
        result=result,
        base_metrics=base_metrics,
        finetuned_metrics=finetuned_metrics,
        active=active,
    )


@flow(name="train_model")
def train_model(
    max_steps: int | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    warmup_ratio: float | None = None,
    sampler: Literal["batch", "no_duplicates"] | None = None,
    loss: Literal["mnrl", "cached_mnrl"] | None = None,
    mini_batch_size: int | None = None,
    gate_metric: str | None = None,
    base_model: str | None = None,
    limit_articles: int | None = None,
    device: str | None = None,
    promote: bool = True,
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Fine-tune the base model on (title, reference chunk) pairs, evaluate, register and maybe promote.

    Every parameter left empty takes its WIKIREF_TRAIN_* setting (defaults: the reference recipe).

    Args:
        max_steps: Stop after this many optimizer steps (a quick run); empty trains full epochs.
        epochs: Passes over the training pairs.
        batch_size: Pairs per batch; each title sees batch_size - 1 in-batch negatives.
        learning_rate: Peak learning rate, decayed linearly.
        warmup_ratio: Fraction of the steps over which the learning rate warms up.
        sampler: 'no_duplicates' keeps a title at most once per batch; 'batch' samples plainly.
        loss: 'mnrl' (MultipleNegativesRankingLoss) or 'cached_mnrl' for large batches in flat memory.
        mini_batch_size: Mini-batch of cached_mnrl.
        gate_metric: Held-out metric a new version must match or beat to become active (ndcg@10, ...).
        base_model: Hub id or local folder to fine-tune; recorded as given.
        limit_articles: Train on the first N articles only (development runs).
        device: auto, cpu, cuda[:N] or mps.
        promote: Apply the promotion rule; off registers the version as a candidate.
        resume_from: Checkpoint folder of an interrupted run to continue from.
    """
    request = training.TrainRequest.from_settings(
        get_settings(),
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_ratio=warmup_ratio,
        sampler=sampler,
        loss=loss,
        mini_batch_size=mini_batch_size,
        gate_metric=gate_metric,
        base_model=base_model,
        limit_articles=limit_articles,
        device=device,
        promote=promote,
        resume_from=resume_from,
    )
    training.offline_hub()
    split = build_pairs(request)
    base_metrics = evaluate_model(request.base_model, split, request.device)
    name = training.new_version_name(get_settings().models_dir)
    result = train_version(split, request, name)
    finetuned_metrics = evaluate_model(str(result.artifact_path), split, request.device)
    active = score_active_version(split, request, base_metrics)
    outcome = register_version(name, request, split, result, base_metrics, finetuned_metrics, active)

    create_table_artifact(
        key="training-loss",
        table=[
            {"step": e["step"], "epoch": e["epoch"], "loss": e["loss"], "learning_rate": e["learning_rate"]}
            for e in outcome.loss_log
        ],
        description=f"Training loss of {markdown.escape(outcome.version)}",
    )
    create_table_artifact(
        key="training-metrics",
        table=[
            {
                "metric": metric,
                "base": round(base_metrics[metric], 4),
                "fine-tuned": round(finetuned_metrics[metric], 4),
            }
            for metric in METRICS
        ],
        description=f"Held-out metrics of {markdown.escape(outcome.version)}: "
        f"{'promoted' if outcome.promoted else 'candidate'}: {markdown.escape(outcome.reason)}",
    )
    get_run_logger().info(
        "%s %s: %s", outcome.version, "promoted" if outcome.promoted else "stays candidate", outcome.reason
    )
    return outcome.summary()
