"""Alembic environment: the URL comes from the caller (``wikiref.db.migrate``), the metadata from ``wikiref.db.schema``."""

import re

from alembic import context
from sqlalchemy import text

from wikiref.db.engine import make_engine
from wikiref.db.schema import Base

# Any constant works; it keeps two processes from migrating the same database at once.
MIGRATION_LOCK_ID = 7_424_211

config = context.config

# Per-model-version HNSW indexes (wikiref.db.embeddings.build_indexes) are made at run time, not by migrations.
HNSW_INDEX_PATTERN = re.compile(r"^ix_(reference|title)_embeddings_hnsw_v\d+$")


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "index" and reflected and name and HNSW_INDEX_PATTERN.match(name))


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = make_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as connection:
            _migrate(connection)
        engine.dispose()
    else:
        _migrate(connectable)


def _migrate(connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            include_object=_include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("wikiref migrations run online only: use `wikiref db upgrade`")
run_migrations_online()
