import json
from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from sentence_transformers import SentenceTransformer
from sqlalchemy.orm import Session

from db import registry
from db.engine import make_engine
from flows.settings import get_settings
from models.evaluate import METRICS

pytestmark = pytest.mark.slow


def test_train_flow_registers_an_active_version_with_metrics_and_artifacts(
    prefect_harness, loaded_database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.train import train_model

    monkeypatch.setenv("WIKIREF_DATABASE_URL", loaded_database_url)
    get_settings.cache_clear()
    result = train_model(max_steps=3, limit_articles=30, device="cpu")

    assert result["promoted"] is True
    assert result["reason"].startswith("no active version")
    assert set(result["metrics"]["base"]) == set(METRICS) == set(result["metrics"]["finetuned"])
    artifact = Path(result["artifact_path"])
    assert artifact.parent == tmp_path / "data" / "models"
    assert artifact.name == result["version"]

    engine = make_engine(loaded_database_url)
    with Session(engine) as session:
        version = registry.get_version(session=session, name=result["version"])
        assert version.status == "active" and version.activated_at is not None
        assert version.base_model == "sentence-transformers/all-MiniLM-L6-v2"
        assert version.params["max_steps"] == 3 and version.params["batch_size"] == 8
        assert version.params["sampler"] == get_settings().train_sampler
        assert version.dataset_counts["articles"] == 30
        assert len(version.dataset_fingerprint) == 64
        assert version.metrics["finetuned"] == result["metrics"]["finetuned"]
        assert [entry["step"] for entry in version.loss_log][0] == 1
    engine.dispose()

    embeddings = SentenceTransformer(str(artifact), device="cpu").encode(["Cat"])
    assert embeddings.shape == (1, 384)
    card = (artifact / "README.md").read_text(encoding="utf-8")
    assert "### Training log" in card and "| ndcg@10 |" in card

    loss_artifact = Artifact.get("training-loss")
    metrics_artifact = Artifact.get("training-metrics")
    assert loss_artifact is not None and metrics_artifact is not None
    rows = json.loads(metrics_artifact.data)
    assert [row["metric"] for row in rows] == list(METRICS)
    assert rows[0]["fine-tuned"] == round(result["metrics"]["finetuned"]["ndcg@10"], 4)
    assert json.loads(loss_artifact.data)[0]["step"] == 1
