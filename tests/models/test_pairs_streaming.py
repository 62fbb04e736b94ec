"""The streaming pair builder (spill file, Arrow training pairs, capped held-out set) against the builder it
replaced (tests/models/pairs_before_streaming.py): the same split, pairs and fingerprints."""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest
from sqlalchemy.orm import Session

from tests.models import pairs_before_streaming
from wikiref.db.corpus import iter_article_reference_texts
from wikiref.db.engine import make_engine
from wikiref.models.article_text import DEFAULT_RECIPE, TITLE_ONLY, ArticleTextRecipe
from wikiref.models.base import BASE_MODEL_ID, resolve_model_path
from wikiref.models.pairs import (
    DEFAULT_MAX_HELDOUT_ARTICLES,
    TOKEN_BATCH_TEXTS,
    ArticleTexts,
    PairSplit,
    TrainPairs,
    build_pairs,
    heldout_score,
    tokenizer_counter,
)


def words(texts):
    return [len(text.split()) for text in texts]


def corpus(n: int, *, refs: int = 6) -> list[ArticleTexts]:
    return [
        ArticleTexts(
            i,
            f"Article {i}",
            tuple(f"Author {i}.{j} (2001). Book number {j} about topic {i}. Publisher." for j in range(refs)),
            f"Lead of article {i} says what it is about." if i % 3 else None,
        )
        for i in range(n)
    ]


def assert_same_split(new: PairSplit, old: PairSplit) -> None:
    assert isinstance(new.train, TrainPairs)
    assert list(new.train) == old.train
    assert len(new.train) == len(old.train)
    assert new.heldout == old.heldout
    assert new.heldout_references == old.heldout_references
    assert new.heldout_titles == old.heldout_titles
    assert new.heldout_articles == old.heldout_articles
    assert new.validation_articles == old.validation_articles
    assert new.fingerprint == old.fingerprint
    assert new.heldout_fingerprint == old.heldout_fingerprint
    assert new.recipe == old.recipe
    assert new.counts == {**old.counts, "reserved_heldout_articles": 0}


def tricky_corpus() -> list[ArticleTexts]:
    """Empty and duplicate references, titles whose order differs between bytes, case and code points, a title
    shared by two ids, and an article with nothing left."""
    titles = [
        "Zebra",
        "apple",
        "Äpfel",
        "Ápple",
        "Apple",
        "日本",
        "Ωmega",
        "A\u0301pple",
        "Zebra",
        "e\U0001f600",
    ]
    articles = [
        ArticleTexts(100 - i, title, (f"Ref {i} one two", "  ", f"Ref {i} one two", f"Another {i} x y z", ""))
        for i, title in enumerate(titles)
    ]
    return [*articles, ArticleTexts(7, "Nothing", ("", "\n")), *corpus(40)]


@pytest.mark.parametrize(
    "options",
    [
        {"token_budget": 30, "eval_fraction": 0.2},
        {"token_budget": 5, "eval_fraction": 0.2, "target": "reference", "recipe": ArticleTextRecipe(3)},
        {"token_budget": 12, "eval_fraction": 0.3, "min_heldout_articles": 25, "validation_fraction": 0.2},
        {"token_budget": 12, "eval_fraction": 0.01, "min_heldout_articles": 0},
        {"token_budget": 12, "eval_fraction": 0.9},
        {"token_budget": 12, "eval_fraction": 0.2, "is_heldout": lambda title: title.startswith("Article 1")},
    ],
)
def test_the_streaming_builder_gives_the_old_builders_split(options: dict) -> None:
    for articles in (tricky_corpus(), corpus(2), corpus(1), [], list(reversed(tricky_corpus()))):
        new = build_pairs(articles, count_tokens=words, **options)
        old = pairs_before_streaming.build_pairs(articles, count_tokens=words, **options)
        assert_same_split(new, old)
        # A cap above the held-out set changes nothing either.
        capped = build_pairs(articles, count_tokens=words, max_heldout_articles=500, **options)
        assert_same_split(capped, old)


