"""Hard negatives mined with the real base model: the false-negative rule, determinism, and training with them."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from tests.conftest import SHARED_WIKIPEDIA
from wikiref.models.base import BASE_MODEL_ID, resolve_model_path
from wikiref.models.errors import TrainingError
from wikiref.models.finetune import TrainingConfig, source_aware_sampler, train
from wikiref.models.hard_negatives import mine_hard_negatives
from wikiref.models.pairs import ArticleTexts, Pair, TrainPairs, build_pairs, tokenizer_counter
from wikiref.models.sources import source_keys

BASE = resolve_model_path(BASE_MODEL_ID)

# Four articles; Dogs and Wolves cite the same DOI and the same URL with different texts, Cats cites one of
# Dogs' references with other case and punctuation. None of those may be a negative for the other article.
ARTICLES = {
    1: (
        "Dogs",
        [
            "Coppinger, Raymond (2001). Dogs: A Startling New Understanding of Canine Origin. doi:10.1000/dogs.2001",
            "Dogs descended from wolves. https://www.example.org/canids/wolves-and-dogs",
            "Dog breeds of the world (2005). Kennel Club.",
            "Serpell, James (1995). The Domestic Dog: Its Evolution, Behaviour and Interactions with People.",
        ],
    ),
    2: (
        "Wolves",
        [
            "R. Coppinger, Dogs, University of Chicago Press, 2001, https://doi.org/10.1000/DOGS.2001",
            "Wolves and dogs: see http://example.org/canids/wolves-and-dogs/ for the pack.",
            "Mech, L. David (1970). The Wolf: The Ecology and Behavior of an Endangered Species.",
            "Grey wolf packs hunt elk in Yellowstone. National Park Service.",
        ],
    ),
    3: (
        "Cats",
        [
            "DOG BREEDS OF THE WORLD, 2005 -- Kennel Club",
            "Cats and dogs as household pets: a survey of owners (2012).",
            "Driscoll, C. (2007). The Near Eastern origin of cat domestication. Science.",
        ],
    ),
    4: (
        "Puppy",
        [
            "Puppy training for new dog owners (2010). Dog training handbook.",
            "Feeding a puppy: nutrition guide for young dogs.",
            "Canine vaccination schedule for puppies. Veterinary Journal.",
        ],
    ),
}
PAIRS = [
    Pair(article_id, title, text, title) for article_id, (title, texts) in ARTICLES.items() for text in texts
]


@pytest.fixture(scope="module")
def model() -> SentenceTransformer:
    return SentenceTransformer(BASE, device="cpu")


def forbidden_for(article_id: int) -> set[str]:
    """The references that must never be a negative of ``article_id``'s pairs: its own, and any sharing a source."""
    own = ARTICLES[article_id][1]
    keys = set().union(*(source_keys(text) for text in own))
    return {pair.chunk for pair in PAIRS if pair.chunk in own or not source_keys(pair.chunk).isdisjoint(keys)}


def test_the_hand_made_articles_share_sources_under_other_texts() -> None:
    assert forbidden_for(1) - set(ARTICLES[1][1]) == {
        ARTICLES[2][1][0],  # the DOI
        ARTICLES[2][1][1],  # the URL
        ARTICLES[3][1][0],  # the text
    }
    assert forbidden_for(2) - set(ARTICLES[2][1]) == {ARTICLES[1][1][0], ARTICLES[1][1][1]}
    assert forbidden_for(4) == set(ARTICLES[4][1])


def test_no_negative_is_of_the_anchor_s_article_or_shares_a_source_with_it(
    model: SentenceTransformer,
) -> None:
    # Without the rule, the base model's nearest foreign reference of Dogs or Wolves is one sharing a source:
    # the rule has something to keep out.
    texts = [pair.chunk for pair in PAIRS]
    titles = [title for title, _ in ARTICLES.values()]
    scores = (
        model.encode(titles, normalize_embeddings=True) @ model.encode(texts, normalize_embeddings=True).T
    )
    score = {
        (title, text): float(value) for title, row in zip(titles, scores) for text, value in zip(texts, row)
    }
    nearest_foreign = [
        max((score[ARTICLES[article][0], text], text) for text in texts if text not in ARTICLES[article][1])[
            1
        ]
        for article in (1, 2)
    ]
    assert any(text in forbidden_for(article) for text, article in zip(nearest_foreign, (1, 2))), (
        nearest_foreign
    )

    mined = mine_hard_negatives(PAIRS, model, seed=3)
    assert len(mined.negatives) == len(PAIRS)
    assert (mined.articles, mined.references) == (4, len(PAIRS))
    for pair, negative in zip(PAIRS, mined.negatives, strict=True):
        assert negative in {other.chunk for other in PAIRS if other.article_id != pair.article_id}
        assert negative not in forbidden_for(pair.article_id), (pair, negative)
    # Every pair but the fallbacks has a negative scoring at most 95% of its positive.
    below_margin = sum(
        score[pair.anchor, negative] <= 0.95 * score[pair.anchor, pair.chunk] + 1e-6
        for pair, negative in zip(PAIRS, mined.negatives, strict=True)
    )
    assert mined.fallbacks < len(PAIRS) and below_margin >= len(PAIRS) - mined.fallbacks


