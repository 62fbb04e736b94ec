import json
from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from sentence_transformers import SentenceTransformer
from sqlalchemy.orm import Session

from wikiref.db import registry
from wikiref.db.engine import make_engine
from wikiref.flows.settings import TrainOverrides, get_settings
from wikiref.models.card import LOSS_PLOT
from wikiref.models.evaluate import METRICS

pytestmark = pytest.mark.slow


def test_train_flow_registers_a_gated_version_with_cis_a_loss_plot_and_artifacts(
    prefect_harness, loaded_database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from wikiref.flows.train import train_model

    monkeypatch.setenv("WIKIREF_DATABASE_URL", loaded_database_url)
    get_settings.cache_clear()
    knobs = TrainOverrides(device="cpu", batch_size=8, min_heldout_articles=20, bootstrap_samples=500)
    result = train_model(knobs=knobs, max_steps=3, limit_articles=60)

    gate = result["deltas"]["vs_base"]["ndcg@10"]
    assert gate["ci_low"] <= gate["delta"] <= gate["ci_high"]
    assert result["promoted"] is (gate["ci_low"] > 0)
    # Fused as served (no chunk metric: the functions serve single references), the embeddings alone beside.
    fused = [name for name in METRICS if name != "chunk_ndcg@10"]
    assert set(result["metrics"]["base"]) == set(fused) == set(result["metrics"]["finetuned"])
    assert set(result["metrics"]["finetuned_embeddings_alone"]) == set(METRICS)
    artifact = Path(result["artifact_path"])
    assert artifact.parent == tmp_path / "data" / "models"
    assert artifact.name == result["version"]

    engine = make_engine(loaded_database_url)
    with Session(engine) as session:
        version = registry.get_version(session=session, name=result["version"])
        assert version.status == ("active" if result["promoted"] else "candidate")
        assert version.status_reason == result["reason"]
        base = registry.get_version(session=session, name="base")
        assert base.artifact_path is None and base.status == (
            "superseded" if result["promoted"] else "active"
        )
        assert version.base_model == "sentence-transformers/all-MiniLM-L6-v2"
        assert version.params["max_steps"] == 3 and version.params["batch_size"] == 8
        assert version.params["sampler"] == get_settings().train_sampler
        assert version.dataset_counts["articles"] == 60 and version.dataset_counts["heldout_articles"] == 20
        assert len(version.dataset_fingerprint) == 64
        assert version.metrics["finetuned"] == result["metrics"]["finetuned"]
        assert version.metrics["deltas"]["vs_base"]["ndcg@10"] == gate
        assert [entry["step"] for entry in version.loss_log][0] == 1
    engine.dispose()

    embeddings = SentenceTransformer(str(artifact), device="cpu").encode(["Cat"])
    assert embeddings.shape == (1, 384)
    card = (artifact / "README.md").read_text(encoding="utf-8")
    assert f"![training loss]({LOSS_PLOT})" in card and (artifact / LOSS_PLOT).read_text().startswith("<svg")
    assert "| ndcg@10 |" in card and result["reason"] in card

    loss_artifact = Artifact.get("training-loss")
    metrics_artifact = Artifact.get("training-metrics")
    plot_artifact = Artifact.get("training-loss-plot")
    assert loss_artifact is not None and metrics_artifact is not None and plot_artifact is not None
    rows = json.loads(metrics_artifact.data)
    assert [row["metric"] for row in rows] == fused
    assert rows[0]["fine-tuned"] == round(result["metrics"]["finetuned"]["ndcg@10"], 4)
    assert (
        rows[0]["vs base [95% CI]"] == f"{gate['delta']:+.4f} [{gate['ci_low']:+.4f}, {gate['ci_high']:+.4f}]"
    )
    assert "data:image/svg+xml;base64," in plot_artifact.data
    assert json.loads(loss_artifact.data)[0]["step"] == 1
