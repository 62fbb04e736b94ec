"""``wikiref scrape`` and ``wikiref mirror serve`` as a user runs them (subprocesses, real HTTP, real database)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import REPO_ROOT, SHARED_WIKIPEDIA
from wikiref.db.engine import sqlalchemy_url


def test_scrape_a_mirror_folder_prints_the_summary(run_cli, database_url: str) -> None:
    env = {"WIKIREF_DATABASE_URL": database_url}
    first = run_cli("scrape", "--mirror", str(SHARED_WIKIPEDIA), "--limit", "5", env=env)
    assert first.returncode == 0, first.stderr
    assert "articles new" in first.stdout and "│ 5 " in first.stdout
    second = run_cli("scrape", "--mirror", str(SHARED_WIKIPEDIA), "--limit", "5", env=env)
    assert second.returncode == 0, second.stderr
    unchanged = next(line for line in second.stdout.splitlines() if "articles unchanged" in line)
    assert unchanged.split("│")[2].strip() == "5"
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM articles")).scalar_one() == 5
    finally:
        engine.dispose()


def test_bad_input_is_one_line(run_cli, database_url: str, tmp_path) -> None:
    env = {"WIKIREF_DATABASE_URL": database_url}
    result = run_cli("scrape", "--mirror", str(tmp_path), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"wikiref: error: {tmp_path} has no MANIFEST.tsv: not a folder of saved Wikipedia pages"
    )
    assert "Traceback" not in result.stderr
    result = run_cli("scrape", "--top-day", "yesterday", "--mirror", str(SHARED_WIKIPEDIA), env=env)
    assert result.stderr.strip().splitlines() == [
        "wikiref: error: --top-day must be a date like 2024-01-31, got 'yesterday'"
    ]


def test_scrape_flags_are_spelled_as_the_flow_parameters(run_cli) -> None:
    """--category-depth and --dump-path are listed; the earlier --depth and --dump work but are not."""
    for command in (("scrape",), ("corpus", "add")):
        listed = run_cli(*command, "--help").stdout
        assert "--category-depth" in listed and "--dump-path" in listed
        assert not re.search(r"--depth\b|--dump\b(?!-)", listed)


@pytest.mark.slow
def test_mirror_serve_answers_the_action_api(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WIKIREF_")}
    environment.update({"PYTHONPATH": str(REPO_ROOT), "WIKIREF_DATA_DIR": str(tmp_path / "data")})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wikiref.flows.cli",
            "mirror",
            "serve",
            str(SHARED_WIKIPEDIA),
            "--port",
            str(port),
            "--latency-ms",
            "5",
        ],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        api_url = f"http://127.0.0.1:{port}/w/api.php"
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(
                    api_url,
                    params={"action": "parse", "page": "Duck", "format": "json", "formatversion": "2"},
                    timeout=5,
                )
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, (
                    process.stdout.read() if process.stdout else ""
                )
                time.sleep(0.2)
        assert response.json()["parse"]["revid"] == 1246843351
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert f"at {api_url}" in output
