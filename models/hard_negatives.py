"""Hard negatives for training pairs, mined with the base model among the references of other training articles.

For every pair (article text, reference) the negative is the reference the base model ranks highest for the
article text that

- belongs to another training article, and shares no source (DOI, URL or normalised text: ``source_keys``, the
  keys of the ``no_shared_source`` sampler) with any reference of the pair's article, so that it is not a
  reference the article cites under another text, and
- scores at most ``1 - relative_margin`` of the pair's own positive (NV-Retriever's TopK-PercPos, 95%), to keep
  away from relevant references the source keys do not catch.

A pair for which no reference meets both rules gets a random reference (seeded) that meets the first: every pair
has a negative, and the number of such fallbacks is reported. When none meets the first rule (a corpus of one
article, or of articles that all share sources), mining fails: the run cannot have hard negatives.

Why not ``sentence_transformers.util.mine_hard_negatives``: it knows only texts, so it cannot keep out a
reference that another article cites with other text (the DOI/URL rule); here one article text has many
positives, and it applies the margin to the weakest of them for all (a short "Ibid."-like reference would let
almost nothing through), where this applies it per pair; and it regroups and drops rows, while the trainer and
the source-aware sampler need one negative per pair in the pairs' own order.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wikiref.models.encode import ENCODE_BATCH_SIZE
from wikiref.models.errors import TrainingError
from wikiref.models.pairs import Pair
from wikiref.models.sources import source_keys

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

# NV-Retriever (arXiv 2407.15831) found TopK-PercPos at 95% of the positive's score the best mining rule.
RELATIVE_MARGIN = 0.05
# Candidates taken per article beyond its own references before its whole row is searched: most articles find
# an allowed negative among them, and a top-k is far cheaper than sorting every reference.
EXTRA_CANDIDATES = 64
# Article x reference scores computed at once (float32): 128 MiB.
SCORES_PER_BLOCK = 1 << 25


@dataclass(frozen=True)
class HardNegatives:
    """One negative per pair, in the pairs' order, and how they were found."""

    negatives: list[str]
    # Pairs without an allowed reference below the margin: they got a random allowed one.
    fallbacks: int
    articles: int
    references: int
    seconds: float


@dataclass(frozen=True)
class _PairIndex:
    """The pairs as indexes: each distinct reference once, each article's text once, and per pair both rows."""

    texts: list[str]
    anchors: list[str]
    article_of: np.ndarray
    positive_of: np.ndarray


def _index_pairs(pairs: Iterable[Pair]) -> _PairIndex:
    corpus: dict[str, int] = {}
    row_of_article: dict[int, int] = {}
    anchors: list[str] = []
    pair_article, pair_positive = array("q"), array("q")
    for pair in pairs:
        row = row_of_article.setdefault(pair.article_id, len(anchors))
        if row == len(anchors):
            anchors.append(pair.anchor)
        pair_article.append(row)
        pair_positive.append(corpus.setdefault(pair.chunk, len(corpus)))
    return _PairIndex(
        texts=list(corpus),
        anchors=anchors,
        article_of=np.frombuffer(pair_article, dtype=np.int64),
        positive_of=np.frombuffer(pair_positive, dtype=np.int64),
    )


class _Exclusions:
    """What each article may not take as a negative: its own references, and any that shares a source with one."""

    def __init__(self, index: _PairIndex) -> None:
        self.reference_keys = [frozenset(source_keys(text)) for text in index.texts]
        # The pairs of each article, in pair order: pair_ids[starts[a]:starts[a + 1]].
        self.pair_ids = np.argsort(index.article_of, kind="stable")
        self.starts = np.concatenate(
            [[0], np.cumsum(np.bincount(index.article_of, minlength=len(index.anchors)))]
        )
        self.own = [set(index.positive_of[self.pairs_of(a)].tolist()) for a in range(len(index.anchors))]
        self.article_keys = [
            frozenset().union(*(self.reference_keys[c] for c in cited)) for cited in self.own
        ]

    def pairs_of(self, article: int) -> np.ndarray:
        return self.pair_ids[self.starts[article] : self.starts[article + 1]]

    def allowed(self, article: int, candidates: np.ndarray) -> np.ndarray:
        keys, cited = self.article_keys[article], self.own[article]
        return np.fromiter(
            (c not in cited and self.reference_keys[c].isdisjoint(keys) for c in candidates.tolist()),
            dtype=bool,
            count=len(candidates),
        )


