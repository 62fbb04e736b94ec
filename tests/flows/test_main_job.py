"""The main job as a user runs it from the repository: ``wikiref run pipeline`` on the shared pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TEMPLATE_DATABASE, create_database, drop_database
from tests.flows.conftest import clean_environment
from tests.flows.flow_runs import scalar

pytestmark = pytest.mark.slow


def test_wikiref_run_pipeline_on_the_shared_pages_prints_a_query_result(
    server_url: str, template_url: str, onnx_cache_dir: Path, tmp_path: Path
) -> None:
    database_url = create_database(server_url, template=TEMPLATE_DATABASE)
    environment = clean_environment(
        WIKIREF_DATABASE_URL=database_url,
        WIKIREF_DATA_DIR=str(tmp_path / "data"),
        # No PREFECT_API_URL, as on a fresh machine: the run gets a temporary Prefect server of its own.
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PYTHONPATH=str(REPO_ROOT),
        HF_HUB_OFFLINE="1",
        WIKIREF_EMBED_CACHE_DIR=str(onnx_cache_dir),
        COLUMNS="200",
    )
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "wikiref.flows.cli",
                "run",
                "pipeline",
                "--param",
                "mirror_dir=../shared/data/wikipedia",
                "--param",
                "limit=10",
                "--param",
                "max_steps=3",
            ],
            cwd=REPO_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "SELECT * FROM wikiref.similar_references('" in result.stdout
        assert "(5 rows)" in result.stdout, result.stdout[-3000:]
        assert scalar(database_url, "SELECT count(*) FROM articles") == 10
        assert scalar(database_url, "SELECT count(*) FROM model_versions WHERE status = 'active'") == 1
    finally:
        drop_database(server_url, database_url)
