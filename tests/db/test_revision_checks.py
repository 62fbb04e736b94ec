"""Sanity checks before a new revision replaces stored references; quarantine, accept, history, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from tests.conftest import register_base_version
from wikiref.db.articles import upsert_page
from wikiref.db.page_records import PageRecord, ReferenceRecord
from wikiref.db.quarantine import accept_quarantined, quarantined
from wikiref.db.reference_history import prune_history_embeddings
from wikiref.db.revision_checks import RevisionChecks, looks_like_debris, revision_problem

WIKI = "en.wikipedia.org"


def citations(count: int, start: int = 0) -> tuple[ReferenceRecord, ...]:
    return tuple(
        ReferenceRecord(text=f"Author {i} (2001). A study of ducks, volume {i}. Press.")
        for i in range(start, start + count)
    )


def page(references: tuple[ReferenceRecord, ...], revision_id: int, **fields) -> PageRecord:
    return PageRecord(wiki=WIKI, title="Duck", revision_id=revision_id, references=references, **fields)


@pytest.mark.parametrize(
    ("stored", "new", "reason"),
    [
        (10, page(citations(10), 2, problem="empty body"), "empty body"),
        (10, page((), 2), "reference list gone: 10 stored, none in the new revision"),
        (10, page(citations(4), 2), "reference list shrank from 10 to 4 (more than the 50% allowed)"),
        (
            10,
            page(tuple(ReferenceRecord(text="<<<>>> lorem ipsum") for _ in range(10)), 2),
            "10 of 10 reference",
        ),
        (
            0,
            page((ReferenceRecord(text="{{cite web|url=x}}"),), 2),
            "1 of 1 reference texts look like markup",
        ),
    ],
)
def test_a_failing_revision_says_why(stored: int, new: PageRecord, reason: str) -> None:
    problem = revision_problem(stored, new, RevisionChecks())
    assert problem is not None and problem.startswith(reason)


def test_a_revision_within_the_limits_passes() -> None:
    assert revision_problem(10, page(citations(5), 2), RevisionChecks()) is None
    assert revision_problem(0, page((), 2), RevisionChecks()) is None  # a new stub may cite nothing
    assert revision_problem(10, page(citations(2), 2), RevisionChecks(max_shrink=0.9)) is None


@pytest.mark.parametrize(
    ("reference", "debris"),
    [
        (ReferenceRecord(text="Smith, J. (2001). Ducks. Nature 3: 1-2."), False),
        (ReferenceRecord(text="ข้อกำหนดศาลรัฐธรรมนูญ พ.ศ. 2550"), False),
        (ReferenceRecord(text="[1]", urls=("http://example.org/ducks",)), False),  # a bare link
        (ReferenceRecord(text="<<<>>> lorem ipsum"), True),
        (ReferenceRecord(text='<span class="x">'), True),
        (ReferenceRecord(text="[[Category:Ducks]]"), True),
        (ReferenceRecord(text="[1]"), True),
    ],
)
def test_debris_is_markup_or_filler(reference: ReferenceRecord, debris: bool) -> None:
    assert looks_like_debris(reference) is debris


def embed(engine: Engine) -> None:
    with Session(engine) as session:
        version = register_base_version(session)
        session.execute(
            text(
                "INSERT INTO reference_embeddings (model_version_id, reference_id, content_hash, embedding) "
                "SELECT :v, id, content_hash, array_fill(0.5, ARRAY[384])::vector FROM article_references"
            ),
            {"v": version},
        )
        session.commit()


def rows(engine: Engine, sql: str) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def test_quarantine_keeps_stored_rows_and_a_good_revision_clears_it(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_page(session=session, page=page(citations(10), 1))
    embed(engine)
    stored = rows(engine, "SELECT id, xmin::text FROM article_references ORDER BY id")
    vectors = rows(engine, "SELECT reference_id, xmin::text FROM reference_embeddings ORDER BY reference_id")

    with Session(engine) as session:
        result = upsert_page(session=session, page=page(citations(3), 2))
        assert (result.status, result.reason) == (
            "quarantined",
            "reference list shrank from 10 to 3 (more than the 50% allowed)",
        )
        (pending,) = quarantined(session=session)
    assert (pending.title, pending.stored_revision_id, pending.revision_id) == ("Duck", 1, 2)
    assert (pending.references_stored, pending.references_pending) == (10, 3)
    assert rows(engine, "SELECT id, xmin::text FROM article_references ORDER BY id") == stored
    assert (
        rows(engine, "SELECT reference_id, xmin::text FROM reference_embeddings ORDER BY reference_id")
        == vectors
    )
    assert rows(engine, "SELECT revision_id FROM articles") == [(1,)]

    with Session(engine) as session:
        good = upsert_page(session=session, page=page(citations(9, start=1), 3))
        assert (good.status, good.quarantine_cleared, good.references_removed) == ("updated", True, 1)
        assert quarantined(session=session) == []


def test_accept_applies_the_pending_revision_and_history_keeps_embeddings(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_page(session=session, page=page(citations(10), 1))
    embed(engine)
    with Session(engine) as session:
        upsert_page(session=session, page=page(citations(2, start=8), 2))
        accepted = accept_quarantined(session=session, wiki=WIKI, title="Duck")
    assert (accepted.status, accepted.references_removed, accepted.references_kept) == ("updated", 8, 2)
    assert rows(engine, "SELECT count(*) FROM article_references") == [(2,)]
    history = rows(
        engine,
        "SELECT h.last_seen_revision_id, h.removed_revision_id, count(e.reference_id) FROM reference_history h "
        "LEFT JOIN reference_history_embeddings e ON e.reference_id = h.id GROUP BY 1, 2",
    )
    assert history == [(1, 2, 8)]
    changes = rows(
        engine,
        "SELECT change, revision_id, count(*) FROM wikiref.reference_changes(now() - interval '1 day', 'Duck') "
        "GROUP BY 1, 2 ORDER BY 1, 2",
    )
    # Added in revision 1 (10, of which 8 are history now), removed in revision 2.
    assert changes == [("added", 1, 10), ("removed", 2, 8)]
    assert rows(engine, "SELECT count(*) FROM wikiref.reference_changes(now() + interval '1 day')") == [(0,)]

    with Session(engine) as session:
        assert (
            prune_history_embeddings(session=session, older_than=datetime.now(UTC) - timedelta(days=1)) == 0
        )
        assert prune_history_embeddings(session=session) == 8
    assert rows(engine, "SELECT count(*) FROM reference_history") == [(8,)]


def test_a_new_article_whose_first_revision_fails_is_known_without_a_revision(engine: Engine) -> None:
    debris = tuple(ReferenceRecord(text=f"{{{{cite web|url=x{i}}}}}") for i in range(4))
    with Session(engine) as session:
        first = upsert_page(session=session, page=page(debris, 5, lead="Ducks are <<<>>>"))
        assert first.status == "quarantined"
        assert rows(engine, "SELECT revision_id, lead FROM articles") == [(None, None)]
        assert rows(engine, "SELECT count(*) FROM article_references") == [(0,)]
        good = upsert_page(session=session, page=page(citations(4), 6))
        assert (good.status, good.references_added, good.quarantine_cleared) == ("updated", 4, True)
