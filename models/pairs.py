"""(article text, reference) pairs from plain article rows, split by article, with a fingerprint and counts.

The anchor of a pair is the article's text under an ``ArticleTextRecipe`` (title, or title + first words of the
lead); its target is either one reference or a chunk: consecutive references of one article joined until the
next one would push it over a token budget measured with the model's own tokenizer.

The split is decided per article from a hash of its title: an article is held out when its score falls below the
evaluation fraction, so it stays on the same side when the corpus grows (a held-out article of an earlier run
never becomes training data of a later one), and metrics of two versions on the same held-out set stay
comparable. Below ``min_heldout_articles`` the lowest-scoring articles are added until the floor is met: a small
corpus still gets a held-out set large enough to decide. Validation articles (for choosing a WiSE-FT mixing
weight) come out of the training side by a second, independent hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Literal

from models.article_text import TITLE_ONLY, ArticleTextRecipe

log = logging.getLogger(__name__)

TokenCounter = Callable[[Sequence[str]], list[int]]

# 86 tokens gives chunks of about 69 tokens on the shared pages, the reference recipe's average.
DEFAULT_TOKEN_BUDGET = 86
DEFAULT_EVAL_FRACTION = 0.2
# Fewer held-out articles than this cannot tell a real gain from noise (the bootstrap CI spans the gain).
DEFAULT_MIN_HELDOUT_ARTICLES = 50
Target = Literal["chunk", "reference"]


@dataclass(frozen=True)
class ArticleTexts:
    """One article as the pair builder needs it: its title, its reference texts in page order, and its lead
    (None when the page has none or it was stored before leads were extracted)."""

    article_id: int
    title: str
    references: tuple[str, ...]
    lead: str | None = None


@dataclass(frozen=True)
class Pair:
    """One training or held-out example: ``chunk`` is the target text (a chunk or a single reference)."""

    article_id: int
    title: str
    chunk: str
    anchor: str


@dataclass(frozen=True)
class EvalArticle:
    """A held-out (or validation) article: what evaluation composes its text from, and its single references."""

    article_id: int
    title: str
    lead: str | None
    references: tuple[str, ...]
    chunks: tuple[str, ...]


@dataclass(frozen=True)
class PairSplit:
    """Training pairs and the held-out evaluation set, disjoint by article."""

    train: list[Pair]
    heldout: list[Pair]
    # Single references of the held-out articles, for the reference -> title direction.
    heldout_references: list[tuple[int, str]]
    heldout_titles: dict[int, str]
    fingerprint: str
    heldout_fingerprint: str
    counts: dict[str, float] = field(default_factory=dict)
    heldout_articles: list[EvalArticle] = field(default_factory=list)
    validation_articles: list[EvalArticle] = field(default_factory=list)
    recipe: ArticleTextRecipe = TITLE_ONLY


def tokenizer_counter(model_name_or_path: str) -> TokenCounter:
    """Token counts (no special tokens) with the tokenizer of ``model_name_or_path``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)

    def count(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    return count


def chunk_references(
    references: Sequence[str], token_counts: Sequence[int], *, token_budget: int
) -> list[str]:
    """Join consecutive references while the chunk stays within ``token_budget`` tokens.

    A single reference longer than the budget becomes a chunk of its own (the model truncates it), so no
    reference is lost.
    """
    chunks: list[str] = []
    current: list[str] = []
    current_tokens = 0
    for reference, tokens in zip(references, token_counts, strict=True):
        # Joining with a space adds no token for WordPiece/BPE tokenizers, so the sum is the chunk's length.
        if current and current_tokens + tokens > token_budget:
            chunks.append(" ".join(current))
            current, current_tokens = [], 0
        current.append(reference)
        current_tokens += tokens
    if current:
        chunks.append(" ".join(current))
    return chunks


def heldout_score(title: str, salt: str = "") -> float:
    """A title's stable position in [0, 1): the article is held out when it falls below the eval fraction."""
    digest = hashlib.sha256((salt + title).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def heldout_ids_of(
    scores: dict[int, float], *, eval_fraction: float, min_heldout_articles: int = 0
) -> set[int]:
    """Articles below the fraction, topped up with the lowest scores to the floor (at most half of all)."""
    heldout = {article_id for article_id, score in scores.items() if score < eval_fraction}
    floor = min(min_heldout_articles, len(scores) // 2)
    by_score = sorted(scores, key=scores.__getitem__)
    for article_id in by_score[:floor]:
        heldout.add(article_id)
    if len(scores) >= 2:
        if not heldout:
            heldout.add(by_score[0])
        if len(heldout) == len(scores):
            heldout.discard(by_score[-1])
    return heldout


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
