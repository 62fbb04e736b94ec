"""The embed_texts flow under prefect_test_harness, and the `wikiref embed` command killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import REPO_ROOT, SHARED_WIKIPEDIA, register_base_version
from wikiref.db import embeddings, search
from wikiref.db.articles import upsert_page
from wikiref.db.engine import make_engine

pytestmark = pytest.mark.slow


def add_saved_page_not_in(session: Session) -> tuple[str, int]:
    """Upsert the first saved page whose title the database lacks; returns its title and reference count."""
    from wikiref.flows.mediawiki.saved import iter_saved_pages
    from wikiref.flows.steps.records import page_record

    present = set(session.scalars(text("SELECT title FROM articles")))
    for page in iter_saved_pages(SHARED_WIKIPEDIA):
        record = page_record(
            wiki="en.wikipedia.org",
            title=page.title,
            html=page.html,
            page_id=page.page_id,
            revision_id=page.revision_id,
        )
        if page.title not in present and 5 <= len(record.references) <= 40:
            upsert_page(session=session, page=record)
            return page.title, len(record.references)
    raise AssertionError("no saved page left to add")


def test_re_embedding_after_one_new_article_encodes_only_its_rows(
    prefect_harness: None, embedded_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from wikiref.flows.embed import embed_texts

    monkeypatch.setenv("WIKIREF_DATABASE_URL", embedded_database_url)
    engine = make_engine(embedded_database_url)
    with Session(engine) as session:
        before = embeddings.embedding_counts(session=session, version_id=1)

    nothing = embed_texts()
    assert nothing["encoded"] == {"references": 0, "titles": 0}
    assert nothing["complete"] is True

    with Session(engine) as session:
        title, references = add_saved_page_not_in(session)
    result = embed_texts(batch_size=16)
    assert result["encoded"] == {"references": references, "titles": 1}
    assert result["embeddings"] == {
        "references": before["references"] + references,
        "titles": before["titles"] + 1,
    }
    assert result["indexes_built"] == []  # the version's indexes exist already and took the new rows
    with Session(engine) as session:
        # The new rows are searchable at once: through the index, the new title finds its own references.
        rows = search.run(
            session=session, function="similar_references", title=title, k=10, model_version=None
        ).rows
        assert any(row[1] == title for row in rows)
    engine.dispose()

    async def read_artifact():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    import asyncio

    artifacts = [artifact for artifact in asyncio.run(read_artifact()) if artifact.key == "embedding-counts"]
    assert artifacts and f"'encoded this run': {references}" in str(artifacts[0].data).replace('"', "'")


def test_a_run_killed_mid_way_resumes_with_exactly_one_embedding_per_row(
    embedded_database_url: str, onnx_cache_dir
) -> None:
    engine = make_engine(embedded_database_url)
    with Session(engine) as session:
        version = register_base_version(session, name="second", status="candidate")
        session.commit()
        total = session.scalar(text("SELECT count(*) FROM article_references"))

    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("WIKIREF_", "PREFECT_"))
    }
    environment.update(
        PYTHONPATH=str(REPO_ROOT),
        # Nothing listens there: the command runs its steps without Prefect (no flow run, no temporary server).
        PREFECT_API_URL="http://127.0.0.1:9/api",
        WIKIREF_DATABASE_URL=embedded_database_url,
        WIKIREF_EMBED_CACHE_DIR=str(onnx_cache_dir),
        WIKIREF_EMBED_CHUNK_SIZE="64",
        COLUMNS="200",
    )
    command = [sys.executable, "-m", "wikiref.flows.cli", "embed", "--model-version", "second"]

    def written() -> int:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT count(*) FROM reference_embeddings WHERE model_version_id = :v"), {"v": version}
            ).scalar_one()

    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while written() == 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    partial = written()
    assert 0 < partial < total, f"killed at {partial} of {total}: {process.stderr.read().decode()[-2000:]}"

    with Session(engine) as session:
        assert search.serving_version(session=session)[1] == "base"  # the half-embedded version never serves
        assert (
            embeddings.count_pending(session=session, version_id=version, reads_lead=False)["references"]
            == total - partial
        )

    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"{total - partial:,}" in finished.stdout  # the re-run encoded exactly what was missing

    with engine.connect() as connection:
        rows, distinct, stale = connection.execute(
            text(
                "SELECT count(*), count(DISTINCT e.reference_id), count(*) FILTER (WHERE e.content_hash <> r.content_hash) "
                "FROM reference_embeddings e JOIN article_references r ON r.id = e.reference_id "
                "WHERE e.model_version_id = :v"
            ),
            {"v": version},
        ).one()
        completed = connection.execute(
            text("SELECT completed_at IS NOT NULL FROM embedding_states WHERE model_version_id = :v"),
            {"v": version},
        ).scalar_one()
    assert (rows, distinct, stale) == (total, total, 0)
    assert completed
    engine.dispose()
