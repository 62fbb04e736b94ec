"""Real training for a few steps on pairs from the shared pages."""

from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from sqlalchemy.orm import Session

from db.corpus import article_reference_texts
from db.engine import make_engine
from models.base import BASE_MODEL_ID, resolve_model_path
from models.card import render_model_card
from models.evaluate import METRICS, evaluate, load_model
from models.finetune import TrainingConfig, TrainingError, TrainingResult, resolve_precision, train
from models.pairs import ArticleTexts, PairSplit, build_pairs, tokenizer_counter

pytestmark = pytest.mark.slow

BASE = resolve_model_path(BASE_MODEL_ID)
STEPS = 4


@pytest.fixture(scope="module")
def split(loaded_template_url: str) -> PairSplit:
    engine = make_engine(loaded_template_url)
    with Session(engine) as session:
        rows = article_reference_texts(session=session, limit=30)
    # The template must have no connections left for other tests to copy it.
    engine.dispose()
    articles = [ArticleTexts(i, title, tuple(texts), lead) for i, title, texts, lead in rows]
    return build_pairs(articles, count_tokens=tokenizer_counter(BASE), token_budget=86, eval_fraction=0.15)


@pytest.fixture(scope="module")
def trained(split: PairSplit, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    root = tmp_path_factory.mktemp("train")
    return train(
        base_model=BASE,
        pairs=split.train,
        output_dir=root / "model",
        checkpoint_dir=root / "checkpoints",
        config=TrainingConfig(max_steps=STEPS, sampler="no_duplicates", logging_steps=1),
        device="cpu",
    )


def test_a_few_steps_give_a_model_that_loads_and_embeds_normalised_384_dims(
    trained: TrainingResult, split: PairSplit
) -> None:
    assert trained.steps == STEPS
    assert [entry["step"] for entry in trained.loss_log] == list(range(1, STEPS + 1))
    assert all(np.isfinite(entry["loss"]) and entry["loss"] > 0 for entry in trained.loss_log)
    assert trained.samples_per_second > 0
    assert not (trained.artifact_path.parent / "checkpoints").exists()

    model = SentenceTransformer(str(trained.artifact_path), device="cpu")
    texts = [split.train[0].title, split.train[0].chunk]
    embeddings = model.encode(texts)
    assert embeddings.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    base = SentenceTransformer(BASE, device="cpu").encode(texts)
    assert not np.allclose(base, embeddings, atol=1e-4), "training changed no weight"


def test_evaluation_reports_every_metric_for_base_and_fine_tuned(
    trained: TrainingResult, split: PairSplit
) -> None:
    base = evaluate(load_model(BASE), split)
    finetuned = evaluate(load_model(str(trained.artifact_path)), split)
    assert list(base) == list(METRICS) == list(finetuned)
    for metrics in (base, finetuned):
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
        # Titles as queries against their own chunks: far better than chance on real pages.
        assert metrics["ndcg@10"] > 0.3
        assert metrics["ref_to_title_acc@1"] > 1 / len(split.heldout_titles)
    assert evaluate(load_model(BASE), split) == base


def test_an_existing_model_folder_is_never_overwritten(tmp_path: Path, split: PairSplit) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"earlier run")
    with pytest.raises(TrainingError, match="already holds a model"):
        train(
            base_model=BASE, pairs=split.train, output_dir=tmp_path / "model", checkpoint_dir=tmp_path / "c"
        )
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == b"earlier run"


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path: Path, split: PairSplit) -> None:
    config = TrainingConfig(max_steps=3, save_steps=2, logging_steps=1)

    def crash_after_step_two(step: int, total: int, logs: dict) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            base_model=BASE,
            pairs=split.train,
            output_dir=tmp_path / "first",
            checkpoint_dir=tmp_path / "checkpoints",
            config=config,
            device="cpu",
            on_progress=crash_after_step_two,
        )
    checkpoint = tmp_path / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").exists()
    resumed = train(
        base_model=BASE,
        pairs=split.train,
        output_dir=tmp_path / "resumed",
        checkpoint_dir=tmp_path / "checkpoints-2",
        config=config,
        device="cpu",
        resume_from_checkpoint=checkpoint,
    )
    assert resumed.steps == 3
    assert [entry["step"] for entry in resumed.loss_log if entry["step"] > 2] == [3]


def test_bad_options_are_refused_in_one_message() -> None:
    with pytest.raises(TrainingError, match="batch_size must be at least 2.*sampler must be"):
        TrainingConfig(batch_size=1, sampler="shuffled")
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(TrainingError, match="needs a CUDA device"):
        resolve_precision("bf16", "cpu")


def test_the_model_card_holds_the_training_log_and_the_evaluation_table(trained: TrainingResult) -> None:
    base = dict.fromkeys(METRICS, 0.5)
    finetuned = dict.fromkeys(METRICS, 0.6)
    text = render_model_card(
        name="ft-test",
        base_model=BASE_MODEL_ID,
        params={"batch_size": 8},
        dataset_fingerprint="abc",
        dataset_counts={"train_pairs": 10},
        loss_log=trained.loss_log,
        base_metrics=base,
        finetuned_metrics=finetuned,
        samples_per_second=12.5,
    )
    assert text.startswith("---\nlibrary_name: sentence-transformers\n")
    assert f"base_model: {BASE_MODEL_ID}" in text
    assert text.count("\n| 1 | ") == 1 and f"\n| {STEPS} | " in text
    assert "| ndcg@10 | 0.5000 | 0.6000 | +0.1000 |" in text
    assert "| ref_to_title_acc@1 | 0.5000 | 0.6000 | +0.1000 |" in text
