"""The SQL interface (schema wikiref) on real pages embedded with the base model (tests.conftest slice)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from wikiref.db import search
from wikiref.db.engine import make_engine


@pytest.fixture
def session(embedded_database_url: str):
    engine = make_engine(embedded_database_url)
    with Session(engine) as session:
        yield session
    engine.dispose()


def _titles(session: Session) -> list[str]:
    return list(session.scalars(text("SELECT title FROM articles ORDER BY md5(title)")))


def test_each_function_returns_its_documented_columns(session: Session) -> None:
    title = _titles(session)[0]
    reference_id = session.scalar(text("SELECT min(id) FROM article_references"))
    vector = np.asarray(
        session.scalar(
            text("SELECT embedding::text FROM reference_embeddings WHERE reference_id = :id"),
            {"id": reference_id},
        )
        .strip("[]")
        .split(","),
        dtype=np.float32,
    )
    expected = {
        "similar_references": (
            dict(title=title),
            [
                "reference_id",
                "article_title",
                "reference_text",
                "similarity",
                "score",
                "words",
                "names_article",
                "hubness",
            ],
        ),
        "similar_articles": (
            dict(title=title),
            ["article_id", "article_title", "similarity", "article_lead", "score", "words"],
        ),
        "articles_for_reference": (
            dict(reference_id=reference_id),
            [
                "article_id",
                "article_title",
                "similarity",
                "is_own_article",
                "article_lead",
                "score",
                "words",
                "vote",
            ],
        ),
        "search_vector": (
            dict(query=vector),
            ["reference_id", "article_id", "article_title", "reference_text", "similarity"],
        ),
        "search_text": (
            dict(query="journal", query_embedding=vector),
            ["reference_id", "article_title", "reference_text", "score", "similarity", "words"],
        ),
    }
    for function, (params, columns) in expected.items():
        result = search.run(session=session, function=function, k=7, model_version=None, **params)
        assert result.columns == columns, function
        assert len(result.rows) == 7, function
    # The reference searched with its own vector comes first, at similarity 1.
    first = search.run(session=session, function="search_vector", query=vector, k=3, model_version=None).rows[
        0
    ]
    assert first[0] == reference_id and first[-1] == pytest.approx(1.0, abs=1e-5)


def test_results_are_ordered_by_score_and_similar_articles_leave_the_article_out(
    session: Session,
) -> None:
    for title in _titles(session)[:5]:
        references = search.run(
            session=session, function="similar_references", title=title, k=10, model_version=None
        )
        scores = [row[4] for row in references.rows]
        assert scores == sorted(scores, reverse=True)
        embeddings_alone = search.run(
            session=session,
            function="similar_references",
            title=title,
            k=10,
            model_version=None,
            fusion=False,
        )
        similarities = [row[3] for row in embeddings_alone.rows]
        assert similarities == sorted(similarities, reverse=True)
        for fusion in (True, False):
            articles = search.run(
                session=session,
                function="similar_articles",
                title=title,
                k=10,
                model_version=None,
                fusion=fusion,
            )
            assert title not in [row[1] for row in articles.rows]
            assert len(articles.rows) == 10


def test_an_articles_own_references_dominate_its_top_10(session: Session) -> None:
    titles = _titles(session)
    own = []
    for title in titles:
        rows = search.run(
            session=session, function="similar_references", title=title, k=10, model_version=None
        ).rows
        own.append(sum(row[1] == title for row in rows))
    # 40 articles with 1,200-odd references: by chance a title would own 10 * 1/40 of its top 10.
    assert np.mean(own) >= 6, own
    assert sum(count >= 5 for count in own) >= 0.7 * len(titles), own


def test_articles_for_reference_finds_the_reference_s_own_article(session: Session) -> None:
    reference_ids = list(
        session.scalars(text("SELECT id FROM article_references ORDER BY md5(id::text) LIMIT 60"))
    )
    hits = 0
    for reference_id in reference_ids:
        rows = search.run(
            session=session,
            function="articles_for_reference",
            reference_id=reference_id,
            k=5,
            model_version=None,
        ).rows
        assert sum(row[3] for row in rows) <= 1
        hits += any(row[3] for row in rows)
    assert hits >= 0.6 * len(reference_ids)


def test_serving_version_is_the_name_and_serving_version_id_the_id(session: Session) -> None:
    name, version_id = session.execute(
        text("SELECT wikiref.serving_version(), wikiref.serving_version_id()")
    ).one()
    assert name == "base"
    assert session.scalar(text("SELECT name FROM model_versions WHERE id = :id"), {"id": version_id}) == name
    assert search.serving_version(session=session)[:2] == (version_id, name)


def test_hnsw_recall_at_10_against_exact_search(session: Session) -> None:
    version = session.scalar(text("SELECT wikiref.serving_version_id()"))
    recalls = []
    for title in _titles(session)[:20]:
        approximate = [
            row[0]
            for row in search.run(
                session=session,
                function="similar_references",
                title=title,
                k=10,
                model_version=None,
                fusion=False,
            ).rows
        ]
        exact = list(
            session.scalars(
                text(
                    "SELECT e.reference_id FROM reference_embeddings e, title_embeddings t JOIN articles a "
                    "ON a.id = t.article_id WHERE a.title = :title AND t.model_version_id = :v "
                    "AND e.model_version_id = :v ORDER BY e.embedding <=> t.embedding LIMIT 10"
                ),
                {"title": title, "v": version},
            )
        )
        recalls.append(len(set(approximate) & set(exact)) / 10)
    assert np.mean(recalls) >= 0.95


def test_explain_shows_the_version_s_hnsw_index(session: Session) -> None:
    version = session.scalar(text("SELECT wikiref.serving_version_id()"))
    query = np.ones(384, dtype=np.float32) / np.sqrt(384)
    for target, table in (("references", "reference_embeddings"), ("articles", "title_embeddings")):
        plan = search.explain(session=session, target=target, version_id=version, query=query, k=10)
        assert f"Index Scan using ix_{table}_hnsw_v{version}" in plan, plan


def test_free_text_search_fuses_words_and_vectors(session: Session) -> None:
    reference_id, reference_text = session.execute(
        text(
            "SELECT id, text FROM article_references WHERE length(text) BETWEEN 80 AND 200 ORDER BY md5(text) LIMIT 1"
        )
    ).one()
    words_alone = search.run(
        session=session,
        function="search_text",
        query=reference_text,
        query_embedding=None,
        k=5,
        model_version=None,
    )
    assert words_alone.rows[0][0] == reference_id
    assert all(row[4] is None for row in words_alone.rows)  # no similarity without an embedding
    bm25 = [row[5] for row in words_alone.rows]
    assert bm25 == sorted(bm25, reverse=True) and bm25[0] > bm25[1]
    vector = np.asarray(
        session.scalar(
            text("SELECT embedding::text FROM reference_embeddings WHERE reference_id = :id"),
            {"id": reference_id},
        )
        .strip("[]")
        .split(","),
        dtype=np.float32,
    )
    fused = search.run(
        session=session,
        function="search_text",
        query=reference_text,
        query_embedding=vector,
        k=5,
        model_version=None,
    )
    top = fused.rows[0]
    assert top[0] == reference_id and top[4] == pytest.approx(1.0, abs=1e-5) and top[5] == bm25[0]
    scores = [row[3] for row in fused.rows]
    assert scores == sorted(scores, reverse=True)
    # fusion => false: the embedding alone, as search_vector answers.
    alone = search.run(
        session=session,
        function="search_text",
        query=reference_text,
        query_embedding=vector,
        k=5,
        model_version=None,
        fusion=False,
    )
    nearest = search.run(session=session, function="search_vector", query=vector, k=5, model_version=None)
    assert [(row[0], row[4]) for row in alone.rows] == [(row[0], row[4]) for row in nearest.rows]


@pytest.mark.parametrize(
    ("function", "params", "message"),
    [
        ("similar_references", dict(title="No Such Article", k=10), "unknown article title: No Such Article"),
        ("similar_articles", dict(title="No Such Article", k=10), "unknown article title"),
        ("similar_references", dict(title="Microsoft", k=0), "k must be a positive number of results, got 0"),
        ("similar_articles", dict(title="Microsoft", k=-3), "k must be a positive number of results, got -3"),
        ("articles_for_reference", dict(reference_id=-1, k=10), "unknown reference id: -1"),
        ("articles_for_reference", dict(reference_id=1, k=0), "k must be a positive"),
        ("search_vector", dict(query=np.ones(384), k=0), "k must be a positive"),
        ("search_text", dict(query="   ", query_embedding=None, k=10), "the search text is empty"),
        ("search_text", dict(query="ray", query_embedding=None, k=0), "k must be a positive"),
    ],
)
def test_bad_input_raises_a_clear_error(session: Session, function: str, params: dict, message: str) -> None:
    with pytest.raises(search.QueryError, match=message):
        search.run(session=session, function=function, model_version=None, **params)


def test_unknown_and_retired_versions_are_refused(session: Session) -> None:
    title = _titles(session)[0]
    with pytest.raises(search.QueryError, match="unknown model version: nope"):
        search.run(session=session, function="similar_references", title=title, k=3, model_version="nope")
    session.execute(
        text("INSERT INTO model_versions (name, base_model, status) VALUES ('old', 'm', 'retired')")
    )
    session.commit()
    with pytest.raises(search.QueryError, match="model version old is retired"):
        search.run(session=session, function="similar_references", title=title, k=3, model_version="old")


def test_titles_resolve_through_underscores_redirects_and_case(session: Session) -> None:
    title = (
        "Go (programming language)"
        if "Go (programming language)" in _titles(session)
        else _titles(session)[0]
    )
    session.execute(text("UPDATE articles SET redirects = '{Golang}' WHERE title = :t"), {"t": title})
    session.commit()
    expected = search.run(
        session=session, function="similar_references", title=title, k=3, model_version=None
    ).rows
    for alias in (title.replace(" ", "_"), title.upper(), "Golang"):
        rows = search.run(
            session=session, function="similar_references", title=alias, k=3, model_version=None
        ).rows
        assert rows == expected, alias


def test_functions_that_return_articles_return_their_lead(session: Session) -> None:
    title = _titles(session)[0]
    leads = dict(session.execute(text("SELECT id, lead FROM articles")).all())
    assert sum(lead is not None for lead in leads.values()) >= len(leads) - 2  # the slice's pages have leads
    similar = search.run(session=session, function="similar_articles", title=title, k=5, model_version=None)
    assert [row[3] for row in similar.rows] == [leads[row[0]] for row in similar.rows]
    assert any(row[3] for row in similar.rows)
    reference_id = session.scalar(text("SELECT min(id) FROM article_references"))
    owners = search.run(
        session=session, function="articles_for_reference", reference_id=reference_id, k=5, model_version=None
    )
    assert [row[4] for row in owners.rows] == [leads[row[0]] for row in owners.rows]


def test_search_text_finds_a_reference_by_a_word_it_alone_holds(session: Session) -> None:
    reference_id, article_title = session.execute(
        text(
            "SELECT r.id, a.title FROM article_references r JOIN articles a ON a.id = r.article_id "
            "ORDER BY md5(r.text) LIMIT 1 OFFSET 3"
        )
    ).one()
    session.execute(
        text("UPDATE article_references SET text = text || ' zyxquorbite' WHERE id = :id"),
        {"id": reference_id},
    )
    found = search.run(
        session=session,
        function="search_text",
        query="zyxquorbite",
        query_embedding=None,
        k=5,
        model_version=None,
    )
    assert [(row[0], row[1]) for row in found.rows] == [(reference_id, article_title)]
