"""Idempotent article + reference upserts on a real PostgreSQL."""

from __future__ import annotations

import csv

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from tests.conftest import SHARED_WIKIPEDIA
from wikiref.db.articles import stored_revisions, upsert_page
from wikiref.db.engine import sqlalchemy_url
from wikiref.db.page_records import PageRecord, ReferenceRecord, content_hash

# The write mechanics below use one-letter texts, which the sanity checks take for debris; the checks have
# tests of their own (test_revision_checks.py).
UNCHECKED = None


def make_page(texts: list[str], *, revision_id: int = 1, title: str = "Duck", **fields) -> PageRecord:
    return PageRecord(
        wiki="en.wikipedia.org",
        title=title,
        page_id=37674,
        revision_id=revision_id,
        url=f"https://en.wikipedia.org/wiki/{title}",
        references=tuple(
            ReferenceRecord(text=t, urls=(f"https://example.org/{i}",)) for i, t in enumerate(texts)
        ),
        **fields,
    )


def snapshot(engine: Engine) -> tuple[list, list]:
    """Every article and reference row with its xmin: a row rewritten in any way gets a new xmin."""
    with engine.connect() as connection:
        articles = connection.execute(
            text("SELECT id, xmin::text, title, revision_id, fetched_at, redirects FROM articles ORDER BY id")
        ).all()
        references = connection.execute(
            text(
                "SELECT id, xmin::text, article_id, position, text, urls FROM article_references ORDER BY id"
            )
        ).all()
    return articles, references


def test_new_page_then_identical_upsert_writes_nothing(engine: Engine) -> None:
    page = make_page(["A", "B", "C"], redirects=("Ducks",))
    with Session(engine) as session:
        first = upsert_page(session=session, checks=UNCHECKED, page=page)
    assert (first.status, first.references_added, first.references_removed) == ("new", 3, 0)
    before = snapshot(engine)
    with Session(engine) as session:
        second = upsert_page(session=session, checks=UNCHECKED, page=page)
    assert (second.status, second.article_id, second.references_added) == ("unchanged", first.article_id, 0)
    assert snapshot(engine) == before
    articles, references = before
    assert [row.text for row in references] == ["A", "B", "C"]
    assert [row.position for row in references] == [0, 1, 2]
    assert articles[0].redirects == ["Ducks"]
    with engine.connect() as connection:
        hashes = connection.execute(
            text("SELECT content_hash FROM article_references ORDER BY position")
        ).scalars()
        assert list(hashes) == [content_hash("A"), content_hash("B"), content_hash("C")]


