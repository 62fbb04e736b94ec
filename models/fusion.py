"""The fused scorer the SQL functions serve, in Python, for evaluation and the promotion gate.

One call of a fused SQL function (docs/sql.md) ranks a candidate set: the union of each signal's own top
``candidates`` (embeddings, BM25 words, and for ``articles_for_reference`` the vote of each article's other
references). Every signal is then known exactly for every candidate; each is z-normalised over the candidate set
(mean and population standard deviation; a signal with no spread contributes 0) and

    fused = z(embedding) + w_words * z(words) + w_vote * z(vote)

ranks the candidates, best first, ties by id; ``similar_references`` adds a fixed lift to a reference that names
the article (holds its title as a phrase: ``wikiref.names_article_weight()``), neither z-normalised nor a
candidate source, and corrects the embedding for hubness before it is z-normalised:

    embedding = cos(article, reference) - w_hubness * hubness(reference)

``hubness(reference)``: the mean cosine of the reference to its ``HUBNESS_NEIGHBOURS`` nearest articles, stored
with its embedding. A reference close to many articles (a generic source) ranks high for each of them and belongs
to one; the correction is cross-domain similarity local scaling (CSLS; Conneau et al. 2018, "Word translation
without parallel data"), whose own weight is 0.5. Hubness picks no candidates. Here the signals come as arrays over a whole (evaluation) corpus, one entry per row; the
candidate set is chosen from them the same way, so that evaluation scores what a user gets. Weights are relative
to the embedding's, which is always 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

EMBEDDING = "embedding"
WORDS = "words"
VOTE = "vote"
HUBNESS = "hubness"
SIGNALS = (EMBEDDING, WORDS, VOTE)
# Each fused SQL function and the signals it weighs beside the embeddings (the fusion contract, docs/sql.md).
FUNCTION_SIGNALS = {
    "similar_references": (WORDS, HUBNESS),
    "articles_for_reference": (WORDS, VOTE),
    "similar_articles": (WORDS,),
    "search_text": (WORDS,),
}
# What each signal's index hands over to the candidate set, as the SQL functions' default.
DEFAULT_CANDIDATES = 100
# The weight grid a training run searches on its validation articles (smaller weights win ties). The vote's
# reaches past 2.0 because the bench's base model chose 2.0, the old grid's top (bench/results/fusion-base.json).
WORDS_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
VOTE_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
# Written before the bench's evaluation scores were seen (bench/hubness_probe.py, docs/training.md).
HUBNESS_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
# How many nearest articles a reference's hubness averages over (wikiref.reference_hubness, migration 0019).
HUBNESS_NEIGHBOURS = 10


def znormalise(values: np.ndarray) -> np.ndarray:
    """(values - mean) / population std over the finite entries; 0 where a value is missing (NaN) or all agree.

    A missing value (an article with no other stored reference has no vote) counts as the candidates' mean, so it
    neither lifts nor sinks the candidate.
    """
    values = np.asarray(values, dtype=np.float64)
    known = np.isfinite(values)
    z = np.zeros_like(values)
    if not known.any():
        return z
    mean = values[known].mean()
    std = values[known].std()
    if std > 0:
        z[known] = (values[known] - mean) / std
    return z


def fuse(signals: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Fused scores of one candidate set: z(embedding corrected for hubness) plus each other signal's weight
    times its z-score."""
    embedding = np.asarray(signals[EMBEDDING], dtype=np.float64)
    if weights.get(HUBNESS):
        embedding = embedding - weights[HUBNESS] * corrected_hubness(signals[HUBNESS])
    fused = znormalise(embedding)
    for name, weight in weights.items():
        if name == EMBEDDING:
            raise ValueError("the embedding's weight is always 1; give only the other signals' weights")
        if weight and name != HUBNESS:
            fused = fused + weight * znormalise(signals[name])
    return fused


def corrected_hubness(hubness: np.ndarray) -> np.ndarray:
    """A candidate set's hubness with a missing value (a reference embedded since) as the candidates' mean, so
    that it neither lifts nor sinks the candidate; 0 where none is known."""
    hubness = np.asarray(hubness, dtype=np.float64)
    known = np.isfinite(hubness)
    return np.where(known, hubness, hubness[known].mean() if known.any() else 0.0)


def reference_hubness(similarity: np.ndarray, neighbours: int = HUBNESS_NEIGHBOURS) -> np.ndarray:
    """Per reference (column of ``similarity``, articles x references): the mean cosine to its ``neighbours``
    nearest articles (all of them where there are fewer), as wikiref.reference_hubness stores it."""
    depth = min(neighbours, similarity.shape[0])
    if depth == 0:
        return np.full(similarity.shape[1], np.nan)
    return -np.partition(-similarity, depth - 1, axis=0)[:depth].mean(axis=0)


def candidate_rows(
    signals: Mapping[str, np.ndarray], candidates: int, *, floors: Mapping[str, float] | None = None
) -> np.ndarray:
    """Rows in the union of each signal's top ``candidates`` (sorted); words only where some word matches.

    A signal with a floor brings the rows that reach it instead: the vote's candidates are the articles of the
    query's ``candidates`` nearest other references, that is those whose vote reaches the last one's cosine.
    """
    chosen: set[int] = set()
    for name, values in signals.items():
        if name == HUBNESS:
            continue
        values = np.asarray(values, dtype=np.float64)
        eligible = np.flatnonzero(values > 0) if name == WORDS else np.flatnonzero(np.isfinite(values))
        if floors and name in floors:
            eligible = eligible[values[eligible] >= floors[name]]
        elif len(eligible) > candidates:
            top = np.argpartition(-values[eligible], candidates - 1)[:candidates]
            eligible = eligible[top]
        chosen.update(eligible.tolist())
    return np.array(sorted(chosen), dtype=np.int64)


def rank(
    signals: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    *,
    candidates: int = DEFAULT_CANDIDATES,
    ids: np.ndarray | None = None,
    floors: Mapping[str, float] | None = None,
    lift: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows best first, their fused scores) as a fused SQL function answers over a corpus of these rows.

    ``signals`` hold one value per corpus row, for just the signals the function fuses (each but hubness widens
    the candidate set, whatever its weight). Ties go to the smaller ``ids`` (default: the row number); ``floors``
    as for ``candidate_rows``; ``lift``, one value per corpus row, is added to the fused score as it is.
    """
    rows = candidate_rows(signals, candidates, floors=floors)
    fused = fuse({name: np.asarray(values)[rows] for name, values in signals.items()}, weights)
    if lift is not None:
        fused = fused + np.asarray(lift, dtype=np.float64)[rows]
    tiebreak = rows if ids is None else np.asarray(ids)[rows]
    order = np.lexsort((tiebreak, -fused))
    return rows[order], fused[order]
