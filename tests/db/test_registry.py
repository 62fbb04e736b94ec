import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from wikiref.db import registry
from wikiref.db.embeddings import KINDS, build_indexes, hnsw_index_name
from wikiref.db.schema import Article, ArticleReference, ModelVersion, ReferenceEmbedding, TitleEmbedding


def make_version(session: Session, name: str, ndcg: float = 0.5) -> ModelVersion:
    return registry.create_version(
        session=session,
        name=name,
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        params={"batch_size": 8},
        dataset_fingerprint="f" * 64,
        dataset_counts={"train_pairs": 10},
        metrics={"base": {"ndcg@10": 0.4}, "finetuned": {"ndcg@10": ndcg}, "gate_metric": "ndcg@10"},
        loss_log=[{"step": 1, "epoch": 0.1, "loss": 1.0, "learning_rate": 5e-5}],
        artifact_path=f"/models/{name}",
        article_text="title",
    )


def add_embeddings(session: Session, version_id: int, article_id: int, reference_id: int) -> None:
    session.execute(
        insert(TitleEmbedding).values(
            model_version_id=version_id, article_id=article_id, title="Dog", embedding=[0.1] * 384
        )
    )
    session.execute(
        insert(ReferenceEmbedding).values(
            model_version_id=version_id, reference_id=reference_id, content_hash="h", embedding=[0.2] * 384
        )
    )
    session.commit()


def test_versions_are_created_listed_newest_first_and_found_by_name_or_id(engine: Engine) -> None:
    with Session(engine) as session:
        first = make_version(session, "ft-a")
        second = make_version(session, "ft-b")
        assert first.status == "candidate"
        assert [v.name for v in registry.list_versions(session=session)] == ["ft-b", "ft-a"]
        assert registry.get_version(session=session, name="ft-a").id == first.id
        assert registry.get_version(session=session, name=str(second.id)).name == "ft-b"
        with pytest.raises(registry.RegistryError, match="no model version 'nope'.*newest: ft-b, ft-a"):
            registry.get_version(session=session, name="nope")
        with pytest.raises(registry.RegistryError, match="already exists"):
            make_version(session, "ft-a")


def test_activating_supersedes_the_previous_active_version(engine: Engine) -> None:
    with Session(engine) as session:
        old = make_version(session, "ft-old")
        new = make_version(session, "ft-new")
        registry.activate_version(session=session, version_id=old.id)
        assert registry.active_version(session=session).name == "ft-old"
        registry.activate_version(session=session, version_id=new.id)
    with Session(engine) as session:
        rows = {v.name: v for v in registry.list_versions(session=session)}
        assert rows["ft-new"].status == "active"
        assert rows["ft-new"].activated_at is not None
        assert rows["ft-old"].status == "superseded"
        assert rows["ft-old"].status_reason == "superseded by ft-new"
        assert session.scalar(select(func.count()).where(ModelVersion.status == "active")) == 1


def test_retiring_deletes_only_that_versions_embeddings_and_refuses_the_active_one(engine: Engine) -> None:
    with Session(engine) as session:
        article = Article(wiki="en.wikipedia.org", title="Dog")
        session.add(article)
        session.flush()
        reference = ArticleReference(article_id=article.id, position=0, text="Dogs.", content_hash="h")
        session.add(reference)
        session.commit()
        keep = make_version(session, "ft-keep")
        gone = make_version(session, "ft-gone")
        add_embeddings(session, keep.id, article.id, reference.id)
        add_embeddings(session, gone.id, article.id, reference.id)
        registry.activate_version(session=session, version_id=keep.id)
        for version in (keep, gone):
            build_indexes(session=session, version_id=version.id, m=16, ef_construction=64)
        session.commit()

        with pytest.raises(registry.RegistryError, match="ft-keep is the active version"):
            registry.retire_version(session=session, version_id=keep.id)
        registry.retire_version(session=session, version_id=gone.id)

        counts = dict(
            session.execute(
                select(TitleEmbedding.model_version_id, func.count()).group_by(
                    TitleEmbedding.model_version_id
                )
            ).all()
        )
        assert counts == {keep.id: 1}
        assert session.scalar(select(func.count()).select_from(ReferenceEmbedding)) == 1
        assert registry.get_version(session=session, name="ft-gone").status == "retired"
        indexes = {
            name: session.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name})
            for version in (keep, gone)
            for name in (hnsw_index_name(version.id, kind) for kind in KINDS)
        }
        assert indexes == {
            **{hnsw_index_name(keep.id, kind): True for kind in KINDS},
            **{hnsw_index_name(gone.id, kind): False for kind in KINDS},
        }
        with pytest.raises(registry.RegistryError, match="retired"):
            registry.activate_version(session=session, version_id=gone.id)


def test_the_base_model_is_a_version_that_serves_until_a_version_passes_the_gate(engine: Engine) -> None:
    with Session(engine) as session:
        base, activated = registry.ensure_base_version(
            session=session, name="base", base_model="m", article_text="title+lead40"
        )
        assert activated and base.status == "active" and base.artifact_path is None
        assert base.article_text == "title+lead40"
        again, activated = registry.ensure_base_version(
            session=session, name="base", base_model="m", article_text="title"
        )
        assert again.id == base.id and not activated
        noisy = make_version(session, "ft-1")
        refused = registry.store_verdict(
            session=session, version_id=noisy.id, promote=False, reason="noise", compared_with_id=base.id
        )
        assert refused.status == "candidate" and refused.status_reason == "noise"
        better = make_version(session, "ft-2")
        promoted = registry.store_verdict(
            session=session, version_id=better.id, promote=True, reason="gain", compared_with_id=base.id
        )
        assert promoted.status == "active" and promoted.status_reason == "gain"
        worse_than_active = make_version(session, "ft-3")
        registry.store_verdict(
            session=session,
            version_id=worse_than_active.id,
            promote=False,
            reason="behind the active version",
            compared_with_id=better.id,
        )
    with Session(engine) as session:
        status = {v.name: v.status for v in registry.list_versions(session=session)}
    assert status == {"base": "superseded", "ft-1": "candidate", "ft-2": "active", "ft-3": "candidate"}


def test_a_comparison_with_a_version_no_longer_active_does_not_promote(engine: Engine) -> None:
    with Session(engine) as session:
        first = make_version(session, "ft-1")
        second = make_version(session, "ft-2")
        registry.activate_version(session=session, version_id=second.id)
        late = make_version(session, "ft-late", ndcg=0.99)
        stale = registry.store_verdict(
            session=session, version_id=late.id, promote=True, reason="gain", compared_with_id=first.id
        )
        assert stale.status == "candidate"
        assert "changed to ft-2" in stale.status_reason
        assert registry.active_version(session=session).name == "ft-2"
