"""Embedding rows per model version: what needs encoding, bulk writes, HNSW indexes, completeness.

Crash safety comes from three choices. Every write batch is one transaction: rows the version has no embedding
for are COPYed straight into the table, stale ones go through a staging table and ``INSERT ... ON CONFLICT DO
UPDATE``; the (version, row) primary key makes a duplicate impossible and a batch is either all in or all out. "Needs an embedding" is recomputed from
the tables on every run (no embedding for this version, or one of an older text), so a killed run loses only the
batch in flight and the next run picks up exactly what is missing. The HNSW indexes are built with a plain
(transactional) ``CREATE INDEX``, so a crash mid-build leaves no invalid index behind, unlike ``CONCURRENTLY``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.orm import Session

from wikiref.db.errors import DatabaseError
from wikiref.db.schema import EMBEDDING_DIM, STORAGES

log = logging.getLogger(__name__)

KINDS = ("references", "titles")


class EmbeddingError(DatabaseError):
    """An expected embedding problem (unknown version, incomplete embeddings), in one line."""


@dataclass(frozen=True)
class _Target:
    table: str
    key: str
    label: str  # column of what the stored embedding was computed from
    source_table: str
    source_label: sql.Composable  # the current value of that label, over the source row ``s``
    source_text: sql.Composable  # the text to encode and the lead (NULL for references), over ``s``


# An article's embedding depends on its title, and on its lead when the version's recipe reads the lead (the
# caller says which, from wikiref.models.article_text): the label is the title, or the title plus an md5 of the
# lead. So a lead edit re-embeds the article for the versions that read leads, and a version trained on titles
# keeps its embeddings.
_ARTICLE_LABEL = sql.SQL(
    "CASE WHEN %(reads_lead)s THEN s.title || E'\\n' || md5(coalesce(s.lead, '')) ELSE s.title END"
)

_TARGETS = {
    "references": _Target(
        "reference_embeddings",
        "reference_id",
        "content_hash",
        "article_references",
        sql.SQL("s.content_hash"),
        sql.SQL("s.text, NULL::text"),
    ),
    "titles": _Target(
        "title_embeddings", "article_id", "title", "articles", _ARTICLE_LABEL, sql.SQL("s.title, s.lead")
    ),
}


@dataclass(frozen=True)
class VersionInfo:
    id: int
    name: str
    status: str
    base_model: str
    artifact_path: str | None
    article_text: str  # the version's article-text recipe (wikiref.models.article_text.ArticleTextRecipe)


@dataclass(frozen=True)
class PendingRow:
    """A row to encode: a reference's text, or an article's title and lead (composed by the version's recipe)."""

    key: int
    text: str
    label: str
    lead: str | None = None


def _target(kind: str) -> _Target:
    try:
        return _TARGETS[kind]
    except KeyError:
        raise ValueError(f"unknown embedding kind {kind!r}: one of {', '.join(KINDS)}") from None


def _driver_connection(session: Session) -> psycopg.Connection:
    """The psycopg connection under the session's current transaction (pgvector's adapters: wikiref.db.engine)."""
    return session.connection().connection.driver_connection


def hnsw_index_name(version_id: int, kind: str) -> str:
    return f"ix_{_target(kind).table}_hnsw_v{int(version_id)}"


def get_version(*, session: Session, name_or_id: str | None) -> VersionInfo:
    """The version named (by name or id), or the active one; retired versions are refused."""
    if name_or_id is None:
        row = session.execute(
            text(
                "SELECT id, name, status, base_model, artifact_path, article_text FROM model_versions "
                "WHERE status = 'active'"
            )
        ).first()
        if row is None:
            raise EmbeddingError(
                "no active model version: train one (`wikiref train`) or promote one (`wikiref models promote`)"
            )
    else:
        row = session.execute(
            text(
                "SELECT id, name, status, base_model, artifact_path, article_text FROM model_versions "
                "WHERE name = :value OR (:value ~ '^[0-9]{1,9}$' AND id = CAST(:value AS integer)) "
                "ORDER BY (name = :value) DESC LIMIT 1"
            ),
            {"value": str(name_or_id)},
        ).first()
        if row is None:
            raise EmbeddingError(f"unknown model version {name_or_id!r}: see `wikiref models list`")
    version = VersionInfo(*row)
    if version.status == "retired":
        raise EmbeddingError(f"model version {version.name!r} is retired; embed another version")
    return version


def _pending_rows(target: _Target) -> sql.Composed:
    """FROM/WHERE of the rows needing an embedding: none for the version, or one made from another text."""
    return sql.SQL(
        "FROM {source} s "
        "LEFT JOIN {table} e ON e.{key} = s.id AND e.model_version_id = %(version)s "
        "WHERE (e.{key} IS NULL OR e.{label} IS DISTINCT FROM {source_label})"
    ).format(
        source=sql.Identifier(target.source_table),
        table=sql.Identifier(target.table),
        key=sql.Identifier(target.key),
        label=sql.Identifier(target.label),
        source_label=target.source_label,
    )


def pending(
    *,
    session: Session,
    version_id: int,
    kind: str,
    reads_lead: bool,
    limit: int | None = None,
    after: int = 0,
) -> list[PendingRow]:
    """Rows with no embedding for this version, or whose embedding was computed from a different text
    (``reads_lead``: whether the version's article text reads the lead, so that a lead edit makes it stale).

    In id order, from the first id above ``after``: with ``limit``, one keyset page (the next page starts after
    its last id), so a caller holds one page whatever the corpus size, and rows written meanwhile lie below
    the keyset and are not read again (wikiref.flows.steps.embedding.encode_and_write).
    """
    target = _target(kind)
    statement = sql.SQL(
        "SELECT s.id, {text}, {source_label} {rows} AND s.id > %(after)s ORDER BY s.id LIMIT %(limit)s"
    ).format(text=target.source_text, source_label=target.source_label, rows=_pending_rows(target))
    with _driver_connection(session).cursor() as cursor:
        cursor.execute(
            statement, {"version": version_id, "reads_lead": reads_lead, "limit": limit, "after": after}
        )
        return [PendingRow(key, text, label, lead) for key, text, lead, label in cursor.fetchall()]


def count_pending(*, session: Session, version_id: int, reads_lead: bool) -> dict[str, int]:
    connection = _driver_connection(session)
    statement = sql.SQL("SELECT count(*) {rows}")
    return {
        kind: connection.execute(
            statement.format(rows=_pending_rows(_target(kind))),
            {"version": version_id, "reads_lead": reads_lead},
        ).fetchone()[0]
        for kind in KINDS
    }


def start_run(
    *,
    session: Session,
    version_id: int,
    hnsw_m: int,
    hnsw_ef_construction: int,
    ef_search: int,
    storage: str = "vector",
) -> str:
    """Record the index parameters of a version's run; a version that was complete stays servable meanwhile.

    Returns the version's index storage: the one given, unless an earlier run fixed it (its indexes exist).
    """
    if storage not in STORAGES:
        raise ValueError(f"unknown index storage {storage!r}: one of {', '.join(STORAGES)}")
    return session.execute(
        text(
            "INSERT INTO embedding_states (model_version_id, hnsw_m, hnsw_ef_construction, ef_search, storage) "
            "VALUES (:version, :m, :efc, :ef, :storage) ON CONFLICT (model_version_id) DO UPDATE SET "
            "hnsw_m = coalesce(embedding_states.hnsw_m, EXCLUDED.hnsw_m), "
            "hnsw_ef_construction = coalesce(embedding_states.hnsw_ef_construction, EXCLUDED.hnsw_ef_construction), "
            "ef_search = EXCLUDED.ef_search "
            "RETURNING storage"
        ),
        {
            "version": version_id,
            "m": hnsw_m,
            "efc": hnsw_ef_construction,
            "ef": ef_search,
            "storage": storage,
        },
    ).scalar_one()


def write_embeddings(
    *,
    session: Session,
    version_id: int,
    kind: str,
    keys: Sequence[int],
    labels: Sequence[str],
    vectors: np.ndarray,
) -> int:
    """Upsert one batch of embeddings with a binary COPY; returns the rows written.

    ``labels`` are what each vector was computed from (content hash or title), compared later to find stale
    rows. Rows whose reference or article vanished meanwhile are skipped rather than failing the batch.
    """
    target = _target(kind)
    vectors = np.asarray(vectors, dtype=np.float32)
    if (
        vectors.ndim != 2
        or vectors.shape[1] != EMBEDDING_DIM
        or not (len(keys) == len(labels) == len(vectors))
    ):
        raise ValueError(
            f"expected {len(keys)} keys, labels and {EMBEDDING_DIM}-d vectors, got {len(labels)} labels and "
            f"vectors of shape {vectors.shape}"
        )
    if not len(keys):
        return 0
    connection = _driver_connection(session)
    # Embeddings are derived data: if the server crashes before this commit reaches disk, the rows are simply
    # pending again and the next run re-encodes them. Not waiting for the WAL flush of every batch is what lets
    # many small batches (progress, resumability) cost about what one big one does.
    connection.execute("SET LOCAL synchronous_commit = off")
    existing = {
        row[0]
        for row in connection.execute(
            sql.SQL("SELECT {key} FROM {table} WHERE model_version_id = %s AND {key} = ANY(%s)").format(
                key=sql.Identifier(target.key), table=sql.Identifier(target.table)
            ),
            (version_id, [int(key) for key in keys]),
        )
    }
    rows = [(int(key), label, vector) for key, label, vector in zip(keys, labels, vectors)]
    fresh = [row for row in rows if row[0] not in existing]
    stale = [row for row in rows if row[0] in existing]
    # New rows (the bulk of any run) go straight into the table with one COPY. If a concurrent run wrote one of
    # them meanwhile, or its reference was deleted, the savepoint undoes the COPY and they take the merge path.
    if fresh:
        connection.execute("SAVEPOINT embedding_copy")
        try:
            _copy(connection, target, version_id, fresh)
            connection.execute("RELEASE SAVEPOINT embedding_copy")
        except (psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation):
            connection.execute("ROLLBACK TO SAVEPOINT embedding_copy")
            stale += fresh
            fresh = []
    written = len(fresh) + (_merge(connection, target, version_id, stale) if stale else 0)
    log.debug("wrote %d %s embeddings for version %d (%d replaced)", written, kind, version_id, len(stale))
    return written


def _copy(connection: psycopg.Connection, target: _Target, version_id: int, rows: list[tuple]) -> None:
    statement = sql.SQL(
        "COPY {table} (model_version_id, {key}, {label}, embedding) FROM STDIN WITH (FORMAT BINARY)"
    ).format(
        table=sql.Identifier(target.table), key=sql.Identifier(target.key), label=sql.Identifier(target.label)
    )
    # pgvector's binary wire format (uint16 dimensions, uint16 unused, big-endian float4s), made for all rows in
    # one numpy pass; sent with the bytea dumper, which passes the bytes through as they are.
    header = np.array([EMBEDDING_DIM, 0], dtype=">u2").tobytes()
    payloads = [header + vector.tobytes() for vector in np.asarray([row[2] for row in rows], dtype=">f4")]
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(["int4", "int8", "text", "bytea"])
        for (key, label, _), payload in zip(rows, payloads):
            copy.write_row((version_id, key, label, payload))


def _merge(connection: psycopg.Connection, target: _Target, version_id: int, rows: list[tuple]) -> int:
    """COPY into a temporary staging table, then upsert: replaces stale rows, skips vanished sources."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS embedding_stage (key bigint, label text, embedding vector({EMBEDDING_DIM})) "
            "ON COMMIT DELETE ROWS"
        )
        with cursor.copy(
            "COPY embedding_stage (key, label, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "vector"])
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            sql.SQL(
                "INSERT INTO {table} (model_version_id, {key}, {label}, embedding) "
                "SELECT %(version)s, stage.key, stage.label, stage.embedding FROM embedding_stage stage "
                "JOIN {source} s ON s.id = stage.key "
                "ON CONFLICT (model_version_id, {key}) DO UPDATE "
                "SET {label} = EXCLUDED.{label}, embedding = EXCLUDED.embedding"
            ).format(
                table=sql.Identifier(target.table),
                key=sql.Identifier(target.key),
                label=sql.Identifier(target.label),
                source=sql.Identifier(target.source_table),
            ),
            {"version": version_id},
        )
        written = cursor.rowcount
        # ON COMMIT DELETE ROWS empties it at commit; this keeps two batches in one transaction apart too.
        cursor.execute("TRUNCATE embedding_stage")
    return written


def build_indexes(
    *,
    session: Session,
    version_id: int,
    m: int,
    ef_construction: int,
    maintenance_work_mem: str = "512MB",
    parallel_workers: int | None = None,
) -> list[str]:
    """Create the version's missing HNSW indexes (one partial index per table); returns those created.

    Built after the bulk load: inserting into an existing HNSW graph row by row is several times slower than
    building it once. Later incremental writes go through the index as usual. ``parallel_workers`` is
    ``max_parallel_maintenance_workers`` for the build (pgvector builds HNSW in parallel from 0.6); None keeps
    the server's value. The server's ``max_worker_processes`` / ``max_parallel_workers`` still cap it.
    """
    connection = _driver_connection(session)
    created = []
    connection.execute("SELECT set_config('maintenance_work_mem', %s, true)", (maintenance_work_mem,))
    if parallel_workers is not None:
        connection.execute(
            "SELECT set_config('max_parallel_maintenance_workers', %s, true)", (str(int(parallel_workers)),)
        )
    row = connection.execute(
        "SELECT storage FROM embedding_states WHERE model_version_id = %s", (version_id,)
    ).fetchone()
    storage = row[0] if row else "vector"
    # The expression must be the one wikiref.nearest_query orders by (migration 0007).
    column = sql.SQL(
        f"(embedding::halfvec({EMBEDDING_DIM})) halfvec_cosine_ops"
        if storage == "halfvec"
        else "embedding vector_cosine_ops"
    )
    for kind in KINDS:
        name = hnsw_index_name(version_id, kind)
        exists = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
        if exists:
            continue
        connection.execute(
            sql.SQL(
                "CREATE INDEX {name} ON {table} USING hnsw ({column}) "
                "WITH (m = {m}, ef_construction = {efc}) WHERE model_version_id = {version}"
            ).format(
                name=sql.Identifier(name),
                table=sql.Identifier(_target(kind).table),
                column=column,
                m=sql.Literal(int(m)),
                efc=sql.Literal(int(ef_construction)),
                version=sql.Literal(int(version_id)),
            )
        )
        created.append(name)
        log.info("built HNSW index %s (%s, m=%d, ef_construction=%d)", name, storage, m, ef_construction)
    return created


def embedding_counts(*, session: Session, version_id: int) -> dict[str, int]:
    connection = _driver_connection(session)
    return {
        kind: connection.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE model_version_id = %s").format(
                sql.Identifier(_target(kind).table)
            ),
            (version_id,),
        ).fetchone()[0]
        for kind in KINDS
    }


def mark_complete(*, session: Session, version_id: int, reads_lead: bool) -> dict[str, int]:
    """Make the version servable: proves, under a lock on its state row, that nothing is pending (``reads_lead``
    as in ``pending``) and the indexes exist, then sets ``completed_at``. The caller commits; that commit is the
    moment the version can serve."""
    locked = session.execute(
        text("SELECT 1 FROM embedding_states WHERE model_version_id = :version FOR UPDATE"),
        {"version": version_id},
    ).first()
    if locked is None:
        raise EmbeddingError(f"model version {version_id} has no embedding run to complete")
    missing = {
        kind: count
        for kind, count in count_pending(
            session=session, version_id=version_id, reads_lead=reads_lead
        ).items()
        if count
    }
    if missing:
        raise EmbeddingError(f"model version {version_id} still has rows to embed: {missing}")
    absent = [
        name
        for name in (hnsw_index_name(version_id, kind) for kind in KINDS)
        if not session.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar_one()
    ]
    if absent:
        raise EmbeddingError(f"model version {version_id} lacks its HNSW indexes {absent}")
    counts = embedding_counts(session=session, version_id=version_id)
    session.execute(
        text(
            "UPDATE embedding_states SET completed_at = now(), references_embedded = :references, "
            "titles_embedded = :titles WHERE model_version_id = :version"
        ),
        {"version": version_id, **counts},
    )
    return counts


def refresh_hubness(*, session: Session, version_id: int) -> int:
    """Each reference's hubness for ``similar_references`` (migration 0019): computed for the references embedded
    or changed since, and for all of them once the version's articles drifted past a tenth; commits. Needs the
    version's HNSW index of articles. Returns how many were computed."""
    started = time.perf_counter()
    computed, articles, full_pass = session.execute(
        text("SELECT computed, articles, full_pass FROM wikiref.refresh_hubness(:version)"),
        {"version": version_id},
    ).one()
    session.commit()
    if computed:
        log.info(
            "hubness of %d references of version %d (%s, %d articles) in %.1f s",
            computed,
            version_id,
            "every reference: the articles drifted" if full_pass else "those embedded since",
            articles,
            time.perf_counter() - started,
        )
    return computed


def drop_version_embeddings(*, session: Session, version_id: int) -> dict[str, int]:
    """Remove a version's embeddings, its HNSW indexes and its state (for retiring it); returns rows deleted."""
    connection = _driver_connection(session)
    deleted = {}
    for kind in KINDS:
        connection.execute(
            sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(hnsw_index_name(version_id, kind)))
        )
        deleted[kind] = connection.execute(
            sql.SQL("DELETE FROM {} WHERE model_version_id = %s").format(sql.Identifier(_target(kind).table)),
            (version_id,),
        ).rowcount
    session.execute(
        text("DELETE FROM embedding_states WHERE model_version_id = :version"), {"version": version_id}
    )
    log.info("dropped version %d: %s embeddings deleted, HNSW indexes dropped", version_id, deleted)
    return deleted
