"""Enterprise HTML dumps built from the shared pages: read streaming, loaded incrementally."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.conftest import SHARED_WIKIPEDIA
from tests.flows.mediawiki.test_extract import manifest_counts
from wikiref.flows.mediawiki.dump import DumpError, iter_dump
from wikiref.flows.mediawiki.saved import SavedPage, iter_saved_pages
from wikiref.flows.steps.loading import load_dump


def record(page: SavedPage, *, namespace: int = 0) -> dict:
    """One line of the Enterprise article model."""
    return {
        "name": page.title,
        "identifier": page.page_id,
        "version": {"identifier": page.revision_id, "editor": {"name": "someone"}},
        "url": f"https://en.wikipedia.org/wiki/{page.title.replace(' ', '_')}",
        "namespace": {"identifier": namespace},
        "in_language": {"identifier": "en"},
        "is_part_of": {"identifier": "enwiki", "url": "https://en.wikipedia.org"},
        "article_body": {"html": page.html, "wikitext": "…"},
        "redirects": [{"name": f"{page.title} (redirect)", "url": "https://en.wikipedia.org/wiki/x"}],
    }


def ndjson(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


@pytest.fixture(scope="module")
def sample() -> list[SavedPage]:
    return list(itertools.islice(iter_saved_pages(SHARED_WIKIPEDIA), 30))


@pytest.fixture
def tar_dump(tmp_path: Path, sample: list[SavedPage]) -> Path:
    """Like Enterprise's enwiki_namespace_0.tar.gz: several NDJSON files in one archive, plus a non-article."""
    path = tmp_path / "enwiki_namespace_0_0.tar.gz"
    parts = [
        ndjson([record(p) for p in sample[:20]]),
        ndjson([record(p) for p in sample[20:]] + [record(sample[0], namespace=14)]),
    ]
    with tarfile.open(path, "w:gz") as tar:
        for number, data in enumerate(parts):
            info = tarfile.TarInfo(f"enwiki_namespace_0_{number}.ndjson")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_reader_streams_tar_gz_gzip_and_plain(
    tar_dump: Path, tmp_path: Path, sample: list[SavedPage]
) -> None:
    pages = list(iter_dump(tar_dump))
    assert [p.title for p in pages] == [p.title for p in sample]
    assert pages[0].wiki == "en.wikipedia.org"
    assert (pages[0].page_id, pages[0].revision_id) == (sample[0].page_id, sample[0].revision_id)
    assert pages[0].redirects == (f"{sample[0].title} (redirect)",)
    plain = tmp_path / "dump.ndjson"
    plain.write_bytes(ndjson([record(p) for p in sample[:3]]))
    gzipped = tmp_path / "dump.ndjson.gz"
    gzipped.write_bytes(gzip.compress(plain.read_bytes()))
    assert (
        [p.title for p in iter_dump(plain)]
        == [p.title for p in iter_dump(gzipped)]
        == [p.title for p in sample[:3]]
    )


def test_load_dump_stores_every_reference_and_reloads_nothing(
    engine: Engine, tar_dump: Path, sample: list[SavedPage]
) -> None:
    first = load_dump(engine, tar_dump, batch_size=8)
    assert (first.requested, first.counts.articles_new, first.wiki) == (30, 30, "en.wikipedia.org")
    expected = manifest_counts()
    with engine.connect() as connection:
        stored = dict(
            connection.execute(
                text(
                    "SELECT a.title, count(r.id) FROM articles a JOIN article_references r ON r.article_id = a.id GROUP BY a.title"
                )
            ).all()
        )
        before = connection.execute(text("SELECT id, xmin::text FROM article_references ORDER BY id")).all()
    assert stored == {p.title: expected[p.title] for p in sample if expected[p.title]}
    second = load_dump(engine, tar_dump, batch_size=8)
    # Pages with a revision id are skipped before extraction; the rest are extracted and found unchanged.
    with_revision = sum(1 for p in sample if p.revision_id is not None)
    assert (second.skipped_current, second.counts.articles_unchanged, second.counts.articles_new) == (
        with_revision,
        30 - with_revision,
        0,
    )
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT id, xmin::text FROM article_references ORDER BY id")).all()
            == before
        )


def test_bad_dumps_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DumpError, match="does not exist"):
        list(iter_dump(tmp_path / "nope.ndjson"))
    bad = tmp_path / "bad.ndjson"
    bad.write_text("<html>not json</html>\n", encoding="utf-8")
    with pytest.raises(DumpError, match="holds no articles .* line 1: not JSON"):
        list(iter_dump(bad))
