"""Credentials stay secret: API URL passwords are masked in errors and -v logs, refused as flow parameters, and
``wikiref db psql`` passes the database password through the environment (issue 12, items 1 and 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.conftest import REPO_ROOT, SHARED_WIKIPEDIA
from wikiref.flows.mirror.server import MirrorApp, MirrorData, serving

PASSWORD = "s3cret-api-pw"


def test_api_url_password_is_masked_in_errors_and_in_verbose_logs(run_cli, database_url: str) -> None:
    data = MirrorData.from_folder(SHARED_WIKIPEDIA)
    with serving(MirrorApp(data)) as api_url:
        with_password = api_url.replace("http://", f"http://bot:{PASSWORD}@")
        env = {"WIKIREF_DATABASE_URL": database_url, "WIKIREF_API_URL": with_password}
        result = run_cli("-v", "scrape", "--list-page", "No such list page", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "HTTP Request: GET http://bot:***@127.0.0.1" in output  # httpx's own log line, masked
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("wikiref: error: list page 'No such list page' does")
    )
    assert "bot:***@" in result.stderr.strip().splitlines()[-1]
    assert PASSWORD not in output


def test_unreachable_api_url_error_is_masked(run_cli, database_url: str) -> None:
    env = {
        "WIKIREF_DATABASE_URL": database_url,
        "WIKIREF_API_URL": f"http://bot:{PASSWORD}@127.0.0.1:9/w/api.php",
        "WIKIREF_SCRAPE_MAX_RETRIES": "0",
    }
    result = run_cli("scrape", "Dog", env=env)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "wikiref: error: the MediaWiki API at http://bot:***@127.0.0.1:9/w/api.php is unreachable (ConnectError"
        )
    )
    assert PASSWORD not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_run_refuses_credentials_as_a_flow_parameter(run_cli) -> None:
    result = run_cli("run", "scrape", "--param", f"api_url=http://bot:{PASSWORD}@example.org/w/api.php")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("wikiref: error: parameter 'api_url' is a URL with credentials")
    assert "http://bot:***@example.org/w/api.php" in line and "WIKIREF_API_URL" in line
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.slow
def test_db_psql_keeps_the_password_out_of_the_process_list(
    server_url: str, database_url: str, tmp_path: Path
) -> None:
    role, password = f"psql_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), password))
    url = make_url(database_url).set(username=role, password=password).render_as_string(hide_password=False)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WIKIREF_")}
    environment.update(
        {"PYTHONPATH": str(REPO_ROOT), "WIKIREF_DATABASE_URL": url, "WIKIREF_DATA_DIR": str(tmp_path)}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "wikiref.flows.cli", "db", "psql", "-tAc", "select current_user, pg_sleep(4)"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_psql, leaked = False, []
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(arg.endswith(b"psql") for arg in argv[:1]):
                seen_psql = True
                leaked += [arg for arg in argv if password.encode() in arg]
        time.sleep(0.1)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stdout.strip().startswith(f"{role}|")
    assert seen_psql and not leaked
