"""No process is orphaned, and ``wikiref serve`` waits for the Prefect API (issue 12, items 6 and 10): real
subprocesses, a real temporary Prefect server, a real ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SHARED_WIKIPEDIA
from tests.flows.conftest import PrefectServer, clean_environment, free_port
from wikiref.flows.cli.serve_commands import wait_for_prefect_api
from wikiref.flows.errors import UserError
from wikiref.flows.orphans import OWNER_VARIABLE, _identity, _stat_fields, orphaned_servers

# wikiref runs as real subprocesses here.
pytestmark = pytest.mark.slow


def servers_owned_by(pid: int) -> list[int]:
    owner = _identity(pid)
    found = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            if b"prefect.server.api.server:create_app" not in (pid_dir / "cmdline").read_bytes():
                continue
            environ = (pid_dir / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{OWNER_VARIABLE}={owner}".encode() in environ:
            found.append(int(pid_dir.name))
    return found


def children_of(pid: int) -> list[int]:
    return [
        int(pid_dir.name)
        for pid_dir in Path("/proc").iterdir()
        if pid_dir.name.isdigit() and (_stat_fields(int(pid_dir.name)) or ["", ""])[1] == str(pid)
    ]


def start_killable_run(
    tmp_path: Path, database_url: str
) -> tuple[subprocess.Popen, list[int], list[str], dict]:
    """``wikiref run scrape`` under way against its temporary Prefect server: the run, its servers, the command."""
    environment = clean_environment(
        PYTHONPATH=str(REPO_ROOT),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        WIKIREF_DATA_DIR=str(tmp_path / "data"),
        WIKIREF_DATABASE_URL=database_url,
        WIKIREF_SCRAPE_REQUESTS_PER_SECOND="0.5",  # a run that lasts well beyond the server's start
    )
    command = [sys.executable, "-m", "wikiref.flows.cli", "run", "scrape"]
    running = subprocess.Popen(
        [*command, "--param", f"mirror_dir={SHARED_WIKIPEDIA}", "--param", "limit=60"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    servers: list[int] = []
    while not servers and time.monotonic() < deadline and running.poll() is None:
        time.sleep(0.5)
        servers = servers_owned_by(running.pid)
    if not servers:
        running.kill()
        running.wait()
        pytest.fail("the run started no temporary Prefect server")
    time.sleep(3)  # the flow run is under way
    return running, servers, command, environment


def test_a_killed_run_leaves_nothing_after_10_s(tmp_path: Path, database_url: str) -> None:
    running, servers, _, _ = start_killable_run(tmp_path, database_url)
    descendants = set(servers) | set(children_of(running.pid))
    running.send_signal(signal.SIGKILL)
    running.wait()
    killed = time.monotonic()
    while any(_identity(pid) for pid in descendants) and time.monotonic() - killed < 10:
        time.sleep(0.1)
    left = [pid for pid in descendants if _identity(pid)]
    assert not left, f"still running 10 s after kill -9: {left}"
    print(f"kill -9 to nothing left: {time.monotonic() - killed:.1f} s")


def test_a_server_whose_watchdog_was_killed_too_is_reaped_by_the_next_run(
    tmp_path: Path, database_url: str
) -> None:
    running, servers, command, environment = start_killable_run(tmp_path, database_url)
    watchdogs = [pid for pid in children_of(running.pid) if pid not in servers]
    for pid in watchdogs:
        os.kill(pid, signal.SIGKILL)
    running.send_signal(signal.SIGKILL)
    running.wait()
    time.sleep(1)
    assert all(_identity(pid) for pid in servers), "the server did not outlive kill -9 (nothing to reap)"
    assert set(servers) <= set(orphaned_servers())
    shown = subprocess.run(
        [*command, "--show-params"], env=environment, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert not any(_identity(pid) for pid in servers), "the next run did not reap the orphaned server"


def test_an_exited_process_awaiting_collection_counts_as_gone() -> None:
    # A reaped server's new parent may be slow to collect it, or never do so (pid 1 in some containers).
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while (_stat_fields(child.pid) or ["?"])[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.05)
    try:
        assert _identity(child.pid) is None
        assert _identity(os.getpid()) is not None
    finally:
        child.wait()


def test_serve_gives_up_on_an_absent_prefect_api_in_one_line(run_cli, database_url: str) -> None:
    api_url = f"http://127.0.0.1:{free_port()}/api"
    started = time.monotonic()
    result = run_cli(
        "serve",
        env={
            "PREFECT_API_URL": api_url,
            "WIKIREF_DATABASE_URL": database_url,
            "WIKIREF_SERVE_API_WAIT_SECONDS": "4",
        },
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "waiting up to 4 s for the Prefect API" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"wikiref: error: the Prefect API at PREFECT_API_URL={api_url} did not answer within 4 s (ConnectError): "
        "start it (`prefect server start`) or fix PREFECT_API_URL"
    )
    assert time.monotonic() - started >= 4


def test_waiting_for_a_running_prefect_api_returns_at_once(prefect_server: PrefectServer) -> None:
    started = time.monotonic()
    wait_for_prefect_api(prefect_server.api_url, 30)
    assert time.monotonic() - started < 5
    with pytest.raises(UserError, match="did not answer within 0 s"):
        wait_for_prefect_api(f"{prefect_server.url}/not-the-api", 0)
