"""The steps of a training run as plain functions: the Prefect flow (flows/train.py) and ``wikiref train``
(flows/cli/train_commands.py) call the same ones, each adding only its own progress reporting.

pairs from the database -> evaluate the base model -> train -> evaluate the new model -> score the active
version on the same held-out set -> register the version and apply the promotion rule.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from db import corpus, registry
from flows.errors import UserError
from flows.settings import Settings
from models import card
from models.base import resolve_model_path
from models.evaluate import METRICS, evaluate, load_model
from models.finetune import ProgressCallback, TrainingConfig, TrainingResult, resolve_device, train
from models.pairs import ArticleTexts, PairSplit, build_pairs, tokenizer_counter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    """Everything a run needs, from settings plus the caller's overrides."""

    base_model: str
    config: TrainingConfig
    token_budget: int
    eval_fraction: float
    gate_metric: str
    device: str
    limit_articles: int | None = None
    resume_from: Path | None = None
    promote: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainRequest:
        """Settings with the non-None ``overrides`` on top (TrainingConfig fields or this class's)."""
        overrides = {key: value for key, value in overrides.items() if value is not None}
        config_fields = set(TrainingConfig.__dataclass_fields__)
        config = TrainingConfig(
            **{
                "epochs": settings.train_epochs,
                "batch_size": settings.train_batch_size,
                "learning_rate": settings.train_learning_rate,
                "warmup_ratio": settings.train_warmup_ratio,
                "sampler": settings.train_sampler,
                "loss": settings.train_loss,
                "mini_batch_size": settings.train_mini_batch_size,
                "seed": settings.train_seed,
                "max_seq_length": settings.train_max_seq_length,
                "save_steps": settings.train_save_steps,
                **{key: value for key, value in overrides.items() if key in config_fields},
            }
        )
        gate_metric = overrides.get("gate_metric", settings.train_gate_metric)
        if gate_metric not in METRICS:
            raise UserError(f"unknown gate metric {gate_metric!r}: use one of {', '.join(METRICS)}")
        return cls(
            base_model=overrides.get("base_model", settings.base_model),
            config=config,
            token_budget=overrides.get("token_budget", settings.train_chunk_token_budget),
            eval_fraction=overrides.get("eval_fraction", settings.train_eval_fraction),
            gate_metric=gate_metric,
            device=resolve_device(overrides.get("device", settings.train_device)),
            limit_articles=overrides.get("limit_articles"),
            resume_from=Path(overrides["resume_from"]).expanduser() if "resume_from" in overrides else None,
            promote=overrides.get("promote", True),
        )


@dataclass
class RunOutcome:
    version_id: int
    version: str
    promoted: bool
    reason: str
    artifact_path: str
    base_metrics: dict[str, float]
    finetuned_metrics: dict[str, float]
    loss_log: list[dict[str, float]] = field(default_factory=list)
    samples_per_second: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "version": self.version,
            "promoted": self.promoted,
            "reason": self.reason,
            "artifact_path": self.artifact_path,
            "metrics": {"base": self.base_metrics, "finetuned": self.finetuned_metrics},
            "samples_per_second": self.samples_per_second,
        }