def mine_hard_negatives(
    pairs: Iterable[Pair],
    model: SentenceTransformer,
    *,
    relative_margin: float = RELATIVE_MARGIN,
    seed: int,
    batch_size: int = ENCODE_BATCH_SIZE,
) -> HardNegatives:
    """A negative for every pair, mined with ``model`` (the base model) among the pairs' own references.

    Reads ``pairs`` once (a ``TrainPairs`` streams from its file). Memory: the distinct reference texts, their
    source keys (as the ``no_shared_source`` sampler holds them) and one embedding each (384 floats), plus the
    returned list, whose strings are shared with the distinct references.
    """
    import torch

    if relative_margin < 0:
        raise ValueError(f"relative_margin must be 0 or more, got {relative_margin}")
    started = time.perf_counter()

    # 1. Index the pairs: each distinct reference and article text once.
    index = _index_pairs(pairs)
    if not index.anchors:
        return HardNegatives([], 0, 0, 0, time.perf_counter() - started)
    texts, anchors = index.texts, index.anchors

    # 2. What each article may not take: its own references and those sharing a source with them.
    exclusions = _Exclusions(index)

    def encode(inputs: list[str]):
        return model.encode(
            inputs,
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )

    log.info("mining hard negatives: encoding %d references and %d article texts", len(texts), len(anchors))
    with torch.inference_mode():
        # 3. Encode every reference and article text with the base model.
        references = encode(texts)
        queries = encode(anchors)

        # 4. Per block of articles: each pair's first allowed candidate at or below its threshold, else a random
        # allowed one.
        rng = np.random.default_rng(seed)
        chosen = np.full(len(index.article_of), -1, dtype=np.int64)
        fallbacks = 0
        rows_per_block = max(1, SCORES_PER_BLOCK // len(texts))
        for first in range(0, len(anchors), rows_per_block):
            last = min(first + rows_per_block, len(anchors))
            block = queries[first:last] @ references.T
            k = min(len(texts), max(len(exclusions.own[a]) for a in range(first, last)) + EXTRA_CANDIDATES)
            top_scores, top_indices = (t.cpu().numpy() for t in block.topk(k, dim=1))
            for article in range(first, last):
                local = article - first
                ids = exclusions.pairs_of(article)
                positives = (
                    block[local, torch.as_tensor(index.positive_of[ids], device=block.device)].cpu().numpy()
                )
                thresholds = positives - np.abs(positives) * relative_margin
                scores, candidates = top_scores[local], top_indices[local]
                keep = exclusions.allowed(article, candidates)
                # The first allowed candidate at or below each pair's threshold (scores descend).
                found = np.searchsorted(-scores[keep], -thresholds, side="left")
                if (found == keep.sum()).any() and k < len(texts):
                    # Some pair found none among the top k: search the article's whole row.
                    row = block[local].cpu().numpy()
                    candidates = np.argsort(-row, kind="stable")
                    scores = row[candidates]
                    keep = exclusions.allowed(article, candidates)
                    found = np.searchsorted(-scores[keep], -thresholds, side="left")
                kept = candidates[keep]
                if not len(kept):
                    raise TrainingError(
                        f"no hard negative for article {anchors[article]!r}: every reference of the other "
                        "training articles shares a source with it (train without --hard-negatives)"
                    )
                missing = found == len(kept)
                chosen[ids[~missing]] = kept[found[~missing]]
                if missing.any():
                    fallbacks += int(missing.sum())
                    chosen[ids[missing]] = rng.choice(np.sort(kept), size=int(missing.sum()))

    # 5. Report.
    seconds = time.perf_counter() - started
    log.info(
        "mined %d hard negatives (%d distinct) in %.1f s; %d pairs had no allowed reference below the margin and "
        "got a random allowed one",
        len(chosen),
        len(np.unique(chosen)),
        seconds,
        fallbacks,
    )
    return HardNegatives(
        negatives=[texts[c] for c in chosen.tolist()],
        fallbacks=fallbacks,
        articles=len(anchors),
        references=len(texts),
        seconds=seconds,
    )
