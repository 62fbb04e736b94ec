"""Held-out retrieval metrics in both directions the product serves, per article, with paired bootstrap CIs.

article -> each single reference (what ``similar_references`` answers): the held-out articles' texts are the
queries, every single reference of every held-out article is the corpus, and an article's own references are
relevant. NDCG@10, MRR@10 and recall@10 per article.

reference -> article (what ``articles_for_reference`` answers): for every held-out reference, is its own article
the nearest of all held-out articles? Accuracy@1, counted per article so that articles can be resampled.

chunk NDCG@10: the same as the first, against chunks of consecutive references (what older versions reported).

Every score is kept per article, so that two models evaluated on the same articles can be compared by a paired
bootstrap over articles: the confidence interval of a delta says whether a gain is more than the luck of which
articles were held out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wikiref.models.article_text import ArticleTextRecipe
from wikiref.models.errors import ModelError
from wikiref.models.pairs import EvalArticle, PairSplit

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

REVERSE_METRIC = "ref_to_title_acc@1"
# Display order; the first two are what the product serves and what the gate may use.
METRICS = ("ndcg@10", REVERSE_METRIC, "mrr@10", "recall@10", "chunk_ndcg@10")
_DISCOUNT = 1.0 / np.log2(np.arange(2, 12))


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


def score_articles(
    model: SentenceTransformer,
    articles: Sequence[EvalArticle],
    recipe: ArticleTextRecipe,
    *,
    batch_size: int = 64,
    with_chunks: bool = True,
) -> ArticleScores:
    """Every per-article score of ``model`` on ``articles``, their text composed with ``recipe``."""
    if len(articles) < 2:
        raise ModelError(f"evaluation needs at least 2 held-out articles, got {len(articles)}")
    started = time.perf_counter()
    texts = _encode(model, [recipe.compose(a.title, a.lead) for a in articles], batch_size)
    owner = np.array([i for i, a in enumerate(articles) for _ in a.references])
    references = _encode(model, [text for a in articles for text in a.references], batch_size)
    singles = _ranking(texts, references, owner)
    nearest = (references @ texts.T).argmax(axis=1)
    correct = np.bincount(owner[nearest == owner], minlength=len(articles)).astype(float)
    per_article = {"ndcg@10": singles["ndcg"], "mrr@10": singles["mrr"], "recall@10": singles["recall"]}
    if with_chunks:
        chunk_owner = np.array([i for i, a in enumerate(articles) for _ in a.chunks])
        chunks = _encode(model, [text for a in articles for text in a.chunks], batch_size)
        per_article["chunk_ndcg@10"] = _ranking(texts, chunks, chunk_owner)["ndcg"]
    result = ArticleScores(
        article_ids=tuple(a.article_id for a in articles),
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


def evaluate(
    model: SentenceTransformer,
    split: PairSplit,
    recipe: ArticleTextRecipe | None = None,
    *,
    batch_size: int = 64,
) -> ArticleScores:
    """Scores on ``split``'s held-out articles, composed with ``recipe`` (default: the split's own)."""
    if not split.heldout_articles:
        raise ModelError("the held-out set is empty: too few articles to evaluate")
    return score_articles(model, split.heldout_articles, recipe or split.recipe, batch_size=batch_size)


def paired_bootstrap(
    candidate: ArticleScores, baseline: ArticleScores, *, samples: int = 2000, seed: int = 0
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
