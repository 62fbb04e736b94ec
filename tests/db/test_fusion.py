"""Fused SQL functions (issue 25, migration 0008): embeddings + BM25 words (+ the vote of an article's own
references), z-normalised over the candidates and weighted per model version.

A hand-made corpus with hand-made unit vectors makes every order obvious: ``e(i)`` is the i-th basis vector and
``toward(c, i, j)`` a unit vector at cosine ``c`` to ``e(i)`` (and at ``c * c'`` to another such vector).
Article "Asafa Powell" (embedding e0) owns two references: one its words name but its embedding misses
(``NAMED``, cosine 0.3, below every distractor), one its embedding finds but no word names (``UNNAMED``, 0.95).
"""

from __future__ import annotations

import copy
import importlib.util
import math
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tests.conftest import REPO_ROOT
from wikiref.db import embeddings, registry, search
from wikiref.db.engine import make_engine
from wikiref.db.lexical import refresh_lexical_statistics
from wikiref.db.schema import ArticleReference

VERSION = "hand-made"
NAMED = "Powell, Asafa (2006). Asafa Powell equals the 100 m world record in Gateshead."
UNNAMED = "Track results of the season, 2005."
DEFAULT_WEIGHTS = {
    "similar_references": {"words": 0.2, "hubness": 0.75},
    "articles_for_reference": {"words": 0.3, "vote": 2.0},
    "similar_articles": {"words": 0.0},
    "search_text": {"words": 0.3},
}


def e(i: int) -> np.ndarray:
    vector = np.zeros(384, dtype=np.float64)
    vector[i] = 1.0
    return vector


def toward(cosine: float, i: int, j: int) -> np.ndarray:
    return cosine * e(i) + math.sqrt(1 - cosine**2) * e(j)


def _insert_article(session: Session, title: str, lead: str, vector: np.ndarray) -> int:
    article_id = session.scalar(
        text("INSERT INTO articles (wiki, title, lead) VALUES ('w', :t, :l) RETURNING id"),
        {"t": title, "l": lead},
    )
    session.execute(
        text(
            "INSERT INTO title_embeddings (model_version_id, article_id, title, embedding) "
            "SELECT id, :a, :t, CAST(:v AS vector) FROM model_versions WHERE name = :name"
        ),
        {"a": article_id, "t": title, "v": str(vector.tolist()), "name": VERSION},
    )
    return article_id


def _insert_reference(session: Session, article_id: int, position: int, body: str, vector: np.ndarray) -> int:
    reference_id = session.scalar(
        text(
            "INSERT INTO article_references (article_id, position, text, content_hash) "
            "VALUES (:a, :p, :t, md5(:t)) RETURNING id"
        ),
        {"a": article_id, "p": position, "t": body},
    )
    session.execute(
        text(
            "INSERT INTO reference_embeddings (model_version_id, reference_id, content_hash, embedding) "
            "SELECT id, :r, md5(:t), CAST(:v AS vector) FROM model_versions WHERE name = :name"
        ),
        {"r": reference_id, "t": body, "v": str(vector.tolist()), "name": VERSION},
    )
    return reference_id


@pytest.fixture
def corpus(database_url: str) -> Iterator[tuple[Session, dict[str, int]]]:
    engine = make_engine(database_url)
    with Session(engine) as session:
        version_id = session.scalar(
            text(
                "INSERT INTO model_versions (name, base_model, status, activated_at) "
                "VALUES (:name, 'm', 'active', now()) RETURNING id"
            ),
            {"name": VERSION},
        )
        session.execute(
            text("INSERT INTO embedding_states (model_version_id, completed_at) VALUES (:v, now())"),
            {"v": version_id},
        )
        ids = {"version": version_id}
        ids["powell"] = _insert_article(session, "Asafa Powell", "Jamaican sprinter.", e(0))
        ids["named"] = _insert_reference(session, ids["powell"], 0, NAMED, toward(0.3, 0, 1))
        ids["unnamed"] = _insert_reference(session, ids["powell"], 1, UNNAMED, toward(0.95, 0, 2))
        # An article whose words match UNNAMED's but whose embedding is near no query.
        ids["season"] = _insert_article(session, "Season results", "Track season results of 2005.", e(3))
        # Distractors: their titles near NAMED's embedding (cosine 0.57), their references near the Powell
        # article's (cosine 0.40-0.59), no word in common with anything above.
        for n in range(4):
            filler = _insert_article(session, f"Garden {n}", "Compost and hedges.", toward(0.6, 1, 20 + n))
            for position in range(5):
                index = 5 * n + position
                _insert_reference(
                    session,
                    filler,
                    position,
                    f"Annual report {index} on gardening.",
                    toward(0.40 + 0.01 * index, 0, 100 + index),
                )
        session.commit()
        refresh_lexical_statistics(session=session)
        yield session, ids
    engine.dispose()


def _set_weights(session: Session, version_id: int, function: str, **signals: float) -> None:
    weights = copy.deepcopy(DEFAULT_WEIGHTS)
    weights[function].update(signals)
    registry.set_fusion_weights(session=session, version_id=version_id, weights=weights)


