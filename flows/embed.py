"""``embed_texts``: encode what a model version is missing, COPY it in, index it, mark the version servable.

Encoding batches are tasks with plain, picklable inputs and outputs (an ``EncoderConfig`` and a list of texts in,
a float32 array out), so ``embed_texts.with_options(task_runner=DaskTaskRunner(...))`` fans them out to a
cluster; each worker loads the model once. The default runner is one worker thread: the next batch encodes
while the flow writes the previous one, and two CPU-bound encoders never fight over the same cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy.orm import Session

from db import embeddings
from flows.database import engine_for, prepare_database
from flows.settings import Settings, get_settings
from models.base import resolve_model_path
from models.encode import EncoderConfig, encode_texts, fast_backend_available

# Rounds of "select pending, encode, write" before giving up on catching up with a concurrent scrape.
MAX_ROUNDS = 3

ProgressListener = Callable[[str, int, int], None]
"""(kind, rows written so far, rows pending at the start of the round)."""
_listeners: list[ProgressListener] = []


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Have ``listener`` told about every write of embeddings in this process (the CLI's progress bar)."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def encoder_config(
    settings: Settings, model_path: str, backend: str | None = None, device: str | None = None
) -> EncoderConfig:
    """The encoder the settings ask for; ``auto`` means onnx when ``wikiref[fast]`` is installed."""
    chosen = backend or settings.embed_backend
    if chosen == "auto":
        chosen = "onnx" if fast_backend_available() else "torch"
    if Path(model_path).is_dir():
        # A local folder needs no hub; this keeps transformers from probing the network for it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return EncoderConfig(
        model_path=model_path,
        backend=chosen,
        device=device or settings.embed_device,
        cache_dir=str(settings.onnx_cache_dir),
        threads=settings.embed_threads,
    )


def version_model_path(artifact_path: str | None, base_model: str) -> str:
    """What to load for a version: its trained artifact, or (for a registered base model) the base model."""
    return resolve_model_path(artifact_path or base_model)


@task(cache_policy=NO_CACHE)
def resolve_version(database_url: str, model_version: str | None) -> embeddings.VersionInfo:
    with Session(engine_for(database_url)) as session:
        return embeddings.get_version(session=session, name_or_id=model_version)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def count_pending(database_url: str, version_id: int) -> dict[str, int]:
    with Session(engine_for(database_url)) as session:
        return embeddings.count_pending(session=session, version_id=version_id)


def pending_pages(
    database_url: str, version_id: int, kind: str, page_size: int, limit: int | None
) -> Iterator[list[embeddings.PendingRow]]:
    """Keyset pages of the rows to encode: memory holds one page, not the corpus."""
    with Session(engine_for(database_url)) as session:
        for page in embeddings.iter_pending(
            session=session, version_id=version_id, kind=kind, page_size=page_size, limit=limit
        ):
            session.rollback()  # no transaction held open while the page is encoded
            yield page


@task(cache_policy=NO_CACHE)
def encode_batch(config: EncoderConfig, texts: list[str], batch_size: int) -> np.ndarray:
    return encode_texts(config, texts, batch_size=batch_size)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def write_embeddings(
    database_url: str, version_id: int, kind: str, keys: list[int], labels: list[str], vectors: np.ndarray
) -> int:
    with Session(engine_for(database_url)) as session:
        written = embeddings.write_embeddings(
            session=session, version_id=version_id, kind=kind, keys=keys, labels=labels, vectors=vectors
        )
        session.commit()
    return written


@task(cache_policy=NO_CACHE)
def build_indexes(
    database_url: str,
    version_id: int,
    m: int,
    ef_construction: int,
    maintenance_work_mem: str,
    parallel_workers: int,
) -> list[str]:
    with Session(engine_for(database_url)) as session:
        created = embeddings.build_indexes(
            session=session,
            version_id=version_id,
            m=m,
            ef_construction=ef_construction,
            maintenance_work_mem=maintenance_work_mem,
            parallel_workers=parallel_workers,
        )
        session.commit()
    return created


@task(cache_policy=NO_CACHE)
def mark_complete(database_url: str, version_id: int) -> dict[str, int]:
    with Session(engine_for(database_url)) as session:
        counts = embeddings.mark_complete(session=session, version_id=version_id)
        session.commit()
    return counts


def _embed_round(
    database_url: str,
    version: embeddings.VersionInfo,
    config: EncoderConfig,
    *,
    batch_size: int,
    chunk_size: int,
    page_size: int,
    limit: int | None,
) -> dict[str, int]:
    encoded = {}
    counts = count_pending(database_url, version.id)
    for kind in embeddings.KINDS:
        total = counts[kind] if limit is None else min(counts[kind], limit)
        written = read = 0
        for rows in pending_pages(database_url, version.id, kind, page_size, limit):
            read += len(rows)
            # Longest first within the page, so each chunk (and each batch inside it) holds texts of similar length.
            rows.sort(key=lambda row: -len(row.text))
            chunks = [rows[start : start + chunk_size] for start in range(0, len(rows), chunk_size)]
            futures = [
                encode_batch.submit(config, [row.text for row in chunk], batch_size) for chunk in chunks
            ]
            for chunk, future in zip(chunks, futures):
                written += write_embeddings(
                    database_url,
                    version.id,
                    kind,
                    [row.key for row in chunk],
                    [row.label for row in chunk],
                    future.result(),
                )
                for listener in _listeners:
                    listener(kind, written, max(total, read))
        encoded[kind] = read
    return encoded


@flow(name="embed_texts", task_runner=ThreadPoolTaskRunner(max_workers=1))
def embed_texts(
    model_version: str | None = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    backend: str | None = None,
    device: str | None = None,
    limit: int | None = None,
) -> dict:
    """Encode every title and reference that lacks an embedding of its current text for a model version.

    Args:
        model_version: name or id of the version; default: the active one.
        batch_size: texts per forward pass (default: settings).
        chunk_size: texts per encoding task and per COPY transaction (default: settings).
        backend: torch, onnx or auto (default: settings).
        device: cpu or cuda (default: settings).
        limit: encode at most this many rows of each kind (a partial run: the version is not marked complete).
    """
    logger = get_run_logger()
    settings = get_settings()
    database_url, _ = prepare_database(settings)
    version = resolve_version(database_url, model_version)
    config = encoder_config(
        settings, version_model_path(version.artifact_path, version.base_model), backend, device
    )
    with Session(engine_for(database_url)) as session:
        embeddings.start_run(
            session=session,
            version_id=version.id,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
            storage=settings.embed_storage,
        )
        session.commit()

    encoded = dict.fromkeys(embeddings.KINDS, 0)
    for _ in range(1 if limit is not None else MAX_ROUNDS):
        done = _embed_round(
            database_url,
            version,
            config,
            batch_size=batch_size or settings.embed_batch_size,
            chunk_size=chunk_size or settings.embed_chunk_size,
            page_size=settings.embed_page_size,
            limit=limit,
        )
        encoded = {kind: encoded[kind] + done[kind] for kind in encoded}
        if not any(done.values()) or limit is not None:
            break
    indexes = build_indexes(
        database_url,
        version.id,
        settings.hnsw_m,
        settings.hnsw_ef_construction,
        settings.embed_maintenance_work_mem,
        settings.embed_parallel_maintenance_workers,
    )
    complete = limit is None
    if complete:
        counts = mark_complete(database_url, version.id)
    else:
        with Session(engine_for(database_url)) as session:
            counts = embeddings.embedding_counts(session=session, version_id=version.id)
    logger.info(
        "version %s (%s backend): encoded %d references and %d titles; holds %d and %d; complete: %s",
        version.name,
        config.backend,
        encoded["references"],
        encoded["titles"],
        counts["references"],
        counts["titles"],
        complete,
    )
    create_table_artifact(
        key="embedding-counts",
        table=[
            {"kind": kind, "encoded this run": encoded[kind], "embeddings of the version": counts[kind]}
            for kind in embeddings.KINDS
        ],
        description=f"Embeddings of model version {version.name} ({config.backend}); complete: {complete}",
    )
    return {
        "model_version": version.name,
        "backend": config.backend,
        "encoded": encoded,
        "embeddings": counts,
        "indexes_built": indexes,
        "complete": complete,
    }