def offline_hub() -> None:
    """The base model ships with the package; never let a training run reach for the hub unasked."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_pairs(engine: Engine, request: TrainRequest) -> PairSplit:
    """Articles and references from the database, as training and held-out pairs."""
    count_tokens = tokenizer_counter(resolve_model_path(request.base_model))
    with Session(engine) as session:
        # Streamed: the builder keeps each article's chunks, never a second whole copy of the corpus rows.
        rows = corpus.iter_article_reference_texts(session=session, limit=request.limit_articles)
        split = build_pairs(
            (ArticleTexts(article_id, title, tuple(texts), lead) for article_id, title, texts, lead in rows),
            count_tokens=count_tokens,
            token_budget=request.token_budget,
            eval_fraction=request.eval_fraction,
        )
    if not split.counts["references"]:
        raise UserError("the database has no articles with references: run `wikiref scrape` first")
    return split


def evaluate_model(name_or_path: str, split: PairSplit, *, device: str) -> dict[str, float]:
    return evaluate(load_model(resolve_model_path(name_or_path), device=device), split)


def new_version_name(models_dir: Path, now: datetime | None = None) -> str:
    """``ft-YYYYMMDD-HHMMSS`` in UTC, with a counter if that folder is taken: runs never share a folder."""
    stem = f"ft-{(now or datetime.now(UTC)):%Y%m%d-%H%M%S}"
    name, counter = stem, 1
    while (models_dir / name).exists():
        counter += 1
        name = f"{stem}-{counter}"
    return name


def train_version(
    split: PairSplit,
    request: TrainRequest,
    *,
    name: str,
    models_dir: Path,
    checkpoints_dir: Path,
    on_progress: ProgressCallback | None = None,
) -> TrainingResult:
    return train(
        base_model=resolve_model_path(request.base_model),
        pairs=split.train,
        output_dir=models_dir / name,
        checkpoint_dir=checkpoints_dir / name,
        config=request.config,
        device=request.device,
        resume_from_checkpoint=request.resume_from,
        on_progress=on_progress,
    )


@dataclass(frozen=True)
class ActiveScore:
    version_id: int | None
    name: str | None
    score: float | None


def score_active_version(
    engine: Engine, split: PairSplit, request: TrainRequest, base_metrics: dict[str, float]
) -> ActiveScore:
    """The active version's gate metric on this run's held-out set.

    The stored metrics are reused when the active version was evaluated on the same held-out set (same
    held-out fingerprint); otherwise its artifact is evaluated now, because scores on different held-out sets
    are not comparable. A base-model version without an artifact scores as the base model measured in this run.
    """
    with Session(engine) as session:
        active = registry.active_version(session=session)
        if active is None:
            return ActiveScore(None, None, None)
        version_id, name, metrics = active.id, active.name, dict(active.metrics or {})
        artifact, base_model = active.artifact_path, active.base_model
    stored = metrics.get("finetuned", {})
    if metrics.get("heldout_fingerprint") == split.heldout_fingerprint and request.gate_metric in stored:
        log.info("active version %s was evaluated on this held-out set: reusing its metrics", name)
        return ActiveScore(version_id, name, float(stored[request.gate_metric]))
    model_path = artifact or resolve_model_path(base_model)
    if not Path(model_path).exists() and artifact:
        log.warning("artifact %s of active version %s is missing: cannot compare", artifact, name)
        return ActiveScore(version_id, name, None)
    if Path(model_path).resolve() == Path(resolve_model_path(request.base_model)).resolve():
        return ActiveScore(version_id, name, base_metrics[request.gate_metric])
    log.info("evaluating active version %s on this run's held-out set", name)
    return ActiveScore(
        version_id, name, evaluate_model(model_path, split, device=request.device)[request.gate_metric]
    )


def register_version(
    engine: Engine,
    *,
    name: str,
    request: TrainRequest,
    split: PairSplit,
    result: TrainingResult,
    base_metrics: dict[str, float],
    finetuned_metrics: dict[str, float],
    active: ActiveScore,
) -> RunOutcome:
    """Write the model card, add the version row, and promote it if the rule says so."""
    params = {
        **result.params,
        "token_budget": request.token_budget,
        "eval_fraction": request.eval_fraction,
        "gate_metric": request.gate_metric,
        "steps": result.steps,
        "samples_per_second": round(result.samples_per_second, 2),
    }
    card.write_model_card(
        result.artifact_path,
        name=name,
        base_model=request.base_model,
        params=params,
        dataset_fingerprint=split.fingerprint,
        dataset_counts=split.counts,
        loss_log=result.loss_log,
        base_metrics=base_metrics,
        finetuned_metrics=finetuned_metrics,
        samples_per_second=result.samples_per_second,
    )
    metrics: dict[str, Any] = {
        "base": base_metrics,
        "finetuned": finetuned_metrics,
        "heldout_fingerprint": split.heldout_fingerprint,
        "gate_metric": request.gate_metric,
    }
    if active.name is not None:
        metrics["active_at_training"] = {"version": active.name, "score": active.score}
    with Session(engine) as session:
        version = registry.create_version(
            session=session,
            name=name,
            base_model=request.base_model,
            params=params,
            dataset_fingerprint=split.fingerprint,
            dataset_counts=split.counts,
            metrics=metrics,
            loss_log=result.loss_log,
            artifact_path=str(result.artifact_path),
        )
        version_id = version.id
        if request.promote:
            decision = registry.promote_if_better(
                session=session,
                version_id=version_id,
                metric=request.gate_metric,
                candidate_score=finetuned_metrics[request.gate_metric],
                compared_with_id=active.version_id,
                compared_score=active.score,
            )
            promoted, reason = decision.promote, decision.reason
        else:
            promoted, reason = False, "registered without promotion (--no-promote)"
            version.status_reason = reason
            session.commit()
    return RunOutcome(
        version_id=version_id,
        version=name,
        promoted=promoted,
        reason=reason,
        artifact_path=str(result.artifact_path),
        base_metrics=base_metrics,
        finetuned_metrics=finetuned_metrics,
        loss_log=result.loss_log,
        samples_per_second=result.samples_per_second,
    )
