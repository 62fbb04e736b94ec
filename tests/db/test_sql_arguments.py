"""The SQL functions refuse bad arguments in one line (issue 12, item 7; migration 0006), on a real database
holding the shared pages and a small hand-made version (random unit vectors) so that nothing needs a model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from wikiref.db import search
from wikiref.db.engine import make_engine

VERSION = "hand-made"


@pytest.fixture
def session(loaded_database_url: str) -> Iterator[Session]:
    engine = make_engine(loaded_database_url)
    with Session(engine) as session:
        version_id = session.scalar(
            text(
                "INSERT INTO model_versions (name, base_model, status, activated_at) "
                "VALUES (:name, 'm', 'active', now()) RETURNING id"
            ),
            {"name": VERSION},
        )
        rows = session.execute(
            text("SELECT id, content_hash FROM article_references ORDER BY id LIMIT 200")
        ).all()
        vectors = np.random.default_rng(7).normal(size=(len(rows), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        session.execute(
            text(
                "INSERT INTO reference_embeddings (model_version_id, reference_id, content_hash, embedding) "
                "VALUES (:version, :id, :hash, CAST(:vector AS vector))"
            ),
            [
                {"version": version_id, "id": ref_id, "hash": content_hash, "vector": str(vector.tolist())}
                for (ref_id, content_hash), vector in zip(rows, vectors, strict=True)
            ],
        )
        session.execute(
            text("INSERT INTO embedding_states (model_version_id, completed_at) VALUES (:v, now())"),
            {"v": version_id},
        )
        session.execute(
            text("INSERT INTO model_versions (name, base_model, status) VALUES ('old', 'm', 'retired')")
        )
        session.commit()
        yield session
    engine.dispose()


def query_error(session: Session, function: str, **params) -> str:
    with pytest.raises(search.QueryError) as raised:
        search.run(session=session, function=function, **params)
    return str(raised.value)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            "candidates => 0",
            "candidates must be a number of rows per signal from 1 to 1000 (100 is usual), got 0",
        ),
        (
            "candidates => -5",
            "candidates must be a number of rows per signal from 1 to 1000 (100 is usual), got -5",
        ),
        (
            "candidates => NULL",
            "candidates must be a number of rows per signal from 1 to 1000 (100 is usual), got NULL",
        ),
        (
            "candidates => 1001",
            "candidates must be a number of rows per signal from 1 to 1000 (100 is usual), got 1001",
        ),
        ("fusion => NULL", "fusion must be true (fused signals) or false (the embeddings alone), got NULL"),
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        "wikiref.similar_references((SELECT min(title) FROM articles), 5, {})",
        "wikiref.similar_articles((SELECT min(title) FROM articles), 5, {})",
        "wikiref.articles_for_reference((SELECT min(id) FROM article_references), 5, {})",
        "wikiref.search_text('journal', NULL, 5, {})",
    ],
)
def test_fused_functions_refuse_bad_candidates_and_fusion(
    session: Session, call: str, arguments: str, message: str
) -> None:
    with pytest.raises(Exception) as raised:
        session.execute(text("SELECT * FROM " + call.format(arguments)))
    session.rollback()
    assert message in str(raised.value).splitlines()[0]


def test_search_text_without_an_embedding_cannot_skip_fusion(session: Session) -> None:
    with pytest.raises(Exception) as raised:
        session.execute(text("SELECT * FROM wikiref.search_text('journal', fusion => false)"))
    session.rollback()
    assert "fusion => false ranks by the embeddings alone: pass a query_embedding" in str(raised.value)
    assert session.execute(text("SELECT count(*) FROM wikiref.search_text('journal', k => 5)")).scalar() == 5


def test_full_text_search_refuses_unknown_and_retired_versions(session: Session) -> None:
    assert (
        len(
            search.run(
                session=session,
                function="search_text",
                query="journal",
                query_embedding=None,
                k=3,
                model_version=None,
            ).rows
        )
        == 3
    )
    assert "unknown model version: nope" in query_error(
        session, "search_text", query="journal", query_embedding=None, k=3, model_version="nope"
    )
    assert "model version old is retired" in query_error(
        session, "search_text", query="journal", query_embedding=None, k=3, model_version="old"
    )
    named = search.run(
        session=session,
        function="search_text",
        query="journal",
        query_embedding=None,
        k=3,
        model_version=VERSION,
    )
    assert len(named.rows) == 3


def test_zero_vectors_are_refused_not_nan(session: Session) -> None:
    zero = np.zeros(384, dtype=np.float32)
    message = "is all zeros: it has no direction to compare (encode a text with the model version's encoder)"
    assert (
        query_error(session, "search_vector", query=zero, k=3, model_version=None)
        == f"the query vector {message}"
    )
    assert (
        query_error(session, "search_text", query="journal", query_embedding=zero, k=3, model_version=None)
        == f"the query embedding {message}"
    )
    unit = np.zeros(384, dtype=np.float32)
    unit[0] = 1.0
    similarities = [
        row[-1]
        for row in search.run(
            session=session, function="search_vector", query=unit, k=5, model_version=None
        ).rows
    ]
    assert len(similarities) == 5 and not any(np.isnan(similarities))


@pytest.mark.parametrize("value", ["abc", "0", "1001", "99999999999", "-5", "1e3"])
def test_a_bad_ef_search_setting_is_named(session: Session, value: str) -> None:
    session.execute(text("SELECT set_config('wikiref.ef_search', :v, false)"), {"v": value})
    unit = np.full(384, 1 / np.sqrt(384), dtype=np.float32)
    message = query_error(session, "search_vector", query=unit, k=3, model_version=None)
    assert message == (
        f"wikiref.ef_search must be a whole number from 1 to 1000, got {value} "
        "(SET wikiref.ef_search = 200 (more: better recall, slower), or RESET wikiref.ef_search)"
    )
    session.execute(text("SELECT set_config('wikiref.ef_search', '200', false)"))
    assert (
        len(search.run(session=session, function="search_vector", query=unit, k=3, model_version=None).rows)
        == 3
    )


def test_errors_echo_at_most_80_characters_of_the_input(session: Session) -> None:
    huge = "x" * 1_000_000
    for statement in (
        "SELECT wikiref.find_article(:v)",
        "SELECT wikiref.resolve_version(:v)",
        "SELECT * FROM wikiref.similar_references(:v)",
    ):
        with pytest.raises(Exception) as raised:
            session.execute(text(statement), {"v": huge})
        session.rollback()
        first = str(raised.value).splitlines()[0]
        assert len(first) < 200 and "x" * 79 + "…" in first, first


def test_search_text_caps_the_query_in_sql_too(session: Session) -> None:
    words = " ".join(["cat"] * 24_000)
    with pytest.raises(Exception) as raised:
        session.execute(text("SELECT * FROM wikiref.search_text(:q)"), {"q": words})
    assert "the search text has 95999 characters; at most 4000 are searched" in str(raised.value)
    assert "stack depth" not in str(raised.value)


def sql_error(session: Session, statement: str) -> str:
    with pytest.raises(DBAPIError) as raised:
        session.execute(text(statement)).all()
    session.rollback()
    return str(raised.value.orig).splitlines()[0]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELECT * FROM wikiref.reference_changes(NULL)", "since must be a time, got NULL"),
        ("SELECT * FROM wikiref.reference_changes(NULL, 'Microsoft')", "since must be a time, got NULL"),
        (
            "SELECT * FROM wikiref.reference_changes('2020-01-01', 'No Such Article')",
            "unknown article title: No Such Article",
        ),
        ("SELECT * FROM wikiref.reference_changes('2020-01-01', '  ')", "an article title is required"),
    ],
)
def test_reference_changes_refuses_what_would_answer_nothing_silently(
    session: Session, statement: str, message: str
) -> None:
    """Issue 27, item 13 (migration 0009): before, each of these returned no rows."""
    assert sql_error(session, statement) == message


def test_reference_changes_still_answers_for_a_title_and_for_all(session: Session) -> None:
    title = session.scalar(text("SELECT title FROM articles ORDER BY id LIMIT 1"))
    everything = session.execute(text("SELECT article FROM wikiref.reference_changes('2000-01-01')")).all()
    one = session.execute(
        text("SELECT DISTINCT article FROM wikiref.reference_changes('2000-01-01', :title)"), {"title": title}
    ).all()
    # Underscores and a lower-case first letter find the article, as in the other functions.
    variant = session.execute(
        text("SELECT count(*) FROM wikiref.reference_changes('2000-01-01', :title)"),
        {"title": title[0].lower() + title[1:].replace(" ", "_")},
    ).scalar_one()
    assert len(everything) > 1000 and [row.article for row in one] == [title] and variant > 0


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELECT * FROM wikiref.bm25_references(NULL, ARRAY[1])", "query must be a text, got NULL"),
        (
            "SELECT * FROM wikiref.bm25_references('cat', NULL)",
            "reference_ids must be an array of reference ids, got NULL",
        ),
        ("SELECT * FROM wikiref.bm25_articles(NULL, ARRAY[1])", "query must be a text, got NULL"),
        (
            "SELECT * FROM wikiref.bm25_articles('cat', NULL)",
            "article_ids must be an array of article ids, got NULL",
        ),
    ],
)
def test_bm25_functions_refuse_nulls(session: Session, statement: str, message: str) -> None:
    """Issue 27, item 13 (migration 0011): before, a NULL query or id array answered nothing, silently."""
    assert sql_error(session, statement) == message


def test_bm25_functions_still_score_the_given_ids(session: Session) -> None:
    reference_id, words = session.execute(
        text("SELECT id, text FROM article_references ORDER BY id LIMIT 1")
    ).one()
    scores = dict(
        session.execute(
            text("SELECT * FROM wikiref.bm25_references(:query, ARRAY[:id, :id + 1])"),
            {"query": words, "id": reference_id},
        ).all()
    )
    assert set(scores) == {reference_id, reference_id + 1} and scores[reference_id] > 0
    assert session.execute(text("SELECT count(*) FROM wikiref.bm25_articles('cat', '{}')")).scalar_one() == 0
