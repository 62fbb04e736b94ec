"""A training run as one plain sequence: the Prefect flow (flows/train.py) and ``wikiref train``
(flows/cli/train_commands.py) both call ``run_training``, each adding only its own progress reporting.

register the base model as a version (it serves while nothing better has passed the gate) -> pairs from the
database -> the served BM25 scores of the held-out and validation articles -> score the base model (fused with
weights chosen on the validation articles, embeddings alone beside it, and on titles) -> train -> WiSE-FT mix if
asked -> choose the new model's fusion weights and score it -> score the active version (fused with its stored
weights) on the same held-out articles -> paired bootstrap deltas -> register the version with its weights, write
its card, and apply the gate.

The gate and the reported metrics score the fused scorer, as the SQL functions serve it
(wikiref.models.fusion); "embeddings alone" is what the versions scored before fusion.
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

from wikiref.db import corpus, registry, search
from wikiref.db.schema import ModelVersion
from wikiref.flows.errors import UserError
from wikiref.flows.settings import Settings, TrainKnobs
from wikiref.flows.steps.base_version import register_base_version
from wikiref.models import card
from wikiref.models.article_text import TITLE_ONLY, ArticleTextRecipe
from wikiref.models.base import resolve_model_path
from wikiref.models.evaluate import (
    ArticleScores,
    WordScores,
    choose_fusion_weights,
    encode_articles,
    load_model,
    paired_bootstrap,
    score_articles,
    score_fused,
)
from wikiref.models.finetune import TrainingConfig, TrainingResult, resolve_device, train, wise_ft
from wikiref.models.gate import GateDelta, decide_promotion
from wikiref.models.pairs import ArticleTexts, EvalArticle, PairSplit, build_pairs, tokenizer_counter

log = logging.getLogger(__name__)

WISE_FT_WEIGHTS = (0.25, 0.5, 0.75, 1.0)
# Validation articles kept out of training: the fusion weights (and the WiSE-FT mixing weight, if asked) are
# chosen on them, never on the held-out ones.
VALIDATION_FRACTION = 0.1


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
    # The embeddings alone (no fusion), beside the fused metrics above; the fusion weights of both versions.
    base_embedding_metrics: dict[str, float] = field(default_factory=dict)
    finetuned_embedding_metrics: dict[str, float] = field(default_factory=dict)
    fusion_weights: dict[str, Any] = field(default_factory=dict)
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
                "base_embeddings_alone": self.base_embedding_metrics,
                "finetuned_embeddings_alone": self.finetuned_embedding_metrics,
            },
            "deltas": self.deltas,
            "fusion_weights": self.fusion_weights,
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
            validation_fraction=VALIDATION_FRACTION,
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


def ensure_base_version(engine: Engine, request: TrainRequest) -> int:
    """Register the base model as a version (``base``); it becomes active when no version is. Returns its id."""
    name = register_base_version(
        engine,
        base_model=request.base_model,
        default_base_model=request.default_base_model,
        article_text=request.knobs.article_text,
    )
    with Session(engine) as session:
        return registry.get_version(session=session, name=name).id


def fetch_word_scores(engine: Engine, articles: list[EvalArticle]) -> WordScores:
    """The served BM25 ``words`` signal between these articles and their references, from the lexical index.

    Each stored article's words (its title and lead, as ``similar_references`` matches them) against every
    reference of these articles, and each reference's text against every one of these articles
    (``wikiref.bm25_articles``), one statement per direction, and which references name which articles (the lift
    ``similar_references`` gives them): the same scores the fused SQL functions use, so that evaluation scores what
    a user gets.
    """
    article_ids = [article.article_id for article in articles]
    with Session(engine) as session:
        ids = corpus.reference_ids_by_text(session=session, article_ids=article_ids)
        reference_ids = [ids[a.article_id][text] for a in articles for text in a.references]
        forward = search.article_words_matrix(
            session=session, article_ids=article_ids, reference_ids=reference_ids
        )
        names = search.names_article_matrix(
            session=session, article_ids=article_ids, reference_ids=reference_ids
        )
        texts = [text for article in articles for text in article.references]
        reverse = search.bm25_matrix(session=session, target="articles", queries=texts, ids=article_ids)
    return WordScores(article_to_references=forward, reference_to_articles=reverse, names_article=names)


@dataclass(frozen=True)
class FusionChoice:
    """A version's fusion weights (the ``model_versions.fusion_weights`` shape) and how they were chosen."""

    weights: dict[str, dict[str, float]]
    # Each grid point's validation score, by function; empty when the version kept its stored weights.
    validation: dict[str, list[dict[str, float]]]


