"""A training run as one plain sequence: the Prefect flow (flows/train.py) and ``wikiref train``
(flows/cli/train_commands.py) both call ``run_training``, each adding only its own progress reporting.

register the base model as a version (it serves while nothing better has passed the gate) -> pairs from the
database -> score the base model (on the version's article text, and on titles) -> train -> WiSE-FT mix if asked
-> score the new model -> score the active version on the same held-out articles -> paired bootstrap deltas ->
register the version, write its card, and apply the gate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from wikiref.db import corpus, registry
from wikiref.flows.errors import UserError
from wikiref.flows.settings import Settings, TrainKnobs
from wikiref.models import card
from wikiref.models.article_text import TITLE_ONLY, ArticleTextRecipe
from wikiref.models.base import resolve_model_path
from wikiref.models.evaluate import ArticleScores, load_model, paired_bootstrap, score_articles
from wikiref.models.finetune import TrainingConfig, TrainingResult, resolve_device, train, wise_ft
from wikiref.models.pairs import ArticleTexts, PairSplit, build_pairs, tokenizer_counter

log = logging.getLogger(__name__)

WISE_FT_WEIGHTS = (0.25, 0.5, 0.75, 1.0)
# Validation articles kept out of training when WiSE-FT chooses its mixing weight (never the held-out ones).
WISE_FT_VALIDATION_FRACTION = 0.1


@dataclass(frozen=True)
class TrainRequest:
    """Everything a run needs: the knobs (settings + the caller's overrides) and the run's own options."""

    knobs: TrainKnobs
    base_model: str
    default_base_model: str
    device: str
    max_steps: int | None = None
    limit_articles: int | None = None
    resume_from: Path | None = None
    promote: bool = True

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        overrides: dict[str, Any] | None = None,
        *,
        max_steps: int | None = None,
        base_model: str | None = None,
        limit_articles: int | None = None,
        resume_from: str | Path | None = None,
        promote: bool = True,
    ) -> TrainRequest:
        """The settings' knobs with the non-None ``overrides`` (TrainKnobs field names) on top."""
        knobs = settings.train_knobs(**(overrides or {}))
        return cls(
            knobs=knobs,
            base_model=base_model or settings.base_model,
            default_base_model=settings.base_model,
            device=resolve_device(knobs.device),
            max_steps=max_steps,
            limit_articles=limit_articles,
            resume_from=Path(resume_from).expanduser() if resume_from else None,
            promote=promote,
        )

    @property
    def article_text(self) -> ArticleTextRecipe:
        return ArticleTextRecipe.from_name(self.knobs.article_text)

    @property
    def config(self) -> TrainingConfig:
        return self.knobs.training_config(max_steps=self.max_steps)


@dataclass
class RunOutcome:
    version_id: int
    version: str
    promoted: bool
    reason: str
    artifact_path: str
    gate_metric: str
    base_metrics: dict[str, float]
    base_title_metrics: dict[str, float]
    finetuned_metrics: dict[str, float]
    deltas: dict[str, dict[str, dict[str, float]]]
    counts: dict[str, float]
    loss_log: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    samples_per_second: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    wise_ft_weight: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "version": self.version,
            "promoted": self.promoted,
            "reason": self.reason,
            "artifact_path": self.artifact_path,
            "gate_metric": self.gate_metric,
            "metrics": {
                "base": self.base_metrics,
                "base_on_titles": self.base_title_metrics,
                "finetuned": self.finetuned_metrics,
            },
            "deltas": self.deltas,
            "samples_per_second": self.samples_per_second,
        }


class Reporter:
    """What a caller shows while a run goes: a stage name around each step, and training progress."""

    def stage(self, description: str) -> AbstractContextManager[None]:
        @contextmanager
        def quiet() -> Iterator[None]:
            log.info("%s", description)
            yield

        return quiet()

    def progress(self, step: int, total: int, logs: dict[str, float]) -> None:
        """Called after every step, with the Trainer's log entry on logged steps ({} otherwise)."""

    def message(self, text: str) -> None:
        log.info("%s", text)


