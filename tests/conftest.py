"""Session fixtures: one real PostgreSQL + pgvector server, a migrated template, a fresh database per test.

Set ``WIKIREF_TEST_DATABASE_URL`` (a superuser URL of any PostgreSQL with pgvector) to run against that
server instead of the embedded one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from wikiref.db import migrate
from wikiref.db.engine import libpq_url, make_engine
from wikiref.db.server import ensure_embedded_server, stop_embedded_server

# No usage reports from the Prefect servers the tests start (the harness and `prefect server start`).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_WIKIPEDIA = REPO_ROOT.parent / "shared" / "data" / "wikipedia"
TEMPLATE_DATABASE = "wikiref_test_template"

# Markers that follow from what a test needs, so that the fast set (`-m "not slow and not server and not
# browser"`) stays fast as tests are added: each `wikiref` subprocess imports Prefect and torch (3-4 s), and
# a Prefect server takes 10-20 s to start.
MARKER_BY_FIXTURE = {"run_cli": "slow", "prefect_harness": "slow", "prefect_server": "server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in MARKER_BY_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


def database_on(server_url: str, name: str) -> str:
    return make_url(libpq_url(server_url)).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A maintenance-database URL of the server the tests use."""
    configured = os.environ.get("WIKIREF_TEST_DATABASE_URL")
    if configured:
        yield libpq_url(configured)
        return
    pgdata = tmp_path_factory.mktemp("embedded") / "pgdata"
    yield ensure_embedded_server(pgdata, database="postgres")
    stop_embedded_server(pgdata)


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE_DATABASE))
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DATABASE)))
    url = database_on(server_url, TEMPLATE_DATABASE)
    migrate.upgrade(url)
    return url


