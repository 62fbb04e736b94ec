from dataclasses import replace

import pytest
from sqlalchemy.orm import Session

from wikiref.db.corpus import iter_article_reference_texts
from wikiref.db.engine import make_engine
from wikiref.models.article_text import ArticleTextRecipe
from wikiref.models.base import BASE_MODEL_ID, resolve_model_path
from wikiref.models.pairs import ArticleTexts, build_pairs, chunk_references, heldout_score, tokenizer_counter


def words(texts):
    return [len(text.split()) for text in texts]


def article(article_id: int, title: str, *references: str) -> ArticleTexts:
    return ArticleTexts(article_id, title, tuple(references))


def corpus(n: int) -> list[ArticleTexts]:
    return [
        article(
            i,
            f"Article {i}",
            *(f"Author {i}.{j} (2001). Book number {j} about topic {i}. Publisher." for j in range(6)),
        )
        for i in range(n)
    ]


def test_chunks_join_consecutive_references_up_to_the_budget_and_keep_long_ones_whole() -> None:
    references = ["a b c", "d e", "f g h i", "j", "k l m n o p q r s t"]
    chunks = chunk_references(references, words(references), token_budget=5)
    assert chunks == ["a b c d e", "f g h i j", "k l m n o p q r s t"]
    assert chunk_references(references, words(references), token_budget=100) == [" ".join(references)]


def test_empty_and_duplicate_chunks_are_dropped_and_counted() -> None:
    articles = [
        article(1, "Alpha", "one two", "  ", "one two", "three four", ""),
        article(2, "Beta", "five six"),
        article(3, "Gamma", "", "\n"),
    ]
    split = build_pairs(articles, count_tokens=words, token_budget=2, eval_fraction=0.5)
    chunks_of_alpha = [p.chunk for p in split.train + split.heldout if p.title == "Alpha"]
    assert chunks_of_alpha == ["one two", "three four"]
    assert split.counts["empty_references_dropped"] == 4
    assert split.counts["duplicate_chunks_dropped"] == 1
    # Gamma has no reference left, so it is on neither side.
    assert split.counts["articles"] == 2
    assert {p.title for p in split.train + split.heldout} == {"Alpha", "Beta"}


def test_split_is_by_article_without_leakage_and_stable_as_the_corpus_grows() -> None:
    small = build_pairs(corpus(60), count_tokens=words, token_budget=30, eval_fraction=0.2)
    train_titles = {p.title for p in small.train}
    heldout_titles = {p.title for p in small.heldout}
    assert train_titles and heldout_titles
    assert not train_titles & heldout_titles
    assert set(small.heldout_titles.values()) == heldout_titles
    assert {article_id for article_id, _ in small.heldout_references} == set(small.heldout_titles)
    assert heldout_titles == {f"Article {i}" for i in range(60) if heldout_score(f"Article {i}") < 0.2}
    assert 0.05 < len(heldout_titles) / 60 < 0.4

    grown = build_pairs(corpus(200), count_tokens=words, token_budget=30, eval_fraction=0.2)
    assert heldout_titles <= {p.title for p in grown.heldout}
    assert train_titles <= {p.title for p in grown.train}


def test_tiny_corpora_still_have_one_article_on_each_side() -> None:
    split = build_pairs(corpus(2), count_tokens=words, token_budget=30, eval_fraction=0.01)
    assert len({p.title for p in split.train}) == 1
    assert len(split.heldout_titles) == 1


def test_fingerprint_is_stable_for_the_same_data_and_changes_with_it() -> None:
    articles = corpus(30)
    first = build_pairs(articles, count_tokens=words, token_budget=30, eval_fraction=0.2)
    # Same texts under other database ids and in another order: same data, same fingerprint.
    renumbered = [replace(a, article_id=a.article_id + 1000) for a in reversed(articles)]
    again = build_pairs(renumbered, count_tokens=words, token_budget=30, eval_fraction=0.2)
    assert again.fingerprint == first.fingerprint
    assert again.heldout_fingerprint == first.heldout_fingerprint

    edited = list(articles)
    edited[3] = replace(edited[3], references=edited[3].references[:-1] + ("A corrected reference.",))
    changed = build_pairs(edited, count_tokens=words, token_budget=30, eval_fraction=0.2)
    assert changed.fingerprint != first.fingerprint
    assert (
        build_pairs(articles, count_tokens=words, token_budget=20, eval_fraction=0.2).fingerprint
        != first.fingerprint
    )


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="token_budget"):
        build_pairs(corpus(3), count_tokens=words, token_budget=0, eval_fraction=0.1)
    with pytest.raises(ValueError, match="eval_fraction"):
        build_pairs(corpus(3), count_tokens=words, token_budget=10, eval_fraction=1.0)


