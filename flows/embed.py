"""``embed_texts``: encode what a model version is missing, COPY it in, index it, mark the version servable.

The steps are flows/steps/embedding.py's, each wrapped in a task here. Encoding chunks are tasks with plain,
picklable inputs and outputs (an ``EncoderConfig`` and a list of texts in, a float32 array out), so
``embed_texts.with_options(task_runner=DaskTaskRunner(...))`` fans them out to a cluster; each worker loads the
model once. The default runner is one worker thread: the next chunk encodes while the flow writes the previous
one, and two CPU-bound encoders never fight over the same cores.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from wikiref.db.embeddings import KINDS, PendingRow, VersionInfo
from wikiref.flows import markdown
from wikiref.flows.database import engine_for, prepare_database
from wikiref.flows.settings import get_settings
from wikiref.flows.steps import embedding
from wikiref.flows.steps.embedding import EmbedRequest
from wikiref.models.encode import EncoderConfig


@task(cache_policy=NO_CACHE)
def resolve_version(database_url: str, model_version: str | None) -> VersionInfo:
    return embedding.resolve_version(engine_for(database_url), model_version, get_settings())


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def select_pending(
    database_url: str, request: EmbedRequest, kind: str, after: int, limit: int
) -> list[list[PendingRow]]:
    return embedding.select_pending(engine_for(database_url), request, kind, after, limit)


@task(cache_policy=NO_CACHE)
def encode_batch(config: EncoderConfig, texts: list[str], batch_size: int) -> np.ndarray:
    return embedding.encode_chunk(config, texts, batch_size)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def write_embeddings(
    database_url: str, version_id: int, kind: str, rows: list[PendingRow], vectors: np.ndarray
) -> int:
    return embedding.write_chunk(engine_for(database_url), version_id, kind, rows, vectors)


@task(cache_policy=NO_CACHE)
def build_indexes(database_url: str, request: EmbedRequest) -> list[str]:
    return embedding.build_indexes(engine_for(database_url), request)


@task(cache_policy=NO_CACHE)
def finish_run(database_url: str, request: EmbedRequest) -> dict[str, int]:
    return embedding.finish(engine_for(database_url), request)


def _encode_on_task_runner(request: EmbedRequest, chunks: list[list[str]]) -> Iterator[np.ndarray]:
    # Submit every chunk before waiting on the first: encoding runs ahead of the writes.
    futures = [encode_batch.submit(request.encoder, texts, request.batch_size) for texts in chunks]
    for future in futures:
        yield future.result()


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
        backend: torch, onnx, openvino or auto (default: settings).
        device: cpu or cuda (default: settings).
        limit: encode at most this many rows of each kind (a partial run: the version is not marked complete).
    """
    settings = get_settings()
    database_url, engine = prepare_database(settings)
    request = EmbedRequest.from_settings(
        settings,
        resolve_version(database_url, model_version),
        batch_size=batch_size,
        chunk_size=chunk_size,
        backend=backend,
        device=device,
        limit=limit,
    )
    embedding.start_run(engine, request)
    encoded = embedding.encode_and_write(
        request,
        select=lambda kind, after, limit: select_pending(database_url, request, kind, after, limit),
        encode=lambda chunks: _encode_on_task_runner(request, chunks),
        write=lambda kind, rows, vectors: write_embeddings(
            database_url, request.version.id, kind, rows, vectors
        ),
    )
    indexes = build_indexes(database_url, request)
    outcome = embedding.outcome(request, encoded, finish_run(database_url, request), indexes)

    get_run_logger().info("%s", outcome.counts_line())
    create_table_artifact(
        key="embedding-counts",
        table=[
            {
                "kind": kind,
                "encoded this run": encoded[kind],
                "embeddings of the version": outcome.embeddings[kind],
            }
            for kind in KINDS
        ],
        description=f"Embeddings of model version {markdown.escape(outcome.model_version)} ({outcome.backend}); "
        f"complete: {outcome.complete}",
    )
    return outcome.summary()
