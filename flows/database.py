"""Turns settings into a ready database: the embedded server or the configured URL, checked and migrated."""

from __future__ import annotations

import logging
from functools import lru_cache

from sqlalchemy import Engine

from wikiref.db import migrate
from wikiref.db.engine import check_server, make_engine, masked_url
from wikiref.db.server import ensure_embedded_server
from wikiref.flows.settings import Settings, get_settings

log = logging.getLogger(__name__)


def resolve_database_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started or reused) when none is configured."""
    if settings.database_url:
        return settings.database_url
    return ensure_embedded_server(settings.pgdata_dir)


@lru_cache(maxsize=4)
def engine_for(database_url: str) -> Engine:
    """One engine per process and database URL (tasks in Dask workers get the URL, not an engine)."""
    return make_engine(database_url)


@lru_cache(maxsize=4)
def _prepared(database_url: str) -> Engine:
    engine = engine_for(database_url)
    check_server(engine)
    migrate.upgrade(database_url)
    # Connections opened before the first migration created pgvector have no vector adapters.
    engine.dispose()
    log.info("database %s at revision %s", masked_url(database_url), migrate.head_revision())
    return engine


def prepare_database(settings: Settings | None = None) -> tuple[str, Engine]:
    """URL and engine of a reachable, pgvector-capable, fully migrated database (once per process)."""
    url = resolve_database_url(settings or get_settings())
    return url, _prepared(url)
