"""The Python fused scorer (wikiref.models.fusion) and the fused evaluation, on hand-made arrays."""

import numpy as np
import pytest

from wikiref.models.evaluate import (
    REVERSE_METRIC,
    EncodedArticles,
    WordScores,
    choose_fusion_weights,
    reference_votes,
    score_fused,
)
from wikiref.models.fusion import candidate_rows, fuse, rank, reference_hubness, znormalise


def test_znormalise_uses_the_population_std_and_gives_no_spread_and_missing_values_zero() -> None:
    assert znormalise(np.array([1.0, 3.0])).tolist() == [-1.0, 1.0]
    assert znormalise(np.array([2.0, 2.0, 2.0])).tolist() == [0.0, 0.0, 0.0]
    assert znormalise(np.array([1.0, np.nan, 3.0])).tolist() == [-1.0, 0.0, 1.0]


def test_fusion_gets_both_the_embeddings_wrong_and_the_words_wrong() -> None:
    # Row 0 is relevant to the first query and row 1 to the second. In the first, the embeddings rank row 0 a
    # close second and the words put it far first; in the second, the words prefer row 0 by a little and the
    # embeddings row 1 by a lot. One weight gets both right; neither signal alone does.
    words_right = {"embedding": np.array([0.70, 0.72, 0.10]), "words": np.array([9.0, 0.5, 0.0])}
    embeddings_right = {"embedding": np.array([0.20, 0.90, 0.30]), "words": np.array([2.2, 2.0, 0.0])}
    for signals, relevant in ((words_right, 0), (embeddings_right, 1)):
        assert rank(signals, {"words": 0.3})[0][0] == relevant
    assert rank(words_right, {"words": 0.0})[0][0] != 0
    assert rank({"embedding": embeddings_right["words"]}, {})[0][0] != 1


def test_fused_scores_are_z_embedding_plus_weighted_z_of_each_signal() -> None:
    signals = {"embedding": np.array([0.1, 0.5, 0.9]), "words": np.array([3.0, 0.0, 0.0])}
    z_embedding = np.array([-1.0, 0.0, 1.0]) * np.sqrt(1.5)
    z_words = np.array([2.0, -1.0, -1.0]) / np.sqrt(2.0)
    assert fuse(signals, {"words": 0.5}) == pytest.approx(z_embedding + 0.5 * z_words)
    with pytest.raises(ValueError, match="always 1"):
        fuse(signals, {"embedding": 2.0})


def test_candidates_are_the_union_of_each_signals_top_and_words_need_a_match() -> None:
    signals = {
        "embedding": np.array([0.9, 0.8, 0.1, 0.0, 0.2]),
        "words": np.array([0.0, 0.0, 0.0, 4.0, 0.0]),
    }
    # Embeddings' top 2 are rows 0, 1; words' top 2 is row 3 alone (the other rows match no word).
    assert candidate_rows(signals, 2).tolist() == [0, 1, 3]
    rows, fused = rank(signals, {"words": 1.0}, candidates=2)
    assert sorted(rows.tolist()) == [0, 1, 3]
    assert list(fused) == sorted(fused, reverse=True)


def test_ties_go_to_the_smaller_id() -> None:
    signals = {"embedding": np.array([0.5, 0.5, 0.1])}
    assert rank(signals, {}, ids=np.array([30, 20, 10]))[0].tolist() == [1, 0, 2]


def encoded_fixture() -> EncodedArticles:
    # Three articles with two references each; vectors on three axes, article i mostly along axis i.
    texts = np.eye(3)
    references = np.array(
        [
            [0.9, 0.1, 0.0],  # article 0
            [0.5, 0.0, 0.7],  # article 0, nearer article 2
            [0.0, 1.0, 0.0],  # article 1
            [0.1, 0.9, 0.0],  # article 1
            [0.0, 0.0, 1.0],  # article 2
            [0.0, 0.1, 0.9],  # article 2
        ]
    )
    references = references / np.linalg.norm(references, axis=1, keepdims=True)
    return EncodedArticles((10, 11, 12), texts, references, np.array([0, 0, 1, 1, 2, 2]))


