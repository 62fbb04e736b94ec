"""The fused SQL functions and wikiref.models.fusion (what evaluation and the gate score) rank alike.

On a corpus smaller than the candidate depth every row is a candidate of both, so the order and the fused scores
must agree exactly: the Python side computes each signal from the stored embeddings and the served BM25
(``article_words_matrix``, as training's evaluation reads it, and ``bm25_articles``), and fuses them with the
version's stored weights, adding the lift of a reference that names the article (``names_article_matrix``) and
correcting each reference's cosine by its hubness (its mean cosine to the nearest articles, at most ten).
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from wikiref.db import embeddings, registry, search
from wikiref.db.engine import make_engine
from wikiref.models.fusion import EMBEDDING, HUBNESS, VOTE, WORDS, rank, reference_hubness

CANDIDATES = 1000
WEIGHTS = {
    "similar_references": {"words": 0.3, "hubness": 0.75},
    "articles_for_reference": {"words": 0.2, "vote": 1.5},
    "similar_articles": {"words": 0.0},
    "search_text": {"words": 0.3},
}


@pytest.fixture
def session(embedded_database_url: str):
    engine = make_engine(embedded_database_url)
    with Session(engine) as session:
        # `wikiref embed` computed every reference's hubness.
        assert session.scalar(text("SELECT count(*) FROM reference_hubness")) == session.scalar(
            text("SELECT count(*) FROM reference_embeddings")
        )
        # Six articles: fewer references than the candidate depth, so each call's candidates are all rows.
        session.execute(
            text("DELETE FROM articles WHERE id NOT IN (SELECT id FROM articles ORDER BY md5(title) LIMIT 6)")
        )
        session.commit()
        version_id = session.scalar(text("SELECT id FROM model_versions WHERE name = 'base'"))
        registry.set_fusion_weights(session=session, version_id=version_id, weights=WEIGHTS)
        # The articles shrank past the drift: every remaining reference's hubness is computed again, over the six.
        assert embeddings.refresh_hubness(session=session, version_id=version_id) > 0
        yield session, version_id
    engine.dispose()


def vectors(session: Session, table: str, key: str, version_id: int) -> tuple[np.ndarray, np.ndarray]:
    rows = session.execute(
        text(f"SELECT {key}, embedding FROM {table} WHERE model_version_id = :v ORDER BY {key}"),
        {"v": version_id},
    ).all()
    return np.array([r[0] for r in rows]), np.array([r[1].to_numpy().astype(np.float64) for r in rows])


def test_similar_references_and_articles_for_reference_match_the_python_fusion(session) -> None:
    session, version_id = session
    reference_ids, references = vectors(session, "reference_embeddings", "reference_id", version_id)
    article_ids, titles = vectors(session, "title_embeddings", "article_id", version_id)
    assert len(reference_ids) < CANDIDATES
    owner = dict(session.execute(text("SELECT id, article_id FROM article_references")).all())
    texts = dict(session.execute(text("SELECT id, text FROM article_references")).all())
    articles = session.execute(text("SELECT id, title FROM articles ORDER BY id")).all()
    cosine = references @ titles.T
    hubness = reference_hubness(cosine.T)

    lifts = search.names_article_matrix(
        session=session, article_ids=[a for a, _ in articles], reference_ids=reference_ids
    )
    # Three articles, those with references that name them first: their lift is part of the fused score.
    named_first = sorted(range(len(articles)), key=lambda row: -lifts[row].sum())[:3]
    assert lifts[named_first[0]].any()
    for row in named_first:
        article_id, title = articles[row]
        sql_rows = session.execute(
            text(
                "SELECT reference_id, similarity, words, score, hubness "
                "FROM wikiref.similar_references(:title, 1000, 'base', candidates => :c)"
            ),
            {"title": title, "c": CANDIDATES},
        ).all()
        words = search.article_words_matrix(
            session=session, article_ids=[article_id], reference_ids=reference_ids
        )
        column = list(article_ids).index(article_id)
        signals = {EMBEDDING: cosine[:, column], WORDS: words[0], HUBNESS: hubness}
        rows, fused = rank(
            signals, WEIGHTS["similar_references"], candidates=CANDIDATES, ids=reference_ids, lift=lifts[row]
        )
        assert [r[0] for r in sql_rows] == reference_ids[rows].tolist()
        assert [r[3] for r in sql_rows] == pytest.approx(fused.tolist(), abs=1e-5)
        assert [r[2] for r in sql_rows] == pytest.approx(signals[WORDS][rows].tolist(), abs=1e-5)
        assert [r[4] for r in sql_rows] == pytest.approx(hubness[rows].tolist(), abs=1e-5)

    reference_cosine = references @ references.T
    for position in (0, len(reference_ids) // 2, len(reference_ids) - 1):
        reference_id = int(reference_ids[position])
        sql_rows = session.execute(
            text(
                "SELECT article_id, similarity, words, vote, score "
                "FROM wikiref.articles_for_reference(:id, 1000, 'base', candidates => :c)"
            ),
            {"id": reference_id, "c": CANDIDATES},
        ).all()
        words = search.bm25_articles(session=session, query=texts[reference_id], article_ids=article_ids)
        vote = np.full(len(article_ids), np.nan)
        for other, other_id in enumerate(reference_ids):
            if other_id != reference_id:
                column = list(article_ids).index(owner[int(other_id)])
                vote[column] = np.fmax(vote[column], reference_cosine[position, other])
        signals = {
            EMBEDDING: titles @ references[position],
            WORDS: np.array([words[a] for a in article_ids]),
            VOTE: vote,
        }
        rows, fused = rank(signals, WEIGHTS["articles_for_reference"], candidates=CANDIDATES, ids=article_ids)
        assert [r[0] for r in sql_rows] == article_ids[rows].tolist()
        assert [r[4] for r in sql_rows] == pytest.approx(fused.tolist(), abs=1e-5)
        assert [np.nan if r[3] is None else r[3] for r in sql_rows] == pytest.approx(
            vote[rows].tolist(), abs=1e-5, nan_ok=True
        )
