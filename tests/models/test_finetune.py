"""Real training for a few steps on pairs from the shared pages."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sqlalchemy.orm import Session

from wikiref.db.corpus import iter_article_reference_texts
from wikiref.db.engine import make_engine
from wikiref.models.base import BASE_MODEL_ID, resolve_model_path
from wikiref.models.card import LOSS_PLOT, loss_plot_svg, render_model_card
from wikiref.models.errors import TrainingError
from wikiref.models.evaluate import METRICS, evaluate, load_model, paired_bootstrap
from wikiref.models.finetune import (
    TrainingConfig,
    TrainingResult,
    cpu_has_bf16,
    resolve_precision,
    source_aware_sampler,
    train,
    wise_ft,
)
from wikiref.models.gate import GateDelta, decide_promotion
from wikiref.models.pairs import ArticleTexts, Pair, PairSplit, TrainPairs, build_pairs, tokenizer_counter
from wikiref.models.sources import source_keys

pytestmark = pytest.mark.slow

BASE = resolve_model_path(BASE_MODEL_ID)
STEPS = 4


@pytest.fixture(scope="module")
def split(loaded_template_url: str) -> PairSplit:
    engine = make_engine(loaded_template_url)
    with Session(engine) as session:
        rows = list(iter_article_reference_texts(session=session, limit=60))
    # The template must have no connections left for other tests to copy it.
    engine.dispose()
    articles = [ArticleTexts(i, title, tuple(texts), lead) for i, title, texts, lead in rows]
    return build_pairs(
        articles,
        count_tokens=tokenizer_counter(BASE),
        token_budget=86,
        eval_fraction=0.15,
        min_heldout_articles=20,
        target="reference",
    )


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
    assert base.article_ids == finetuned.article_ids == tuple(a.article_id for a in split.heldout_articles)
    assert list(base.metrics()) == list(METRICS) == list(finetuned.metrics())
    for metrics in (base.metrics(), finetuned.metrics()):
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
        # Titles as queries against their own references: far better than chance on real pages.
        assert metrics["ndcg@10"] > 0.3
        assert metrics["ref_to_title_acc@1"] > 1 / len(split.heldout_titles)
    assert evaluate(load_model(BASE), split).metrics() == base.metrics()


def test_the_gate_refuses_a_wrecked_version_and_promotes_a_clearly_better_one(
    tmp_path: Path, split: PairSplit
) -> None:
    # A few steps at a learning rate this high wreck the model: its CI vs the base lies below zero.
    wrecked = train(
        base_model=BASE,
        pairs=split.train,
        output_dir=tmp_path / "wrecked",
        checkpoint_dir=tmp_path / "checkpoints",
        config=TrainingConfig(max_steps=3, learning_rate=5e-3, batch_size=16),
        device="cpu",
    )
    base = evaluate(load_model(BASE), split)
    worse = evaluate(load_model(str(wrecked.artifact_path)), split)
    vs_base = paired_bootstrap(worse, base, seed=1)["ndcg@10"]
    assert vs_base.high < 0
    refused = decide_promotion(
        metric="ndcg@10",
        vs_base=GateDelta(vs_base.value, vs_base.low, vs_base.high),
        active_name="base",
        vs_active=None,
    )
    assert not refused.promote and "the lower bound is not above +0.0000" in refused.reason
    # The other way round, measured the same way: the base model is clearly better than the wrecked one.
    gain = paired_bootstrap(base, worse, seed=1)["ndcg@10"]
    assert gain.low > 0
    assert decide_promotion(
        metric="ndcg@10",
        vs_base=GateDelta(gain.value, gain.low, gain.high),
        active_name="wrecked",
        vs_active=GateDelta(gain.value, gain.low, gain.high),
    ).promote


def test_wise_ft_mixes_the_weights_with_the_base_model(trained: TrainingResult) -> None:
    texts = ["Cat", "Coppinger, Raymond (2001). Dogs. Scribner."]
    base = SentenceTransformer(BASE, device="cpu").encode(texts)
    model = load_model(str(trained.artifact_path))
    tuned = model.encode(texts)
    wise_ft(model, BASE, 0.0)
    np.testing.assert_allclose(model.encode(texts), base, atol=1e-5)
    mixed = load_model(str(trained.artifact_path))
    wise_ft(mixed, BASE, 0.5)
    halfway = mixed.encode(texts)
    assert not np.allclose(halfway, base, atol=1e-5) and not np.allclose(halfway, tuned, atol=1e-5)


def test_no_batch_holds_a_source_that_another_anchor_of_the_batch_cites() -> None:
    shared = "Smith, J. (2001). Dogs. doi:10.1000/xyz123."
    assert "doi:10.1000/xyz123" in source_keys(shared)
    assert source_keys("See https://www.example.org/page/.") >= {"url:example.org/page"}
    assert "doi:10.1000/xyz123" in source_keys("Smith J, Dogs, 2001. https://doi.org/10.1000/XYZ123")
    pairs = [
        Pair(1, "A", shared, "A"),
        Pair(2, "B", "Smith J, Dogs, 2001. https://doi.org/10.1000/XYZ123", "B"),
    ]
    pairs += [Pair(i, f"T{i}", f"Reference {i} of its own.", f"T{i}") for i in range(3, 11)]
    pairs += [Pair(1, "A", "Another reference of A.", "A")]
    sampler = source_aware_sampler(pairs)(list(range(len(pairs))), batch_size=4, drop_last=False, seed=5)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(len(pairs)))
    for batch in batches:
        # Articles 1 and 2 cite the same DOI, and article 1 (A) appears once per batch at most.
        assert not {0, 1} <= set(batch)
        assert not {0, len(pairs) - 1} <= set(batch)
        assert not {1, len(pairs) - 1} <= set(batch)


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


def test_max_pairs_bounds_the_steps_of_a_run_and_never_adds_any(
    tmp_path: Path, split: PairSplit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wikiref.models.finetune")
    capped = train(
        base_model=BASE,
        pairs=split.train,
        output_dir=tmp_path / "capped",
        checkpoint_dir=tmp_path / "c1",
        config=TrainingConfig(batch_size=8, max_pairs=20, logging_steps=1),
        device="cpu",
    )
    assert capped.steps == 3  # ceil(20 / 8)
    # The log says the cap, not epochs, ended the run (epochs would have trained more steps).
    assert "3 steps of 8, capped by max_pairs 20" in caplog.text
    caplog.clear()
    few = split.train[:24]
    uncapped = train(
        base_model=BASE,
        pairs=few,
        output_dir=tmp_path / "uncapped",
        checkpoint_dir=tmp_path / "c2",
        config=TrainingConfig(batch_size=8, max_pairs=4096, logging_steps=1),
        device="cpu",
    )
    assert uncapped.steps == 3  # one epoch of 24 pairs: a cap above the data trains no second pass
    assert "capped by max_pairs" not in caplog.text


def test_bad_options_are_refused_in_one_message() -> None:
    with pytest.raises(TrainingError, match="batch_size must be at least 2.*sampler must be"):
        TrainingConfig(batch_size=1, sampler="shuffled")
    with pytest.raises(TrainingError, match="max_pairs must be at least 0"):
        TrainingConfig(max_pairs=-1)
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(TrainingError, match="needs a CUDA device"):
        resolve_precision("fp16", "cpu")


def test_the_model_card_holds_the_loss_plot_and_base_vs_fine_tuned_with_cis(trained: TrainingResult) -> None:
    base = dict.fromkeys(METRICS, 0.5)
    finetuned = dict.fromkeys(METRICS, 0.6)
    ci = {"delta": 0.1, "ci_low": 0.05, "ci_high": 0.15}
    text = render_model_card(
        name="ft-test",
        base_model=BASE_MODEL_ID,
        params={"batch_size": 8},
        dataset_fingerprint="abc",
        dataset_counts={"train_pairs": 10},
        loss_log=trained.loss_log,
        base_metrics=base,
        base_title_metrics=dict.fromkeys(METRICS, 0.4),
        finetuned_metrics=finetuned,
        deltas={"vs_base": dict.fromkeys(METRICS, ci)},
        article_text="title+lead40",
        gate="**Gate (ndcg@10): promoted.**",
        samples_per_second=12.5,
        fusion_weights={
            "similar_references": {"words": 0.2},
            "articles_for_reference": {"words": 0.1, "vote": 1.0},
        },
    )
    assert text.startswith("---\nlibrary_name: sentence-transformers\n")
    assert f"base_model: {BASE_MODEL_ID}" in text and "**Article text: `title+lead40`.**" in text
    assert f"![training loss]({LOSS_PLOT})" in text
    assert text.count("\n| 1 | ") == 1 and f"\n| {STEPS} | " in text
    assert "| ndcg@10 | 0.4 | 0.5 | 0.6 | +0.1000 [+0.0500, +0.1500] | - |" in text
    assert text.rstrip().endswith("**Gate (ndcg@10): promoted.**")
    assert (
        "| `similar_references` | 1 | - | 0.2 |" in text
        and "| `articles_for_reference` | 1 | 1.0 | 0.1 |" in text
    )
    svg = loss_plot_svg(trained.loss_log)
    assert svg.startswith("<svg") and svg.count("<polyline") == 1
    assert len(svg.split('points="')[1].split('"')[0].split()) == len(trained.loss_log)


def test_pairs_on_disk_train_exactly_as_the_same_pairs_in_a_list(tmp_path: Path) -> None:
    articles = [
        ArticleTexts(
            i, f"Article {i}", tuple(f"Author {i}.{j} (2001). Book {j} on topic {i}." for j in range(4))
        )
        for i in range(40)
    ]
    split = build_pairs(
        articles,
        count_tokens=lambda texts: [len(text.split()) for text in texts],
        token_budget=12,
        eval_fraction=0.2,
        target="reference",
    )
    assert isinstance(split.train, TrainPairs)
    config = TrainingConfig(max_steps=2, batch_size=8, sampler="no_duplicates", precision="fp32")
    weights = []
    for name, pairs in (("arrow", split.train), ("list", list(split.train))):
        result = train(
            base_model=BASE,
            pairs=pairs,
            output_dir=tmp_path / name,
            checkpoint_dir=tmp_path / f"{name}-checkpoints",
            config=config,
            device="cpu",
        )
        weights.append(SentenceTransformer(str(result.artifact_path), device="cpu").state_dict())
    on_disk, in_memory = weights
    assert all(torch.equal(on_disk[key], in_memory[key]) for key in in_memory)