def test_the_query_reference_never_votes_for_its_own_article() -> None:
    encoded = encoded_fixture()
    votes, floors = reference_votes(encoded, candidates=3)
    refs = encoded.references
    # Reference 0's own article votes only through reference 1, never through reference 0 itself (cosine 1).
    assert votes[0, 0] == pytest.approx(refs[0] @ refs[1])
    assert votes[0, 1] == pytest.approx(max(refs[0] @ refs[2], refs[0] @ refs[3]))
    lonely = EncodedArticles((1, 2), np.eye(2)[:, :2], np.eye(2)[[0, 1, 1]], np.array([0, 1, 1]))
    assert np.isnan(reference_votes(lonely)[0][0, 0])
    # 3 nearest references: reference 0 itself (no voter), then 1 and 3: the vote's candidates stop at 3's cosine.
    assert floors[0] == pytest.approx(refs[0] @ refs[3])


def test_words_fix_the_reference_the_embeddings_send_to_the_wrong_article() -> None:
    encoded = encoded_fixture()
    # Reference 1 (article 0) is nearest article 2 by embedding; its words name article 0.
    words = WordScores(
        article_to_references=np.zeros((3, 6)),
        reference_to_articles=np.array(
            [[5.0, 0, 0], [5.0, 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5], [0, 0, 5]]
        ),
    )
    alone = score_fused(encoded, words, {})
    fused = score_fused(encoded, words, {"articles_for_reference": {"words": 1.0}})
    assert alone.correct.tolist() == [1, 2, 2]
    assert fused.correct.tolist() == [2, 2, 2]
    chosen, trials = choose_fusion_weights(encoded, words)
    # Words 0.4 is the grid's smallest weight that fixes it (0.3 falls short); the vote only hurts here (reference
    # 1 is nearer article 2's references than its sibling), so the tie-break keeps it at 0.
    assert chosen["articles_for_reference"] == {"words": 0.4, "vote": 0.0}
    assert chosen["similar_references"] == {"words": 0.0, "hubness": 0.0}
    assert trials["articles_for_reference"][0] == {
        "words": 0.0,
        "vote": 0.0,
        REVERSE_METRIC: round(5 / 6, 5),
    }


def test_hubness_is_the_mean_cosine_to_the_nearest_articles_and_demotes_a_generic_reference() -> None:
    similarity = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.0]])  # articles x references
    assert reference_hubness(similarity, neighbours=2).tolist() == pytest.approx([0.85, 0.15])
    assert reference_hubness(similarity, neighbours=10).tolist() == pytest.approx([0.8, 0.1])
    # Row 0 is nearer the query but as near every article (hubness 0.6); row 1 is near the query alone.
    signals = {"embedding": np.array([0.7, 0.6, 0.1]), "hubness": np.array([0.6, 0.15, 0.1])}
    assert rank(signals, {"hubness": 0.0})[0][0] == 0
    assert rank(signals, {"hubness": 0.5})[0][0] == 1
    # Hubness picks no candidates, and a reference without one counts as the candidates' mean.
    assert candidate_rows({**signals, "hubness": np.array([9.0, 9.0, 9.0])}, 1).tolist() == [0]
    missing = {**signals, "hubness": np.array([0.6, np.nan, 0.1])}
    assert fuse(missing, {"hubness": 1.0}) == pytest.approx(
        fuse({"embedding": np.array([0.1, 0.25, 0.0])}, {})
    )


def test_the_training_run_chooses_the_hubness_that_fixes_a_generic_reference() -> None:
    # Article 0 owns a reference at cosine 0.6 that is near nothing else; article 1 owns a generic one, nearer
    # article 0 (0.63) and about as near articles 1-3 (0.45 each). The smallest hubness weight on the grid ranks
    # article 0's own first, and articles 1-3 keep theirs.
    generic = np.array([0.7, 0.5, 0.5, 0.5, 0.0])
    references = np.array([[0.6, 0, 0, 0, 0.8], generic / np.linalg.norm(generic), *np.eye(5)[1:4]])
    encoded = EncodedArticles((10, 11, 12, 13), np.eye(5)[:4], references, np.array([0, 1, 1, 2, 3]))
    words = WordScores(article_to_references=np.zeros((4, 5)), reference_to_articles=np.zeros((5, 4)))
    alone = score_fused(encoded, words, {})
    corrected = score_fused(encoded, words, {"similar_references": {"hubness": 0.25}})
    assert alone.per_article["ndcg@10"][0] < 1.0
    assert corrected.per_article["ndcg@10"].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])
    chosen, trials = choose_fusion_weights(encoded, words)
    assert chosen["similar_references"] == {"words": 0.0, "hubness": 0.25}
    assert len(trials["similar_references"]) == 30
