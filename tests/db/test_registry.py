import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from db import registry
from db.embeddings import KINDS, build_indexes, hnsw_index_name
from db.schema import Article, ArticleReference, ModelVersion, ReferenceEmbedding, TitleEmbedding


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


def test_the_promotion_rule_promotes_at_least_as_good_and_keeps_worse_as_candidate() -> None:
    assert registry.decide_promotion(
        metric="ndcg@10", candidate_score=0.5, active_name=None, active_score=None
    ).promote
    assert registry.decide_promotion(
        metric="ndcg@10", candidate_score=0.61, active_name="v1", active_score=0.6
    ).promote
    assert registry.decide_promotion(
        metric="ndcg@10", candidate_score=0.6, active_name="v1", active_score=0.6
    ).promote
    worse = registry.decide_promotion(
        metric="ndcg@10", candidate_score=0.59, active_name="v1", active_score=0.6
    )
    assert not worse.promote
    assert worse.reason == "ndcg@10 0.5900 < 0.6000 of active v1 on the same held-out set"
    unknown = registry.decide_promotion(
        metric="ndcg@10", candidate_score=0.9, active_name="v1", active_score=None
    )
    assert not unknown.promote


def test_promote_if_better_applies_the_rule_both_ways(engine: Engine) -> None:
    with Session(engine) as session:
        first = make_version(session, "ft-1", ndcg=0.60)
        assert registry.promote_if_better(
            session=session,
            version_id=first.id,
            metric="ndcg@10",
            candidate_score=0.60,
            compared_with_id=None,
            compared_score=None,
        ).promote
        worse = make_version(session, "ft-2", ndcg=0.55)
        decision = registry.promote_if_better(
            session=session,
            version_id=worse.id,
            metric="ndcg@10",
            candidate_score=0.55,
            compared_with_id=first.id,
            compared_score=0.60,
        )
        assert not decision.promote
        better = make_version(session, "ft-3", ndcg=0.65)
        assert registry.promote_if_better(
            session=session,
            version_id=better.id,
            metric="ndcg@10",
            candidate_score=0.65,
            compared_with_id=first.id,
            compared_score=0.60,
        ).promote
    with Session(engine) as session:
        status = {v.name: (v.status, v.status_reason) for v in registry.list_versions(session=session)}
    assert status["ft-1"] == ("superseded", "superseded by ft-3")
    assert status["ft-2"] == ("candidate", "ndcg@10 0.5500 < 0.6000 of active ft-1 on the same held-out set")
    assert status["ft-3"][0] == "active"


def test_a_comparison_with_a_version_no_longer_active_does_not_promote(engine: Engine) -> None:
    with Session(engine) as session:
        first = make_version(session, "ft-1")
        second = make_version(session, "ft-2")
        registry.activate_version(session=session, version_id=second.id)
        late = make_version(session, "ft-late", ndcg=0.99)
        decision = registry.promote_if_better(
            session=session,
            version_id=late.id,
            metric="ndcg@10",
            candidate_score=0.99,
            compared_with_id=first.id,
            compared_score=0.5,
        )
        assert not decision.promote
        assert "changed to ft-2" in decision.reason
        assert registry.active_version(session=session).name == "ft-2"