def create_database(server_url: str, *, template: str | None = None) -> str:
    name = f"wikiref_test_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(statement)
    return database_on(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh, fully migrated database of its own for one test."""
    url = create_database(server_url, template=TEMPLATE_DATABASE)
    yield url
    drop_database(server_url, url)


@pytest.fixture
def other_engine(server_url: str, template_url: str) -> Iterator[Engine]:
    """A second fresh, migrated database, e.g. for the same input written another way."""
    url = create_database(server_url, template=TEMPLATE_DATABASE)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop_database(server_url, url)


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A fresh database with no migrations applied."""
    url = create_database(server_url)
    yield url
    drop_database(server_url, url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep every test away from the user's data directory and .env; settings are re-read per test."""
    from wikiref.flows.settings import get_settings

    for key in list(os.environ):
        if key.startswith("WIKIREF_") and key != "WIKIREF_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("WIKIREF_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run ``wikiref ARGS`` in a subprocess with this checkout's code and the given WIKIREF_* variables."""
    import subprocess
    import sys

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("WIKIREF_")}
        environment.update(
            {"PYTHONPATH": str(REPO_ROOT), "WIKIREF_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
        )
        environment.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "wikiref.flows.cli", *args],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


LOADED_TEMPLATE_DATABASE = "wikiref_test_template_loaded"


def load_saved_pages(engine: Engine, root: Path) -> None:
    """Extract and write every saved page of ``root`` without HTTP, a batch's new articles together."""
    from wikiref.db.bulk_writes import upsert_pages
    from wikiref.db.lexical import refresh_lexical_statistics
    from wikiref.flows.steps.records import saved_page_batches

    with Session(engine) as session:
        for records in saved_page_batches(root):
            upsert_pages(session=session, pages=records)
        refresh_lexical_statistics(session=session)


@pytest.fixture(scope="session")
def loaded_template_url(server_url: str, template_url: str) -> str:
    """A migrated template database holding every page of the shared ``pages/`` (loaded once per session)."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(LOADED_TEMPLATE_DATABASE)
            )
        )
        connection.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(LOADED_TEMPLATE_DATABASE), sql.Identifier(TEMPLATE_DATABASE)
            )
        )
    url = database_on(server_url, LOADED_TEMPLATE_DATABASE)
    engine = make_engine(url)
    try:
        load_saved_pages(engine, SHARED_WIKIPEDIA)
    finally:
        # CREATE DATABASE ... TEMPLATE needs the template without connections.
        engine.dispose()
    return url


@pytest.fixture
def loaded_database_url(server_url: str, loaded_template_url: str) -> Iterator[str]:
    """A fresh database of its own for one test, holding all shared ``pages/`` (303 articles, 13,992 references)."""
    url = create_database(server_url, template=LOADED_TEMPLATE_DATABASE)
    yield url
    drop_database(server_url, url)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server on SQLite for flows run in-process (started once; it is slow to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# --- embed: a template database whose slice of the shared pages is embedded with the base model -------------
EMBEDDED_TEMPLATE_DATABASE = "wikiref_test_template_embedded"
# Encoding all 13,992 references of pages/ takes about 3 minutes on this 2-core box (onnx int8; torch twice
# that), so the embedded template keeps a fixed slice: 40 articles with 10-80 references each (1,200-odd
# references), chosen by md5 of the title so the slice is stable and not alphabetical.
EMBED_SLICE_ARTICLES = 40


@pytest.fixture(scope="session")
def onnx_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export of the base model per test session (WIKIREF_EMBED_CACHE_DIR points here in tests)."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(autouse=True)
def _shared_onnx_cache(
    onnx_cache_dir: Path, monkeypatch: pytest.MonkeyPatch, isolated_settings: None
) -> None:
    monkeypatch.setenv("WIKIREF_EMBED_CACHE_DIR", str(onnx_cache_dir))


def register_base_version(session, *, name: str = "base", status: str = "active") -> int:
    """Factory: the base model as a model version (what training registers, minus the training)."""
    from sqlalchemy import text

    from wikiref.models.base import BASE_MODEL_ID, resolve_model_path

    return session.execute(
        text(
            "INSERT INTO model_versions (name, base_model, status, activated_at, artifact_path) "
            "VALUES (:name, :base, :status, CASE WHEN :status IN ('active', 'superseded') THEN now() END, :path) "
            "RETURNING id"
        ),
        {"name": name, "base": BASE_MODEL_ID, "status": status, "path": resolve_model_path(BASE_MODEL_ID)},
    ).scalar_one()


def base_encoder_config(onnx_cache_dir: Path):
    """The encoder the flow picks with default settings (the fastest installed: wikiref.models.encode.fastest_backend)."""
    from wikiref.models.base import BASE_MODEL_ID, resolve_model_path
    from wikiref.models.encode import EncoderConfig, fastest_backend

    return EncoderConfig(
        model_path=resolve_model_path(BASE_MODEL_ID),
        backend=fastest_backend(),
        cache_dir=str(onnx_cache_dir),
    )


def embed_everything(engine: Engine, version_id: int, config, *, batch_size: int = 64) -> dict[str, int]:
    """Encode, COPY, index and complete one version with the embed steps wikiref embed runs (no Prefect)."""
    from wikiref.flows.settings import get_settings
    from wikiref.flows.steps import embedding

    request = embedding.EmbedRequest(
        version=embedding.resolve_version(engine, str(version_id), get_settings()),
        encoder=config,
        batch_size=batch_size,
        chunk_size=100_000,
        limit=None,
        hnsw_m=16,
        hnsw_ef_construction=64,
        hnsw_ef_search=100,
        maintenance_work_mem="512MB",
        page_size=20_000,
    )
    return embedding.embed_pending(engine, request).embeddings


@pytest.fixture(scope="session")
def embedded_template_url(server_url: str, loaded_template_url: str, onnx_cache_dir: Path) -> str:
    """A template holding the slice of pages/ and its base-model embeddings, complete and serving."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(EMBEDDED_TEMPLATE_DATABASE)
            )
        )
        connection.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(EMBEDDED_TEMPLATE_DATABASE), sql.Identifier(LOADED_TEMPLATE_DATABASE)
            )
        )
    url = database_on(server_url, EMBEDDED_TEMPLATE_DATABASE)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            session.execute(
                text(
                    "DELETE FROM articles WHERE id NOT IN (SELECT a.id FROM articles a "
                    "JOIN article_references r ON r.article_id = a.id GROUP BY a.id "
                    "HAVING count(*) BETWEEN 10 AND 80 ORDER BY md5(a.title) LIMIT :n)"
                ),
                {"n": EMBED_SLICE_ARTICLES},
            )
            version_id = register_base_version(session)
            session.commit()
        embed_everything(engine, version_id, base_encoder_config(onnx_cache_dir))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()
    return url


@pytest.fixture
def embedded_database_url(server_url: str, embedded_template_url: str) -> Iterator[str]:
    """A fresh database of its own: the slice of pages/, embedded with the active base version 'base'."""
    url = create_database(server_url, template=EMBEDDED_TEMPLATE_DATABASE)
    yield url
    drop_database(server_url, url)