def choose_weights(
    model: Any,
    split: PairSplit,
    request: TrainRequest,
    *,
    validation_words: WordScores | None,
    stored: dict[str, dict[str, float]],
) -> FusionChoice:
    """Weights chosen on the validation articles for the functions evaluation measures; the others as stored.

    Without enough validation articles (tiny corpora) the version keeps ``stored``, its current weights.
    """
    if validation_words is None:
        log.info("fewer than 2 validation articles: the fusion weights stay as stored")
        return FusionChoice(stored, {})
    encoded = encode_articles(model, split.validation_articles, request.article_text)
    chosen, trials = choose_fusion_weights(encoded, validation_words)
    log.info("fusion weights chosen on %d validation articles: %s", len(split.validation_articles), chosen)
    return FusionChoice({**stored, **chosen}, trials)


@dataclass(frozen=True)
class VersionScores:
    """One model's held-out scores: fused as served (what the gate uses) and the embeddings alone."""

    fused: ArticleScores
    embeddings: ArticleScores


def score_version(
    model: Any, split: PairSplit, recipe: ArticleTextRecipe, words: WordScores, weights: dict
) -> VersionScores:
    encoded = encode_articles(model, split.heldout_articles, recipe)
    return VersionScores(
        fused=score_fused(encoded, words, weights),
        embeddings=score_articles(model, split.heldout_articles, recipe, encoded=encoded),
    )


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
    engine: Engine, split: PairSplit, request: TrainRequest, base_scores: ArticleScores, words: WordScores
) -> ActiveScores:
    """The active version's fused per-article scores on this run's held-out articles, with its own article text
    and its stored fusion weights (as it serves).

    The base version (no artifact, same base model) scores as the base model measured in this run.
    """
    with Session(engine) as session:
        active = registry.active_version(session=session)
        if active is None:
            return ActiveScores(None, None, False, None)
        version_id, name = active.id, active.name
        artifact, base_model = active.artifact_path, active.base_model
        recipe = ArticleTextRecipe.from_name(active.article_text)
        weights = registry.fusion_weights(session=session, version_id=version_id)
    if artifact is None and base_model == request.base_model and recipe == request.article_text:
        return ActiveScores(version_id, name, True, base_scores)
    model_path = artifact or resolve_model_path(base_model)
    if not Path(model_path).exists():
        log.warning("artifact %s of active version %s is missing: cannot compare", artifact, name)
        return ActiveScores(version_id, name, False, None)
    log.info("evaluating active version %s on this run's held-out articles (%s)", name, recipe.name)
    model = load_model(model_path, device=request.device)
    encoded = encode_articles(model, split.heldout_articles, recipe)
    return ActiveScores(version_id, name, False, score_fused(encoded, words, weights))


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
    base_version_id = ensure_base_version(engine, request)
    with reporter.stage("building pairs from the database"):
        split = load_pairs(engine, request)
    counts = split.counts
    reporter.message(
        f"pairs: {counts['train_pairs']:,} training from {counts['train_articles']:,} articles, "
        f"{counts['heldout_articles']:,} held-out articles with {counts['heldout_references']:,} references "
        f"(article text {split.recipe.name}, {knobs.target} targets; fingerprint {split.fingerprint[:12]})"
    )
    with reporter.stage("fetching the served BM25 scores of the held-out and validation articles"):
        words = fetch_word_scores(engine, split.heldout_articles)
        validation_words = (
            fetch_word_scores(engine, split.validation_articles)
            if len(split.validation_articles) >= 2
            else None
        )
    with Session(engine) as session:
        base_stored = registry.fusion_weights(session=session, version_id=base_version_id)
    base_path = resolve_model_path(request.base_model)
    with reporter.stage("evaluating the base model on the held-out articles"):
        base_model = load_model(base_path, device=request.device)
        base_fusion = choose_weights(
            base_model, split, request, validation_words=validation_words, stored=base_stored
        )
        base = score_version(base_model, split, request.article_text, words, base_fusion.weights)
        base_titles = (
            base.embeddings
            if request.article_text == TITLE_ONLY
            else score_articles(base_model, split.heldout_articles, TITLE_ONLY)
        )
    with Session(engine) as session:
        registry.set_fusion_weights(session=session, version_id=base_version_id, weights=base_fusion.weights)
        session.commit()
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
    with reporter.stage(
        "choosing the fusion weights on validation articles and evaluating the fine-tuned model"
    ):
        fusion = choose_weights(model, split, request, validation_words=validation_words, stored=base_stored)
        finetuned = score_version(model, split, request.article_text, words, fusion.weights)
    with reporter.stage("scoring the active version on the same held-out articles"):
        active = score_active_version(engine, split, request, base.fused, words)
    seed = config.seed
    samples = knobs.bootstrap_samples
    vs_base = paired_bootstrap(finetuned.fused, base.fused, samples=samples, seed=seed)
    vs_titles = paired_bootstrap(finetuned.fused, base_titles, samples=samples, seed=seed)
    alone = paired_bootstrap(finetuned.embeddings, base.embeddings, samples=samples, seed=seed)
    vs_active = (
        paired_bootstrap(finetuned.fused, active.scores, samples=samples, seed=seed)
        if active.scores is not None and not active.is_base
        else None
    )
    deltas = {
        "vs_base": {metric: delta.as_dict() for metric, delta in vs_base.items()},
        "vs_base_on_titles": {metric: delta.as_dict() for metric, delta in vs_titles.items()},
        "embeddings_alone_vs_base": {metric: delta.as_dict() for metric, delta in alone.items()},
    }
    if vs_active is not None:
        deltas["vs_active"] = {metric: delta.as_dict() for metric, delta in vs_active.items()}
    run = TrainingRun(
        request=request,
        split=split,
        result=result,
        base=base,
        base_title_metrics=base_titles.metrics(),
        finetuned=finetuned,
        deltas=deltas,
        active=active,
        wise_ft_weight=weight,
        fusion={"finetuned": fusion, "base": base_fusion},
    )
    return register_version(engine, name=name, run=run)