def _references(session: Session, **arguments) -> list[int]:
    rows = search.run(
        session=session,
        function="similar_references",
        title="Asafa Powell",
        k=2,
        model_version=None,
        **arguments,
    ).rows
    return [row[0] for row in rows]


def _owner(session: Session, reference_id: int, **arguments) -> tuple:
    return search.run(
        session=session,
        function="articles_for_reference",
        reference_id=reference_id,
        k=6,
        model_version=None,
        **arguments,
    ).rows[0]


def test_similar_references_fuses_what_embeddings_miss_and_what_words_miss(corpus) -> None:
    session, ids = corpus
    _set_weights(session, ids["version"], "similar_references", words=0.6)
    # The embeddings alone find UNNAMED and a distractor; NAMED comes last of all.
    assert _references(session, fusion=False)[0] == ids["unnamed"]
    assert ids["named"] not in _references(session, fusion=False)
    # The words alone (search_text with the article's title + lead) find NAMED, never UNNAMED.
    words = search.run(
        session=session,
        function="search_text",
        query="Asafa Powell Jamaican sprinter.",
        query_embedding=None,
        k=5,
        model_version=None,
    ).rows
    assert [row[0] for row in words] == [ids["named"]]
    # Fused: both.
    assert _references(session) == [ids["unnamed"], ids["named"]]


def test_articles_for_reference_fuses_both_ways_and_the_query_never_votes(corpus) -> None:
    session, ids = corpus
    _set_weights(session, ids["version"], "articles_for_reference", words=0.6, vote=0.0)
    # NAMED: its embedding points at the gardens (cosine 0.57 vs 0.3), its words at Asafa Powell.
    assert _owner(session, ids["named"], fusion=False)[1].startswith("Garden")
    named = _owner(session, ids["named"])
    assert (named[0], named[3]) == (ids["powell"], True)
    assert named[6] > 0  # words
    # UNNAMED: its embedding points at Asafa Powell, its words at "Season results".
    assert _owner(session, ids["unnamed"], fusion=False)[0] == ids["powell"]
    words_only = search.run(
        session=session, function="search_text", query=UNNAMED, query_embedding=None, k=1, model_version=None
    )
    assert words_only.rows[0][0] == ids["unnamed"]  # (the reference's own words; the article's below)
    assert (
        session.scalar(
            text(
                "SELECT article_id FROM wikiref.bm25_articles(:q, CAST(:ids AS bigint[])) ORDER BY score DESC LIMIT 1"
            ),
            {"q": UNNAMED, "ids": [ids["powell"], ids["season"]]},
        )
        == ids["season"]
    )
    assert _owner(session, ids["unnamed"])[0] == ids["powell"]
    # The vote of its own article comes from its sibling (cosine 0.3 * 0.95), never from itself (1.0).
    rows = search.run(
        session=session, function="articles_for_reference", reference_id=ids["named"], k=6, model_version=None
    ).rows
    votes = {row[0]: row[7] for row in rows}
    assert votes[ids["powell"]] == pytest.approx(0.3 * 0.95, abs=1e-5)
    assert votes[ids["season"]] is None  # no reference of its own to vote
    assert sum(row[3] for row in rows) == 1 and [row[0] for row in rows if row[3]] == [ids["powell"]]


def test_weights_are_stored_per_version_and_change_the_order(corpus) -> None:
    session, ids = corpus
    assert registry.fusion_weights(session=session, version_id=ids["version"]) == DEFAULT_WEIGHTS
    other = session.scalar(
        text("INSERT INTO model_versions (name, base_model) VALUES ('other', 'm') RETURNING id")
    )
    session.commit()
    _set_weights(session, ids["version"], "similar_references", words=0.0)
    assert ids["named"] not in _references(session)
    _set_weights(session, ids["version"], "similar_references", words=0.6)
    assert _references(session) == [ids["unnamed"], ids["named"]]
    assert registry.fusion_weights(session=session, version_id=other) == DEFAULT_WEIGHTS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda w: w.pop("search_text"), "need exactly the functions"),
        (lambda w: w.update(nearest={"words": 1.0}), "need exactly the functions"),
        (lambda w: w["similar_references"].update(vote=1.0), "need exactly the signals"),
        (lambda w: w["articles_for_reference"].update(vote=-0.1), "must be a finite number of 0 or more"),
        (lambda w: w["search_text"].update(words=float("nan")), "must be a finite number of 0 or more"),
        (lambda w: w["search_text"].update(words="0.3"), "must be a finite number of 0 or more"),
    ],
)
def test_set_fusion_weights_refuses_a_bad_shape(corpus, change, message: str) -> None:
    session, ids = corpus
    weights = copy.deepcopy(DEFAULT_WEIGHTS)
    change(weights)
    with pytest.raises(registry.RegistryError, match=message):
        registry.set_fusion_weights(session=session, version_id=ids["version"], weights=weights)
    assert registry.fusion_weights(session=session, version_id=ids["version"]) == DEFAULT_WEIGHTS


