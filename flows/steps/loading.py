"""Bulk loads without HTTP: Enterprise HTML dumps."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from wikiref.db.articles import stored_revisions
from wikiref.db.revision_checks import RevisionChecks
from wikiref.flows.mediawiki.dump import DumpError, DumpPage, DumpReader
from wikiref.flows.steps.records import PAGES_PER_BATCH, page_record
from wikiref.flows.steps.scraping import ScrapeSummary, write_records

log = logging.getLogger(__name__)


def _next_batch(pages: Iterator[DumpPage], size: int) -> tuple[list[DumpPage], DumpError | None]:
    """Up to ``size`` pages, and the error that broke the stream if it broke: the pages read before a break
    are still written."""
    batch: list[DumpPage] = []
    try:
        batch.extend(itertools.islice(pages, size))
    except DumpError as exc:
        return batch, exc
    return batch, None


def load_dump(
    engine: Engine,
    path: Path,
    *,
    wiki: str | None = None,
    limit: int | None = None,
    batch_size: int = PAGES_PER_BATCH,
    force: bool = False,
    checks: RevisionChecks = RevisionChecks(),
    on_batch: Callable[[int], None] | None = None,
    bulk: bool = True,
) -> ScrapeSummary:
    """Load an Enterprise HTML dump: articles whose stored revision is current are skipped before extraction.

    ``wiki`` is used for records whose URL names no host. ``on_batch(pages_read)`` reports progress. Bad
    records are skipped and listed in the summary (``skipped_records``); a broken stream raises ``DumpError``
    after the articles read before the break are written. The new articles of a batch are written together
    (one INSERT, one COPY of their references: ``wikiref.db.bulk_writes.upsert_pages``); ``bulk=False`` writes every
    article on its own (``upsert_page``), with the same rows and counts, slower.
    """
    summary = ScrapeSummary(wiki=wiki or "")
    reader = DumpReader(path, wiki=wiki)
    pages = itertools.islice(iter(reader), limit)
    read = 0
    broken: DumpError | None = None
    while broken is None:
        batch, broken = _next_batch(pages, batch_size)
        if not batch:
            break
        read += len(batch)
        by_wiki: dict[str, list[DumpPage]] = {}
        for page in batch:
            by_wiki.setdefault(page.wiki, []).append(page)
        for page_wiki, wiki_pages in by_wiki.items():
            summary.wiki = summary.wiki or page_wiki
            stale = wiki_pages
            if not force:
                with Session(engine) as session:
                    stored = stored_revisions(
                        session=session, wiki=page_wiki, titles=[p.title for p in wiki_pages]
                    )
                stale = [
                    p for p in wiki_pages if p.revision_id is None or stored.get(p.title) != p.revision_id
                ]
            summary.skipped_current += len(wiki_pages) - len(stale)
            records = [
                page_record(
                    wiki=page_wiki,
                    title=page.title,
                    html=page.html,
                    page_id=page.page_id,
                    revision_id=page.revision_id,
                    redirects=page.redirects,
                    short_description=page.short_description,
                )
                for page in stale
            ]
            summary.counts.merge(write_records(engine, records, checks, bulk=bulk))
        if on_batch:
            on_batch(read)
    summary.requested = read
    summary.skipped_records = list(reader.skipped)
    log.info(
        "dump %s: %d articles read, %d current (skipped), %d bad records skipped",
        path,
        read,
        summary.skipped_current,
        len(reader.skipped),
    )
    if broken is not None:
        raise broken
    return summary
