"""Batch writes of new articles: one multi-row INSERT and one COPY of their references (``upsert_pages``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import psycopg
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from wikiref.db.articles import new_article_values, upsert_page
from wikiref.db.page_records import REFERENCE_FIELDS, PageRecord, PageWriteResult
from wikiref.db.revision_checks import RevisionChecks, revision_problem
from wikiref.db.schema import Article

# Every column of a new reference the per-article path sets (``added`` in ``upsert_page``); id and added_at
# take their defaults in both paths.
_COPY_COLUMNS = ("article_id", "position", "content_hash", "added_revision_id", *REFERENCE_FIELDS)
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
        .values([new_article_values(page) for page in ordered])
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
                        *(values[name] for name in REFERENCE_FIELDS),
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
