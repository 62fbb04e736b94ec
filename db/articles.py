"""Idempotent writes of articles and their reference lists, one transaction per article.

A re-scraped article gets exactly its new reference list: references whose text is unchanged keep their
row ids (and so their embeddings), removed ones move to ``reference_history`` (with their embeddings, the
revision they were last seen in and when), new ones are inserted, moved ones renumbered. When nothing
changed, nothing is written: no row, id or timestamp moves.

A new revision replaces the stored one only if it passes the sanity checks (``wikiref.db.revision_checks``); one
that fails is quarantined whole in ``quarantined_revisions`` with the reason, and the stored references stay.
This is the one write path of every scrape, refresh and bulk load, so all of them get the checks.

``wikiref.db.bulk_writes.upsert_pages`` writes a batch (the dump loader's): the articles the database does not
have yet and that pass the checks go in together, one multi-row INSERT and one COPY of their references in one
transaction; every other page takes ``upsert_page``. The rows and the results are the ones ``upsert_page`` gives
page by page.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from wikiref.db.page_records import REFERENCE_FIELDS, PageRecord, PageWriteResult, ReferenceRecord
from wikiref.db.revision_checks import RevisionChecks, older_revision, revision_problem
from wikiref.db.schema import Article, ArticleReference, QuarantinedRevision


def new_article_values(page: PageRecord) -> dict[str, object]:
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
        .values(**new_article_values(page))
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
            *(getattr(ArticleReference, name) for name in REFERENCE_FIELDS),
        )
        .where(ArticleReference.article_id == article_id)
        .order_by(ArticleReference.position)
    ).all()
    return [(row[0], row[1], row[2], dict(zip(REFERENCE_FIELDS, row[3:], strict=True))) for row in rows]


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


def _no_write_needed(session: Session, page: PageRecord) -> PageWriteResult | None:
    """The outcome of a page that needs no write, found without locks: an older revision than the stored one,
    or the stored revision unchanged (the wiki is back at it: a quarantine pending since is cleared). None when
    the page must be written."""
    article = session.scalars(_article_query(page)).one_or_none()
    if article is None:
        return None
    existing = _existing_references(session, article.id)
    older = older_revision(article.revision_id, page)
    if older is not None:
        session.rollback()
        return PageWriteResult(
            article.id, "older", references_kept=len(existing), reason=older, title=page.title
        )
    if not _unchanged(article, existing, page):
        return None
    cleared = _clear_quarantine(session, article.id)
    if cleared:
        session.commit()
    else:
        session.rollback()
    return PageWriteResult(
        article.id, "unchanged", references_kept=len(existing), quarantine_cleared=cleared, title=page.title
    )


def _quarantine_revision(
    session: Session, article: Article, *, created: bool, page: PageRecord, reason: str, kept: int
) -> PageWriteResult:
    """Keep the revision aside with why it failed the checks (committed); the stored references stay."""
    if created:  # nothing good to keep: the article is known, without a revision, until one passes
        session.execute(
            update(Article)
            .where(Article.id == article.id)
            .values(revision_id=None, lead=None, short_description=None)
        )
    _quarantine(session, article.id, page, reason)
    article_id = article.id
    session.commit()
    return PageWriteResult(article_id, "quarantined", references_kept=kept, reason=reason, title=page.title)


def _write_references(
    session: Session, article: Article, existing: _Existing, page: PageRecord
) -> tuple[int, int]:
    """Make the article's rows the page's reference list: a reference whose text is stored keeps its row (moved
    or updated in place), a removed one goes to the history, a new one is inserted. (added, removed)."""
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
    return len(added), len(leftover)


def _update_article(session: Session, article: Article, page: PageRecord) -> None:
    """Store the page's revision, ids and lead on a known article, which is current again if it was gone."""
    session.execute(
        update(Article)
        .where(Article.id == article.id)
        .values(
            page_id=page.page_id,
            revision_id=page.revision_id,
            url=page.url,
            redirects=_merged_redirects(article, page),
            lead=page.lead,
            short_description=page.short_description,
            lead_extracted=True,
            fetched_at=func.now(),
            status="current",
            redirect_target=None,
            status_changed_at=func.now() if article.status != "current" else article.status_changed_at,
        )
    )


def upsert_page(
    *, session: Session, page: PageRecord, checks: RevisionChecks | None = RevisionChecks()
) -> PageWriteResult:
    """Write one article and its reference list in one transaction (committed here); idempotent.

    With ``checks`` (the default), a revision that fails them is quarantined instead of written; ``None``
    writes it regardless (an explicit accept).
    """
    # 1. Compare without locks: re-scraping an unchanged page then takes no row lock and writes nothing.
    if (result := _no_write_needed(session, page)) is not None:
        return result

    # 2. Lock the article (inserted if new) and compare again: a concurrent writer may have got there first.
    article, created = _lock_article(session, page)
    existing = _existing_references(session, article.id)
    if not created and _unchanged(article, existing, page):
        session.rollback()
        return PageWriteResult(article.id, "unchanged", references_kept=len(existing), title=page.title)
    older = None if created else older_revision(article.revision_id, page)
    if older is not None:  # a concurrent writer stored a newer revision meanwhile
        session.rollback()
        return PageWriteResult(
            article.id, "older", references_kept=len(existing), reason=older, title=page.title
        )

    # 3. Check the revision: one that fails the checks is quarantined, not written.
    reason = revision_problem(len(existing), page, checks) if checks is not None else None
    if reason is not None:
        return _quarantine_revision(
            session, article, created=created, page=page, reason=reason, kept=len(existing)
        )

    # 4. Write the reference list, then the article's row (a new one was inserted whole by the lock).
    added, removed = _write_references(session, article, existing, page)
    if not created:
        _update_article(session, article, page)

    # 5. Commit: the revision written settles any quarantine of the article.
    cleared = _clear_quarantine(session, article.id)
    article_id = article.id
    session.commit()
    return PageWriteResult(
        article_id,
        "new" if created else "updated",
        references_added=added,
        references_removed=removed,
        references_kept=len(page.references) - added,
        quarantine_cleared=cleared,
        title=page.title,
    )


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
