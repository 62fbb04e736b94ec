"""wikiref.models.article_text: the one definition of an article's text."""

from __future__ import annotations

import pytest

from wikiref.models.article_text import DEFAULT_RECIPE, TITLE_ONLY, ArticleTextRecipe


def test_recipes_compose_title_and_the_first_words_of_the_lead() -> None:
    lead = "Duck is the common name for numerous species of waterfowl."
    assert ArticleTextRecipe.from_name("title+lead5").compose("Duck", lead) == "Duck. Duck is the common name"
    assert TITLE_ONLY.compose("Duck", lead) == "Duck"
    assert ArticleTextRecipe(80).compose("Duck", None) == "Duck"
    assert ArticleTextRecipe(80).compose("Duck", "   ") == "Duck"
    assert DEFAULT_RECIPE.compose("Duck", lead) == f"Duck. {lead}"


def test_names_round_trip_and_bad_names_are_refused() -> None:
    assert DEFAULT_RECIPE.name == "title+lead160"
    for recipe in (TITLE_ONLY, DEFAULT_RECIPE, ArticleTextRecipe(40)):
        assert ArticleTextRecipe.from_name(recipe.name) == recipe
    with pytest.raises(ValueError, match="unknown article text recipe"):
        ArticleTextRecipe.from_name("lead80")