def _gate_delta(deltas: dict[str, dict[str, float]] | None, metric: str) -> GateDelta | None:
    if deltas is None or metric not in deltas:
        return None
    entry = deltas[metric]
    return GateDelta(entry["delta"], entry["ci_low"], entry["ci_high"])


@dataclass(frozen=True)
class VersionRecord:
    """What a run stores with its version row and writes on its model card."""

    params: dict[str, Any]
    metrics: dict[str, Any]
    fusion: dict[str, Any]
    embedding_metrics: dict[str, dict[str, float]]


@dataclass(frozen=True)
class TrainingRun:
    """What one training run measured, as register_version records it."""

    request: TrainRequest
    split: PairSplit
    result: TrainingResult
    base: VersionScores
    base_title_metrics: dict[str, float]
    finetuned: VersionScores
    deltas: dict[str, dict[str, dict[str, float]]]
    active: ActiveScores
    wise_ft_weight: float | None
    fusion: dict[str, FusionChoice]


def version_record(run: TrainingRun) -> VersionRecord:
    """The run's knobs and training figures (params) and its held-out scores, deltas and fusion choice (metrics)."""
    embedding_metrics = {
        "base": run.base.embeddings.metrics(),
        "finetuned": run.finetuned.embeddings.metrics(),
    }
    fusion_record = {
        "weights": run.fusion["finetuned"].weights,
        "base_weights": run.fusion["base"].weights,
        "validation_articles": len(run.split.validation_articles),
        "validation": {who: choice.validation for who, choice in run.fusion.items()},
    }
    params = {
        **run.request.knobs.model_dump(),
        **run.result.params,
        "article_text": run.split.recipe.name,
        "steps": run.result.steps,
        "samples_per_second": round(run.result.samples_per_second, 2),
        "wise_ft_weight": run.wise_ft_weight,
    }
    metrics: dict[str, Any] = {
        "base": run.base.fused.metrics(),
        "base_on_titles": run.base_title_metrics,
        "finetuned": run.finetuned.fused.metrics(),
        "base_embeddings_alone": embedding_metrics["base"],
        "finetuned_embeddings_alone": embedding_metrics["finetuned"],
        "deltas": run.deltas,
        "fusion": fusion_record,
        "heldout_fingerprint": run.split.heldout_fingerprint,
        "gate_metric": run.request.knobs.gate_metric,
    }
    if run.active.name is not None:
        metrics["active_at_training"] = {"version": run.active.name}
    return VersionRecord(params, metrics, fusion_record, embedding_metrics)


