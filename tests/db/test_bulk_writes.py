"""The batched write (``upsert_pages``) against the per-article one (``upsert_page``) on a real PostgreSQL."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

import wikiref.db.bulk_writes
from tests.bulk_rows import outcome, stored_rows
from wikiref.db.articles import upsert_page
from wikiref.db.bulk_writes import upsert_pages
from wikiref.db.page_records import PageRecord, ReferenceRecord

WIKI = "en.wikipedia.org"


def citations(count: int, start: int = 0) -> tuple[ReferenceRecord, ...]:
    return tuple(
        ReferenceRecord(
            text=f"Author {i} (2001). A study of ducks, volume {i}. Press.",
            urls=(f"https://example.org/{i}", f"https://example.org/{i},{{x}}"),
            doi=f"10.1000/{i}" if i % 2 else None,
            date="2001",
        )
        for i in range(start, start + count)
    )


def page(
    title: str, references: tuple[ReferenceRecord, ...], revision_id: int | None, **fields
) -> PageRecord:
    return PageRecord(
        wiki=WIKI,
        title=title,
        page_id=1000 + len(title),
        revision_id=revision_id,
        url=f"https://{WIKI}/wiki/{title}",
        references=references,
        **fields,
    )


# Every column a reference may carry, with what COPY must pass through untouched: quotes, backslashes, tabs,
# newlines, braces and commas inside array elements, non-ASCII text, an empty list.
ODD = (
    ReferenceRecord(
        text='Smith, "J." \\ back\tslash\nnew line (2001). Ducks — Ünïcödé 中文. Nature 3: 1-2.',
        urls=("https://example.org/a,b{c}", 'https://example.org/"q"', "https://example.org/back\\slash"),
        archive_url="https://web.archive.org/web/2001/https://example.org/a",
        doi="10.1038/nature01234",
        pmid="12345678",
        isbn="978-0-00-000000-2",
        cited_title='Ducks, and "why" they\tmatter',
        date="2001-02-03",
    ),
    ReferenceRecord(text="Plain reference with no fields at all, only its text (2002)."),
    *citations(3, start=20),
)

STORED_FIRST = [
    page("Duck", citations(10), 1),
    page("Goose", citations(4), 1, lead="Geese are birds.", redirects=("Geese",)),
    page("Swan", citations(10), 1),
]

BATCH = [
    page("Duck", citations(9, start=1), 2),  # stored: updated, one reference to history
    page("Mallard", ODD, 7, lead="The mallard.", short_description="A duck", redirects=("B", "A", "B")),
    page("Goose", citations(4), 1, lead="Geese are birds.", redirects=("Geese",)),  # stored, unchanged
    page("Eider", tuple(ReferenceRecord(text=f"{{{{cite web|url=x{i}}}}}") for i in range(4)), 5),  # debris
    page("Stub", (), 3),  # a new article may cite nothing
    page("Swan", citations(3), 2),  # stored: shrank too much, quarantined
    page("Broken", (), 4, problem="body is not HTML (no element)"),
    page("Wigeon", citations(3), 1),  # twice in the batch: new, then updated
    page("Teal", citations(2, start=5), None),
    page("Wigeon", citations(4), 2),
    page("Garganey", citations(6, start=2), 8, lead="", short_description=None),
]


def write_one_by_one(engine: Engine, pages: list[PageRecord]) -> list:
    with Session(engine) as session:
        return [upsert_page(session=session, page=p) for p in pages]


def write_batched(engine: Engine, pages: list[PageRecord]) -> list:
    with Session(engine) as session:
        return upsert_pages(session=session, pages=pages)


def test_a_mixed_batch_writes_what_the_per_article_path_writes(
    engine: Engine, other_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_one_by_one(engine, STORED_FIRST)
    write_one_by_one(other_engine, STORED_FIRST)
    one_by_one = write_one_by_one(other_engine, BATCH)

    one_at_a_time: list[str] = []
    real_upsert_page = wikiref.db.bulk_writes.upsert_page

    def spy(*, session, page, checks):
        one_at_a_time.append(page.title)
        return real_upsert_page(session=session, page=page, checks=checks)

    monkeypatch.setattr(wikiref.db.bulk_writes, "upsert_page", spy)
    batched = write_batched(engine, BATCH)

    assert [outcome(r) for r in batched] == [outcome(r) for r in one_by_one]
    assert stored_rows(engine) == stored_rows(other_engine)
    # New articles that pass the checks went in together; everything else took the per-article path.
    assert one_at_a_time == ["Duck", "Goose", "Eider", "Swan", "Broken", "Wigeon", "Wigeon"]
    assert [r.status for r in batched] == [
        "updated",
        "new",
        "unchanged",
        "quarantined",
        "new",
        "quarantined",
        "quarantined",
        "new",
        "new",
        "updated",
        "new",
    ]
    rows = stored_rows(engine)
    assert len(rows["history"]) == 1 and len(rows["quarantine"]) == 3
    mallard = [r for r in rows["references"] if r[1] == "Mallard"]
    assert mallard[0][3:12] == (
        ODD[0].text,
        ODD[0].content_hash,
        list(ODD[0].urls),
        ODD[0].archive_url,
        ODD[0].doi,
        ODD[0].pmid,
        ODD[0].isbn,
        ODD[0].cited_title,
        ODD[0].date,
    )
    assert mallard[1][5] == []


def test_writing_a_batch_again_writes_nothing(engine: Engine) -> None:
    batch = [p for p in BATCH if p.title not in ("Eider", "Broken", "Swan", "Wigeon")]
    write_batched(engine, batch)

    def snapshot() -> tuple[list, list]:
        with engine.connect() as connection:
            return (
                connection.execute(text("SELECT id, xmin::text FROM articles ORDER BY id")).all(),
                connection.execute(text("SELECT id, xmin::text FROM article_references ORDER BY id")).all(),
            )

    before = snapshot()
    again = write_batched(engine, batch)
    assert {r.status for r in again} == {"unchanged"}
    assert snapshot() == before


def test_an_article_a_concurrent_writer_inserted_takes_the_per_article_path(
    engine: Engine, other_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read saw no article, the INSERT meets one (ON CONFLICT DO NOTHING): that page is written by
    ``upsert_page`` after the batch, the others by the batch."""
    batch = [page("Duck", citations(9, start=1), 2), page("Mallard", ODD, 7), page("Goose", citations(4), 1)]
    for target in (engine, other_engine):
        write_one_by_one(target, [page("Duck", citations(10), 1), page("Goose", citations(4), 1)])
    one_by_one = write_one_by_one(other_engine, batch)
    # As if both stored articles were inserted between the read and the INSERT.
    monkeypatch.setattr(
        wikiref.db.bulk_writes, "_bulk_candidates", lambda session, pages, checks: list(range(len(pages)))
    )
    batched = write_batched(engine, batch)
    assert [outcome(r) for r in batched] == [outcome(r) for r in one_by_one]
    assert [r.status for r in batched] == ["updated", "new", "unchanged"]
    assert stored_rows(engine) == stored_rows(other_engine)


