"""Held-out retrieval metrics in both directions the product serves, per article, with paired bootstrap CIs.

article -> each single reference (what ``similar_references`` answers): the held-out articles' texts are the
queries, every single reference of every held-out article is the corpus, and an article's own references are
relevant. NDCG@10, MRR@10 and recall@10 per article.

reference -> article (what ``articles_for_reference`` answers): for every held-out reference, is its own article
the nearest of all held-out articles? Accuracy@1, counted per article so that articles can be resampled.

chunk NDCG@10: the same as the first, against chunks of consecutive references (what older versions reported).

Fused (``score_fused``): both directions ranked as the fused SQL functions serve them (wikiref.models.fusion): the
embeddings, the served BM25 ``words`` (fetched from the database by the caller, as arrays) and, for reference ->
article, the ``vote`` of each article's other references.

Every score is kept per article, so that two models evaluated on the same articles can be compared by a paired
bootstrap over articles: the confidence interval of a delta says whether a gain is more than the luck of which
articles were held out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

import numpy as np

from wikiref.models.article_text import ArticleTextRecipe
from wikiref.models.encode import ENCODE_BATCH_SIZE
from wikiref.models.errors import ModelError
from wikiref.models.fusion import (
    DEFAULT_CANDIDATES,
    EMBEDDING,
    HUBNESS,
    HUBNESS_GRID,
    VOTE,
    VOTE_GRID,
    WORDS,
    WORDS_GRID,
    rank,
    reference_hubness,
)
from wikiref.models.pairs import EvalArticle, PairSplit

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

REVERSE_METRIC = "ref_to_title_acc@1"
# Display order; the first two are what the product serves and what the gate may use.
METRICS = ("ndcg@10", REVERSE_METRIC, "mrr@10", "recall@10", "chunk_ndcg@10")
_DISCOUNT = 1.0 / np.log2(np.arange(2, 12))
# Resamples of the paired bootstrap (WIKIREF_TRAIN_BOOTSTRAP_SAMPLES reads it).
BOOTSTRAP_SAMPLES = 2000


def load_model(name_or_path: str, *, device: str = "cpu") -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path, device=device)


@dataclass(frozen=True)
class ArticleScores:
    """Scores of one model on a list of articles, one entry per article, in the same order for every model."""

    article_ids: tuple[int, ...]
    per_article: dict[str, np.ndarray]
    # Per article: how many of its references found it first, and how many references it has.
    correct: np.ndarray
    references: np.ndarray

    def metrics(self, rows: np.ndarray | None = None) -> dict[str, float]:
        """Means over the articles (or over ``rows`` of them); accuracy over all their references."""
        rows = np.arange(len(self.article_ids)) if rows is None else rows
        values = {name: float(self.per_article[name][rows].mean()) for name in self.per_article}
        values[REVERSE_METRIC] = float(self.correct[rows].sum() / max(1, self.references[rows].sum()))
        return {name: values[name] for name in METRICS if name in values}


@dataclass(frozen=True)
class Delta:
    """``value`` = this model minus the other on the same articles; [low, high] its 95% bootstrap interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"delta": round(self.value, 5), "ci_low": round(self.low, 5), "ci_high": round(self.high, 5)}


def _ranking(queries: np.ndarray, corpus: np.ndarray, owner: np.ndarray) -> dict[str, np.ndarray]:
    """NDCG@10, MRR@10 and recall@10 per query, with corpus rows relevant to the query that owns them."""
    scores = queries @ corpus.T
    k = min(10, corpus.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, axis=1)
    relevant = owner[top] == np.arange(len(queries))[:, None]
    counts = np.bincount(owner, minlength=len(queries))
    dcg = (relevant * _DISCOUNT[:k]).sum(axis=1)
    ideal = np.array([_DISCOUNT[: min(k, n)].sum() for n in counts])
    first = np.where(relevant.any(axis=1), relevant.argmax(axis=1) + 1, np.inf)
    return {
        "ndcg": np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0),
        "mrr": 1.0 / first,
        "recall": relevant.sum(axis=1) / np.maximum(1, np.minimum(counts, k)),
    }