def apply_gate(
    session: Session,
    version: ModelVersion,
    *,
    request: TrainRequest,
    deltas: dict[str, dict[str, dict[str, float]]],
    active: ActiveScores,
) -> tuple[bool, str]:
    """The gate's verdict on the new ``version`` (a ``model_versions`` row), stored: whether it now serves, and why."""
    knobs = request.knobs
    metric = knobs.gate_metric
    if active.version_id is not None and not active.is_base and active.scores is None:
        reason = f"could not score the active version {active.name} on this held-out set; promote by hand"
    elif not request.promote:
        reason = "registered without promotion (--no-promote)"
    else:
        decision = decide_promotion(
            metric=metric,
            vs_base=_gate_delta(deltas["vs_base"], metric),
            active_name=active.name,
            vs_active=_gate_delta(deltas.get("vs_active"), metric),
            min_vs_base=knobs.gate_min_vs_base,
            min_vs_active=knobs.gate_min_vs_active,
        )
        stored = registry.store_verdict(
            session=session,
            version_id=version.id,
            promote=decision.promote,
            reason=decision.reason,
            compared_with_id=active.version_id,
        )
        return stored.status == "active", stored.status_reason
    version.status_reason = reason
    session.commit()
    return False, reason


def register_version(engine: Engine, *, name: str, run: TrainingRun) -> RunOutcome:
    """Add the version row with its fusion weights, apply the gate, and write the model card with the verdict."""
    # 1. What the row and the card record
    record = version_record(run)
    weights, metric = record.fusion["weights"], run.request.knobs.gate_metric

    # 2. The version row, with the fusion weights it was scored with; 3. the gate's verdict on it
    with Session(engine) as session:
        version = registry.create_version(
            session=session,
            name=name,
            base_model=run.request.base_model,
            params=record.params,
            dataset_fingerprint=run.split.fingerprint,
            dataset_counts=run.split.counts,
            metrics=record.metrics,
            loss_log=run.result.loss_log,
            artifact_path=str(run.result.artifact_path),
            article_text=run.split.recipe.name,
        )
        version_id = version.id
        registry.set_fusion_weights(session=session, version_id=version_id, weights=weights)
        session.commit()
        promoted, reason = apply_gate(
            session, version, request=run.request, deltas=run.deltas, active=run.active
        )

    # 4. The model card, verdict included
    card.write_model_card(
        run.result.artifact_path,
        name=name,
        base_model=run.request.base_model,
        params=record.params,
        dataset_fingerprint=run.split.fingerprint,
        dataset_counts=run.split.counts,
        loss_log=run.result.loss_log,
        base_metrics=record.metrics["base"],
        base_title_metrics=run.base_title_metrics,
        finetuned_metrics=record.metrics["finetuned"],
        deltas=run.deltas,
        article_text=run.split.recipe.name,
        gate=card.gate_line(metric, "promoted" if promoted else "stays candidate", reason),
        samples_per_second=run.result.samples_per_second,
        embedding_metrics=record.embedding_metrics,
        fusion_weights=weights,
    )

    # 5. What the caller reports
    return RunOutcome(
        version_id=version_id,
        version=name,
        promoted=promoted,
        reason=reason,
        artifact_path=str(run.result.artifact_path),
        gate_metric=metric,
        base_metrics=record.metrics["base"],
        base_title_metrics=run.base_title_metrics,
        finetuned_metrics=record.metrics["finetuned"],
        deltas=run.deltas,
        counts=run.split.counts,
        base_embedding_metrics=record.embedding_metrics["base"],
        finetuned_embedding_metrics=record.embedding_metrics["finetuned"],
        fusion_weights=record.fusion,
        loss_log=run.result.loss_log,
        steps=run.result.steps,
        samples_per_second=run.result.samples_per_second,
        device=run.result.device,
        precision=run.result.precision,
        wise_ft_weight=run.wise_ft_weight,
    )
