"""wikiref.flows.steps.embedding.encode_and_write walks pending rows in keyset pages: each row once, at most a page held."""

from __future__ import annotations

import numpy as np

from wikiref.db.embeddings import PendingRow, VersionInfo
from wikiref.flows.steps.embedding import EmbedRequest
from wikiref.flows.steps.embedding import encode_and_write as run
from wikiref.models.encode import EncoderConfig


def request(page_size: int, limit: int | None) -> EmbedRequest:
    return EmbedRequest(
        version=VersionInfo(1, "v", "active", "base", None, "title"),
        encoder=EncoderConfig("unused"),
        batch_size=2,
        chunk_size=2,
        limit=limit,
        hnsw_m=8,
        hnsw_ef_construction=32,
        hnsw_ef_search=40,
        maintenance_work_mem="64MB",
        page_size=page_size,
    )


def walk(page_size: int, limit: int | None) -> tuple[list[int], list[int], dict[str, int]]:
    rows = {
        kind: [PendingRow(key, f"text {key}", "label") for key in (2, 3, 5, 7, 11, 13, 17)]
        for kind in ("references", "titles")
    }
    done: dict[str, list[int]] = {"references": [], "titles": []}
    pages: list[int] = []

    def select(kind: str, after: int, size: int) -> list[list[PendingRow]]:
        # The rows still pending, as the database would return them: written ones are gone.
        page = [row for row in rows[kind] if row.key > after and row.key not in done[kind]][:size]
        if kind == "references":
            pages.append(len(page))
        return [page[start : start + 2] for start in range(0, len(page), 2)]

    def write(kind: str, chunk: list[PendingRow], vectors: np.ndarray) -> int:
        done[kind].extend(row.key for row in chunk)
        return len(chunk)

    encoded = run(
        request(page_size, limit),
        select=select,
        encode=lambda chunks: (np.zeros((len(texts), 384), dtype=np.float32) for texts in chunks),
        write=write,
    )
    return done["references"], pages, encoded


def test_every_pending_row_is_encoded_once_page_by_page() -> None:
    written, pages, encoded = walk(page_size=3, limit=None)
    assert sorted(written) == [2, 3, 5, 7, 11, 13, 17] and len(written) == 7
    assert max(pages) <= 3
    assert encoded["references"] == 7 and encoded["titles"] == 7


def test_a_limit_stops_after_that_many_rows() -> None:
    written, pages, encoded = walk(page_size=3, limit=5)
    assert written == [2, 3, 5, 7, 11]
    assert pages[:2] == [3, 2]
    assert encoded["references"] == 5