def test_mining_is_deterministic_for_a_seed_and_falls_back_to_a_random_allowed_reference(
    model: SentenceTransformer,
) -> None:
    # A margin this wide leaves no reference below it: every pair falls back to a random allowed one.
    first = mine_hard_negatives(PAIRS, model, relative_margin=2.0, seed=7)
    assert first.fallbacks == len(PAIRS)
    assert mine_hard_negatives(PAIRS, model, relative_margin=2.0, seed=7).negatives == first.negatives
    assert mine_hard_negatives(PAIRS, model, relative_margin=2.0, seed=8).negatives != first.negatives
    for pair, negative in zip(PAIRS, first.negatives, strict=True):
        assert negative not in forbidden_for(pair.article_id)
    assert (
        mine_hard_negatives(PAIRS, model, seed=7).negatives
        == mine_hard_negatives(PAIRS, model, seed=42).negatives
    )


def test_an_article_whose_every_foreign_reference_shares_a_source_cannot_be_mined(
    model: SentenceTransformer,
) -> None:
    with pytest.raises(TrainingError, match="no hard negative for article 'Dogs'"):
        mine_hard_negatives([pair for pair in PAIRS if pair.article_id == 1], model, seed=0)
    shared = [PAIRS[0], Pair(2, "Wolves", ARTICLES[2][1][0], "Wolves")]
    with pytest.raises(TrainingError, match="shares a source"):
        mine_hard_negatives(shared, model, seed=0)


def test_the_source_aware_sampler_keeps_a_negative_away_from_the_article_it_belongs_to() -> None:
    pairs = [Pair(1, "A", "Reference of A.", "A"), Pair(2, "B", "Reference of B.", "B")]
    pairs += [Pair(i, f"T{i}", f"Reference {i} of its own.", f"T{i}") for i in range(3, 9)]
    negatives = ["REFERENCE of B"] + [f"Negative {i}." for i in range(1, len(pairs))]
    # Pair 0's negative cites B's reference (same text up to punctuation): A's pair and B's pair never share a
    # batch; without the negatives they may.
    for seed in range(5):
        batches = list(
            source_aware_sampler(pairs, negatives)(
                list(range(len(pairs))), batch_size=4, drop_last=False, seed=seed
            )
        )
        assert sorted(i for batch in batches for i in batch) == list(range(len(pairs)))
        assert all(not {0, 1} <= set(batch) for batch in batches)
    together = [
        {0, 1} <= set(batch)
        for seed in range(5)
        for batch in source_aware_sampler(pairs)(
            list(range(len(pairs))), batch_size=4, drop_last=False, seed=seed
        )
    ]
    assert any(together)


@pytest.fixture(scope="module")
def real_train_pairs() -> TrainPairs:
    from wikiref.flows.mediawiki.extract import extract_lead, extract_references
    from wikiref.flows.mediawiki.saved import iter_saved_pages

    articles = [
        ArticleTexts(
            i, page.title, tuple(r.text for r in extract_references(page.html)), extract_lead(page.html)
        )
        for i, page in enumerate(itertools.islice(iter_saved_pages(SHARED_WIKIPEDIA), 8), start=1)
    ]
    split = build_pairs(
        articles, count_tokens=tokenizer_counter(BASE), token_budget=86, eval_fraction=0.2, target="reference"
    )
    assert isinstance(split.train, TrainPairs) and len(split.train) >= 32
    return split.train


def test_training_with_hard_negatives_runs_and_saves_a_model_that_loads(
    tmp_path: Path, real_train_pairs: TrainPairs, model: SentenceTransformer
) -> None:
    config = TrainingConfig(
        max_steps=2,
        batch_size=8,
        loss="cached_mnrl",
        mini_batch_size=4,
        symmetric=True,
        sampler="no_duplicates",
        hard_negatives=True,
        max_seq_length=32,
        precision="fp32",
        logging_steps=1,
    )
    result = train(
        base_model=BASE,
        pairs=real_train_pairs,
        output_dir=tmp_path / "model",
        checkpoint_dir=tmp_path / "checkpoints",
        config=config,
        device="cpu",
    )
    assert result.steps == 2
    assert all(np.isfinite(entry["loss"]) and entry["loss"] > 0 for entry in result.loss_log)
    assert result.params["hard_negatives"] is True
    assert result.params["hard_negative_seconds"] >= 0 and result.params["hard_negative_fallbacks"] >= 0
    trained = SentenceTransformer(str(result.artifact_path), device="cpu")
    texts = [real_train_pairs[0].anchor, real_train_pairs[0].chunk]
    embeddings = trained.encode(texts)
    assert embeddings.shape == (2, 384)
    assert not np.allclose(model.encode(texts), embeddings, atol=1e-4), "training changed no weight"
