"""wikiref.flows.steps.training.load_pairs: pairs streamed from the database, a clear error when there is nothing."""

from __future__ import annotations

import pytest

from wikiref.db.engine import make_engine
from wikiref.flows.errors import UserError
from wikiref.flows.settings import get_settings
from wikiref.flows.steps.training import TrainRequest, load_pairs


def test_streamed_pairs_cover_every_article_and_an_empty_database_is_one_error(
    loaded_database_url: str, database_url: str
) -> None:
    request = TrainRequest.from_settings(get_settings(), limit_articles=40)
    engine = make_engine(loaded_database_url)
    try:
        split = load_pairs(engine, request)
    finally:
        engine.dispose()
    assert split.counts["articles"] == 40
    # Every run keeps validation articles apart (its fusion weights are chosen on them): none trains.
    assert split.counts["validation_articles"] >= 1
    assert (
        split.counts["train_articles"]
        + split.counts["validation_articles"]
        + split.counts["heldout_articles"]
        == 40
    )
    assert split.train and split.heldout

    empty = make_engine(database_url)
    try:
        with pytest.raises(UserError, match="run `wikiref scrape` first"):
            load_pairs(empty, request)
    finally:
        empty.dispose()