def _encode(model: SentenceTransformer, texts: Sequence[str], batch_size: int) -> np.ndarray:
    return model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        # Its default shows a bar whenever logging is at INFO: carriage-return frames in a log file.
        show_progress_bar=False,
    ).astype(np.float32)


@dataclass(frozen=True)
class EncodedArticles:
    """One model's embeddings of evaluation articles: article texts, their single references in article order."""

    article_ids: tuple[int, ...]
    texts: np.ndarray
    references: np.ndarray
    # Row of ``texts`` that owns each row of ``references``.
    owner: np.ndarray


@dataclass(frozen=True)
class WordScores:
    """The served BM25 ``words`` signal between evaluation articles and references (the lexical index's scores).

    ``article_to_references[i, j]``: article i's query text (title + lead) against reference j's text, as
    ``similar_references`` scores it; ``reference_to_articles[j, i]``: reference j's text against article i's
    title + lead, as ``articles_for_reference`` scores it. ``names_article[i, j]``: what ``similar_references``
    adds to reference j's fused score for article i when it names the article (``wikiref.names_article_weight()``
    where the reference holds the title as a phrase, else 0); None: nothing added.
    """

    article_to_references: np.ndarray
    reference_to_articles: np.ndarray
    names_article: np.ndarray | None = None


def encode_articles(
    model: SentenceTransformer,
    articles: Sequence[EvalArticle],
    recipe: ArticleTextRecipe,
    *,
    batch_size: int = ENCODE_BATCH_SIZE,
) -> EncodedArticles:
    """``model``'s embeddings of ``articles`` (text composed with ``recipe``) and of their references."""
    if len(articles) < 2:
        raise ModelError(f"evaluation needs at least 2 held-out articles, got {len(articles)}")
    return EncodedArticles(
        article_ids=tuple(a.article_id for a in articles),
        texts=_encode(model, [recipe.compose(a.title, a.lead) for a in articles], batch_size),
        references=_encode(model, [text for a in articles for text in a.references], batch_size),
        owner=np.array([i for i, a in enumerate(articles) for _ in a.references], dtype=np.int64),
    )


def score_articles(
    model: SentenceTransformer,
    articles: Sequence[EvalArticle],
    recipe: ArticleTextRecipe,
    *,
    batch_size: int = ENCODE_BATCH_SIZE,
    with_chunks: bool = True,
    encoded: EncodedArticles | None = None,
) -> ArticleScores:
    """Every per-article score of ``model`` (embeddings alone) on ``articles``, their text composed with ``recipe``.

    ``encoded``: the same model's ``encode_articles`` of the same articles, when the caller has them already.
    """
    started = time.perf_counter()
    encoded = encoded or encode_articles(model, articles, recipe, batch_size=batch_size)
    texts, references, owner = encoded.texts, encoded.references, encoded.owner
    singles = _ranking(texts, references, owner)
    nearest = (references @ texts.T).argmax(axis=1)
    correct = np.bincount(owner[nearest == owner], minlength=len(articles)).astype(float)
    per_article = {"ndcg@10": singles["ndcg"], "mrr@10": singles["mrr"], "recall@10": singles["recall"]}
    if with_chunks:
        chunk_owner = np.array([i for i, a in enumerate(articles) for _ in a.chunks])
        chunks = _encode(model, [text for a in articles for text in a.chunks], batch_size)
        per_article["chunk_ndcg@10"] = _ranking(texts, chunks, chunk_owner)["ndcg"]
    result = ArticleScores(
        article_ids=encoded.article_ids,
        per_article=per_article,
        correct=correct,
        references=np.bincount(owner, minlength=len(articles)).astype(float),
    )
    log.info(
        "evaluated %d articles (%s), %d references in %.1f s: %s",
        len(articles),
        recipe.name,
        len(owner),
        time.perf_counter() - started,
        ", ".join(f"{name} {value:.4f}" for name, value in result.metrics().items()),
    )
    return result


