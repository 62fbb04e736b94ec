"""wikiref.db.embeddings: pending rows, COPY upserts, per-version HNSW indexes, completeness and the serving version."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import register_base_version
from wikiref.db import embeddings, search


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add_article(session: Session, title: str, references: list[str]) -> int:
    article_id = session.execute(
        text("INSERT INTO articles (wiki, title) VALUES ('test.wiki', :title) RETURNING id"), {"title": title}
    ).scalar_one()
    for position, reference in enumerate(references):
        session.execute(
            text(
                "INSERT INTO article_references (article_id, position, text, content_hash) "
                "VALUES (:article, :position, :text, :hash)"
            ),
            {
                "article": article_id,
                "position": position,
                "text": reference,
                "hash": hashlib.sha256(reference.encode()).hexdigest(),
            },
        )
    return article_id


def embed_with_random_vectors(
    session: Session, version_id: int, seed: int = 0, reads_lead: bool = False
) -> dict[str, int]:
    written = {}
    for kind in embeddings.KINDS:
        rows = embeddings.pending(session=session, version_id=version_id, reads_lead=reads_lead, kind=kind)
        written[kind] = embeddings.write_embeddings(
            session=session,
            version_id=version_id,
            kind=kind,
            keys=[row.key for row in rows],
            labels=[row.label for row in rows],
            vectors=unit_vectors(len(rows), seed),
        )
    session.commit()
    return written


def complete(session: Session, version_id: int) -> None:
    embeddings.start_run(
        session=session, version_id=version_id, hnsw_m=8, hnsw_ef_construction=32, ef_search=40
    )
    embed_with_random_vectors(session, version_id)
    embeddings.build_indexes(session=session, version_id=version_id, m=8, ef_construction=32)
    embeddings.mark_complete(session=session, version_id=version_id, reads_lead=False)
    session.commit()


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        add_article(
            session, "Cat", ["Felis catus, a study.", "Whiskers and their uses.", "Purring explained."]
        )
        add_article(session, "Dog", ["Canis familiaris, a history.", "Barking at night."])
        session.commit()
        yield session


def test_pending_lists_missing_rows_then_nothing_after_a_write(session: Session) -> None:
    version = register_base_version(session)
    assert embeddings.count_pending(session=session, version_id=version, reads_lead=False) == {
        "references": 5,
        "titles": 2,
    }
    rows = embeddings.pending(session=session, version_id=version, reads_lead=False, kind="references")
    assert [row.text for row in rows][:2] == ["Felis catus, a study.", "Whiskers and their uses."]
    assert embed_with_random_vectors(session, version) == {"references": 5, "titles": 2}
    assert embeddings.count_pending(session=session, version_id=version, reads_lead=False) == {
        "references": 0,
        "titles": 0,
    }
    # Another version still needs everything: embeddings are per version.
    other = register_base_version(session, name="other", status="candidate")
    assert embeddings.count_pending(session=session, version_id=other, reads_lead=False) == {
        "references": 5,
        "titles": 2,
    }


def test_changed_text_or_title_makes_exactly_that_row_pending(session: Session) -> None:
    version = register_base_version(session)
    embed_with_random_vectors(session, version)
    changed = "Purring explained, second edition."
    session.execute(
        text(
            "UPDATE article_references SET text = :text, content_hash = :hash WHERE text = 'Purring explained.'"
        ),
        {"text": changed, "hash": hashlib.sha256(changed.encode()).hexdigest()},
    )
    session.execute(text("UPDATE articles SET title = 'Domestic dog' WHERE title = 'Dog'"))
    session.commit()
    assert [
        row.text
        for row in embeddings.pending(
            session=session, version_id=version, reads_lead=False, kind="references"
        )
    ] == [changed]
    assert [
        row.text
        for row in embeddings.pending(session=session, version_id=version, reads_lead=False, kind="titles")
    ] == ["Domestic dog"]


def test_writing_a_batch_twice_keeps_one_row_per_key_with_the_latest_vector(session: Session) -> None:
    version = register_base_version(session)
    rows = embeddings.pending(session=session, version_id=version, reads_lead=False, kind="references")
    keys, labels = [row.key for row in rows], [row.label for row in rows]
    embeddings.write_embeddings(
        session=session,
        version_id=version,
        kind="references",
        keys=keys,
        labels=labels,
        vectors=unit_vectors(5, seed=1),
    )
    session.commit()
    second = unit_vectors(5, seed=2)
    embeddings.write_embeddings(
        session=session, version_id=version, kind="references", keys=keys, labels=labels, vectors=second
    )
    session.commit()
    stored = session.execute(
        text("SELECT reference_id, embedding::text FROM reference_embeddings ORDER BY reference_id")
    ).all()
    assert [row[0] for row in stored] == sorted(keys)
    by_key = dict(zip(keys, second))
    for key, vector in stored:
        np.testing.assert_allclose(
            np.asarray(vector.strip("[]").split(","), dtype=np.float32), by_key[key], rtol=1e-5
        )


def test_rows_deleted_meanwhile_are_skipped_and_bad_shapes_refused(session: Session) -> None:
    version = register_base_version(session)
    rows = embeddings.pending(session=session, version_id=version, reads_lead=False, kind="titles")
    session.execute(text("DELETE FROM articles WHERE title = 'Dog'"))
    written = embeddings.write_embeddings(
        session=session,
        version_id=version,
        kind="titles",
        keys=[row.key for row in rows],
        labels=[row.label for row in rows],
        vectors=unit_vectors(len(rows)),
    )
    assert written == 1
    with pytest.raises(ValueError, match="384-d"):
        embeddings.write_embeddings(
            session=session,
            version_id=version,
            kind="titles",
            keys=[1],
            labels=["x"],
            vectors=np.zeros((1, 3)),
        )


def test_indexes_are_partial_per_version_and_built_once(session: Session) -> None:
    version = register_base_version(session)
    embed_with_random_vectors(session, version)
    assert embeddings.build_indexes(session=session, version_id=version, m=8, ef_construction=32) == [
        f"ix_reference_embeddings_hnsw_v{version}",
        f"ix_title_embeddings_hnsw_v{version}",
    ]
    session.commit()
    assert embeddings.build_indexes(session=session, version_id=version, m=8, ef_construction=32) == []
    definition = session.scalar(
        text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
        {"name": f"ix_reference_embeddings_hnsw_v{version}"},
    )
    assert "USING hnsw (embedding vector_cosine_ops)" in definition
    assert f"WHERE (model_version_id = {version})" in definition


def test_completion_requires_every_row_and_the_indexes(session: Session) -> None:
    version = register_base_version(session)
    embeddings.start_run(session=session, version_id=version, hnsw_m=8, hnsw_ef_construction=32, ef_search=40)
    session.commit()
    with pytest.raises(embeddings.EmbeddingError, match="still has rows to embed"):
        embeddings.mark_complete(session=session, version_id=version, reads_lead=False)
    session.rollback()
    embed_with_random_vectors(session, version)
    with pytest.raises(embeddings.EmbeddingError, match="lacks its HNSW indexes"):
        embeddings.mark_complete(session=session, version_id=version, reads_lead=False)
    session.rollback()
    embeddings.build_indexes(session=session, version_id=version, m=8, ef_construction=32)
    assert embeddings.mark_complete(session=session, version_id=version, reads_lead=False) == {
        "references": 5,
        "titles": 2,
    }
    session.commit()
    assert search.serving_version(session=session)[1] == "base"


def test_switching_versions_is_atomic_and_the_previous_one_stays_queryable(session: Session) -> None:
    first = register_base_version(session, name="first")
    session.commit()
    complete(session, first)
    second = register_base_version(session, name="second", status="candidate")
    session.commit()

    # Activated before it is embedded: queries keep using the complete previous version.
    session.execute(text("UPDATE model_versions SET status = 'superseded' WHERE id = :id"), {"id": first})
    session.execute(
        text("UPDATE model_versions SET status = 'active', activated_at = now() WHERE id = :id"),
        {"id": second},
    )
    session.commit()
    assert search.serving_version(session=session)[1] == "first"
    embeddings.start_run(session=session, version_id=second, hnsw_m=8, hnsw_ef_construction=32, ef_search=40)
    embed_with_random_vectors(session, second, seed=5)
    embeddings.build_indexes(session=session, version_id=second, m=8, ef_construction=32)
    # Fully written and indexed, but not yet marked: still the previous version.
    assert search.serving_version(session=session)[1] == "first"
    # An explicit version works for any non-retired version, complete or not.
    rows = search.run(
        session=session, function="similar_references", title="Cat", k=2, model_version="second"
    ).rows
    assert len(rows) == 2
    embeddings.mark_complete(session=session, version_id=second, reads_lead=False)
    session.commit()
    assert search.serving_version(session=session)[1] == "second"
    previous = search.run(
        session=session, function="similar_references", title="Cat", k=5, model_version="first"
    )
    current = search.run(session=session, function="similar_references", title="Cat", k=5, model_version=None)
    assert len(previous.rows) == len(current.rows) == 5
    assert [row[0] for row in previous.rows] != [row[0] for row in current.rows]  # different random vectors


def test_dropping_a_version_removes_its_rows_indexes_and_state(session: Session) -> None:
    keep = register_base_version(session, name="keep")
    drop = register_base_version(session, name="drop", status="superseded")
    session.commit()
    complete(session, keep)
    complete(session, drop)
    assert embeddings.drop_version_embeddings(session=session, version_id=drop) == {
        "references": 5,
        "titles": 2,
    }
    session.commit()
    assert embeddings.embedding_counts(session=session, version_id=drop) == {"references": 0, "titles": 0}
    assert embeddings.embedding_counts(session=session, version_id=keep) == {"references": 5, "titles": 2}
    indexes = set(session.scalars(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%hnsw%'")))
    assert indexes == {f"ix_reference_embeddings_hnsw_v{keep}", f"ix_title_embeddings_hnsw_v{keep}"}
    assert (
        session.scalar(text("SELECT count(*) FROM embedding_states WHERE model_version_id = :v"), {"v": drop})
        == 0
    )


def test_no_complete_version_is_a_clear_error(session: Session) -> None:
    register_base_version(session)
    session.commit()
    with pytest.raises(search.QueryError, match="no model version with complete embeddings to serve"):
        search.run(session=session, function="similar_references", title="Cat", k=3, model_version=None)


def test_get_version_defaults_to_the_active_one(session: Session) -> None:
    with pytest.raises(embeddings.EmbeddingError, match="no active model version"):
        embeddings.get_version(session=session, name_or_id=None)
    version = register_base_version(session, name="v-active")
    register_base_version(session, name="v-retired", status="retired")
    session.commit()
    assert embeddings.get_version(session=session, name_or_id=None).id == version
    assert embeddings.get_version(session=session, name_or_id=str(version)).name == "v-active"
    with pytest.raises(embeddings.EmbeddingError, match="is retired"):
        embeddings.get_version(session=session, name_or_id="v-retired")
    with pytest.raises(embeddings.EmbeddingError, match="unknown model version 'nope'"):
        embeddings.get_version(session=session, name_or_id="nope")


def test_keyset_pages_return_the_same_rows_as_one_query_on_the_shared_pages(loaded_database_url) -> None:
    from wikiref.db.engine import make_engine

    engine = make_engine(loaded_database_url)
    try:
        with Session(engine) as session:
            version_id = register_base_version(session)
            everything = embeddings.pending(
                session=session, version_id=version_id, reads_lead=False, kind="references"
            )
            # Embed every third reference, so that pending rows have gaps the keyset must step over.
            done = everything[::3]
            embeddings.write_embeddings(
                session=session,
                version_id=version_id,
                kind="references",
                keys=[row.key for row in done],
                labels=[row.label for row in done],
                vectors=unit_vectors(len(done)),
            )
            session.commit()
            for kind in embeddings.KINDS:
                expected = embeddings.pending(
                    session=session, version_id=version_id, reads_lead=False, kind=kind
                )
                pages, after = [], 0
                while page := embeddings.pending(
                    session=session,
                    version_id=version_id,
                    reads_lead=False,
                    kind=kind,
                    limit=997,
                    after=after,
                ):
                    pages.append(page)
                    after = page[-1].key
                assert [row for page in pages for row in page] == expected
                assert all(len(page) <= 997 for page in pages) and len(pages) >= len(expected) // 997
            assert len(expected) == 303  # titles
            references = embeddings.pending(
                session=session, version_id=version_id, reads_lead=False, kind="references"
            )
            assert len(references) == 13_992 - len(done)
    finally:
        engine.dispose()


def test_halfvec_storage_round_trips_and_its_index_is_used(session: Session) -> None:
    vector_version = register_base_version(session, name="float4", status="superseded")
    half_version = register_base_version(session, name="half")
    session.commit()
    for version, storage in ((vector_version, "vector"), (half_version, "halfvec")):
        assert (
            embeddings.start_run(
                session=session,
                version_id=version,
                hnsw_m=8,
                hnsw_ef_construction=32,
                ef_search=40,
                storage=storage,
            )
            == storage
        )
        embed_with_random_vectors(session, version, seed=3)  # the same vectors in both versions
        embeddings.build_indexes(session=session, version_id=version, m=8, ef_construction=32)
        embeddings.mark_complete(session=session, version_id=version, reads_lead=False)
        session.commit()
    # A later run cannot switch a version whose indexes exist to another storage.
    assert (
        embeddings.start_run(
            session=session, version_id=half_version, hnsw_m=8, hnsw_ef_construction=32, ef_search=40
        )
        == "halfvec"
    )
    session.commit()
    for kind, table in (("references", "reference_embeddings"), ("titles", "title_embeddings")):
        definition = session.scalar(
            text("SELECT pg_get_indexdef(to_regclass(:name))"),
            {"name": embeddings.hnsw_index_name(half_version, kind)},
        )
        assert "halfvec_cosine_ops" in definition and "(embedding)::halfvec(384)" in definition
        half_bytes, float_bytes = (
            session.scalar(
                text("SELECT pg_relation_size(to_regclass(:name))"),
                {"name": embeddings.hnsw_index_name(version, kind)},
            )
            for version in (half_version, vector_version)
        )
        assert half_bytes <= float_bytes
        target = "references" if kind == "references" else "articles"
        plan = search.explain(
            session=session, target=target, version_id=half_version, query=unit_vectors(1)[0], k=3
        )
        assert f"Index Scan using ix_{table}_hnsw_v{half_version}" in plan, plan
        session.rollback()
    # The same neighbours, in the same order, with similarities equal to half precision.
    for title in ("Cat", "Dog"):
        half, full = (
            search.run(session=session, function="similar_references", title=title, k=5, model_version=name)
            for name in ("half", "float4")
        )
        assert [row[0] for row in half.rows] == [row[0] for row in full.rows]
        similarity = half.columns.index("similarity")
        assert np.allclose(
            [row[similarity] for row in half.rows], [row[similarity] for row in full.rows], atol=2e-3
        )
    with pytest.raises(ValueError, match="unknown index storage"):
        embeddings.start_run(
            session=session,
            version_id=half_version,
            hnsw_m=8,
            hnsw_ef_construction=32,
            ef_search=40,
            storage="bit",
        )


def test_a_lead_edit_re_embeds_that_article_only_for_versions_that_read_the_lead(session: Session) -> None:
    title_version = register_base_version(session, name="v-title", status="superseded")
    lead_version = register_base_version(session, name="v-lead", status="active")
    session.execute(
        text("UPDATE model_versions SET article_text = 'title+lead40' WHERE id = :id"), {"id": lead_version}
    )
    session.execute(text("UPDATE articles SET lead = 'The cat is a small mammal.' WHERE title = 'Cat'"))
    session.commit()
    cat = session.scalar(text("SELECT id FROM articles WHERE title = 'Cat'"))
    [pending_cat] = [
        row
        for row in embeddings.pending(
            session=session, version_id=lead_version, reads_lead=True, kind="titles"
        )
        if row.key == cat
    ]
    assert (pending_cat.text, pending_cat.lead) == ("Cat", "The cat is a small mammal.")
    assert embeddings.get_version(session=session, name_or_id="v-lead").article_text == "title+lead40"
    assert embeddings.get_version(session=session, name_or_id="v-title").article_text == "title"
    for version, reads_lead in ((title_version, False), (lead_version, True)):
        embed_with_random_vectors(session, version, reads_lead=reads_lead)
        assert embeddings.count_pending(session=session, version_id=version, reads_lead=reads_lead) == {
            "references": 0,
            "titles": 0,
        }

    session.execute(
        text("UPDATE articles SET lead = 'The cat is a domesticated mammal.' WHERE title = 'Cat'")
    )
    session.commit()
    assert [
        (row.key, row.lead)
        for row in embeddings.pending(
            session=session, version_id=lead_version, reads_lead=True, kind="titles"
        )
    ] == [(cat, "The cat is a domesticated mammal.")]
    assert embeddings.count_pending(session=session, version_id=lead_version, reads_lead=True) == {
        "references": 0,
        "titles": 1,
    }
    # The version trained on titles keeps its embeddings: its article text did not change.
    assert embeddings.count_pending(session=session, version_id=title_version, reads_lead=False) == {
        "references": 0,
        "titles": 0,
    }