def offline_hub() -> None:
    """The base model ships with the package; never let a training run reach for the hub unasked."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_pairs(engine: Engine, request: TrainRequest) -> PairSplit:
    """Articles and references from the database, as training pairs and held-out (and validation) articles."""
    knobs = request.knobs
    count_tokens = tokenizer_counter(resolve_model_path(request.base_model))
    with Session(engine) as session:
        # Streamed: rows go through the builder once into a spill file; training pairs land in an Arrow file
        # (split.train), and only the capped held-out and validation articles stay in memory.
        rows = corpus.iter_article_reference_texts(session=session, limit=request.limit_articles)
        split = build_pairs(
            (ArticleTexts(article_id, title, tuple(texts), lead) for article_id, title, texts, lead in rows),
            count_tokens=count_tokens,
            token_budget=knobs.chunk_token_budget,
            eval_fraction=knobs.eval_fraction,
            min_heldout_articles=knobs.min_heldout_articles,
            max_heldout_articles=knobs.max_heldout_articles,
            recipe=request.article_text,
            target=knobs.target,
            validation_fraction=WISE_FT_VALIDATION_FRACTION if knobs.wise_ft else 0.0,
        )
    if not split.counts["references"]:
        raise UserError("the database has no articles with references: run `wikiref scrape` first")
    return split


def new_version_name(models_dir: Path, now: datetime | None = None) -> str:
    """``ft-YYYYMMDD-HHMMSS`` in UTC, with a counter if that folder is taken: runs never share a folder."""
    stem = f"ft-{(now or datetime.now(UTC)):%Y%m%d-%H%M%S}"
    name, counter = stem, 1
    while (models_dir / name).exists():
        counter += 1
        name = f"{stem}-{counter}"
    return name


def ensure_base_version(engine: Engine, request: TrainRequest) -> str:
    """Register the base model as a version (``base``); it becomes active when no version is."""
    name = registry.base_version_name(request.base_model, request.default_base_model)
    with Session(engine) as session:
        _, activated = registry.ensure_base_version(
            session=session,
            name=name,
            base_model=request.base_model,
            article_text=request.knobs.article_text,
        )
    if activated:
        log.info("the base model serves as version %s until a fine-tuned version passes the gate", name)
    return name


def choose_wise_ft_weight(model: Any, split: PairSplit, request: TrainRequest) -> float:
    """The WiSE-FT mixing weight with the best gate metric on the validation articles (never the held-out)."""
    trained = {key: value.clone() for key, value in model.state_dict().items()}
    base_path = resolve_model_path(request.base_model)
    best_weight, best = 1.0, float("-inf")
    for weight in WISE_FT_WEIGHTS:
        model.load_state_dict(trained)
        wise_ft(model, base_path, weight)
        score = score_articles(model, split.validation_articles, request.article_text, with_chunks=False)
        value = score.metrics()[request.knobs.gate_metric]
        log.info("WiSE-FT weight %.2f: validation %s %.4f", weight, request.knobs.gate_metric, value)
        if value > best:
            best_weight, best = weight, value
    model.load_state_dict(trained)
    wise_ft(model, base_path, best_weight)
    return best_weight


@dataclass(frozen=True)
class ActiveScores:
    version_id: int | None
    name: str | None
    is_base: bool
    scores: ArticleScores | None


def score_active_version(
    engine: Engine, split: PairSplit, request: TrainRequest, base_scores: ArticleScores
) -> ActiveScores:
    """The active version's per-article scores on this run's held-out articles, with its own article text.

    The base version (no artifact, same base model) scores as the base model measured in this run.
    """
    with Session(engine) as session:
        active = registry.active_version(session=session)
        if active is None:
            return ActiveScores(None, None, False, None)
        version_id, name = active.id, active.name
        artifact, base_model = active.artifact_path, active.base_model
        recipe = ArticleTextRecipe.from_name(active.article_text)
    if artifact is None and base_model == request.base_model and recipe == request.article_text:
        return ActiveScores(version_id, name, True, base_scores)
    model_path = artifact or resolve_model_path(base_model)
    if not Path(model_path).exists():
        log.warning("artifact %s of active version %s is missing: cannot compare", artifact, name)
        return ActiveScores(version_id, name, False, None)
    log.info("evaluating active version %s on this run's held-out articles (%s)", name, recipe.name)
    model = load_model(model_path, device=request.device)
    return ActiveScores(version_id, name, False, score_articles(model, split.heldout_articles, recipe))


def run_training(
    engine: Engine,
    request: TrainRequest,
    *,
    models_dir: Path,
    checkpoints_dir: Path,
    reporter: Reporter | None = None,
) -> RunOutcome:
    """The whole run; the caller only reports progress. Raises UserError on an empty database."""
    reporter = reporter or Reporter()
    knobs = request.knobs
    offline_hub()
    ensure_base_version(engine, request)
    with reporter.stage("building pairs from the database"):
        split = load_pairs(engine, request)
    counts = split.counts
    reporter.message(
        f"pairs: {counts['train_pairs']:,} training from {counts['train_articles']:,} articles, "
        f"{counts['heldout_articles']:,} held-out articles with {counts['heldout_references']:,} references "
        f"(article text {split.recipe.name}, {knobs.target} targets; fingerprint {split.fingerprint[:12]})"
    )
    base_path = resolve_model_path(request.base_model)
    with reporter.stage("evaluating the base model on the held-out articles"):
        base_model = load_model(base_path, device=request.device)
        base_scores = score_articles(base_model, split.heldout_articles, request.article_text)
        base_titles = (
            base_scores
            if request.article_text == TITLE_ONLY
            else score_articles(base_model, split.heldout_articles, TITLE_ONLY)
        )
    name = new_version_name(models_dir)
    config = request.config
    result = train(
        base_model=base_path,
        pairs=split.train,
        output_dir=models_dir / name,
        checkpoint_dir=checkpoints_dir / name,
        config=config,
        device=request.device,
        resume_from_checkpoint=request.resume_from,
        on_progress=reporter.progress,
    )
    model = load_model(str(result.artifact_path), device=request.device)
    weight = None
    if knobs.wise_ft and len(split.validation_articles) >= 2:
        with reporter.stage("choosing the WiSE-FT mixing weight on validation articles"):
            weight = choose_wise_ft_weight(model, split, request)
            model.save(str(result.artifact_path), create_model_card=False)
    with reporter.stage("evaluating the fine-tuned model"):
        scores = score_articles(model, split.heldout_articles, request.article_text)
    with reporter.stage("scoring the active version on the same held-out articles"):
        active = score_active_version(engine, split, request, base_scores)
    seed = config.seed
    vs_base = paired_bootstrap(scores, base_scores, samples=knobs.bootstrap_samples, seed=seed)
    vs_titles = paired_bootstrap(scores, base_titles, samples=knobs.bootstrap_samples, seed=seed)
    vs_active = (
        paired_bootstrap(scores, active.scores, samples=knobs.bootstrap_samples, seed=seed)
        if active.scores is not None and not active.is_base
        else None
    )
    deltas = {
        "vs_base": {metric: delta.as_dict() for metric, delta in vs_base.items()},
        "vs_base_on_titles": {metric: delta.as_dict() for metric, delta in vs_titles.items()},
    }
    if vs_active is not None:
        deltas["vs_active"] = {metric: delta.as_dict() for metric, delta in vs_active.items()}
    return register_version(
        engine,
        name=name,
        request=request,
        split=split,
        result=result,
        base_metrics=base_scores.metrics(),
        base_title_metrics=base_titles.metrics(),
        finetuned_metrics=scores.metrics(),
        deltas=deltas,
        active=active,
        wise_ft_weight=weight,
    )


def _gate_delta(deltas: dict[str, dict[str, float]] | None, metric: str) -> registry.GateDelta | None:
    if deltas is None or metric not in deltas:
        return None
    entry = deltas[metric]
    return registry.GateDelta(entry["delta"], entry["ci_low"], entry["ci_high"])


def register_version(
    engine: Engine,
    *,
    name: str,
    request: TrainRequest,
    split: PairSplit,
    result: TrainingResult,
    base_metrics: dict[str, float],
    base_title_metrics: dict[str, float],
    finetuned_metrics: dict[str, float],
    deltas: dict[str, dict[str, dict[str, float]]],
    active: ActiveScores,
    wise_ft_weight: float | None,
) -> RunOutcome:
    """Add the version row, apply the gate, and write the model card with the gate's verdict."""
    knobs = request.knobs
    metric = knobs.gate_metric
    params = {
        **knobs.model_dump(),
        **result.params,
        "article_text": split.recipe.name,
        "steps": result.steps,
        "samples_per_second": round(result.samples_per_second, 2),
        "wise_ft_weight": wise_ft_weight,
    }
    metrics: dict[str, Any] = {
        "base": base_metrics,
        "base_on_titles": base_title_metrics,
        "finetuned": finetuned_metrics,
        "deltas": deltas,
        "heldout_fingerprint": split.heldout_fingerprint,
        "gate_metric": metric,
    }
    if active.name is not None:
        metrics["active_at_training"] = {"version": active.name}
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
            article_text=split.recipe.name,
        )
        version_id = version.id
        fusion_weights = registry.fusion_weights(session=session, version_id=version_id)
        vs_base = _gate_delta(deltas["vs_base"], metric)
        if active.version_id is not None and not active.is_base and active.scores is None:
            promoted = False
            reason = f"could not score the active version {active.name} on this held-out set; promote by hand"
            version.status_reason = reason
            session.commit()
        elif request.promote:
            decision = registry.promote_if_better(
                session=session,
                version_id=version_id,
                metric=metric,
                vs_base=vs_base,
                vs_active=_gate_delta(deltas.get("vs_active"), metric),
                compared_with_id=active.version_id,
                min_vs_base=knobs.gate_min_vs_base,
                min_vs_active=knobs.gate_min_vs_active,
            )
            promoted, reason = decision.promote, decision.reason
        else:
            promoted, reason = False, "registered without promotion (--no-promote)"
            version.status_reason = reason
            session.commit()
    card.write_model_card(
        result.artifact_path,
        name=name,
        base_model=request.base_model,
        params=params,
        dataset_fingerprint=split.fingerprint,
        dataset_counts=split.counts,
        loss_log=result.loss_log,
        base_metrics=base_metrics,
        base_title_metrics=base_title_metrics,
        finetuned_metrics=finetuned_metrics,
        deltas=deltas,
        article_text=split.recipe.name,
        gate=card.gate_line(metric, "promoted" if promoted else "stays candidate", reason),
        samples_per_second=result.samples_per_second,
        fusion_weights=fusion_weights,
    )
    return RunOutcome(
        version_id=version_id,
        version=name,
        promoted=promoted,
        reason=reason,
        artifact_path=str(result.artifact_path),
        gate_metric=metric,
        base_metrics=base_metrics,
        base_title_metrics=base_title_metrics,
        finetuned_metrics=finetuned_metrics,
        deltas=deltas,
        counts=split.counts,
        loss_log=result.loss_log,
        steps=result.steps,
        samples_per_second=result.samples_per_second,
        device=result.device,
        precision=result.precision,
        wise_ft_weight=wise_ft_weight,
    )