def reference_votes(
    encoded: EncodedArticles, candidates: int = DEFAULT_CANDIDATES
) -> tuple[np.ndarray, np.ndarray]:
    """``vote[j, i]``: the best cosine between reference j and article i's references other than j itself; and
    per reference the vote's candidate floor: the SQL function takes the articles of the ``candidates`` nearest
    references, the query reference itself (the nearest) left out, so the cosine of the ``candidates - 1``-th
    nearest other reference.

    NaN where article i has no other reference: the query reference never votes for its own article.
    """
    similarity = encoded.references @ encoded.references.T
    np.fill_diagonal(similarity, -np.inf)
    depth = min(candidates - 1, len(encoded.owner) - 1)
    floors = (
        -np.partition(-similarity, depth - 1, axis=1)[:, depth - 1]
        if depth > 0
        else np.full(len(encoded.owner), np.inf)
    )
    order = np.argsort(encoded.owner, kind="stable")
    owners, starts = np.unique(encoded.owner[order], return_index=True)
    votes = np.full((len(encoded.owner), len(encoded.article_ids)), np.nan)
    votes[:, owners] = np.maximum.reduceat(similarity[:, order], starts, axis=1)
    votes[np.isneginf(votes)] = np.nan
    return votes, floors


def _fused_forward(
    encoded: EncodedArticles, words: WordScores, weights: dict[str, float], candidates: int
) -> dict[str, np.ndarray]:
    """NDCG@10, MRR@10 and recall@10 per article as ``similar_references`` ranks its references."""
    n, m = len(encoded.article_ids), len(encoded.owner)
    k = min(10, m)
    relevant = np.zeros((n, k), dtype=bool)
    similarity = encoded.texts @ encoded.references.T
    hubness = reference_hubness(similarity)
    for i in range(n):
        signals = {EMBEDDING: similarity[i], WORDS: words.article_to_references[i], HUBNESS: hubness}
        lift = None if words.names_article is None else words.names_article[i]
        top = rank(signals, weights, candidates=candidates, lift=lift)[0][:k]
        relevant[i, : len(top)] = encoded.owner[top] == i
    counts = np.bincount(encoded.owner, minlength=n)
    dcg = (relevant * _DISCOUNT[:k]).sum(axis=1)
    ideal = np.array([_DISCOUNT[: min(k, c)].sum() for c in counts])
    first = np.where(relevant.any(axis=1), relevant.argmax(axis=1) + 1, np.inf)
    return {
        "ndcg@10": np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0),
        "mrr@10": 1.0 / first,
        "recall@10": relevant.sum(axis=1) / np.maximum(1, np.minimum(counts, k)),
    }


def _fused_reverse(
    encoded: EncodedArticles,
    words: WordScores,
    votes: tuple[np.ndarray, np.ndarray],
    weights: dict[str, float],
    candidates: int,
) -> np.ndarray:
    """Per article: how many of its references ``articles_for_reference`` answers with it first."""
    similarity = encoded.references @ encoded.texts.T
    correct = np.zeros(len(encoded.article_ids))
    vote, floor = votes
    for j, own in enumerate(encoded.owner):
        signals = {EMBEDDING: similarity[j], WORDS: words.reference_to_articles[j], VOTE: vote[j]}
        top = rank(signals, weights, candidates=candidates, floors={VOTE: floor[j]})[0][0]
        correct[own] += top == own
    return correct


def score_fused(
    encoded: EncodedArticles,
    words: WordScores,
    weights: dict[str, dict[str, float]],
    *,
    candidates: int = DEFAULT_CANDIDATES,
) -> ArticleScores:
    """Per-article scores of the fused scorer with ``weights`` (the shape of ``model_versions.fusion_weights``).

    article -> references ranks as ``similar_references`` (embeddings less hubness + words), reference -> article as
    ``articles_for_reference`` (embeddings + words + vote); each query's candidate set and z-scores as
    wikiref.models.fusion.rank computes them.
    """
    per_article = _fused_forward(encoded, words, weights.get("similar_references", {}), candidates)
    correct = _fused_reverse(
        encoded,
        words,
        reference_votes(encoded, candidates),
        weights.get("articles_for_reference", {}),
        candidates,
    )
    return ArticleScores(
        article_ids=encoded.article_ids,
        per_article=per_article,
        correct=correct,
        references=np.bincount(encoded.owner, minlength=len(encoded.article_ids)).astype(float),
    )