def _bm25_by_hand(session: Session, query: str, table: str, title: str = "") -> dict[int, float]:
    """BM25 (k1 1.2, b 0.75, idf ln(1 + (N - df + 0.5) / (df + 0.5)), length: distinct lexemes) over the
    stored lexemes, in Python; a lexeme of ``title`` (an article's, whose lexemes are also in ``query``) counts
    three times."""
    rows = session.execute(
        text(f"SELECT x.id, u.lexeme, cardinality(u.positions) FROM {table} x, unnest(x.lexemes) u")
    ).all()
    documents: dict[int, Counter] = {}
    for document, lexeme, count in rows:
        documents.setdefault(document, Counter())[lexeme] = count
    for document in session.scalars(text(f"SELECT id FROM {table}")):
        documents.setdefault(document, Counter())
    average = sum(len(c) for c in documents.values()) / len(documents)
    frequency = Counter(lexeme for c in documents.values() for lexeme in c)

    def lexemes(words: str) -> set[str]:
        return set(session.scalar(text("SELECT tsvector_to_array(to_tsvector('english', :q))"), {"q": words}))

    terms, titled = lexemes(query), lexemes(title)
    scores = {}
    for document, counts in documents.items():
        length = len(counts)
        score = 0.0
        for term in terms & set(counts):
            idf = math.log(1 + (len(documents) - frequency[term] + 0.5) / (frequency[term] + 0.5))
            score += (
                (3 if term in titled else 1)
                * idf
                * counts[term]
                * 2.2
                / (counts[term] + 1.2 * (0.25 + 0.75 * length / average))
            )
        scores[document] = score
    return scores


def test_bm25_functions_score_as_computed_by_hand_and_return_every_id(corpus) -> None:
    session, ids = corpus
    reference_ids = list(session.scalars(text("SELECT id FROM article_references")))
    query = "Asafa Powell: track season"
    served = search.bm25_references(session=session, query=query, reference_ids=[*reference_ids, -1])
    assert set(served) == set(reference_ids)
    expected = _bm25_by_hand(session, query, "article_references")
    assert served == pytest.approx(expected, rel=1e-5)
    assert (
        sum(score == 0 for score in served.values()) == 20
        and min(served[ids["named"]], served[ids["unnamed"]]) > 0
    )
    article_ids = list(session.scalars(text("SELECT id FROM articles")))
    served_articles = search.bm25_articles(session=session, query=UNNAMED, article_ids=article_ids)
    assert served_articles == pytest.approx(_bm25_by_hand(session, UNNAMED, "articles"), rel=1e-5)
    # The words column of a fused call: the article's title and lead, its title's words counted three times.
    rows = search.run(
        session=session, function="similar_references", title="Asafa Powell", k=22, model_version=None
    ).rows
    expected = _bm25_by_hand(
        session, "Asafa Powell Jamaican sprinter.", "article_references", title="Asafa Powell"
    )
    assert {row[0]: row[5] for row in rows} == pytest.approx(
        {row[0]: expected[row[0]] for row in rows}, rel=1e-9
    )


def test_an_articles_title_words_count_three_times_as_it_matches_references(corpus) -> None:
    """A reference naming the article's subject outranks, on its words, one that shares a word of its lead as rare
    and as often: the article's query labels its title's lexemes (wikiref.article_words), and BM25 counts those
    three times. A query without labels (any text) counts every lexeme once."""
    session, ids = corpus
    subject = _insert_reference(session, ids["season"], 9, "Powell.", e(50))
    lead_word = _insert_reference(session, ids["season"], 10, "Jamaican.", e(51))
    _insert_reference(session, ids["season"], 11, "Jamaican.", e(52))
    session.commit()
    refresh_lexical_statistics(session=session, max_drift=0)
    assert session.scalar(
        text("SELECT wikiref.article_words('Asafa Powell', 'Jamaican sprinter.')::text")
    ) == ("'asafa':1A,3 'jamaican':5 'powel':2A,4 'sprinter':6")
    words = {
        row[0]: row[5]
        for row in search.run(
            session=session, function="similar_references", title="Asafa Powell", k=30, model_version=None
        ).rows
    }
    # Each word is in two references ("Powell" in NAMED too), each of these one lexeme long.
    assert words[subject] == pytest.approx(3 * words[lead_word], rel=1e-9)
    # The words' candidates count them as the scores do.
    candidates = session.execute(
        text(
            "SELECT id, score FROM wikiref.bm25_candidates('references', "
            "wikiref.article_words('Asafa Powell', 'Jamaican sprinter.'), 10)"
        )
    ).all()
    assert dict(candidates) == pytest.approx({i: words[i] for i, _ in candidates}, rel=1e-9)
    assert [i for i, _ in candidates][:2] == [ids["named"], subject]
    unlabelled = search.bm25_references(
        session=session, query="Asafa Powell Jamaican sprinter.", reference_ids=[subject, lead_word]
    )
    assert unlabelled[subject] == pytest.approx(unlabelled[lead_word], rel=1e-6)
    assert words[lead_word] == pytest.approx(unlabelled[lead_word], rel=1e-6)


