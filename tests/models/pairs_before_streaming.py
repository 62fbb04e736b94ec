"""The training-pair builder as it was before pairs were streamed to disk (commit 1ad7543), kept verbatim as
the oracle of tests/models/test_pairs_streaming.py: the streaming builder must give the same split."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from statistics import fmean

from wikiref.models.article_text import TITLE_ONLY, ArticleTextRecipe
from wikiref.models.pairs import (
    ArticleTexts,
    EvalArticle,
    Pair,
    PairSplit,
    Target,
    TokenCounter,
    chunk_references,
    heldout_ids_of,
    heldout_score,
)

log = logging.getLogger(__name__)


def _fingerprint(records: Iterable[object]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def build_pairs(
    articles: Iterable[ArticleTexts],
    *,
    count_tokens: TokenCounter,
    token_budget: int,
    eval_fraction: float,
    min_heldout_articles: int = 0,
    recipe: ArticleTextRecipe = TITLE_ONLY,
    target: Target = "chunk",
    validation_fraction: float = 0.0,
    is_heldout: Callable[[str], bool] | None = None,
) -> PairSplit:
    """Chunk every article's references, drop empty and duplicate chunks, and split by article.

    Articles without any non-empty reference produce no pairs and belong to neither side. At least one article
    lands on each side when there are two or more (the lowest-scoring title is held out, the highest trained).
    ``is_heldout`` replaces the hash rule by the caller's (a benchmark's fixed split). ``target`` says whether a
    training pair holds a chunk or one reference; held-out articles always keep both.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be at least 1, got {token_budget}")
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if min_heldout_articles < 0:
        raise ValueError(f"min_heldout_articles must be 0 or more, got {min_heldout_articles}")

    per_article: list[tuple[ArticleTexts, list[str], list[str]]] = []
    empty_references = duplicate_chunks = total_references = 0
    for article in articles:
        total_references += len(article.references)
        references = [" ".join(text.split()) for text in article.references]
        kept = [text for text in references if text]
        empty_references += len(references) - len(kept)
        if not kept:
            continue
        counts = count_tokens(kept)
        chunks: list[str] = []
        seen: set[str] = set()
        for chunk in chunk_references(kept, counts, token_budget=token_budget):
            if chunk in seen:
                duplicate_chunks += 1
                continue
            seen.add(chunk)
            chunks.append(chunk)
        per_article.append((article, kept, chunks))

    # Sorting by title makes the pair order, and so the fingerprint, independent of database ids and row order.
    per_article.sort(key=lambda item: (item[0].title, item[0].article_id))
    if is_heldout is not None:
        heldout_ids = {a.article_id for a, _, _ in per_article if is_heldout(a.title)}
    else:
        heldout_ids = heldout_ids_of(
            {a.article_id: heldout_score(a.title) for a, _, _ in per_article},
            eval_fraction=eval_fraction,
            min_heldout_articles=min_heldout_articles,
        )
    validation_ids = {
        a.article_id
        for a, _, _ in per_article
        if a.article_id not in heldout_ids and heldout_score(a.title, "validation:") < validation_fraction
    }

    train: list[Pair] = []
    heldout_pairs: list[Pair] = []
    heldout_references: list[tuple[int, str]] = []
    heldout_titles: dict[int, str] = {}
    heldout_articles: list[EvalArticle] = []
    validation_articles: list[EvalArticle] = []
    heldout_records: list[object] = [{"token_budget": token_budget, "recipe": recipe.name}]
    for article, references, chunks in per_article:
        anchor = recipe.compose(article.title, article.lead)
        singles = tuple(dict.fromkeys(references))
        evaluated = EvalArticle(article.article_id, article.title, article.lead, singles, tuple(chunks))
        if article.article_id in heldout_ids:
            heldout_pairs.extend(Pair(article.article_id, article.title, chunk, anchor) for chunk in chunks)
            heldout_titles[article.article_id] = article.title
            heldout_articles.append(evaluated)
            heldout_records.append([anchor, chunks])
            heldout_references.extend((article.article_id, text) for text in singles)
        elif article.article_id in validation_ids:
            validation_articles.append(evaluated)
        else:
            targets = chunks if target == "chunk" else singles
            train.extend(Pair(article.article_id, article.title, text, anchor) for text in targets)

    chunk_tokens = count_tokens([pair.chunk for pair in train + heldout_pairs])
    heldout_fingerprint = _fingerprint(heldout_records)
    fingerprint = _fingerprint(
        [
            {
                "token_budget": token_budget,
                "eval_fraction": eval_fraction,
                "min_heldout_articles": min_heldout_articles,
                "recipe": recipe.name,
                "target": target,
                "validation_fraction": validation_fraction,
            }
        ]
        + [
            [
                recipe.compose(a.title, a.lead),
                a.article_id in heldout_ids,
                a.article_id in validation_ids,
                chunks,
            ]
            for a, _, chunks in per_article
        ]
    )
    counts: dict[str, float] = {
        "articles": len(per_article),
        "train_articles": len(per_article) - len(heldout_titles) - len(validation_articles),
        "heldout_articles": len(heldout_titles),
        "validation_articles": len(validation_articles),
        "references": total_references,
        "empty_references_dropped": empty_references,
        "duplicate_chunks_dropped": duplicate_chunks,
        "train_pairs": len(train),
        "heldout_pairs": len(heldout_pairs),
        "heldout_references": len(heldout_references),
        "mean_chunk_tokens": round(fmean(chunk_tokens), 1) if chunk_tokens else 0.0,
    }
    log.info(
        "pairs: %d train / %d held-out from %d + %d articles; dropped %d empty references, %d duplicate chunks",
        len(train),
        len(heldout_pairs),
        counts["train_articles"],
        counts["heldout_articles"],
        empty_references,
        duplicate_chunks,
    )
    return PairSplit(
        train=train,
        heldout=heldout_pairs,
        heldout_references=heldout_references,
        heldout_titles=heldout_titles,
        fingerprint=fingerprint,
        heldout_fingerprint=heldout_fingerprint,
        counts=counts,
        heldout_articles=heldout_articles,
        validation_articles=validation_articles,
        recipe=recipe,
    )