def choose_fusion_weights(
    encoded: EncodedArticles, words: WordScores, *, candidates: int = DEFAULT_CANDIDATES
) -> tuple[dict[str, dict[str, float]], dict[str, list[dict[str, float]]]]:
    """The grid's best weights on these (validation) articles, and every grid point's score.

    ``similar_references`` takes the words and hubness weights with the best NDCG@10, ``articles_for_reference``
    the words and vote weights with the best accuracy@1: each function by the metric that measures what it answers.
    A tie goes to the smaller weights (their sum, then the words weight), so a signal is added only when it
    measurably helps.
    """
    trials: dict[str, list[dict[str, float]]] = {"similar_references": [], "articles_for_reference": []}
    best_forward, best_value = (0.0, 0.0), -np.inf
    for w, h in sorted(product(WORDS_GRID, HUBNESS_GRID), key=lambda pair: (sum(pair), pair[0])):
        value = float(_fused_forward(encoded, words, {WORDS: w, HUBNESS: h}, candidates)["ndcg@10"].mean())
        trials["similar_references"].append({WORDS: w, HUBNESS: h, "ndcg@10": round(value, 5)})
        if value > best_value:
            best_forward, best_value = (w, h), value
    votes = reference_votes(encoded, candidates)
    references = len(encoded.owner)
    best_reverse, best_value = (0.0, 0.0), -np.inf
    for w, v in sorted(product(WORDS_GRID, VOTE_GRID), key=lambda pair: (sum(pair), pair[0])):
        value = float(
            _fused_reverse(encoded, words, votes, {WORDS: w, VOTE: v}, candidates).sum() / references
        )
        trials["articles_for_reference"].append({WORDS: w, VOTE: v, REVERSE_METRIC: round(value, 5)})
        if value > best_value:
            best_reverse, best_value = (w, v), value
    chosen = {
        "similar_references": {WORDS: best_forward[0], HUBNESS: best_forward[1]},
        "articles_for_reference": {WORDS: best_reverse[0], VOTE: best_reverse[1]},
    }
    return chosen, trials


def evaluate(
    model: SentenceTransformer,
    split: PairSplit,
    recipe: ArticleTextRecipe | None = None,
    *,
    batch_size: int = ENCODE_BATCH_SIZE,
) -> ArticleScores:
    """Scores on ``split``'s held-out articles, composed with ``recipe`` (default: the split's own)."""
    if not split.heldout_articles:
        raise ModelError("the held-out set is empty: too few articles to evaluate")
    return score_articles(model, split.heldout_articles, recipe or split.recipe, batch_size=batch_size)


def paired_bootstrap(
    candidate: ArticleScores, baseline: ArticleScores, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> dict[str, Delta]:
    """``candidate - baseline`` per metric, with a 95% percentile interval from resampling articles.

    Both must score the same articles in the same order. The same resampled articles serve both models (paired),
    so the interval reflects the difference, not each model's own spread. Deterministic for a seed.
    """
    if candidate.article_ids != baseline.article_ids:
        raise ModelError("a paired bootstrap needs both models scored on the same articles")
    n = len(candidate.article_ids)
    rows = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    deltas: dict[str, Delta] = {}
    point_candidate, point_baseline = candidate.metrics(), baseline.metrics()
    for name in point_candidate:
        if name == REVERSE_METRIC:
            refs = candidate.references[rows].sum(axis=1)
            spread = (candidate.correct[rows].sum(axis=1) - baseline.correct[rows].sum(axis=1)) / np.maximum(
                1, refs
            )
        elif name in baseline.per_article:
            spread = (candidate.per_article[name] - baseline.per_article[name])[rows].mean(axis=1)
        else:
            continue
        low, high = np.percentile(spread, [2.5, 97.5])
        deltas[name] = Delta(point_candidate[name] - point_baseline[name], float(low), float(high))
    return deltas