def test_a_reference_that_names_the_article_is_lifted_by_a_fixed_weight(corpus) -> None:
    """A reference holding the article's title as a phrase (NAMED: "... Asafa Powell equals ...") names it: its
    fused score is the z-scores' sum plus wikiref.names_article_weight(); the same words apart name nothing."""
    session, ids = corpus
    _set_weights(session, ids["version"], "similar_references")
    apart = _insert_reference(session, ids["season"], 9, "Asafa ran; Powell won.", e(50))
    session.commit()
    refresh_lexical_statistics(session=session, max_drift=0)
    lift = session.scalar(text("SELECT wikiref.names_article_weight()"))
    assert lift == 1.0
    result = search.run(
        session=session, function="similar_references", title="Asafa Powell", k=100, model_version=None
    )
    assert result.columns[-2:] == ["names_article", "hubness"]
    rows = {row[0]: row for row in result.rows}
    assert len(rows) == session.scalar(text("SELECT count(*) FROM article_references"))
    assert {i for i, row in rows.items() if row[6]} == {ids["named"]}
    assert rows[apart][5] > 0 and not rows[apart][6]

    def z(values: np.ndarray) -> np.ndarray:
        return (values - values.mean()) / values.std()

    order = sorted(rows)
    similarity = np.array([rows[i][3] for i in order])
    words = np.array([rows[i][5] for i in order])
    named = np.array([rows[i][6] for i in order], dtype=np.float64)
    expected = z(similarity) + DEFAULT_WEIGHTS["similar_references"]["words"] * z(words) + lift * named
    assert [rows[i][4] for i in order] == pytest.approx(expected.tolist(), abs=1e-9)
    # The phrase leaves out a trailing parenthetical; a title of stop words only names nothing.
    phrases = session.execute(
        text(
            "SELECT wikiref.title_phrase('Mercury (planet)')::text, "
            "wikiref.title_phrase('Battle of the Somme')::text, wikiref.title_phrase('The Who')"
        )
    ).one()
    assert tuple(phrases) == ("'mercuri'", "'battl' <3> 'somm'", None)
    # Training's evaluation reads the same lifts.
    matrix = search.names_article_matrix(
        session=session, article_ids=[ids["powell"], ids["season"]], reference_ids=[ids["named"], apart]
    )
    assert matrix.tolist() == [[lift, 0.0], [0.0, 0.0]]


def _hubness_world(session: Session, ids: dict[str, int]) -> None:
    """Article "Usain Bolt" (e5) owns a reference at cosine 0.6 that sits near nothing else (``own``); a generic
    reference (``generic``, of "Hub 0") is nearer, 0.71, but sits as near to four "Hub" articles (0.64 each)."""
    ids["bolt"] = _insert_article(session, "Usain Bolt", "Sprinter.", e(5))
    ids["own"] = _insert_reference(session, ids["bolt"], 0, "Kingston meeting, 2008.", toward(0.6, 5, 70))
    hubs = [_insert_article(session, f"Hub {n}", "Towns.", toward(0.9, 50, 60 + n)) for n in range(4)]
    generic = (e(5) + e(50)) / math.sqrt(2)
    ids["generic"] = _insert_reference(session, hubs[0], 0, "Official website.", generic)
    session.commit()
    refresh_lexical_statistics(session=session, max_drift=0)


def test_hubness_corrects_a_reference_near_many_articles(corpus) -> None:
    """The generic reference outranks the article's own by cosine; less its hubness (the mean cosine to its ten
    nearest articles, computed by wikiref.refresh_hubness), weighted 0.75, the article's own ranks first."""
    session, ids = corpus
    _hubness_world(session, ids)

    def bolt(**weights: float) -> list[tuple]:
        _set_weights(session, ids["version"], "similar_references", words=0.0, **weights)
        rows = search.run(
            session=session, function="similar_references", title="Usain Bolt", k=2, model_version=None
        )
        return rows.rows

    assert [row[0] for row in bolt(hubness=0.75)] == [ids["generic"], ids["own"]]  # none computed yet
    articles = session.scalar(text("SELECT count(*) FROM title_embeddings"))
    assert articles == 11
    references = session.scalar(text("SELECT count(*) FROM reference_embeddings"))
    assert embeddings.refresh_hubness(session=session, version_id=ids["version"]) == references
    assert [row[0] for row in bolt(hubness=0.0)] == [ids["generic"], ids["own"]]
    rows = bolt(hubness=0.75)
    assert [row[0] for row in rows] == [ids["own"], ids["generic"]]
    # Ten nearest of the eleven articles: Bolt (0.71), the four hubs (0.9 / sqrt 2), five at 0.
    expected = {ids["generic"]: (1 / math.sqrt(2) + 4 * 0.9 / math.sqrt(2)) / 10, ids["own"]: 0.06}
    assert {row[0]: row[-1] for row in rows} == pytest.approx(expected, abs=1e-5)


