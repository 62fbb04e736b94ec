"""Each model version is embedded and served with its own article text (migration 0003, wikiref.models.article_text).

Cross-layer (db + models + the embedded slice of tests.conftest): a version trained on titles keeps serving
title embeddings after leads are stored; a version trained on title + lead serves those; a lead-only edit
re-embeds that article, for the lead version only, and no reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import base_encoder_config, embed_everything, register_base_version
from wikiref.db import embeddings, search
from wikiref.db.articles import upsert_page
from wikiref.db.engine import make_engine
from wikiref.db.page_records import PageRecord, ReferenceRecord
from wikiref.models.article_text import ArticleTextRecipe
from wikiref.models.encode import encode_texts

LEAD_RECIPE = ArticleTextRecipe(80)


def _stored(session: Session, version_id: int) -> dict[int, np.ndarray]:
    rows = session.execute(
        text("SELECT article_id, embedding::text FROM title_embeddings WHERE model_version_id = :v"),
        {"v": version_id},
    ).all()
    return {key: np.asarray(vector.strip("[]").split(","), dtype=np.float32) for key, vector in rows}


def test_each_version_serves_its_own_article_text_and_a_lead_edit_re_embeds_one_article(
    embedded_database_url: str, onnx_cache_dir: Path
) -> None:
    engine = make_engine(embedded_database_url)
    config = base_encoder_config(onnx_cache_dir)
    with Session(engine) as session:
        base = session.scalar(text("SELECT id FROM model_versions WHERE name = 'base'"))
        lead_version = register_base_version(session, name="base-lead", status="superseded")
        session.execute(
            text("UPDATE model_versions SET article_text = :recipe WHERE id = :id"),
            {"recipe": LEAD_RECIPE.name, "id": lead_version},
        )
        # Same model, so its reference embeddings are the base version's: copied, not encoded again.
        session.execute(
            text(
                "INSERT INTO reference_embeddings SELECT :lead, reference_id, content_hash, embedding "
                "FROM reference_embeddings WHERE model_version_id = :base"
            ),
            {"lead": lead_version, "base": base},
        )
        session.commit()
    embed_everything(engine, lead_version, config)

    with Session(engine) as session:
        articles = session.execute(text("SELECT id, title, lead FROM articles ORDER BY id")).all()
        assert sum(lead is not None for _id, _title, lead in articles) >= len(articles) - 2
        titles = encode_texts(config, [title for _id, title, _lead in articles])
        composed = encode_texts(config, [LEAD_RECIPE.compose(title, lead) for _id, title, lead in articles])
        base_stored, lead_stored = _stored(session, base), _stored(session, lead_version)
        for index, (article_id, _title, _lead) in enumerate(articles):
            np.testing.assert_allclose(base_stored[article_id], titles[index], atol=2e-3)
            np.testing.assert_allclose(lead_stored[article_id], composed[index], atol=2e-3)
        # Served: each version's similar_articles scores with its own article embeddings.
        first_id, first_title, _ = articles[0]
        for version, vectors in (("base", titles), ("base-lead", composed)):
            served = search.run(
                session=session, function="similar_articles", title=first_title, k=3, model_version=version
            )
            position = {article_id: index for index, (article_id, _t, _l) in enumerate(articles)}
            for article_id, _title, similarity, _lead, _score, _words in served.rows:
                expected = float(vectors[0] @ vectors[position[article_id]])
                assert abs(similarity - expected) < 5e-3, version

        # A lead-only edit through the write path: same revision, same references, another lead.
        article_id, title, lead = articles[1]
        references = session.scalars(
            text("SELECT text FROM article_references WHERE article_id = :id ORDER BY position"),
            {"id": article_id},
        ).all()
        row = session.execute(
            text("SELECT wiki, page_id, revision_id, url, redirects FROM articles WHERE id = :id"),
            {"id": article_id},
        ).one()
        session.commit()
        edited_lead = f"{title} was renamed last week. {lead or ''}".strip()
        result = upsert_page(
            session=session,
            page=PageRecord(
                wiki=row.wiki,
                title=title,
                page_id=row.page_id,
                revision_id=row.revision_id,
                url=row.url,
                references=tuple(ReferenceRecord(text=reference) for reference in references),
                redirects=tuple(row.redirects),
                lead=edited_lead,
            ),
        )
        assert (result.status, result.references_added, result.references_removed) == ("updated", 0, 0)
        assert embeddings.count_pending(session=session, version_id=base, reads_lead=False) == {
            "references": 0,
            "titles": 0,
        }
        assert embeddings.count_pending(session=session, version_id=lead_version, reads_lead=True) == {
            "references": 0,
            "titles": 1,
        }
        session.commit()
    embed_everything(engine, lead_version, config)
    with Session(engine) as session:
        after = _stored(session, lead_version)
        [expected] = encode_texts(config, [LEAD_RECIPE.compose(title, edited_lead)])
        np.testing.assert_allclose(after[article_id], expected, atol=2e-3)
        unchanged = [key for key in lead_stored if key != article_id]
        assert all(np.array_equal(after[key], lead_stored[key]) for key in unchanged)
        base_after = _stored(session, base)
        assert all(np.array_equal(base_after[key], base_stored[key]) for key in base_stored)
    engine.dispose()
