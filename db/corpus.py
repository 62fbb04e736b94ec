"""Read articles with their reference texts as plain rows, the input of the training-pair builder."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from db.schema import Article, ArticleReference


def article_reference_texts(
    *, session: Session, wiki: str | None = None, limit: int | None = None
) -> list[tuple[int, str, list[str], str | None]]:
    """``(article id, title, reference texts in page order, lead)`` for every article that has references.

    ``limit`` keeps the first articles by id (a stable slice for development runs); ``wiki`` keeps one wiki.
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
    return [
        (article_id, title, list(references), lead)
        for article_id, title, references, lead in session.execute(query)
    ]
