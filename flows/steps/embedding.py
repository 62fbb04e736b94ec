"""The steps of an embedding run as plain functions: the ``embed_texts`` flow (flows/embed.py) wraps them in
tasks, ``wikiref embed`` (flows/cli/embed_commands.py) calls them directly with a progress bar.

resolve the version and its encoder -> start the run -> per kind: the pending rows, in chunks -> encode each
chunk -> write it (COPY) -> again while a concurrent scrape keeps adding rows -> build the HNSW indexes -> mark
the version complete (or, for a partial run, count what it holds).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from wikiref.db import embeddings
from wikiref.db.embeddings import KINDS, PendingRow, VersionInfo
from wikiref.db.lexical import refresh_lexical_statistics
from wikiref.db.registry import BASE_VERSION
from wikiref.flows.settings import Settings
from wikiref.flows.steps.base_version import register_configured_base_version
from wikiref.models.article_text import ArticleTextRecipe
from wikiref.models.base import resolve_model_path
from wikiref.models.encode import EncoderConfig, encode_texts, fastest_backend

log = logging.getLogger(__name__)

# Rounds of "select pending, encode, write" before giving up on catching up with a concurrent scrape.
MAX_ROUNDS = 3

ProgressCallback = Callable[[str, int, int], None]
"""(kind, rows written so far in this round, rows pending at the start of the round)."""


def encoder_config(
    settings: Settings, model_path: str, backend: str | None = None, device: str | None = None
) -> EncoderConfig:
    """The encoder the settings ask for; ``auto`` means the fastest installed (wikiref.models.encode.fastest_backend)."""
    chosen = backend or settings.embed_backend
    device = device or settings.embed_device
    if chosen == "auto":
        chosen = fastest_backend(device)
    if Path(model_path).is_dir():
        # A local folder needs no hub; this keeps transformers from probing the network for it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return EncoderConfig(
        model_path=model_path,
        backend=chosen,
        device=device,
        cache_dir=str(settings.onnx_cache_dir),
        threads=settings.embed_threads,
    )


def version_model_path(artifact_path: str | None, base_model: str) -> str:
    """What to load for a version: its trained artifact, or (for a registered base model) the base model."""
    return resolve_model_path(artifact_path or base_model)


@dataclass(frozen=True)
class EmbedRequest:
    """One run: the version, its encoder, and the sizes, from settings plus the caller's overrides."""

    version: VersionInfo
    encoder: EncoderConfig
    batch_size: int
    chunk_size: int
    limit: int | None
    hnsw_m: int
    hnsw_ef_construction: int
    hnsw_ef_search: int
    maintenance_work_mem: str
    page_size: int
    storage: str = "vector"
    parallel_workers: int | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        version: VersionInfo,
        *,
        batch_size: int | None = None,
        chunk_size: int | None = None,
        backend: str | None = None,
        device: str | None = None,
        limit: int | None = None,
    ) -> EmbedRequest:
        model_path = version_model_path(version.artifact_path, version.base_model)
        return cls(
            version=version,
            encoder=encoder_config(settings, model_path, backend, device),
            batch_size=batch_size or settings.embed_batch_size,
            chunk_size=chunk_size or settings.embed_chunk_size,
            limit=limit,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            hnsw_ef_search=settings.hnsw_ef_search,
            maintenance_work_mem=settings.embed_maintenance_work_mem,
            page_size=settings.embed_page_size,
            storage=settings.embed_storage,
            parallel_workers=settings.embed_parallel_maintenance_workers,
        )

    @property
    def article_text(self) -> ArticleTextRecipe:
        """The version's article-text recipe, as it was trained."""
        return ArticleTextRecipe.from_name(self.version.article_text)

    def text_of(self, kind: str, row: PendingRow) -> str:
        """What is encoded: a reference's text, or the article's text by the version's recipe (as trained)."""
        if kind == "titles":
            return self.article_text.compose(row.text, row.lead)
        return row.text

    @property
    def complete(self) -> bool:
        """A run with a limit is partial: the version is not marked complete."""
        return self.limit is None

    @property
    def rounds(self) -> int:
        return MAX_ROUNDS if self.complete else 1


@dataclass(frozen=True)
class EmbedOutcome:
    model_version: str
    backend: str
    encoded: dict[str, int]
    embeddings: dict[str, int]
    indexes_built: list[str]
    complete: bool

    def summary(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "backend": self.backend,
            "encoded": self.encoded,
            "embeddings": self.embeddings,
            "indexes_built": self.indexes_built,
            "complete": self.complete,
        }

    def counts_line(self) -> str:
        return (
            f"version {self.model_version} ({self.backend} backend): encoded {self.encoded['references']} "
            f"references and {self.encoded['titles']} titles; holds {self.embeddings['references']} and "
            f"{self.embeddings['titles']}; complete: {self.complete}"
        )


def resolve_version(engine: Engine, model_version: str | None, settings: Settings) -> VersionInfo:
    """The version named (name or id), or the active one. Asked for the active one or for ``base``, the base
    model's version is registered first: a fresh database embeds with ``base``, which is active until a
    fine-tuned version passes the gate."""
    if model_version is None or model_version == BASE_VERSION:
        register_configured_base_version(engine, settings)
    with Session(engine) as session:
        return embeddings.get_version(session=session, name_or_id=model_version)


def start_run(engine: Engine, request: EmbedRequest) -> None:
    """Record the run's index parameters on the version's embedding state."""
    with Session(engine) as session:
        embeddings.start_run(
            session=session,
            version_id=request.version.id,
            hnsw_m=request.hnsw_m,
            hnsw_ef_construction=request.hnsw_ef_construction,
            ef_search=request.hnsw_ef_search,
            storage=request.storage,
        )
        session.commit()


