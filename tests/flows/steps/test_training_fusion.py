"""A training run chooses fusion weights on its validation articles, stores them, and gates on the fused scorer."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from wikiref.db import registry
from wikiref.db.engine import make_engine
from wikiref.flows.settings import get_settings
from wikiref.flows.steps.training import TrainRequest, run_training
from wikiref.models.fusion import VOTE_GRID, WORDS_GRID

pytestmark = pytest.mark.slow


def test_a_run_stores_the_weights_it_chose_for_its_version_and_base_and_gates_on_the_fused_scores(
    loaded_database_url: str, tmp_path: Path
) -> None:
    request = TrainRequest.from_settings(
        get_settings(),
        {"device": "cpu", "batch_size": 8, "min_heldout_articles": 20, "bootstrap_samples": 500},
        max_steps=2,
        limit_articles=60,
    )
    engine = make_engine(loaded_database_url)
    try:
        outcome = run_training(
            engine, request, models_dir=tmp_path / "models", checkpoints_dir=tmp_path / "ckpt"
        )
        with Session(engine) as session:
            version = registry.get_version(session=session, name=outcome.version)
            stored = registry.fusion_weights(session=session, version_id=version.id)
            base_id = registry.get_version(session=session, name="base").id
            base_stored = registry.fusion_weights(session=session, version_id=base_id)
            metrics, reason = version.metrics, version.status_reason
    finally:
        engine.dispose()

    fusion = metrics["fusion"]
    assert fusion["validation_articles"] >= 2
    assert stored == fusion["weights"] == outcome.fusion_weights["weights"]
    assert base_stored == fusion["base_weights"]
    for weights in (stored, base_stored):
        assert weights["similar_references"]["words"] in WORDS_GRID
        assert weights["articles_for_reference"]["words"] in WORDS_GRID
        assert weights["articles_for_reference"]["vote"] in VOTE_GRID
    # Every grid point was scored on the validation articles, for both versions.
    assert len(fusion["validation"]["finetuned"]["articles_for_reference"]) == len(WORDS_GRID) * len(
        VOTE_GRID
    )

    # The gate's metric is the fused one; the embeddings alone are reported beside it, and they differ.
    gate = metrics["deltas"]["vs_base"]["ndcg@10"]
    assert f"ndcg@10 vs base {gate['delta']:+.4f}" in reason
    assert metrics["finetuned"] == outcome.finetuned_metrics
    assert metrics["finetuned_embeddings_alone"] == outcome.finetuned_embedding_metrics
    assert "chunk_ndcg@10" in metrics["finetuned_embeddings_alone"]
    assert metrics["finetuned"] != {
        name: value
        for name, value in metrics["finetuned_embeddings_alone"].items()
        if name != "chunk_ndcg@10"
    }

    card = (Path(outcome.artifact_path) / "README.md").read_text(encoding="utf-8")
    assert "## Serving: fused scores" in card
    vote, words = stored["articles_for_reference"]["vote"], stored["articles_for_reference"]["words"]
    hubness, chosen_words = stored["similar_references"]["hubness"], stored["similar_references"]["words"]
    # The signals' columns in alphabetical order: hubness, vote, words.
    assert f"| `articles_for_reference` | 1 | - | {vote} | {words} |" in card
    assert f"| `similar_references` | 1 | {hubness} | - | {chosen_words} |" in card
    assert "The embeddings alone" in card