def test_references_are_tokenized_in_batches_across_articles() -> None:
    calls: list[int] = []

    def counting(texts):
        calls.append(len(texts))
        return words(texts)

    split = build_pairs(corpus(1000), count_tokens=counting, token_budget=30, eval_fraction=0.2)
    assert sum(calls) == 6000 and len(calls) == -(-6000 // TOKEN_BATCH_TEXTS)
    assert split.counts["references"] == 6000


def test_train_pairs_live_on_disk_and_read_as_a_sequence_and_a_dataset() -> None:
    split = build_pairs(corpus(50), count_tokens=words, token_budget=12, eval_fraction=0.2)
    train = split.train
    assert isinstance(train, TrainPairs) and train.path.is_file()
    pairs = list(train)
    assert len(train) == len(pairs) == split.counts["train_pairs"] > 0
    assert train[0] == pairs[0] and train[-1] == pairs[-1] and train[3:7] == pairs[3:7]
    assert train[::-5] == pairs[::-5] and train[5:5] == []
    with pytest.raises(IndexError):
        train[len(pairs)]
    assert train + split.heldout == pairs + split.heldout
    dataset = train.dataset()
    assert dataset.column_names == ["anchor", "positive"]
    assert dataset["anchor"] == [p.anchor for p in pairs] and dataset["positive"] == [p.chunk for p in pairs]
    folder = train.path.parent
    del dataset, train, split
    gc.collect()
    assert not folder.exists()


def test_the_held_out_cap_keeps_the_lowest_hashes_and_never_moves_a_held_out_article_into_training() -> None:
    options = {
        "token_budget": 30,
        "eval_fraction": 0.2,
        "min_heldout_articles": 25,
        "max_heldout_articles": 40,
    }
    sides = []
    for size in (100, 400, 800, 1600):
        split = build_pairs(corpus(size), count_tokens=words, **options)
        evaluated = set(split.heldout_titles.values())
        train = {p.title for p in split.train}
        held_by_hash = {f"Article {i}" for i in range(size) if heldout_score(f"Article {i}") < 0.2}
        if size >= 400:
            assert len(evaluated) == 40 == split.counts["heldout_articles"]
            assert split.counts["reserved_heldout_articles"] == len(held_by_hash) - 40
            # The evaluated ones are the lowest hashes; the rest of the held-out side is in neither set.
            lowest = sorted(held_by_hash, key=heldout_score)[:40]
            assert evaluated == set(lowest)
        assert not evaluated & train and not held_by_hash & train
        assert split.counts["train_articles"] == len(train)
        sides.append((evaluated, train))
    for (small_heldout, small_train), (_, grown_train) in zip(sides, sides[1:], strict=False):
        assert not small_heldout & grown_train, "a held-out article became training data"
        assert small_train <= grown_train
    # The floor is the lowest hashes too, so a cap at the floor keeps it.
    floored = build_pairs(corpus(100), count_tokens=words, **{**options, "max_heldout_articles": 25})
    assert floored.counts["heldout_articles"] == 25


def test_a_capped_split_has_its_own_fingerprint_and_caps_validation_articles_too() -> None:
    articles = corpus(600)
    uncapped = build_pairs(
        articles, count_tokens=words, token_budget=30, eval_fraction=0.2, validation_fraction=0.2
    )
    capped = build_pairs(
        articles,
        count_tokens=words,
        token_budget=30,
        eval_fraction=0.2,
        validation_fraction=0.2,
        max_heldout_articles=30,
    )
    assert capped.fingerprint != uncapped.fingerprint
    assert capped.heldout_fingerprint != uncapped.heldout_fingerprint
    assert len(capped.heldout_articles) == len(capped.validation_articles) == 30
    assert len(uncapped.validation_articles) > 30
    # Validation articles beyond the cap train; the held-out ones beyond it do not.
    kept = {a.title for a in capped.validation_articles}
    spare = {a.title for a in uncapped.validation_articles} - kept
    assert spare <= {p.title for p in capped.train}
    assert kept == {
        a.title
        for a in sorted(uncapped.validation_articles, key=lambda a: heldout_score(a.title, "validation:"))[
            :30
        ]
    }
    with pytest.raises(ValueError, match="max_heldout_articles"):
        build_pairs(
            articles,
            count_tokens=words,
            token_budget=30,
            eval_fraction=0.2,
            min_heldout_articles=50,
            max_heldout_articles=49,
        )


def test_shared_pages_give_the_same_pairs_as_before_with_the_model_tokenizer(
    loaded_database_url: str,
) -> None:
    engine = make_engine(loaded_database_url)
    with Session(engine) as session:
        rows = list(iter_article_reference_texts(session=session))
    engine.dispose()
    articles = [ArticleTexts(i, title, tuple(texts), lead) for i, title, texts, lead in rows]
    count = tokenizer_counter(resolve_model_path(BASE_MODEL_ID))
    for options in (
        # The defaults of `wikiref train` (WiSE-FT's validation share on), and the chunk recipe on titles.
        {
            "recipe": DEFAULT_RECIPE,
            "target": "reference",
            "min_heldout_articles": 50,
            "validation_fraction": 0.1,
        },
        {"recipe": TITLE_ONLY, "target": "chunk"},
    ):
        old = pairs_before_streaming.build_pairs(
            articles, count_tokens=count, token_budget=86, eval_fraction=0.2, **options
        )
        new = build_pairs(
            articles,
            count_tokens=count,
            token_budget=86,
            eval_fraction=0.2,
            max_heldout_articles=DEFAULT_MAX_HELDOUT_ARTICLES,
            **options,
        )
        assert_same_split(new, old)
        assert new.counts["mean_chunk_tokens"] > 0
        # In another row order and under other ids: the same pairs (the old builder's promise, kept).
        shuffled = [replace(a, article_id=a.article_id + 10_000) for a in reversed(articles)]
        again = build_pairs(shuffled, count_tokens=count, token_budget=86, eval_fraction=0.2, **options)
        assert again.fingerprint == new.fingerprint
