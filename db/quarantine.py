"""Quarantined revisions: the pending ones listed, looked up, and applied by hand."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wikiref.db.articles import upsert_page
from wikiref.db.errors import DatabaseError, shown
from wikiref.db.page_records import PageRecord, PageWriteResult
from wikiref.db.schema import Article, ArticleReference, QuarantinedRevision


@dataclass(frozen=True)
class PendingRevision:
    """A quarantined revision as listed to users."""

    wiki: str
    title: str
    stored_revision_id: int | None
    revision_id: int | None
    reason: str
    quarantined_at: datetime
    references_stored: int
    references_pending: int


def quarantined(*, session: Session, wiki: str | None = None) -> list[PendingRevision]:
    """Every pending revision, oldest first."""
    stored = (
        select(func.count())
        .select_from(ArticleReference)
        .where(ArticleReference.article_id == Article.id)
        .scalar_subquery()
    )
    query = (
        select(
            Article.wiki,
            Article.title,
            Article.revision_id,
            QuarantinedRevision.revision_id,
            QuarantinedRevision.reason,
            QuarantinedRevision.quarantined_at,
            stored,
            func.jsonb_array_length(QuarantinedRevision.page["references"]),
        )
        .join(Article, Article.id == QuarantinedRevision.article_id)
        .order_by(QuarantinedRevision.quarantined_at, Article.title)
    )
    if wiki is not None:
        query = query.where(Article.wiki == wiki)
    return [PendingRevision(*row) for row in session.execute(query)]


def accept_quarantined(*, session: Session, wiki: str, title: str) -> PageWriteResult:
    """Apply the pending revision of ``title`` without the checks (the user vouches for it)."""
    row = session.execute(
        select(QuarantinedRevision.page)
        .join(Article, Article.id == QuarantinedRevision.article_id)
        .where(Article.wiki == wiki, Article.title == title)
    ).scalar_one_or_none()
    if row is None:
        raise DatabaseError(
            f"no quarantined revision of {shown(title)!r} on {wiki}; list them with: wikiref corpus quarantine"
        )
    session.rollback()
    return upsert_page(session=session, page=PageRecord.from_json(row), checks=None)


def pending_revisions(*, session: Session, wiki: str, titles: Iterable[str]) -> dict[str, int | None]:
    """Quarantined revision id per title, for the titles of ``wiki`` that have one pending."""
    wanted = list(dict.fromkeys(titles))
    if not wanted:
        return {}
    rows = session.execute(
        select(Article.title, QuarantinedRevision.revision_id)
        .join(QuarantinedRevision, QuarantinedRevision.article_id == Article.id)
        .where(Article.wiki == wiki, Article.title.in_(wanted))
    )
    return dict(rows.all())
