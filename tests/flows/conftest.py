"""``prefect_server``: a real ``prefect server start`` subprocess on a free localhost port, with its own
PREFECT_HOME and SQLite database, the UI included, no analytics; one per session, because it is slow to start.
(Flows run in-process use ``prefect_harness`` from tests/conftest.py.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

SERVER_START_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_environment(**updates: str) -> dict[str, str]:
    """This process's environment without Prefect or wikiref settings, plus ``updates``."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "WIKIREF_")) or key == "WIKIREF_TEST_DATABASE_URL"
    }
    environment.update(updates)
    return environment


@dataclass(frozen=True)
class PrefectServer:
    url: str
    home: Path
    log: Path

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "server.log"
    environment = clean_environment(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # The UI asks this URL for its data; its default is port 4200.
        PREFECT_UI_API_URL=f"{url}/api",
    )
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            cwd=home,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = PrefectServer(url=url, home=home, log=log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if httpx.get(f"{server.api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server not healthy after {SERVER_START_TIMEOUT}s:\n{server.log_tail()}"
                )
            time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
