"""`wikiref models show` in a subprocess, on the embedded slice of the shared pages (version ``base``)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from wikiref.db import registry
from wikiref.db.engine import make_engine


def test_models_show_prints_the_version_s_fusion_weights(
    run_cli, embedded_database_url: str, onnx_cache_dir: Path
) -> None:
    engine = make_engine(embedded_database_url)
    with Session(engine) as session:
        version_id = session.scalar(text("SELECT id FROM model_versions WHERE name = 'base'"))
        weights = registry.fusion_weights(session=session, version_id=version_id)
        weights["articles_for_reference"] = {"words": 0.35, "vote": 0.75}
        registry.set_fusion_weights(session=session, version_id=version_id, weights=weights)
    engine.dispose()
    shown = run_cli("models", "show", "base", env={"WIKIREF_DATABASE_URL": embedded_database_url})
    assert shown.returncode == 0, shown.stderr
    assert "fusion weights" in shown.stdout
    # The signals' columns in alphabetical order: hubness, vote, words; the base version's defaults (0019).
    assert re.search(r"articles_for_reference +│ +1 +│ +- +│ +0\.750* +│ +0\.350* ", shown.stdout), (
        shown.stdout
    )
    assert re.search(r"similar_references +│ +1 +│ +0\.750* +│ +- +│ +0\.20* ", shown.stdout), shown.stdout
