"""Idempotent writes of articles and their reference lists, one transaction per article.

A re-scraped article gets exactly its new reference list: references whose text is unchanged keep their
row ids (and so their embeddings), removed ones move to ``reference_history`` (with their embeddings, the
revision they were last seen in and when), new ones are inserted, moved ones renumbered. When nothing
changed, nothing is written: no row, id or timestamp moves.

A new revision replaces the stored one only if it passes the sanity checks (``revision_problem``); one that
fails is quarantined whole in ``quarantined_revisions`` with the reason, and the stored references stay.
This is the one write path of every scrape, refresh and bulk load, so all of them get the checks.

``upsert_pages`` writes a batch (the dump loader's): the articles the database does not have yet and that pass
the checks go in together, one multi-row INSERT and one COPY of their references in one transaction; every
other page takes ``upsert_page``. The rows and the results are the ones ``upsert_page`` gives page by page.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from wikiref.db.errors import DatabaseError, shown
from wikiref.db.schema import Article, ArticleReference, QuarantinedRevision

WriteStatus = Literal["new", "updated", "unchanged", "quarantined", "older"]
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
    problem: str | None = None  # why the body could not be read (undecodable, not HTML), found at extraction

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "problem": None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PageRecord:
        references = tuple(
            ReferenceRecord(**{**ref, "urls": tuple(ref.get("urls") or ())}) for ref in data["references"]
        )
        fields = {
            key: value for key, value in data.items() if key not in ("references", "redirects", "problem")
        }
        return cls(**fields, references=references, redirects=tuple(data.get("redirects") or ()))


@dataclass(frozen=True)
class RevisionChecks:
    """Limits a new revision must keep to before it replaces the stored references."""

    max_shrink: float = 0.5  # share of the stored references a new revision may drop
    max_debris: float = 0.2  # share of its reference texts that may look like markup debris

    def __post_init__(self) -> None:
        for name in ("max_shrink", "max_debris"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be at least 0 and below 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class PageWriteResult:
    article_id: int
    status: WriteStatus
    references_added: int = 0
    references_removed: int = 0
    references_kept: int = 0
    reason: str | None = None  # why the revision was quarantined, or skipped as older
    quarantine_cleared: bool = False
    title: str = ""


# Markup that survived as text: runs of brackets or pipes, tags, template or link syntax, placeholder text.
_DEBRIS = re.compile(
    r"[<>{}\[\]|]{3,}|</?[a-z][a-z0-9]*[\s>/]|\{\{|\}\}|\[\[|\]\]|lorem ipsum", re.IGNORECASE
)
_LETTER = re.compile(r"[^\W\d_]")


def looks_like_debris(reference: ReferenceRecord) -> bool:
    """True for a reference that is markup or filler rather than a citation. A bare link (text ``[1]``)
    is a citation: its URL is what it cites."""
    if _DEBRIS.search(reference.text):
        return True
    cites_something = reference.urls or reference.doi or reference.pmid or reference.isbn
    return len(_LETTER.findall(reference.text)) < 3 and not cites_something


def revision_problem(stored_count: int, page: PageRecord, checks: RevisionChecks) -> str | None:
    """Why ``page`` must not replace an article that has ``stored_count`` references, or None if it may."""
    if page.problem:
        return page.problem
    count = len(page.references)
    if stored_count and count == 0:
        return f"reference list gone: {stored_count} stored, none in the new revision"
    if stored_count and count < stored_count * (1 - checks.max_shrink):
        return (
            f"reference list shrank from {stored_count} to {count} "
            f"(more than the {checks.max_shrink:.0%} allowed)"
        )
    debris = [ref.text for ref in page.references if looks_like_debris(ref)]
    if debris and len(debris) > checks.max_debris * count:
        return f"{len(debris)} of {count} reference texts look like markup, not references (e.g. {debris[0][:40]!r})"
    return None


def older_revision(stored_revision_id: int | None, page: PageRecord) -> str | None:
    """Why ``page`` must not replace the stored revision because it is an older one, or None.

    MediaWiki's revision ids only grow, so a lower id is an earlier edit: from a stale dump, a mirror or a
    lagging replica. It never overwrites a newer stored revision, whatever its source, checks or not.
    """
    if stored_revision_id is None or page.revision_id is None or page.revision_id >= stored_revision_id:
        return None
    return f"revision {page.revision_id} is older than the stored {stored_revision_id}"


def _new_article_values(page: PageRecord) -> dict[str, object]:
    """The columns a new article is inserted with; the others take their defaults (status current, lead
    extracted, fetched now)."""
    return {
        "wiki": page.wiki,
        "title": page.title,
        "page_id": page.page_id,
        "revision_id": page.revision_id,
        "url": page.url,
        "redirects": sorted(set(page.redirects)),
        "lead": page.lead,
        "short_description": page.short_description,
    }


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
        .values(**_new_article_values(page))
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
        and article.status == "current"
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


def _clear_quarantine(session: Session, article_id: int) -> bool:
    cleared = session.execute(
        delete(QuarantinedRevision).where(QuarantinedRevision.article_id == article_id)
    ).rowcount
    return bool(cleared)


def _quarantine(session: Session, article_id: int, page: PageRecord, reason: str) -> None:
    values = {
        "revision_id": page.revision_id,
        "reason": reason,
        "page": page.to_json(),
        "quarantined_at": func.now(),
    }
    session.execute(
        pg_insert(QuarantinedRevision)
        .values(article_id=article_id, **values)
        .on_conflict_do_update(index_elements=["article_id"], set_=values)
    )


_ARCHIVE_REFERENCES = text(
    """
    WITH moved AS (
        INSERT INTO reference_history (id, article_id, position, text, content_hash, urls, archive_url, doi, pmid,
                                       isbn, cited_title, date, added_at, added_revision_id,
                                       last_seen_revision_id, removed_revision_id)
        SELECT id, article_id, position, text, content_hash, urls, archive_url, doi, pmid, isbn, cited_title,
               date, added_at, added_revision_id, :last_seen, :removed_in
          FROM article_references WHERE id = ANY(:ids)
        RETURNING id
    )
    INSERT INTO reference_history_embeddings (model_version_id, reference_id, content_hash, embedding)
    SELECT e.model_version_id, e.reference_id, e.content_hash, e.embedding
      FROM reference_embeddings e JOIN moved m ON m.id = e.reference_id
    """
)


def _archive_references(
    session: Session, ids: list[int], *, last_seen: int | None, removed_in: int | None
) -> None:
    """Move references (and their embeddings) from the current rows into the history."""
    session.execute(_ARCHIVE_REFERENCES, {"ids": ids, "last_seen": last_seen, "removed_in": removed_in})
    session.execute(delete(ArticleReference).where(ArticleReference.id.in_(ids)))


def upsert_page(
    *, session: Session, page: PageRecord, checks: RevisionChecks | None = RevisionChecks()
) -> PageWriteResult:
    """Write one article and its reference list in one transaction (committed here); idempotent.

    With ``checks`` (the default), a revision that fails them is quarantined instead of written; ``None``
    writes it regardless (an explicit accept).
    """
    # First compare without locks: re-scraping an unchanged page then takes no row lock and writes nothing.
    article = session.scalars(_article_query(page)).one_or_none()
    if article is not None:
        existing = _existing_references(session, article.id)
        older = older_revision(article.revision_id, page)
        if older is not None:
            session.rollback()
            return PageWriteResult(
                article.id, "older", references_kept=len(existing), reason=older, title=page.title
            )
        if _unchanged(article, existing, page):
            # The wiki is back at the stored revision: whatever was quarantined since is no longer pending.
            cleared = _clear_quarantine(session, article.id)
            if cleared:
                session.commit()
            else:
                session.rollback()
            return PageWriteResult(
                article.id,
                "unchanged",
                references_kept=len(existing),
                quarantine_cleared=cleared,
                title=page.title,
            )
    article, created = _lock_article(session, page)
    existing = _existing_references(session, article.id)
    if not created and _unchanged(article, existing, page):  # a concurrent writer got there first
        session.rollback()
        return PageWriteResult(article.id, "unchanged", references_kept=len(existing), title=page.title)
    older = None if created else older_revision(article.revision_id, page)
    if older is not None:  # a concurrent writer stored a newer revision meanwhile
        session.rollback()
        return PageWriteResult(
            article.id, "older", references_kept=len(existing), reason=older, title=page.title
        )
    reason = revision_problem(len(existing), page, checks) if checks is not None else None
    if reason is not None:
        if created:  # nothing good to keep: the article is known, without a revision, until one passes
            session.execute(
                update(Article)
                .where(Article.id == article.id)
                .values(revision_id=None, lead=None, short_description=None)
            )
        _quarantine(session, article.id, page, reason)
        article_id = article.id
        session.commit()
        return PageWriteResult(
            article_id, "quarantined", references_kept=len(existing), reason=reason, title=page.title
        )
    redirects = _merged_redirects(article, page)

    matched, leftover = _match(existing, page.references)
    current = {ref_id: (position, values) for ref_id, position, _hash, values in existing}
    if leftover:
        _archive_references(session, leftover, last_seen=article.revision_id, removed_in=page.revision_id)
    changed = [
        {"id": ref_id, "position": position, **ref.values()}
        for position, (ref_id, ref) in enumerate(zip(matched, page.references, strict=True))
        if ref_id is not None and current[ref_id] != (position, ref.values())
    ]
    if changed:
        # (article_id, position) is unique DEFERRABLE INITIALLY DEFERRED: renumbering can swap freely.
        session.execute(update(ArticleReference), changed)
    added = [
        {
            "article_id": article.id,
            "position": position,
            "content_hash": ref.content_hash,
            "added_revision_id": page.revision_id,
            **ref.values(),
        }
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
                status="current",
                redirect_target=None,
                status_changed_at=func.now() if article.status != "current" else article.status_changed_at,
            )
        )
    cleared = _clear_quarantine(session, article.id)
    article_id = article.id
    session.commit()
    return PageWriteResult(
        article_id,
        "new" if created else "updated",
        references_added=len(added),
        references_removed=len(leftover),
        references_kept=len(page.references) - len(added),
        quarantine_cleared=cleared,
        title=page.title,
    )


# Every column of a new reference the per-article path sets (``added`` in ``upsert_page``); id and added_at
# take their defaults in both paths.
_COPY_COLUMNS = ("article_id", "position", "content_hash", "added_revision_id", *_REFERENCE_FIELDS)
_COPY_TYPES = ("int8", "int4", "text", "int8", "text", "text[]", *["text"] * 6)  # as _COPY_COLUMNS
_COPY_REFERENCES = sql.SQL("COPY article_references ({}) FROM STDIN WITH (FORMAT BINARY)").format(
    sql.SQL(", ").join(sql.Identifier(name) for name in _COPY_COLUMNS)
)


def _bulk_candidates(
    session: Session, pages: Sequence[PageRecord], checks: RevisionChecks | None
) -> list[int]:
    """Indexes of the pages ``upsert_page`` would create an article for and write whole: the article is not
    stored, the page passes the checks a new article meets (``revision_problem`` with nothing stored), and
    its title comes once in the batch (a repeat must see the first one's write, so all of them go one by one).
    """
    keys = [(page.wiki, page.title) for page in pages]
    titles_by_wiki: dict[str, list[str]] = defaultdict(list)
    for wiki, title in dict.fromkeys(keys):
        titles_by_wiki[wiki].append(title)
    stored = {
        (wiki, title)
        for wiki, titles in titles_by_wiki.items()
        for title in session.scalars(
            select(Article.title).where(Article.wiki == wiki, Article.title.in_(titles))
        )
    }
    repeated = {key for key, count in Counter(keys).items() if count > 1}
    return [
        index
        for index, (page, key) in enumerate(zip(pages, keys, strict=True))
        if key not in stored
        and key not in repeated
        and (checks is None or revision_problem(0, page, checks) is None)
    ]


def _insert_new_articles(session: Session, pages: Sequence[PageRecord]) -> list[PageWriteResult | None]:
    """Insert the articles of ``pages`` (none stored, titles distinct) with one multi-row INSERT and all their
    references with one COPY, committed together; per page its result, or None where a concurrent writer
    inserted the article first (``ON CONFLICT DO NOTHING``: that page is left to ``upsert_page``)."""
    # In (wiki, title) order: two loaders writing overlapping titles then wait on each other's rows in the same
    # order instead of deadlocking, and the second one's conflicting pages fall back to upsert_page.
    ordered = sorted(pages, key=lambda page: (page.wiki, page.title))
    rows = session.execute(
        pg_insert(Article)
        .values([_new_article_values(page) for page in ordered])
        .on_conflict_do_nothing(index_elements=["wiki", "title"])
        .returning(Article.id, Article.wiki, Article.title)
    ).all()
    ids = {(wiki, title): article_id for article_id, wiki, title in rows}
    connection: psycopg.Connection = session.connection().connection.driver_connection
    with connection.cursor() as cursor, cursor.copy(_COPY_REFERENCES) as copy:
        copy.set_types(list(_COPY_TYPES))
        for page in pages:
            article_id = ids.get((page.wiki, page.title))
            if article_id is None:
                continue
            for position, ref in enumerate(page.references):
                values = ref.values()
                copy.write_row(
                    (
                        article_id,
                        position,
                        ref.content_hash,
                        page.revision_id,
                        *(values[name] for name in _REFERENCE_FIELDS),
                    )
                )
    session.commit()
    return [
        PageWriteResult(
            ids[(page.wiki, page.title)], "new", references_added=len(page.references), title=page.title
        )
        if (page.wiki, page.title) in ids
        else None
        for page in pages
    ]


def upsert_pages(
    *, session: Session, pages: Sequence[PageRecord], checks: RevisionChecks | None = RevisionChecks()
) -> list[PageWriteResult]:
    """Write a batch of pages as ``upsert_page`` would one by one; the results in page order.

    The articles not stored yet whose page passes the checks (the common case of a first load) are written
    together in one transaction: one multi-row INSERT of the articles, one COPY of all their references. Every
    other page (a stored article, a page that fails the checks and is quarantined, a title that comes twice,
    an article a concurrent writer inserted meanwhile) then goes through ``upsert_page``, so idempotence,
    history and quarantine are that function's. The rows written are the same either way, but for ids and
    timestamps.
    """
    results: list[PageWriteResult | None] = [None] * len(pages)
    fresh = _bulk_candidates(session, pages, checks)
    if fresh:
        written = _insert_new_articles(session, [pages[index] for index in fresh])
        for index, result in zip(fresh, written, strict=True):
            results[index] = result
    return [
        result if result is not None else upsert_page(session=session, page=page, checks=checks)
        for page, result in zip(pages, results, strict=True)
    ]


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


def mark_gone(
    *, session: Session, wiki: str, deleted: Iterable[str], redirects: Mapping[str, str]
) -> tuple[int, int]:
    """Mark stored articles the wiki no longer has (deleted) or that now redirect elsewhere; counts newly marked.

    Their references stay as they were: the mark says they are no longer what the wiki serves at that title.
    """
    marked_deleted = session.execute(
        update(Article)
        .where(Article.wiki == wiki, Article.title.in_(list(deleted)), Article.status != "deleted")
        .values(status="deleted", redirect_target=None, status_changed_at=func.now())
    ).rowcount
    marked_redirects = 0
    for title, target in redirects.items():
        marked_redirects += session.execute(
            update(Article)
            .where(
                Article.wiki == wiki,
                Article.title == title,
                (Article.status != "redirect") | (Article.redirect_target.is_distinct_from(target)),
            )
            .values(status="redirect", redirect_target=target, status_changed_at=func.now())
        ).rowcount
    session.commit()
    return marked_deleted, marked_redirects


def stored_titles(*, session: Session, wiki: str) -> list[str]:
    """Titles of the stored articles of ``wiki`` that the wiki still serves as articles, by id."""
    return list(
        session.scalars(
            select(Article.title)
            .where(Article.wiki == wiki, Article.status != "deleted")
            .order_by(Article.id)
        )
    )


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


def prune_history_embeddings(*, session: Session, older_than: datetime | None = None) -> int:
    """Delete the embeddings of history references removed before ``older_than`` (all of them with None)."""
    query = text(
        "DELETE FROM reference_history_embeddings e USING reference_history h "
        "WHERE h.id = e.reference_id AND (CAST(:before AS timestamptz) IS NULL OR h.removed_at < :before)"
    )
    deleted = session.execute(query, {"before": older_than}).rowcount
    session.commit()
    return deleted


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
