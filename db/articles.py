"""Idempotent writes of articles and their reference lists, one transaction per article.

A re-scraped article gets exactly its new reference list: references whose text is unchanged keep their
row ids (and so their embeddings), removed ones are deleted, new ones inserted, moved ones renumbered.
When nothing changed, nothing is written: no row, id or timestamp moves.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from db.schema import Article, ArticleReference

WriteStatus = Literal["new", "updated", "unchanged"]
_REFERENCE_FIELDS = ("text", "urls", "archive_url", "doi", "pmid", "isbn", "cited_title", "date")


def content_hash(text: str) -> str:
    """The hash stored with a reference (sha256 hex of its clean text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReferenceRecord:
    """One reference as written: clean text plus parsed fields."""

    text: str
    urls: tuple[str, ...] = ()
    archive_url: str | None = None
    doi: str | None = None
    pmid: str | None = None
    isbn: str | None = None
    cited_title: str | None = None
    date: str | None = None

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)

    def values(self) -> dict[str, object]:
        return {
            name: list(self.urls) if name == "urls" else getattr(self, name) for name in _REFERENCE_FIELDS
        }


@dataclass(frozen=True)
class PageRecord:
    """One article as written: natural key (wiki, title), ids, its references in page order, and its lead."""

    wiki: str
    title: str
    page_id: int | None = None
    revision_id: int | None = None
    url: str | None = None
    references: tuple[ReferenceRecord, ...] = ()
    redirects: tuple[str, ...] = ()  # titles that redirected here; stored as the union over scrapes
    lead: str | None = None  # paragraphs before the first heading; None: the page has none
    short_description: str | None = None


@dataclass(frozen=True)
class PageWriteResult:
    article_id: int
    status: WriteStatus
    references_added: int = 0
    references_removed: int = 0
    references_kept: int = 0


def _article_query(page: PageRecord):
    return select(Article).where(Article.wiki == page.wiki, Article.title == page.title)


def _lock_article(session: Session, page: PageRecord) -> tuple[Article, bool]:
    """The article row locked FOR UPDATE (freshly read), created first if absent; True when just created."""
    query = _article_query(page).with_for_update().execution_options(populate_existing=True)
    article = session.scalars(query).one_or_none()
    if article is not None:
        return article, False
    created = session.execute(
        pg_insert(Article)
        .values(
            wiki=page.wiki,
            title=page.title,
            page_id=page.page_id,
            revision_id=page.revision_id,
            url=page.url,
            redirects=sorted(set(page.redirects)),
            lead=page.lead,
            short_description=page.short_description,
        )
        .on_conflict_do_nothing(index_elements=["wiki", "title"])
        .returning(Article.id)
    ).scalar_one_or_none()
    # A concurrent writer may have won the insert: then lock its row like an existing one.
    return session.scalars(query).one(), created is not None


_Existing = list[tuple[int, int, str, dict[str, object]]]


def _existing_references(session: Session, article_id: int) -> _Existing:
    """(id, position, content hash, field values) of the stored references, in page order."""
    rows = session.execute(
        select(
            ArticleReference.id,
            ArticleReference.position,
            ArticleReference.content_hash,
            *(getattr(ArticleReference, name) for name in _REFERENCE_FIELDS),
        )
        .where(ArticleReference.article_id == article_id)
        .order_by(ArticleReference.position)
    ).all()
    return [(row[0], row[1], row[2], dict(zip(_REFERENCE_FIELDS, row[3:], strict=True))) for row in rows]


def _merged_redirects(article: Article, page: PageRecord) -> list[str]:
    return sorted(set(article.redirects) | set(page.redirects))


def _unchanged(article: Article, existing: _Existing, page: PageRecord) -> bool:
    # A changed lead is a change of the article (its embedding depends on it); so is a lead never extracted.
    article_same = (
        article.page_id,
        article.revision_id,
        article.url,
        article.redirects,
        article.lead,
        article.short_description,
        article.lead_extracted,
    ) == (
        page.page_id,
        page.revision_id,
        page.url,
        _merged_redirects(article, page),
        page.lead,
        page.short_description,
        True,
    )
    return (
        article_same
        and len(existing) == len(page.references)
        and all(
            hash_ == ref.content_hash and values == ref.values()
            for (_id, _position, hash_, values), ref in zip(existing, page.references, strict=True)
        )
    )


