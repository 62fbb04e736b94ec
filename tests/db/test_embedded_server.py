"""The embedded server keeps its data across restarts and is shared by processes that start it at once."""

import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

from wikiref.db.server import ensure_embedded_server, stop_embedded_server

START_AND_REPORT = textwrap.dedent(
    """
    import sys, psycopg
    from pathlib import Path
    from wikiref.db.server import ensure_embedded_server
    url = ensure_embedded_server(Path(sys.argv[1]))
    with psycopg.connect(url) as connection:
        print(connection.execute("SELECT pg_postmaster_start_time(), inet_server_port()").fetchone()[0], url)
    """
)


def test_restart_keeps_data(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    url = ensure_embedded_server(pgdata)
    with psycopg.connect(url) as connection:
        connection.execute("CREATE TABLE kept (value text)")
        connection.execute("INSERT INTO kept VALUES ('still here')")
    assert stop_embedded_server(pgdata)
    assert not (pgdata / "postmaster.pid").exists()

    url_again = ensure_embedded_server(pgdata)
    with psycopg.connect(url_again) as connection:
        assert connection.execute("SELECT value FROM kept").fetchall() == [("still here",)]
    stop_embedded_server(pgdata)


def test_two_processes_starting_at_once_share_one_server(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    repo = Path(__file__).resolve().parents[2]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", START_AND_REPORT, str(pgdata)], cwd=repo, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0].strip() for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    # Same postmaster start time and the same socket: one server, started once.
    assert outputs[0] == outputs[1], outputs
    with psycopg.connect(ensure_embedded_server(pgdata)) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
    stop_embedded_server(pgdata)