def test_hubness_is_computed_again_for_a_changed_reference_only_until_the_articles_drift(corpus) -> None:
    session, ids = corpus
    _hubness_world(session, ids)
    version = ids["version"]
    references = session.scalar(text("SELECT count(*) FROM reference_embeddings"))
    assert embeddings.refresh_hubness(session=session, version_id=version) == references
    assert embeddings.refresh_hubness(session=session, version_id=version) == 0
    stored = dict(session.execute(text("SELECT reference_id, hubness FROM reference_hubness")).all())

    # A re-encoded reference (new text, new embedding) is computed again; every other keeps its value.
    session.execute(
        text(
            "UPDATE reference_embeddings SET content_hash = 'changed', embedding = CAST(:v AS vector) "
            "WHERE reference_id = :r"
        ),
        {"v": str(toward(0.9, 50, 71).tolist()), "r": ids["own"]},
    )
    session.commit()
    assert embeddings.refresh_hubness(session=session, version_id=version) == 1
    after = dict(session.execute(text("SELECT reference_id, hubness FROM reference_hubness")).all())
    assert after[ids["own"]] > stored[ids["own"]] + 0.2
    assert {r: h for r, h in after.items() if r != ids["own"]} == {
        r: h for r, h in stored.items() if r != ids["own"]
    }

    # One more article (11 -> 12) is within the drift: only the new reference; two more past it: all again.
    extra = _insert_article(session, "Hub 4", "Towns.", toward(0.9, 50, 64))
    _insert_reference(session, extra, 0, "Town hall.", toward(0.9, 50, 72))
    session.commit()
    assert embeddings.refresh_hubness(session=session, version_id=version) == 1
    for n in (5, 6):
        _insert_article(session, f"Hub {n}", "Towns.", toward(0.9, 50, 60 + n))
    session.commit()
    assert embeddings.refresh_hubness(session=session, version_id=version) == references + 1


def test_the_bm25_matrix_holds_each_querys_scores_in_the_orders_given(corpus) -> None:
    # Training's evaluation reads every article's and every reference's words in one statement per direction: the
    # same values one call of bm25_references / bm25_articles per query gives, rows and columns in the given order.
    session, _ = corpus
    reference_ids = sorted(session.scalars(text("SELECT id FROM article_references")), reverse=True)
    article_ids = sorted(session.scalars(text("SELECT id FROM articles")), reverse=True)
    queries = ["Asafa Powell: track season", UNNAMED, NAMED, "no such word anywhere", UNNAMED]
    references = search.bm25_matrix(session=session, target="references", queries=queries, ids=reference_ids)
    articles = search.bm25_matrix(session=session, target="articles", queries=queries, ids=article_ids)
    assert references.shape == (len(queries), len(reference_ids))
    assert articles.shape == (len(queries), len(article_ids))
    for row, query in enumerate(queries):
        one = search.bm25_references(session=session, query=query, reference_ids=reference_ids)
        assert references[row].tolist() == [one[reference_id] for reference_id in reference_ids]
        one = search.bm25_articles(session=session, query=query, article_ids=article_ids)
        assert articles[row].tolist() == [one[article_id] for article_id in article_ids]
    assert references[0].any() and not references[3].any()
    # The article's words, as similar_references matches them, one row per article.
    words = search.article_words_matrix(session=session, article_ids=article_ids, reference_ids=reference_ids)
    for row, article_id in enumerate(article_ids):
        title = session.scalar(text("SELECT title FROM articles WHERE id = :id"), {"id": article_id})
        served = search.run(
            session=session, function="similar_references", title=title, k=30, model_version=None
        ).rows
        assert {r[0]: r[5] for r in served} == pytest.approx(
            {r[0]: words[row, reference_ids.index(r[0])] for r in served}
        )
    with pytest.raises(ValueError, match="1 of the 2 queries are not in the database"):
        search.article_words_matrix(
            session=session, article_ids=[article_ids[0], -1], reference_ids=reference_ids
        )
    with pytest.raises(ValueError, match="unknown BM25 target"):
        search.bm25_matrix(session=session, target="titles", queries=queries, ids=article_ids)