def test_unchecked_batches_write_new_articles_whatever_they_hold(
    engine: Engine, other_engine: Engine
) -> None:
    batch = [p for p in BATCH if p.title in ("Eider", "Mallard", "Stub")]
    with Session(engine) as session:
        batched = upsert_pages(session=session, pages=batch, checks=None)
    with Session(other_engine) as session:
        one_by_one = [upsert_page(session=session, page=p, checks=None) for p in batch]
    assert [outcome(r) for r in batched] == [outcome(r) for r in one_by_one]
    assert [r.status for r in batched] == ["new", "new", "new"]
    assert stored_rows(engine) == stored_rows(other_engine)
    with Session(engine) as session:
        assert upsert_pages(session=session, pages=[]) == []


def test_a_batch_waits_for_a_concurrent_insert_and_leaves_that_article_to_upsert_page(
    engine: Engine, database_url: str
) -> None:
    """A real concurrent writer holds an uncommitted insert of one of the batch's titles: the batch's INSERT
    waits for it (or its read already sees the row) and, once it commits, the others are written together and
    that page one by one."""
    batch = [
        page("Zebra duck", citations(2), 1),
        page("Mallard", ODD, 7),
        page("Amazon duck", citations(3), 1),
    ]
    with psycopg.connect(database_url) as other:
        other.execute(
            "INSERT INTO articles (wiki, title, revision_id) VALUES (%s, 'Mallard', 6)",
            (WIKI,),
        )
        results: list = []
        writer = threading.Thread(target=lambda: results.extend(write_batched(engine, batch)))
        writer.start()
        time.sleep(2)
        assert writer.is_alive()  # waiting on the uncommitted Mallard
        other.commit()
    writer.join(timeout=60)
    assert [(r.title, r.status, r.references_added) for r in results] == [
        ("Zebra duck", "new", 2),
        ("Mallard", "updated", len(ODD)),
        ("Amazon duck", "new", 3),
    ]
    with engine.connect() as connection:
        assert connection.execute(
            text(
                "SELECT a.title, a.revision_id, count(r.id) FROM articles a "
                "LEFT JOIN article_references r ON r.article_id = a.id GROUP BY 1, 2 ORDER BY 1"
            )
        ).all() == [("Amazon duck", 1, 3), ("Mallard", 7, len(ODD)), ("Zebra duck", 1, 2)]
