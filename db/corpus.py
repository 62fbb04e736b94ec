"""Read articles with their reference texts as plain rows, the input of the training-pair builder."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from wikiref.db.schema import Article, ArticleReference


def iter_article_reference_texts(
    *, session: Session, wiki: str | None = None, limit: int | None = None, page_size: int = 1000
) -> Iterator[tuple[int, str, list[str], str | None]]:
    """``(article id, title, reference texts in page order, lead)`` for every article that has references.

    Streamed: a server-side cursor hands over ``page_size`` articles at a time, so the caller holds only what it
    keeps. ``limit`` keeps the first articles by id (a stable slice for development runs); ``wiki`` one wiki.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    texts = func.array_agg(aggregate_order_by(ArticleReference.text, ArticleReference.position))
    query = (
        select(Article.id, Article.title, texts, Article.lead)
        .join(ArticleReference, ArticleReference.article_id == Article.id)
        .group_by(Article.id)
        .order_by(Article.id)
    )
    if wiki is not None:
        query = query.where(Article.wiki == wiki)
    if limit is not None:
        query = query.limit(limit)
    for article_id, title, references, lead in session.execute(query.execution_options(yield_per=page_size)):
        yield article_id, title, list(references), lead


def reference_ids_by_text(*, session: Session, article_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per article of ``article_ids``: each reference text to its id (the smallest, where a page repeats a text).

    Evaluation works on reference texts; this is how it asks the database about those references by id.
    """
    rows = session.execute(
        select(ArticleReference.article_id, ArticleReference.text, func.min(ArticleReference.id))
        .where(ArticleReference.article_id.in_(list(article_ids)))
        .group_by(ArticleReference.article_id, ArticleReference.text)
    )
    ids: dict[int, dict[str, int]] = {article_id: {} for article_id in article_ids}
    for article_id, text, reference_id in rows:
        ids[article_id][text] = reference_id
    return ids
