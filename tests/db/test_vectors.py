import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wikiref.db.schema import EMBEDDING_DIM, Article, ModelVersion, TitleEmbedding


def unit(*leading: float) -> np.ndarray:
    vector = np.zeros(EMBEDDING_DIM, dtype=np.float32)
    vector[: len(leading)] = leading
    return vector / np.linalg.norm(vector)


def test_vector_384_round_trips_and_orders_by_cosine(engine) -> None:
    with Session(engine) as session:
        version = ModelVersion(name="v1", base_model="base")
        articles = [Article(wiki="w", title=title) for title in ("Cat", "Dog", "Car")]
        session.add_all([version, *articles])
        session.flush()
        vectors = {"Cat": unit(1.0, 0.1), "Dog": unit(0.9, 0.4), "Car": unit(0.0, 1.0)}
        session.add_all(
            TitleEmbedding(
                model_version_id=version.id, article_id=a.id, title=a.title, embedding=vectors[a.title]
            )
            for a in articles
        )
        session.commit()

        stored = session.scalars(select(TitleEmbedding).order_by(TitleEmbedding.title)).all()
        assert [row.title for row in stored] == ["Car", "Cat", "Dog"]
        for row in stored:
            assert len(row.embedding) == EMBEDDING_DIM
            np.testing.assert_allclose(row.embedding, vectors[row.title], rtol=1e-6)

        query = unit(1.0, 0.0)
        ranked = session.scalars(
            select(TitleEmbedding.title).order_by(TitleEmbedding.embedding.cosine_distance(query))
        ).all()
        assert ranked == ["Cat", "Dog", "Car"]


def test_vector_of_wrong_dimension_is_rejected(engine) -> None:
    with Session(engine) as session:
        version = ModelVersion(name="v1", base_model="base")
        article = Article(wiki="w", title="Cat")
        session.add_all([version, article])
        session.flush()
        session.add(
            TitleEmbedding(
                model_version_id=version.id, article_id=article.id, title="Cat", embedding=[1.0, 0.0]
            )
        )
        with pytest.raises(Exception, match="expected 384 dimensions"):
            session.flush()


def test_only_one_model_version_can_be_active(engine) -> None:
    with Session(engine) as session:
        session.add_all(
            [ModelVersion(name="a", base_model="m", status="active"), ModelVersion(name="b", base_model="m")]
        )
        session.commit()
        session.add(ModelVersion(name="c", base_model="m", status="active"))
        with pytest.raises(IntegrityError):
            session.commit()
