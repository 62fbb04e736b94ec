from sqlalchemy import inspect, text

from wikiref.db import migrate
from wikiref.db.engine import make_engine


def test_upgrade_from_empty_creates_schema_and_rerun_is_a_no_op(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    assert migrate.current_revision(engine) is None

    migrate.upgrade(empty_database_url)
    assert migrate.current_revision(engine) == migrate.head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {
        "articles",
        "article_references",
        "model_versions",
        "title_embeddings",
        "reference_embeddings",
    } <= tables
    with engine.begin() as connection:
        assert connection.execute(
            text("SELECT extname FROM pg_extension WHERE extname = 'vector'")
        ).scalar_one()
        connection.execute(text("INSERT INTO articles (wiki, title) VALUES ('en.wikipedia.org', 'Cat')"))
        ddl_before = connection.execute(text("SELECT count(*) FROM pg_class")).scalar_one()

    migrate.upgrade(empty_database_url)

    with engine.connect() as connection:
        assert connection.execute(text("SELECT title FROM articles")).scalars().all() == ["Cat"]
        assert connection.execute(text("SELECT count(*) FROM pg_class")).scalar_one() == ddl_before
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_downgrade_to_base_and_up_again(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(empty_database_url)
    migrate.downgrade(empty_database_url, "base")
    assert migrate.current_revision(engine) is None
    assert "articles" not in inspect(engine).get_table_names()
    migrate.upgrade(empty_database_url)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_row_counts_list_every_table(engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO articles (wiki, title) VALUES ('w', 'A'), ('w', 'B')"))
    counts = migrate.table_row_counts(engine)
    assert counts["articles"] == 2
    assert counts["article_references"] == 0
    assert "alembic_version" not in counts


def test_halfvec_storage_downgrades_keeping_the_embeddings(empty_database_url: str) -> None:
    import numpy as np
    from sqlalchemy.orm import Session

    from tests.conftest import register_base_version
    from wikiref.db import embeddings

    engine = make_engine(empty_database_url)
    migrate.upgrade(empty_database_url)
    with Session(engine) as session:
        session.execute(text("INSERT INTO articles (wiki, title) VALUES ('w', 'Cat')"))
        session.execute(
            text(
                "INSERT INTO article_references (article_id, position, text, content_hash) "
                "SELECT id, 0, 'Felis catus.', 'h' FROM articles"
            )
        )
        version = register_base_version(session)
        embeddings.start_run(
            session=session,
            version_id=version,
            hnsw_m=4,
            hnsw_ef_construction=8,
            ef_search=10,
            storage="halfvec",
        )
        for kind in embeddings.KINDS:
            rows = embeddings.pending(session=session, version_id=version, reads_lead=False, kind=kind)
            embeddings.write_embeddings(
                session=session,
                version_id=version,
                kind=kind,
                keys=[row.key for row in rows],
                labels=[row.label for row in rows],
                vectors=np.ones((len(rows), 384), dtype=np.float32),
            )
        embeddings.build_indexes(session=session, version_id=version, m=4, ef_construction=8)
        embeddings.mark_complete(session=session, version_id=version, reads_lead=False)
        session.commit()
    engine.dispose()

    migrate.downgrade(empty_database_url, "0006")
    engine = make_engine(empty_database_url)
    with engine.connect() as connection:
        # The halfvec indexes no longer match the queries: gone, and the version waits for its next embed run.
        assert (
            connection.execute(text("SELECT to_regclass('ix_reference_embeddings_hnsw_v1')")).scalar() is None
        )
        assert connection.execute(text("SELECT completed_at FROM embedding_states")).scalar() is None
        assert connection.execute(text("SELECT count(*) FROM reference_embeddings")).scalar() == 1
    migrate.upgrade(empty_database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT storage FROM embedding_states")).scalar() == "vector"


def _result_columns(connection, function: str) -> str:
    return connection.execute(
        text("SELECT pg_get_function_result(oid) FROM pg_proc WHERE proname = :name"), {"name": function}
    ).scalar_one()


def test_0003_keeps_rows_marks_them_for_a_lead_and_downgrades_cleanly(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(empty_database_url, "0002")
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO articles (wiki, title, revision_id) VALUES ('en.wikipedia.org', 'Cat', 7)")
        )
        connection.execute(text("INSERT INTO model_versions (name, base_model) VALUES ('ft-1', 'base')"))
    migrate.upgrade(empty_database_url)
    with engine.begin() as connection:
        assert connection.execute(
            text("SELECT title, revision_id, lead, lead_extracted FROM articles")
        ).one() == (
            "Cat",
            7,
            None,
            False,
        )
        assert connection.execute(text("SELECT article_text FROM model_versions")).scalar_one() == "title"
        connection.execute(
            text("INSERT INTO articles (wiki, title, lead) VALUES ('en.wikipedia.org', 'Dog', 'D')")
        )
        assert connection.execute(
            text("SELECT lead_extracted FROM articles WHERE title = 'Dog'")
        ).scalar_one()
        assert "article_lead text" in _result_columns(connection, "similar_articles")
    migrate.downgrade(empty_database_url, "0002")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT title FROM articles ORDER BY title")).scalars().all() == [
            "Cat",
            "Dog",
        ]
        assert "article_lead" not in _result_columns(connection, "similar_articles")
        assert "article_lead" not in _result_columns(connection, "articles_for_reference")
        assert "lead" not in {column["name"] for column in inspect(engine).get_columns("articles")}
    engine.dispose()


def test_0005_carries_articles_and_references_over_and_downgrades(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(empty_database_url, "0002")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO articles (wiki, title, revision_id, fetched_at) "
                "VALUES ('w', 'Cat', 42, '2026-01-02T03:04:05Z')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO article_references (article_id, position, text, content_hash) "
                "SELECT id, 0, 'Smith (2001). Cats.', 'h' FROM articles"
            )
        )
    migrate.upgrade(empty_database_url, "0005")
    with engine.connect() as connection:
        article = connection.execute(text("SELECT title, status, redirect_target FROM articles")).one()
        reference = connection.execute(
            text("SELECT text, added_revision_id, added_at = '2026-01-02T03:04:05Z' FROM article_references")
        ).one()
        changes = connection.execute(
            text("SELECT article, change, revision_id FROM wikiref.reference_changes('2026-01-01')")
        ).all()
    assert tuple(article) == ("Cat", "current", None)
    assert tuple(reference) == ("Smith (2001). Cats.", 42, True)
    assert [tuple(row) for row in changes] == [("Cat", "added", 42)]
    migrate.downgrade(empty_database_url, "0002")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM article_references")).scalar_one() == 1
        assert "reference_history" not in inspect(engine).get_table_names()
    migrate.upgrade(empty_database_url)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_0009_gives_existing_corpora_their_wiki_where_known(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(empty_database_url, "0007")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO articles (wiki, title, revision_id) VALUES "
                "('en.wikipedia.org', 'Cat', 1), ('de.wikipedia.org', 'Hund', 2), ('de.wikipedia.org', 'Cat', 3)"
            )
        )
        connection.execute(text("INSERT INTO corpora (name) VALUES ('dogs'), ('cats'), ('birds')"))
        connection.execute(
            text(
                "INSERT INTO corpus_sources (corpus_id, kind, spec, spec_hash) "
                "SELECT id, 'titles', CAST(:spec AS jsonb), name FROM corpora WHERE name = :name"
            ),
            [
                {"name": "dogs", "spec": '{"titles": ["Hund", "Wolf"]}'},
                {"name": "cats", "spec": '{"titles": ["Cat"]}'},  # stored on two wikis: unknown
            ],
        )
    migrate.upgrade(empty_database_url, "0009")
    with engine.connect() as connection:
        wikis = dict(connection.execute(text("SELECT name, wiki FROM corpora")).all())
    assert wikis == {"dogs": "de.wikipedia.org", "cats": None, "birds": None}

    # A database of one wiki: every corpus is that wiki's.
    migrate.downgrade(empty_database_url, "0007")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM articles WHERE wiki = 'de.wikipedia.org'"))
    migrate.upgrade(empty_database_url)
    with engine.connect() as connection:
        wikis = dict(connection.execute(text("SELECT name, wiki FROM corpora")).all())
    assert wikis == {"dogs": "en.wikipedia.org", "cats": "en.wikipedia.org", "birds": "en.wikipedia.org"}
    engine.dispose()


def test_0012_refresh_merges_pending_entries_and_downgrades_to_the_refresh_of_0008(
    empty_database_url: str,
) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(empty_database_url, "0012")
    pending_pages = "SELECT gin_clean_pending_list('ix_articles_lexemes')"
    refresh = "SELECT count(*) FROM wikiref.refresh_lexical_statistics()"

    def pending_after_a_write_and_a_refresh(title: str) -> int:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO articles (wiki, title) VALUES ('w', :t)"), {"t": title})
            connection.execute(text(refresh))
            return connection.execute(text(pending_pages)).scalar_one()

    assert pending_after_a_write_and_a_refresh("Kingston") == 0
    migrate.downgrade(empty_database_url, "0011")
    assert pending_after_a_write_and_a_refresh("Port Royal") > 0
    migrate.upgrade(empty_database_url)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_0019_gives_a_base_version_on_the_old_default_the_hubness_default_and_others_hubness_0(
    empty_database_url: str,
) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(empty_database_url, "0018")
    chosen = (
        '{"similar_references": {"words": 0.4}, "articles_for_reference": {"words": 0.3, "vote": 2.0}, '
        '"similar_articles": {"words": 0.0}, "search_text": {"words": 0.3}}'
    )
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO model_versions (name, base_model, status) VALUES ('base', 'm', 'active'), "
                "('trained', 'm', 'candidate')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO model_versions (name, base_model, status, fusion_weights) "
                "VALUES ('base:other', 'm', 'retired', CAST(:w AS jsonb))"
            ),
            {"w": chosen},
        )
    migrate.upgrade(empty_database_url)
    with engine.connect() as connection:
        weights = dict(
            connection.execute(
                text("SELECT name, fusion_weights -> 'similar_references' FROM model_versions")
            ).all()
        )
        new_version = connection.execute(
            text(
                "INSERT INTO model_versions (name, base_model, status) VALUES ('new', 'm', 'candidate') "
                "RETURNING fusion_weights -> 'similar_references'"
            )
        ).scalar_one()
        connection.rollback()
    assert weights == {
        "base": {"words": 0.2, "hubness": 0.75},
        "trained": {"words": 0.3, "hubness": 0.0},
        "base:other": {"words": 0.4, "hubness": 0.0},
    }
    assert new_version == {"words": 0.2, "hubness": 0.75}
    migrate.downgrade(empty_database_url, "0018")
    with engine.connect() as connection:
        assert connection.execute(
            text("SELECT fusion_weights -> 'similar_references' FROM model_versions WHERE name = 'base'")
        ).scalar_one() == {"words": 0.2}
    engine.dispose()
