"""The base model serves from the start: a fresh database embeds and answers SQL with ``base`` before any
training, and a later training run reuses that version's row."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import SHARED_WIKIPEDIA
from wikiref.db import registry
from wikiref.db.engine import make_engine
from wikiref.flows.settings import get_settings
from wikiref.flows.steps.base_version import register_configured_base_version
from wikiref.flows.steps.training import TrainRequest, ensure_base_version


def test_training_reuses_the_base_version_a_command_registered(engine) -> None:
    settings = get_settings()
    assert register_configured_base_version(engine, settings) == "base"
    with Session(engine) as session:
        base_id = registry.get_version(session=session, name="base").id
    assert ensure_base_version(engine, TrainRequest.from_settings(settings)) == base_id
    with Session(engine) as session:
        rows = session.execute(text("SELECT name, status, artifact_path FROM model_versions")).all()
    assert rows == [("base", "active", None)]


@pytest.mark.slow
def test_scrape_then_embed_serves_the_base_model(run_cli, database_url: str) -> None:
    env = {"WIKIREF_DATABASE_URL": database_url}
    scraped = run_cli("scrape", "--mirror", str(SHARED_WIKIPEDIA), "--limit", "3", env=env)
    assert scraped.returncode == 0, scraped.stderr

    embedded = run_cli("embed", env=env)
    assert embedded.returncode == 0, embedded.stderr
    assert "model version base" in embedded.stdout
    again = run_cli("embed", "-m", "base", env=env)
    assert again.returncode == 0, again.stderr
    assert "model version base" in again.stdout

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            title = connection.execute(text("SELECT min(title) FROM articles")).scalar_one()
            similar = connection.execute(
                text("SELECT count(*) FROM wikiref.similar_references(:title, 5)"), {"title": title}
            ).scalar_one()
            versions = connection.execute(text("SELECT name, status FROM model_versions")).all()
    finally:
        engine.dispose()
    assert similar == 5
    assert versions == [("base", "active")]
