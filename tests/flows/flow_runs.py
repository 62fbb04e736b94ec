"""Helpers for tests that run wikiref's flows for real and read back what Prefect recorded."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId
from sqlalchemy import text

from wikiref.db.engine import make_engine
from wikiref.flows.settings import get_settings

# A slice of the shared pages: several markup variants, about 1,100 references, enough articles that the
# held-out split of training is not empty.
SLICE = [
    "Cat",
    "Duck",
    "Douglas Adams",
    "Ferris wheel",
    "Go (programming language)",
    "Hermitian matrix",
    "Aachen Cathedral",
    "Ivy League",
    "Madison, Wisconsin",
    "Pinus ponderosa",
    "Public toilet",
    "RBMK",
]


@dataclass
class Run:
    id: UUID
    result: Any


def run_flow(
    flow, *, database_url: str, data_dir: Path, onnx_cache_dir: Path | None = None, **parameters: Any
) -> Run:
    """Run ``flow`` in this process with wikiref's settings pointing at ``database_url`` and ``data_dir``
    (and the session's ONNX export of the base model, which saves exporting it again)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WIKIREF_DATABASE_URL", database_url)
        patch.setenv("WIKIREF_DATA_DIR", str(data_dir))
        if onnx_cache_dir is not None:
            patch.setenv("WIKIREF_EMBED_CACHE_DIR", str(onnx_cache_dir))
        patch.setenv("HF_HUB_OFFLINE", "1")
        get_settings.cache_clear()
        try:
            state = flow(**parameters, return_state=True)
        finally:
            get_settings.cache_clear()
    assert state.is_completed(), state.message
    return Run(state.state_details.flow_run_id, state.result())


def artifacts_of(flow_run_id: UUID) -> dict[str, Any]:
    """The keyed artifacts of one flow run (its tasks' included), read through the Prefect API."""

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            return {artifact.key: artifact for artifact in found if artifact.key}

    return asyncio.run(read())


@dataclass
class ChildRun:
    id: UUID
    flow_name: str
    state: Any
    start_time: Any


def child_flow_runs(flow_run_id: UUID) -> list[ChildRun]:
    """The sub-flow runs of a flow run, with their flows' names."""

    async def read() -> list[ChildRun]:
        async with get_client() as client:
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
                )
            )
            return [
                ChildRun(run.id, (await client.read_flow(run.flow_id)).name, run.state, run.start_time)
                for run in children
            ]

    return asyncio.run(read())


def table_of(artifact: Any) -> list[dict[str, Any]]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def scalar(database_url: str, statement: str, **params: Any) -> Any:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(statement), params).scalar_one()
    finally:
        engine.dispose()


def rows(database_url: str, statement: str, **params: Any) -> list[tuple]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(statement), params)]
    finally:
        engine.dispose()
