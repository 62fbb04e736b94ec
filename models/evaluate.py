"""Held-out retrieval metrics in both directions the product serves.

title -> chunks: sentence-transformers' ``InformationRetrievalEvaluator`` with the held-out titles as queries and
all held-out chunks as the corpus (relevant = the title's own chunks). MRR@10 saturates when a title has dozens
of relevant chunks, so NDCG@10 is the usual gate metric.

reference -> title: what ``articles_for_reference`` answers. For every held-out reference, is its own article's
title the nearest of all held-out titles (accuracy@1)?
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from models.errors import ModelError
from models.pairs import PairSplit

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

# Our names for the metrics, in display order, and the evaluator's names for them.
IR_METRICS = {
    "ndcg@10": "cosine_ndcg@10",
    "mrr@10": "cosine_mrr@10",
    "recall@1": "cosine_recall@1",
    "recall@10": "cosine_recall@10",
    "map@100": "cosine_map@100",
}
REVERSE_METRIC = "ref_to_title_acc@1"
METRICS = (*IR_METRICS, REVERSE_METRIC)


def load_model(name_or_path: str, *, device: str = "cpu") -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path, device=device)


def evaluate(
    model: SentenceTransformer,
    split: PairSplit,
    *,
    batch_size: int = 64,
) -> dict[str, float]:
    """The metrics of ``METRICS`` for ``model`` on ``split``'s held-out articles."""
    import torch
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    if not split.heldout:
        raise ModelError("the held-out set is empty: too few articles to evaluate")
    started = time.perf_counter()
    queries = {str(article_id): title for article_id, title in split.heldout_titles.items()}
    corpus = {f"c{index}": pair.chunk for index, pair in enumerate(split.heldout)}
    relevant: dict[str, set[str]] = {}
    for index, pair in enumerate(split.heldout):
        relevant.setdefault(str(pair.article_id), set()).add(f"c{index}")
    evaluator = InformationRetrievalEvaluator(
        queries=queries,
        corpus=corpus,
        relevant_docs=relevant,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[1, 10],
        map_at_k=[100],
        batch_size=batch_size,
        write_csv=False,
        score_functions={"cosine": cos_sim},
        main_score_function="cosine",
    )
    results = evaluator(model)
    metrics = {ours: float(results[theirs]) for ours, theirs in IR_METRICS.items()}

    article_ids = list(split.heldout_titles)
    titles = model.encode(
        [split.heldout_titles[article_id] for article_id in article_ids],
        batch_size=batch_size,
        convert_to_tensor=True,
        normalize_embeddings=True,
    )
    references = model.encode(
        [text for _, text in split.heldout_references],
        batch_size=batch_size,
        convert_to_tensor=True,
        normalize_embeddings=True,
    )
    best = (references @ titles.T).argmax(dim=1).cpu()
    position = {article_id: index for index, article_id in enumerate(article_ids)}
    truth = torch.tensor([position[article_id] for article_id, _ in split.heldout_references])
    metrics[REVERSE_METRIC] = float((best == truth).float().mean())
    log.info(
        "evaluated on %d titles, %d chunks, %d references in %.1f s: %s",
        len(queries),
        len(corpus),
        len(split.heldout_references),
        time.perf_counter() - started,
        ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()),
    )
    return metrics