def test_new_revision_gets_exactly_its_new_list_and_unchanged_texts_keep_ids(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_page(session=session, checks=UNCHECKED, page=make_page(["A", "B", "C", "D"], revision_id=1))
    _, old_refs = snapshot(engine)
    old_ids = {row.text: row.id for row in old_refs}

    with Session(engine) as session:
        result = upsert_page(
            session=session, checks=UNCHECKED, page=make_page(["C", "A", "E", "D"], revision_id=2)
        )
    assert (result.status, result.references_added, result.references_removed, result.references_kept) == (
        "updated",
        1,
        1,
        3,
    )
    articles, refs = snapshot(engine)
    assert articles[0].revision_id == 2
    by_position = sorted(refs, key=lambda row: row.position)
    assert [(row.position, row.text) for row in by_position] == [(0, "C"), (1, "A"), (2, "E"), (3, "D")]
    assert {row.text: row.id for row in refs if row.text != "E"} == {t: old_ids[t] for t in ("A", "C", "D")}
    assert old_ids["B"] not in {row.id for row in refs}
    # Fields follow the new list even where the text kept its id.
    assert {row.text: row.urls for row in refs}["C"] == ["https://example.org/0"]


def test_new_revision_with_same_references_only_updates_the_article(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_page(session=session, checks=UNCHECKED, page=make_page(["A", "B"], revision_id=1))
    articles_before, refs_before = snapshot(engine)
    with Session(engine) as session:
        result = upsert_page(session=session, checks=UNCHECKED, page=make_page(["A", "B"], revision_id=7))
    articles_after, refs_after = snapshot(engine)
    assert result.status == "updated"
    assert refs_after == refs_before
    assert articles_after[0].revision_id == 7
    assert articles_after[0].fetched_at > articles_before[0].fetched_at


def test_duplicate_texts_keep_stable_ids(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_page(session=session, checks=UNCHECKED, page=make_page(["Ibid.", "X", "Ibid."], revision_id=1))
    _, refs = snapshot(engine)
    ibid_ids = [row.id for row in sorted(refs, key=lambda row: row.position) if row.text == "Ibid."]
    with Session(engine) as session:
        result = upsert_page(
            session=session, checks=UNCHECKED, page=make_page(["Ibid.", "Ibid.", "X"], revision_id=2)
        )
    _, refs = snapshot(engine)
    assert (result.references_added, result.references_removed) == (0, 0)
    assert [row.id for row in sorted(refs, key=lambda row: row.position) if row.text == "Ibid."] == ibid_ids


def test_emptied_reference_list_moves_all_to_history_when_accepted(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_page(session=session, checks=UNCHECKED, page=make_page(["A", "B"], revision_id=1))
        result = upsert_page(session=session, checks=UNCHECKED, page=make_page([], revision_id=2))
    assert (result.references_removed, result.references_added) == (2, 0)
    assert snapshot(engine)[1] == []
    with engine.connect() as connection:
        history = connection.execute(
            text(
                "SELECT text, last_seen_revision_id, removed_revision_id FROM reference_history ORDER BY position"
            )
        ).all()
    assert [tuple(row) for row in history] == [("A", 1, 2), ("B", 1, 2)]


def test_stored_revisions_reports_only_known_titles_of_that_wiki(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_page(session=session, checks=UNCHECKED, page=make_page(["A"], revision_id=11, title="Duck"))
        upsert_page(session=session, checks=UNCHECKED, page=make_page(["A"], revision_id=12, title="Goose"))
        other_wiki = PageRecord(wiki="de.wikipedia.org", title="Swan", revision_id=13)
        upsert_page(session=session, checks=UNCHECKED, page=other_wiki)
        assert stored_revisions(
            session=session, wiki="en.wikipedia.org", titles=["Duck", "Goose", "Swan", "Nope"]
        ) == {
            "Duck": 11,
            "Goose": 12,
        }
        assert stored_revisions(session=session, wiki="en.wikipedia.org", titles=[]) == {}


def test_loaded_database_holds_every_shared_page(loaded_database_url: str) -> None:
    with (SHARED_WIKIPEDIA / "MANIFEST.tsv").open(encoding="utf-8") as handle:
        expected = {
            row["title"]: int(row["n_cite_note_li_parsed"])
            for row in csv.DictReader(handle, delimiter="\t")
            if row["file"].startswith("pages/")
        }
    engine = create_engine(sqlalchemy_url(loaded_database_url))
    try:
        with engine.connect() as connection:
            stored = dict(
                connection.execute(
                    text(
                        "SELECT a.title, count(r.id) FROM articles a "
                        "LEFT JOIN article_references r ON r.article_id = a.id GROUP BY a.title"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    assert stored == expected
    assert sum(stored.values()) == 13_992


def test_lead_is_stored_and_a_changed_lead_updates_only_the_article(engine: Engine) -> None:
    with Session(engine) as session:
        first = upsert_page(
            session=session, page=make_page(["A", "B"], lead="Ducks quack.", short_description="Bird")
        )
        again = upsert_page(
            session=session, page=make_page(["A", "B"], lead="Ducks quack.", short_description="Bird")
        )
    assert (first.status, again.status) == ("new", "unchanged")
    _, refs_before = snapshot(engine)
    with Session(engine) as session:
        # Same revision, same references, another lead (an extraction fix, or a lead-only edit).
        edited = upsert_page(session=session, page=make_page(["A", "B"], lead="Ducks are birds."))
    assert (edited.status, edited.references_added, edited.references_removed) == ("updated", 0, 0)
    _, refs_after = snapshot(engine)
    assert refs_after == refs_before
    with engine.connect() as connection:
        assert connection.execute(
            text("SELECT lead, short_description, lead_extracted FROM articles")
        ).one() == (
            "Ducks are birds.",
            None,
            True,
        )


def test_an_article_stored_before_leads_is_fetched_once_more_at_the_same_revision(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_page(session=session, page=make_page(["A"], revision_id=11, title="Duck"))
        # What migration 0003 leaves on the rows that existed before it.
        session.execute(text("UPDATE articles SET lead_extracted = false"))
        session.commit()
        assert stored_revisions(session=session, wiki="en.wikipedia.org", titles=["Duck"]) == {}
        refilled = upsert_page(
            session=session, page=make_page(["A"], revision_id=11, title="Duck", lead="A bird.")
        )
        assert refilled.status == "updated"
        assert stored_revisions(session=session, wiki="en.wikipedia.org", titles=["Duck"]) == {"Duck": 11}
        # A page without a lead is extracted too: it is not fetched again.
        upsert_page(session=session, page=make_page(["A"], revision_id=12, title="List of ducks"))
        assert stored_revisions(session=session, wiki="en.wikipedia.org", titles=["List of ducks"]) == {
            "List of ducks": 12
        }
