"""A dump of shared pages loaded by the batched writes and by the per-article ones: the same rows and counts."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.bulk_rows import stored_rows
from tests.conftest import SHARED_WIKIPEDIA
from tests.flows.mediawiki.test_dump import ndjson, record
from wikiref.flows.mediawiki.saved import SavedPage, iter_saved_pages
from wikiref.flows.steps.loading import load_dump


@pytest.fixture(scope="module")
def sample() -> list[SavedPage]:
    return list(itertools.islice(iter_saved_pages(SHARED_WIKIPEDIA), 20))


def write_dump(path: Path, records: list[dict]) -> Path:
    path.write_bytes(gzip.compress(ndjson(records)))
    return path


@pytest.fixture
def mixed_dump(tmp_path: Path, sample: list[SavedPage]) -> Path:
    """20 real pages, a record whose body is not HTML (quarantined), and one title twice (a later revision)."""
    records = [record(p) for p in sample]
    broken = dataclasses.replace(sample[0], title="Not a page", html="just words, no markup")
    later = dataclasses.replace(sample[3], revision_id=(sample[3].revision_id or 0) + 1)
    records[6:6] = [record(broken), record(later)]
    return write_dump(tmp_path / "mixed.ndjson.gz", records)


def load_twice(engine: Engine, dump: Path, *, bulk: bool) -> tuple[list, list[int]]:
    """A first load of the first 9 records, then all of them, forced: stored articles go through the write
    path again next to new ones."""
    progress: list[int] = []
    first = load_dump(engine, dump, limit=9, batch_size=5, bulk=bulk, on_batch=progress.append)
    second = load_dump(engine, dump, batch_size=7, force=True, bulk=bulk, on_batch=progress.append)
    return [first, second], progress


def test_bulk_load_writes_what_the_per_article_load_writes(
    engine: Engine, other_engine: Engine, mixed_dump: Path, sample: list[SavedPage]
) -> None:
    bulk, bulk_progress = load_twice(engine, mixed_dump, bulk=True)
    one_by_one, progress = load_twice(other_engine, mixed_dump, bulk=False)
    assert bulk == one_by_one  # every count, the quarantined list and the skipped records
    assert bulk_progress == progress == [5, 9, 7, 14, 21, 22]
    rows = stored_rows(engine)
    assert rows == stored_rows(other_engine)

    first, second = bulk
    assert (first.counts.articles_new, first.counts.articles_quarantined) == (7, 1)
    assert first.counts.quarantined[0][0] == "Not a page"
    assert first.counts.articles_updated == 1  # the later revision of a title read in the same load
    # Forced: 6 stored pages unchanged, 13 new; the title read twice: its earlier revision is older than the
    # stored later one, so it is skipped (issue 27, item 8: before, it overwrote it), and the later unchanged.
    assert (second.counts.articles_new, second.counts.articles_unchanged) == (13, 7)
    assert (second.counts.articles_updated, second.counts.articles_quarantined) == (0, 1)
    assert second.counts.articles_older == 1
    assert second.counts.references_added == sum(
        count for title, count in reference_counts(engine).items() if title not in loaded_first(sample)
    )
    assert [row[1] for row in rows["quarantine"]] == ["Not a page"]


def loaded_first(sample: list[SavedPage]) -> set[str]:
    return {p.title for p in sample[:7]}


def reference_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                text(
                    "SELECT a.title, count(r.id) FROM articles a LEFT JOIN article_references r "
                    "ON r.article_id = a.id GROUP BY a.title"
                )
            ).all()
        )


def test_loading_a_dump_again_writes_nothing(engine: Engine, tmp_path: Path, sample: list[SavedPage]) -> None:
    dump = write_dump(tmp_path / "clean.ndjson.gz", [record(p) for p in sample])
    first = load_dump(engine, dump, batch_size=8)
    assert first.counts.articles_new == 20 and first.counts.references_added > 0

    def snapshot() -> tuple[list, list]:
        with engine.connect() as connection:
            return (
                connection.execute(text("SELECT id, xmin::text FROM articles ORDER BY id")).all(),
                connection.execute(text("SELECT id, xmin::text FROM article_references ORDER BY id")).all(),
            )

    before = snapshot()
    skipped = load_dump(engine, dump, batch_size=8)
    forced = load_dump(engine, dump, batch_size=8, force=True)
    with_revision = sum(1 for p in sample if p.revision_id is not None)
    assert (skipped.skipped_current, skipped.counts.articles_unchanged) == (with_revision, 20 - with_revision)
    assert (forced.skipped_current, forced.counts.articles_unchanged) == (0, 20)
    assert snapshot() == before