def select_pending(
    engine: Engine, request: EmbedRequest, kind: str, after: int, limit: int
) -> list[list[PendingRow]]:
    """One keyset page of the rows of ``kind`` the version lacks (or holds for an older text): at most
    ``limit`` rows with ids above ``after``, as chunks of ``chunk_size``. Memory holds a page, not the corpus."""
    with Session(engine) as session:
        rows = embeddings.pending(
            session=session,
            version_id=request.version.id,
            kind=kind,
            reads_lead=request.article_text.reads_lead,
            limit=limit,
            after=after,
        )
    # Longest first within the page, so each chunk (and each batch inside it) holds texts of similar length.
    rows.sort(key=lambda row: -len(request.text_of(kind, row)))
    return [rows[start : start + request.chunk_size] for start in range(0, len(rows), request.chunk_size)]


def encode_chunk(config: EncoderConfig, texts: list[str], batch_size: int) -> np.ndarray:
    return encode_texts(config, texts, batch_size=batch_size)


def encode_in_order(request: EmbedRequest, chunks: list[list[str]]) -> Iterator[np.ndarray]:
    """One chunk after the other in this process (the command's encoder; the flow's fans out as tasks)."""
    for texts in chunks:
        yield encode_chunk(request.encoder, texts, request.batch_size)


def write_chunk(
    engine: Engine, version_id: int, kind: str, rows: list[PendingRow], vectors: np.ndarray
) -> int:
    """One transaction: a killed run loses at most the chunk in flight."""
    with Session(engine) as session:
        written = embeddings.write_embeddings(
            session=session,
            version_id=version_id,
            kind=kind,
            keys=[row.key for row in rows],
            labels=[row.label for row in rows],
            vectors=vectors,
        )
        session.commit()
    return written


def encode_and_write(
    request: EmbedRequest,
    *,
    select: Callable[[str, int, int], list[list[PendingRow]]],
    encode: Callable[[list[list[str]]], Iterable[np.ndarray]],
    write: Callable[[str, list[PendingRow], np.ndarray], int],
    on_written: ProgressCallback | None = None,
) -> dict[str, int]:
    """Rounds of select, encode, write until nothing is pending (or ``request.rounds`` ran); rows per kind.

    The caller supplies the three steps: the command passes the plain functions above, the flow their tasks
    (so the flow's encodings fan out over its task runner while it writes the chunks already encoded).
    ``select(kind, after, limit)`` returns one keyset page; pages follow each other by id until one comes back
    short, so rows written meanwhile are not read again and memory holds one page. The progress total is the
    rows read so far in the round.
    """
    encoded = dict.fromkeys(KINDS, 0)
    for _ in range(request.rounds):
        done = {}
        for kind in KINDS:
            pending = written = after = 0
            while request.limit is None or pending < request.limit:
                size = (
                    request.page_size
                    if request.limit is None
                    else min(request.page_size, request.limit - pending)
                )
                chunks = select(kind, after, size)
                read = sum(len(chunk) for chunk in chunks)
                if not read:
                    break
                pending += read
                after = max(row.key for chunk in chunks for row in chunk)
                vectors = encode([[request.text_of(kind, row) for row in chunk] for chunk in chunks])
                for chunk, chunk_vectors in zip(chunks, vectors):
                    written += write(kind, chunk, chunk_vectors)
                    if on_written is not None:
                        on_written(kind, written, pending)
                if read < size:
                    break
            done[kind] = pending
        encoded = {kind: encoded[kind] + done[kind] for kind in KINDS}
        if not any(done.values()):
            break
    return encoded


def build_indexes(engine: Engine, request: EmbedRequest) -> list[str]:
    """The version's HNSW indexes that do not exist yet; the names of those built."""
    with Session(engine) as session:
        created = embeddings.build_indexes(
            session=session,
            version_id=request.version.id,
            m=request.hnsw_m,
            ef_construction=request.hnsw_ef_construction,
            maintenance_work_mem=request.maintenance_work_mem,
            parallel_workers=request.parallel_workers,
        )
        session.commit()
    return created


def finish(engine: Engine, request: EmbedRequest) -> dict[str, int]:
    """Mark a complete run's version servable; either way, the embeddings the version holds per kind."""
    with Session(engine) as session:
        if not request.complete:
            return embeddings.embedding_counts(session=session, version_id=request.version.id)
        counts = embeddings.mark_complete(
            session=session, version_id=request.version.id, reads_lead=request.article_text.reads_lead
        )
        session.commit()
        # The fused functions' BM25 reads these statistics: current (within the drift threshold) when it serves.
        refresh_lexical_statistics(session=session)
        embeddings.refresh_hubness(session=session, version_id=request.version.id)
    return counts


def outcome(
    request: EmbedRequest, encoded: dict[str, int], counts: dict[str, int], indexes: list[str]
) -> EmbedOutcome:
    return EmbedOutcome(
        model_version=request.version.name,
        backend=request.encoder.backend,
        encoded=encoded,
        embeddings=counts,
        indexes_built=indexes,
        complete=request.complete,
    )


def embed_pending(
    engine: Engine, request: EmbedRequest, *, on_written: ProgressCallback | None = None
) -> EmbedOutcome:
    """The whole run in this process: the command's sequence (the flow runs the same steps as tasks)."""
    start_run(engine, request)
    encoded = encode_and_write(
        request,
        select=lambda kind, after, limit: select_pending(engine, request, kind, after, limit),
        encode=lambda chunks: encode_in_order(request, chunks),
        write=lambda kind, rows, vectors: write_chunk(engine, request.version.id, kind, rows, vectors),
        on_written=on_written,
    )
    indexes = build_indexes(engine, request)
    result = outcome(request, encoded, finish(engine, request), indexes)
    log.info("%s", result.counts_line())
    return result