def test_a_changed_reference_updates_its_own_lexemes_and_nothing_else(corpus) -> None:
    session, ids = corpus

    def snapshot() -> dict[str, dict]:
        return {
            "references": dict(
                session.execute(text("SELECT id, lexemes::text FROM article_references")).all()
            ),
            "articles": dict(session.execute(text("SELECT id, lexemes::text FROM articles")).all()),
            "embeddings": dict(
                session.execute(text("SELECT reference_id, embedding::text FROM reference_embeddings")).all()
            ),
            "statistics": dict(
                session.execute(text("SELECT corpus || ':' || lexeme, documents FROM lexeme_documents")).all()
            ),
        }

    before = snapshot()
    changes = session.scalar(text("SELECT coalesce(sum(documents), 0) FROM lexical_changes"))
    # As a scrape writes a changed reference (wikiref.db.articles.upsert_page).
    session.execute(
        update(ArticleReference), [{"id": ids["unnamed"], "text": "Relay results, Zyxquorbite 2005."}]
    )
    session.commit()
    after = snapshot()
    assert "'zyxquorbit'" in after["references"][ids["unnamed"]]
    del before["references"][ids["unnamed"]], after["references"][ids["unnamed"]]
    assert after == before
    assert session.scalar(text("SELECT sum(documents) FROM lexical_changes")) == changes + 1
    # One change in 22 references is under the drift threshold: no rebuild, yet the new word is found.
    refreshes = {refresh.corpus: refresh for refresh in refresh_lexical_statistics(session=session)}
    assert not refreshes["references"].rebuilt and refreshes["references"].changed == 1
    found = search.run(
        session=session,
        function="search_text",
        query="zyxquorbite",
        query_embedding=None,
        k=3,
        model_version=None,
    )
    assert [row[0] for row in found.rows] == [ids["unnamed"]]
    assert refresh_lexical_statistics(session=session, max_drift=0.0)[0].rebuilt
    assert session.scalar(text("SELECT documents FROM lexeme_documents WHERE lexeme = 'zyxquorbit'")) == 1


def test_the_refresh_merges_what_writes_left_in_the_lexical_indexes_pending_lists(corpus) -> None:
    session, ids = corpus
    pending_pages = "SELECT gin_clean_pending_list(CAST(:index AS regclass))"
    indexes = ("ix_article_references_lexemes", "ix_articles_lexemes")

    def write(title: str) -> None:
        article = _insert_article(session, title, "Capital of Jamaica.", e(5))
        _insert_reference(session, article, 0, f"{title} harbour records, 1907.", e(6))
        session.commit()

    # A write leaves its new lexemes in each GIN index's pending list, which every search reads whole (0012);
    # merging it here empties it for the next step.
    write("Kingston")
    assert all(session.scalar(text(pending_pages), {"index": index}) > 0 for index in indexes)
    write("Port Royal")
    refresh_lexical_statistics(session=session)
    assert [session.scalar(text(pending_pages), {"index": index}) for index in indexes] == [0, 0]


# --- on the real slice of pages/ embedded with the base model (tests.conftest) ------------------------------


@pytest.fixture
def embedded(embedded_database_url: str) -> Iterator[Session]:
    engine = make_engine(embedded_database_url)
    with Session(engine) as session:
        yield session
    engine.dispose()


