"""An older revision never overwrites a newer stored one, from any source (issue 27, item 8): the write path
every source shares (``upsert_page``, ``upsert_pages``) and a dump load."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from tests.conftest import SHARED_WIKIPEDIA
from tests.db.test_articles import make_page, snapshot
from tests.flows.mediawiki.test_dump import ndjson, record
from wikiref.db.articles import upsert_page
from wikiref.db.bulk_writes import upsert_pages
from wikiref.flows.mediawiki.saved import iter_saved_pages
from wikiref.flows.steps.loading import load_dump


def test_an_older_revision_is_skipped_and_writes_nothing(engine: Engine) -> None:
    with Session(engine) as session:
        stored = upsert_page(session=session, checks=None, page=make_page(["A", "B"], revision_id=539))
    before = snapshot(engine)
    with Session(engine) as session:
        older = upsert_page(session=session, checks=None, page=make_page(["C"], revision_id=39))
        also_older = upsert_pages(session=session, checks=None, pages=[make_page(["D"], revision_id=538)])
    assert (older.status, older.article_id, older.references_added, older.references_removed) == (
        "older",
        stored.article_id,
        0,
        0,
    )
    assert older.reason == "revision 39 is older than the stored 539"
    assert [result.status for result in also_older] == ["older"]
    assert snapshot(engine) == before
    with Session(engine) as session:  # the same revision and a newer one still write as before
        assert upsert_page(
            session=session, checks=None, page=make_page(["A", "B"], revision_id=539)
        ).status == ("unchanged")
        assert upsert_page(session=session, checks=None, page=make_page(["A"], revision_id=540)).status == (
            "updated"
        )


def test_a_dump_holding_an_older_revision_keeps_the_newer_one(engine: Engine, tmp_path: Path) -> None:
    page = next(iter_saved_pages(SHARED_WIKIPEDIA))
    newer = dataclasses.replace(page, revision_id=539)
    older = dataclasses.replace(page, revision_id=39, html="<p>An earlier version.</p>")
    first = tmp_path / "newer.ndjson.gz"
    first.write_bytes(gzip.compress(ndjson([record(newer)])))
    second = tmp_path / "older.ndjson.gz"
    second.write_bytes(gzip.compress(ndjson([record(older)])))

    assert load_dump(engine, first).counts.articles_new == 1
    summary = load_dump(engine, second)
    assert (summary.counts.articles_updated, summary.counts.articles_older) == (0, 1)
    assert summary.counts.older == [(page.title, "revision 39 is older than the stored 539")]
    assert ("articles older, skipped", 1) in summary.rows()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT revision_id FROM articles")).scalar_one() == 539
        assert connection.execute(text("SELECT count(*) FROM article_references")).scalar_one() > 1
