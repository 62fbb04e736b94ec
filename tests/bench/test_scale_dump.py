"""bench/scale_dump.py: a dump recombined from the real shared pages loads through ``wikiref scrape --dump-path``."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser
from sqlalchemy import create_engine, text

from bench.scale_dump import generated_records, reference_pool, sample_items, write_dump
from tests.conftest import SHARED_WIKIPEDIA
from wikiref.db.engine import sqlalchemy_url


def test_generated_dump_loads_through_scrape_dump_with_every_reference(
    run_cli, database_url: str, tmp_path: Path
) -> None:
    pool = reference_pool(SHARED_WIKIPEDIA, include_bulk=False)
    assert len(pool.titles) == 303 and len(pool.items) >= 13_992
    dump = tmp_path / "scale.ndjson.gz"
    written = write_dump(dump, pool, references=600, seed=1)
    with gzip.open(dump, "rt") as lines:
        records = [json.loads(line) for line in lines]
    titles = [record["name"] for record in records]
    assert written == {"articles": len(records), "references": 600}
    assert len(set(titles)) == len(titles)  # recombined under unique titles

    result = run_cli("scrape", "--dump-path", str(dump), env={"WIKIREF_DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            stored_titles = connection.execute(text("SELECT title FROM articles")).scalars().all()
            texts = connection.execute(text("SELECT text FROM article_references")).scalars().all()
    finally:
        engine.dispose()
    assert sorted(stored_titles) == sorted(titles)
    # Every generated item is a real reference: it extracts to a non-empty text, none is lost.
    assert len(texts) == 600 and all(texts)


def test_a_sampled_pool_repeats_only_its_items() -> None:
    pool = reference_pool(SHARED_WIKIPEDIA, include_bulk=False)
    sampled = sample_items(pool, 20, seed=3)
    assert sampled.items == sample_items(pool, 20, seed=3).items
    assert len(set(sampled.items)) == 20 and set(sampled.items) <= set(pool.items)

    def bare(markup: str) -> str:
        # Without what a copy changes: the renumbered id and the access date of a repeated item.
        return re.sub(r" Retrieved \d+ \w+ \d+\.", "", re.sub(r'id="cite_note-[^"]*"', "", markup))

    records = list(generated_records(sampled, references=300, seed=3))
    written = [
        node.html
        for record in records
        for node in LexborHTMLParser(record["article_body"]["html"]).css("li[id]")
        if node.attributes["id"].startswith("cite_note-")
    ]
    assert len(written) == 300
    assert {bare(item) for item in written} <= {bare(item) for item in sampled.items}
