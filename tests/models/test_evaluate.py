"""Per-article metrics and the paired bootstrap, on hand-made vectors and scores (no model needed)."""

import numpy as np
import pytest

from wikiref.models.errors import ModelError
from wikiref.models.evaluate import REVERSE_METRIC, ArticleScores, _ranking, paired_bootstrap


def scores(ndcg: list[float], correct: list[int], references: list[int], ids=None) -> ArticleScores:
    ids = tuple(ids or range(len(ndcg)))
    values = np.array(ndcg, dtype=float)
    return ArticleScores(
        article_ids=ids,
        per_article={"ndcg@10": values, "mrr@10": values, "recall@10": values},
        correct=np.array(correct, dtype=float),
        references=np.array(references, dtype=float),
    )


def test_ranking_metrics_match_a_hand_computed_case() -> None:
    # Two queries on the axes; corpus rows 0, 1 belong to query 0, row 2 to query 1.
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    corpus = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8]])
    result = _ranking(queries, corpus, np.array([0, 0, 1]))
    # Query 0 ranks rows 0, 2, 1: relevant at ranks 1 and 3. Query 1 ranks rows 1, 2, 0: relevant at rank 2.
    ideal0 = 1 + 1 / np.log2(3)
    assert result["ndcg"][0] == pytest.approx((1 + 1 / np.log2(4)) / ideal0)
    assert result["ndcg"][1] == pytest.approx(1 / np.log2(3))
    assert result["mrr"].tolist() == [1.0, 0.5]
    assert result["recall"].tolist() == [1.0, 1.0]


def test_accuracy_counts_every_reference_and_resamples_by_article() -> None:
    model = scores([0.5, 0.7, 0.9], correct=[1, 3, 0], references=[2, 4, 4])
    assert model.metrics()[REVERSE_METRIC] == pytest.approx(4 / 10)
    assert model.metrics(np.array([1, 1]))[REVERSE_METRIC] == pytest.approx(6 / 8)
    assert model.metrics()["ndcg@10"] == pytest.approx(0.7)


def test_the_bootstrap_is_deterministic_for_a_seed_and_brackets_the_delta() -> None:
    rng = np.random.default_rng(7)
    base_ndcg = rng.uniform(0.3, 0.8, 200)
    base = scores(base_ndcg.tolist(), correct=[5] * 200, references=[10] * 200)
    better = scores((base_ndcg + rng.normal(0.03, 0.05, 200)).tolist(), [6] * 200, [10] * 200)
    first = paired_bootstrap(better, base, samples=500, seed=3)
    assert first == paired_bootstrap(better, base, samples=500, seed=3)
    assert first != paired_bootstrap(better, base, samples=500, seed=4)
    ndcg = first["ndcg@10"]
    assert ndcg.low < ndcg.value < ndcg.high and ndcg.low > 0
    assert first[REVERSE_METRIC].value == pytest.approx(0.1) and first[REVERSE_METRIC].low == pytest.approx(
        0.1
    )

    # Gains and losses that cancel out: a delta of zero, whose interval must straddle zero.
    offsets = rng.permutation(np.tile([0.05, -0.05], 100))
    noise = scores((base_ndcg + offsets).tolist(), [5] * 200, [10] * 200)
    spread = paired_bootstrap(noise, base, samples=500, seed=3)["ndcg@10"]
    assert spread.value == pytest.approx(0) and spread.low < 0 < spread.high


def test_the_bootstrap_refuses_scores_of_different_articles() -> None:
    with pytest.raises(ModelError, match="same articles"):
        paired_bootstrap(scores([0.5, 0.6], [1, 1], [2, 2]), scores([0.5, 0.6], [1, 1], [2, 2], ids=[1, 2]))
