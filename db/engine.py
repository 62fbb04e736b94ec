"""One engine factory, URL handling and the start-up checks of a PostgreSQL + pgvector server."""

from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, OperationalError

from wikiref.db.errors import DatabaseError

MIN_SERVER_VERSION = 140000
MIN_PGVECTOR_VERSION = (0, 7)


def validate_database_url(url: str) -> str:
    """Return ``url`` if it names a PostgreSQL database, else raise ``ValueError`` with a clear reason."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(
            f"not a database URL ({exc}); expected postgresql://user:password@host:5432/db"
        ) from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(f"only PostgreSQL is supported, got {parsed.get_backend_name()!r}")
    return url


def sqlalchemy_url(url: str) -> URL:
    """The URL with the psycopg 3 driver, whatever dialect prefix the user wrote."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


def libpq_url(url: str) -> str:
    """The URL as libpq (psql, psycopg.connect) understands it."""
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def masked_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def make_engine(url: str, **kwargs) -> Engine:
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("connect_timeout", 10)
    engine = create_engine(sqlalchemy_url(url), connect_args=connect_args, **kwargs)
    event.listen(engine, "connect", _register_vector)
    return engine


def _register_vector(dbapi_connection: psycopg.Connection, _record: object) -> None:
    """pgvector's adapters on every new connection, once (a server without the extension yet gets none)."""
    try:
        register_vector(dbapi_connection)
    except psycopg.ProgrammingError:
        dbapi_connection.rollback()  # before the first migration creates the extension
    else:
        dbapi_connection.commit()


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def check_server(engine: Engine) -> None:
    """Fail with one line unless the server is reachable, PostgreSQL 14+, and offers pgvector 0.7+."""
    where = masked_url(libpq_url(engine.url.render_as_string(hide_password=False)))
    try:
        with engine.connect() as connection:
            server_version = connection.execute(text("SHOW server_version_num")).scalar_one()
            pgvector = connection.execute(
                text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            ).scalar_one_or_none()
    except OperationalError as exc:
        raise DatabaseError(f"cannot connect to {where}: {_first_line(exc)}") from None
    if int(server_version) < MIN_SERVER_VERSION:
        raise DatabaseError(f"{where} runs PostgreSQL {server_version}; wikiref needs 14 or newer")
    if pgvector is None:
        raise DatabaseError(
            f"{where} has no pgvector extension: install pgvector 0.7+ on that server "
            "or unset WIKIREF_DATABASE_URL to use the embedded one"
        )
    if tuple(int(part) for part in pgvector.split(".")[:2]) < MIN_PGVECTOR_VERSION:
        raise DatabaseError(f"{where} offers pgvector {pgvector}; wikiref needs 0.7 or newer")