def _functions_before_0008(session: Session) -> None:
    """The definitions 0008 replaced, created in schema wikiref_before (they call the unchanged helpers)."""
    path = REPO_ROOT / "db" / "migrations" / "versions" / "0008_lexical_index_and_fusion.py"
    spec = importlib.util.spec_from_file_location("migration_0008", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    definitions = module.PREVIOUS_FUNCTIONS.split("COMMENT ON FUNCTION")[0]
    for name in ("similar_references", "similar_articles", "articles_for_reference", "search_text"):
        definitions = definitions.replace(f"FUNCTION wikiref.{name}(", f"FUNCTION wikiref_before.{name}(")
    session.execute(text("CREATE SCHEMA wikiref_before"))
    # Through psycopg itself: the bodies' % signs are format() patterns, not parameters.
    session.connection().connection.driver_connection.execute(definitions)


def test_fusion_false_returns_exactly_the_answers_of_before(embedded: Session) -> None:
    session = embedded
    _functions_before_0008(session)
    titles = list(session.scalars(text("SELECT title FROM articles ORDER BY md5(title) LIMIT 8")))
    references = list(session.scalars(text("SELECT id FROM article_references ORDER BY md5(text) LIMIT 8")))
    for title in titles:
        for function in ("similar_references", "similar_articles"):
            before = session.execute(
                text(f"SELECT * FROM wikiref_before.{function}(:t, 10)"), {"t": title}
            ).all()
            now = session.execute(
                text(f"SELECT * FROM wikiref.{function}(:t, 10, fusion => false)"), {"t": title}
            ).all()
            assert len(before) == 10
            assert [tuple(row)[: len(before[0])] for row in now] == [tuple(row) for row in before]
            assert all(value is None for row in now for value in tuple(row)[len(before[0]) :])
    for reference_id in references:
        before = session.execute(
            text("SELECT * FROM wikiref_before.articles_for_reference(:r, 10)"), {"r": reference_id}
        ).all()
        now = session.execute(
            text("SELECT * FROM wikiref.articles_for_reference(:r, 10, fusion => false)"), {"r": reference_id}
        ).all()
        assert [tuple(row)[:5] for row in now] == [tuple(row) for row in before]
    # search_text(..., fusion => false) is search_vector's answer: tests/db/test_sql_functions.py.


def test_model_version_base_is_fused_on_real_pages(embedded: Session) -> None:
    session = embedded
    title = session.scalar(text("SELECT title FROM articles ORDER BY md5(title) LIMIT 1"))
    rows = (
        session.execute(
            text("SELECT * FROM wikiref.similar_references(:t, 10, model_version => 'base')"), {"t": title}
        )
        .mappings()
        .all()
    )
    assert len(rows) == 10
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    assert all(row["words"] is not None and row["similarity"] is not None for row in rows)
    assert any(row["words"] > 0 for row in rows)
    reference_id = session.scalar(text("SELECT min(id) FROM article_references"))
    owners = (
        session.execute(
            text("SELECT * FROM wikiref.articles_for_reference(:r, 5, model_version => 'base')"),
            {"r": reference_id},
        )
        .mappings()
        .all()
    )
    assert len(owners) == 5 and all(row["vote"] is not None for row in owners)
    assert sum(row["is_own_article"] for row in owners) <= 1


def test_the_exact_vote_answers_as_the_vote_of_0008(embedded: Session) -> None:
    """0014 changed how the vote reads the voters' embeddings and 0015 how the references' search feeds the pool,
    not what they compute: with ``wikiref.vote_references`` unset, the fused articles_for_reference answers as 0008's
    function on the embedded pages, row for row, every score and part equal."""
    session = embedded
    path = REPO_ROOT / "db" / "migrations" / "versions" / "0014_fused_functions_at_1m.py"
    spec = importlib.util.spec_from_file_location("migration_0014", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = module.ARTICLES_FOR_REFERENCE.replace("VOTES", module.VOTES_0008.strip("\n") + "\n").replace(
        "FUNCTION wikiref.articles_for_reference(", "FUNCTION wikiref_before.articles_for_reference("
    )
    assert "voters AS MATERIALIZED" not in before and "votes AS (" in before
    session.execute(text("CREATE SCHEMA wikiref_before"))
    session.connection().connection.driver_connection.execute(before)
    references = list(session.scalars(text("SELECT id FROM article_references ORDER BY md5(text) LIMIT 12")))
    for reference_id in references:
        rows = {
            schema: session.execute(
                text(f"SELECT * FROM {schema}.articles_for_reference(:r, 10)"), {"r": reference_id}
            ).all()
            for schema in ("wikiref_before", "wikiref")
        }
        assert len(rows["wikiref"]) == 10
        after, before_rows = rows["wikiref"], rows["wikiref_before"]
        assert [(row[0], row[1], row[3], row[4]) for row in after] == [
            (row[0], row[1], row[3], row[4]) for row in before_rows
        ]
        # The sums over the candidates may add in another order: equal but for a double's last bits.
        assert [(row[2], row[5], row[6], row[7]) for row in after] == [
            pytest.approx((row[2], row[5], row[6], row[7]), rel=1e-12) for row in before_rows
        ]


def _words_candidates(session: Session, query: str, rows_per_candidate: int | None) -> list[int]:
    with session.begin_nested():
        if rows_per_candidate is not None:
            session.execute(text(f"SET LOCAL wikiref.words_rows_per_candidate = {rows_per_candidate}"))
        return list(
            session.scalars(
                text("SELECT id FROM wikiref.bm25_candidates('references', to_tsvector('english', :q), 10)"),
                {"q": query},
            )
        )


def _exact_bm25_top(session: Session, query: str, count: int) -> list[int]:
    """BM25's top ``count`` references for ``query`` over every row matching any of its words: no candidate bound."""
    return list(
        session.scalars(
            text(
                "SELECT b.id FROM wikiref.bm25_scores('references', to_tsvector('english', :q), "
                "ARRAY(SELECT r.id FROM article_references r WHERE r.lexemes @@ "
                "wikiref.lexeme_query(tsvector_to_array(to_tsvector('english', :q))))) b "
                "WHERE b.score > 0 ORDER BY b.score DESC, b.id LIMIT :n"
            ),
            {"q": query, "n": count},
        )
    )


def test_more_words_rows_per_candidate_finds_the_exact_bm25_top(corpus) -> None:
    """The words' candidates are the rows matching the query's rarest lexemes and the rows matching two of its
    rarer lexemes together, each search at most 1,000 rows by default: 5 references hold "avocet", 1,200 long ones
    "cormorant ... heron", and 5 short ones, written last, "Cormorant heron". BM25's top 10 is the avocets and the
    short five (a shorter row scores higher); by default the pairs' search stops at 1,000 of the 1,205 rows that
    hold both words, before the short ones. Raised, the setting finds that top 10; a bad value names the
    setting."""
    session, ids = corpus
    article_id = ids["season"]
    session.execute(
        text(
            "INSERT INTO article_references (article_id, position, text, content_hash) "
            "SELECT :a, 100 + n, body, md5(body) FROM ("
            "  SELECT n, CASE WHEN n < 5 THEN 'Avocet count ' || n"
            "                 WHEN n < 1205 THEN 'Cormorant and heron count ' || n || ' in the marsh reserve survey'"
            "                 ELSE 'Cormorant heron ' || n END AS body"
            "    FROM generate_series(0, 1209) n) t"
        ),
        {"a": article_id},
    )
    session.commit()
    refresh_lexical_statistics(session=session)
    query = "avocet cormorant heron"
    exact = _exact_bm25_top(session, query, 10)
    assert len(exact) == 10
    short = set(
        session.scalars(text("SELECT id FROM article_references WHERE text LIKE 'Cormorant heron %'"))
    )
    assert len(short) == 5 and short <= set(exact)
    by_default = _words_candidates(session, query, None)
    assert len(by_default) == 10 and not short & set(by_default)
    assert _words_candidates(session, query, 1000) == exact
    with pytest.raises(DBAPIError, match="wikiref.words_rows_per_candidate must be a whole number"):
        _words_candidates(session, query, 0)


def _votes(session: Session, reference_id: int, vote_references: int | None) -> dict[int, float | None]:
    with session.begin_nested():
        if vote_references is not None:
            session.execute(text(f"SET LOCAL wikiref.vote_references = {vote_references}"))
        rows = session.execute(
            text("SELECT article_id, vote FROM wikiref.articles_for_reference(:r, 10)"), {"r": reference_id}
        ).all()
    return {row[0]: row[1] for row in rows}


def test_the_nearest_references_vote_exactly_and_bound_the_other_articles(corpus) -> None:
    """With ``wikiref.vote_references = 3`` only NAMED's 3 nearest references vote: NAMED itself (no voter),
    UNNAMED (cosine 0.285, its own article's) and Garden 3's report 19 (0.177). Asafa Powell and Garden 3 get
    their exact vote; the other gardens and Season results (no reference at all) get the last voter's cosine,
    the bound of their own best. Unset, every stored reference votes."""
    session, ids = corpus
    gardens = list(
        session.scalars(text("SELECT id FROM articles WHERE title LIKE 'Garden %' ORDER BY title"))
    )
    best = {garden: 0.3 * (0.40 + 0.01 * (5 * n + 4)) for n, garden in enumerate(gardens)}
    exact = _votes(session, ids["named"], None)
    assert exact[ids["powell"]] == pytest.approx(0.3 * 0.95)  # from UNNAMED, never NAMED itself (1.0)
    assert exact[ids["season"]] is None
    for garden, vote in best.items():
        assert exact[garden] == pytest.approx(vote)
    nearest = _votes(session, ids["named"], 3)
    bound = best[gardens[3]]
    assert nearest[ids["powell"]] == pytest.approx(0.3 * 0.95)
    assert nearest[gardens[3]] == pytest.approx(bound)
    for article in [*gardens[:3], ids["season"]]:
        assert nearest[article] == pytest.approx(bound)
        assert exact[article] is None or exact[article] < bound
    # Every reference a voter: each article with references votes exactly as unset.
    everyone = _votes(session, ids["named"], 1000)
    assert {a: v for a, v in everyone.items() if a != ids["season"]} == pytest.approx(
        {a: v for a, v in exact.items() if a != ids["season"]}
    )
    with pytest.raises(DBAPIError, match="wikiref.vote_references must be a whole number"):
        _votes(session, ids["named"], 0)


def test_the_words_candidates_hold_the_rows_that_match_two_commoner_words(corpus) -> None:
    """The query "zebu joan river": 3 references hold "zebu", 1,100 "Joan", 1,100 "river", 5 "Joan" and "river"
    together. The rarest lexemes under the cap are "zebu" alone, yet the 5 rows holding both commoner words rank
    right after the zebus in BM25: the pairs' search (0016) brings them, and the candidates are BM25's exact top."""
    session, ids = corpus
    session.execute(
        text(
            "INSERT INTO article_references (article_id, position, text, content_hash) "
            "SELECT :a, 100 + n, body, md5(body) FROM ("
            "  SELECT n, CASE WHEN n < 3 THEN 'Zebu cattle ' || n"
            "                 WHEN n < 1103 THEN 'Joan of Arc, chapter ' || n"
            "                 WHEN n < 2203 THEN 'The river in flood, chapter ' || n"
            "                 ELSE 'Joan by the river ' || n END AS body"
            "    FROM generate_series(0, 2207) n) t"
        ),
        {"a": ids["season"]},
    )
    session.commit()
    refresh_lexical_statistics(session=session)
    query = "zebu joan river"
    both = set(
        session.scalars(text("SELECT id FROM article_references WHERE text LIKE 'Joan by the river %'"))
    )
    exact = _exact_bm25_top(session, query, 8)
    assert len(both) == 5 and set(exact[3:]) == both
    assert _words_candidates(session, query, None)[:8] == exact
    # Scored as they are read, the candidates carry wikiref.bm25_scores' scores.
    served = dict(
        session.execute(
            text(
                "SELECT id, score FROM wikiref.bm25_candidates('references', to_tsvector('english', :q), 10)"
            ),
            {"q": query},
        ).all()
    )
    assert served == pytest.approx(
        search.bm25_references(session=session, query=query, reference_ids=list(served))
    )
