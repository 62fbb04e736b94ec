"""Load a folder of saved pages straight into the database (no HTTP): for tests, benches and bulk seeding."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from db.articles import upsert_page
from flows.wikipedia.records import WriteCounts, page_record
from flows.wikipedia.saved import iter_saved_pages

log = logging.getLogger(__name__)


def load_saved_pages(
    engine: Engine,
    root: Path,
    *,
    include_bulk: bool = False,
    limit: int | None = None,
    wiki: str = "en.wikipedia.org",
) -> WriteCounts:
    """Extract and upsert the saved pages of ``root`` (first ``limit`` of them); one transaction per page."""
    counts = WriteCounts()
    pages = iter_saved_pages(root, include_bulk=include_bulk)
    with Session(engine) as session:
        for page in itertools.islice(pages, limit):
            record = page_record(
                wiki=wiki,
                title=page.title,
                html=page.html,
                page_id=page.page_id,
                revision_id=page.revision_id,
            )
            counts.add(upsert_page(session=session, page=record))
    log.info(
        "loaded %d saved pages from %s: %d new, %d updated, %d unchanged; %d references added, %d removed",
        counts.articles,
        root,
        counts.articles_new,
        counts.articles_updated,
        counts.articles_unchanged,
        counts.references_added,
        counts.references_removed,
    )
    return counts