def test_pairs_of_the_shared_pages_use_the_model_tokenizer_and_do_not_leak(loaded_database_url: str) -> None:
    engine = make_engine(loaded_database_url)
    with Session(engine) as session:
        rows = list(iter_article_reference_texts(session=session))
        first_ten = list(iter_article_reference_texts(session=session, limit=10))
        # The streamed reader (server-side cursor, small pages) gives the very same rows in the same order.
        assert list(iter_article_reference_texts(session=session, page_size=7)) == rows
    engine.dispose()
    assert len(rows) >= 290
    assert [row[0] for row in first_ten] == [row[0] for row in rows[:10]]
    count = tokenizer_counter(resolve_model_path(BASE_MODEL_ID))
    split = build_pairs(
        [ArticleTexts(i, title, tuple(texts), lead) for i, title, texts, lead in rows],
        count_tokens=count,
        token_budget=86,
        eval_fraction=0.1,
    )
    assert split.counts["references"] == sum(len(texts) for _, _, texts, _ in rows)
    assert not {p.title for p in split.train} & {p.title for p in split.heldout}
    # The default budget gives chunks of about the reference recipe's 69 tokens.
    assert 55 <= split.counts["mean_chunk_tokens"] <= 80
    # Every chunk fits the budget unless it is one reference that is longer on its own.
    single = {title: {" ".join(text.split()) for text in texts} for _, title, texts, _ in rows}
    pairs = split.train + split.heldout
    over = [p for p, n in zip(pairs, count([p.chunk for p in pairs]), strict=True) if n > 86]
    assert over and all(p.chunk in single[p.title] for p in over)


def test_the_held_out_set_has_a_floor_is_disjoint_and_keeps_its_articles_as_the_corpus_grows() -> None:
    floored = build_pairs(
        corpus(60), count_tokens=words, token_budget=30, eval_fraction=0.2, min_heldout_articles=25
    )
    assert floored.counts["heldout_articles"] == 25
    # The floor never takes more than half of the articles.
    assert (
        build_pairs(
            corpus(10), count_tokens=words, token_budget=30, eval_fraction=0.2, min_heldout_articles=25
        ).counts["heldout_articles"]
        == 5
    )

    # Above the floor, the title hash alone decides: growing the corpus only adds articles to either side.
    sides = []
    for size in (400, 800):
        split = build_pairs(
            corpus(size), count_tokens=words, token_budget=30, eval_fraction=0.2, min_heldout_articles=25
        )
        heldout = set(split.heldout_titles.values())
        train = {p.title for p in split.train}
        assert heldout and train and not heldout & train
        assert {a.title for a in split.heldout_articles} == heldout
        sides.append((heldout, train))
    (small_heldout, small_train), (grown_heldout, grown_train) = sides
    assert small_heldout < grown_heldout and small_train < grown_train


def test_targets_are_single_references_or_chunks_and_anchors_follow_the_article_text_recipe() -> None:
    articles = [replace(a, lead=f"Lead of article {a.article_id} says what it is about.") for a in corpus(30)]
    singles = build_pairs(
        articles,
        count_tokens=words,
        token_budget=30,
        eval_fraction=0.2,
        recipe=ArticleTextRecipe(3),
        target="reference",
        validation_fraction=0.2,
    )
    assert all(p.anchor == f"{p.title}. Lead of article" for p in singles.train)
    assert all(p.chunk.startswith("Author ") and p.chunk.endswith("Publisher.") for p in singles.train)
    assert len(singles.train) == 6 * singles.counts["train_articles"]
    validation = {a.title for a in singles.validation_articles}
    assert validation and not validation & {p.title for p in singles.train}
    assert not validation & set(singles.heldout_titles.values())
    assert all(len(a.references) == 6 for a in singles.heldout_articles)
