"""No network is not a flaky network: a wiki that never answered this process fails at once in one line, with
the way to run offline; a wiki that answered before is retried as usual. No internet needed: a closed
localhost port and a host under ``.invalid`` (a name that never resolves, RFC 6761) stand in for no network."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.flows.mediawiki.conftest import client_config
from wikiref.flows.mediawiki.client import APIUnreachable, MediaWikiClient, RetriesExhausted
from wikiref.flows.mirror.server import MirrorApp, MirrorData, serving

OFFLINE_HINT = "`wikiref scrape --mirror DIR` or `wikiref run pipeline --param mirror_dir=DIR`"


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/w/api.php"


UNREACHABLE_URLS = [closed_port_url(), "http://wikiref-no-such-host.invalid/w/api.php"]


async def ask_siteinfo(config) -> tuple[BaseException | None, int]:
    async with MediaWikiClient(config) as client:
        try:
            await client.api(action="query", meta="siteinfo")
        except Exception as exc:  # the test inspects what was raised
            return exc, client.stats.requests
    return None, client.stats.requests


@pytest.mark.parametrize("api_url", UNREACHABLE_URLS)
def test_a_wiki_never_reached_fails_at_once_without_retries(api_url: str) -> None:
    error, requests = asyncio.run(ask_siteinfo(client_config(api_url, max_retries=6, backoff_base=1.0)))
    assert isinstance(error, APIUnreachable)
    assert requests == 1
    assert str(error).startswith(f"the MediaWiki API at {api_url} is unreachable (ConnectError: ")
    assert str(error).endswith(OFFLINE_HINT)


def test_a_wiki_that_answered_before_is_retried(mirror_data: MirrorData) -> None:
    with serving(MirrorApp(mirror_data)) as api_url:
        config = client_config(api_url, max_retries=2)
        error, _ = asyncio.run(ask_siteinfo(config))
        assert error is None
    # The same host, now down: a flaky network, retried up to the cap.
    error, requests = asyncio.run(ask_siteinfo(config))
    assert isinstance(error, RetriesExhausted)
    assert requests == 3


@pytest.mark.slow
@pytest.mark.parametrize("command", [["scrape", "Cat"], ["run", "pipeline"]])
@pytest.mark.parametrize("api_url", UNREACHABLE_URLS)
def test_commands_without_network_say_so_in_one_line_within_15_s(
    command: list[str], api_url: str, database_url: str, tmp_path: Path
) -> None:
    # The installed command, from a folder outside the repository, as a user runs it (no PYTHONPATH).
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("WIKIREF_", "PREFECT_"))
    }
    environment.update(
        WIKIREF_DATABASE_URL=database_url, WIKIREF_DATA_DIR=str(tmp_path / "data"), WIKIREF_API_URL=api_url
    )
    started = time.monotonic()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "wikiref"), *command],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"wikiref: error: the MediaWiki API at {api_url} is unreachable"), result.stderr
    assert last.endswith(OFFLINE_HINT)
    assert elapsed < 15, f"{command} took {elapsed:.1f} s"