def _match(
    existing: list[tuple[int, int, str, dict[str, object]]], new: tuple[ReferenceRecord, ...]
) -> tuple[list[int | None], list[int]]:
    """For each new reference, the id of an existing one with the same text (or None), and the ids left over.

    Equal texts pair off in page order, so that duplicates keep stable ids too.
    """
    by_hash: dict[str, deque[int]] = defaultdict(deque)
    for ref_id, _position, hash_, _values in existing:
        by_hash[hash_].append(ref_id)
    matched = [by_hash[ref.content_hash].popleft() if by_hash.get(ref.content_hash) else None for ref in new]
    leftover = [ref_id for ids in by_hash.values() for ref_id in ids]
    return matched, leftover


def upsert_page(*, session: Session, page: PageRecord) -> PageWriteResult:
    """Write one article and its reference list in one transaction (committed here); idempotent."""
    # First compare without locks: re-scraping an unchanged page then takes no row lock and writes nothing.
    article = session.scalars(_article_query(page)).one_or_none()
    if article is not None:
        existing = _existing_references(session, article.id)
        if _unchanged(article, existing, page):
            session.rollback()
            return PageWriteResult(article.id, "unchanged", references_kept=len(existing))
    article, created = _lock_article(session, page)
    existing = _existing_references(session, article.id)
    if not created and _unchanged(article, existing, page):  # a concurrent writer got there first
        session.rollback()
        return PageWriteResult(article.id, "unchanged", references_kept=len(existing))
    redirects = _merged_redirects(article, page)

    matched, leftover = _match(existing, page.references)
    current = {ref_id: (position, values) for ref_id, position, _hash, values in existing}
    if leftover:
        session.execute(delete(ArticleReference).where(ArticleReference.id.in_(leftover)))
    changed = [
        {"id": ref_id, "position": position, **ref.values()}
        for position, (ref_id, ref) in enumerate(zip(matched, page.references, strict=True))
        if ref_id is not None and current[ref_id] != (position, ref.values())
    ]
    if changed:
        # (article_id, position) is unique DEFERRABLE INITIALLY DEFERRED: renumbering can swap freely.
        session.execute(update(ArticleReference), changed)
    added = [
        {"article_id": article.id, "position": position, "content_hash": ref.content_hash, **ref.values()}
        for position, (ref_id, ref) in enumerate(zip(matched, page.references, strict=True))
        if ref_id is None
    ]
    if added:
        session.execute(insert(ArticleReference), added)
    if not created:
        session.execute(
            update(Article)
            .where(Article.id == article.id)
            .values(
                page_id=page.page_id,
                revision_id=page.revision_id,
                url=page.url,
                redirects=redirects,
                lead=page.lead,
                short_description=page.short_description,
                lead_extracted=True,
                fetched_at=func.now(),
            )
        )
    article_id = article.id
    session.commit()
    return PageWriteResult(
        article_id,
        "new" if created else "updated",
        references_added=len(added),
        references_removed=len(leftover),
        references_kept=len(page.references) - len(added),
    )


def stored_revisions(*, session: Session, wiki: str, titles: Iterable[str]) -> dict[str, int]:
    """Stored revision id per title, for the titles of ``wiki`` that are stored with one and a lead extracted.

    Articles stored before leads were extracted are left out, so that a revision check fetches them once more.
    """
    wanted = list(dict.fromkeys(titles))
    if not wanted:
        return {}
    rows = session.execute(
        select(Article.title, Article.revision_id).where(
            Article.wiki == wiki,
            Article.title.in_(wanted),
            Article.revision_id.is_not(None),
            Article.lead_extracted,
        )
    )
    return dict(rows.all())
