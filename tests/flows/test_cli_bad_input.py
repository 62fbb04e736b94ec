"""Bad CLI input is one line and exit code 2, before any flow starts (issue 12, item 5); real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import REPO_ROOT, SHARED_WIKIPEDIA
from wikiref.db.engine import sqlalchemy_url


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("wikiref: error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0].removeprefix("wikiref: error: ")


@pytest.mark.parametrize("command", ["similar", "search"])
def test_k_out_of_range_is_one_line(run_cli, database_url: str, command: str) -> None:
    result = run_cli(command, "Dog", "-k", "2147483648", env={"WIKIREF_DATABASE_URL": database_url})
    assert one_error_line(result) == "k must be at most 1000, got 2147483648"


# No server listens on port 9: a command that reached the database (or the model, after it) would fail otherwise.
UNREACHABLE_DATABASE = "postgresql://wikiref@127.0.0.1:9/nowhere"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "Dog", "-k", "0"], "k must be a positive number of results, got 0"),
        (["search", "Dog", "-k", "-3"], "k must be a positive number of results, got -3"),
        (["search", "Dog", "-k", "1001"], "k must be at most 1000, got 1001"),
        (["search", ""], "the search text is empty"),
        (["search", "   "], "the search text is empty"),
        (["similar", "Dog", "-k", "0"], "k must be a positive number of results, got 0"),
        (["similar", "Dog", "--articles", "-k", "1001"], "k must be at most 1000, got 1001"),
        (["similar", ""], "an article title is required"),
        (["similar", " _ "], "an article title is required"),
    ],
)
def test_query_arguments_are_checked_before_the_database_and_the_model(
    run_cli, args: list[str], message: str
) -> None:
    result = run_cli(*args, env={"WIKIREF_DATABASE_URL": UNREACHABLE_DATABASE})
    assert one_error_line(result) == message


def test_huge_search_text_is_capped_with_a_clear_message(run_cli, database_url: str) -> None:
    words = " ".join(["cat"] * 24_000)
    result = run_cli("search", words, "--full-text-only", env={"WIKIREF_DATABASE_URL": database_url})
    assert one_error_line(result).startswith(
        "the search text has 95,999 characters; at most 4,000 are searched"
    )


def test_longest_allowed_search_text_runs(run_cli, loaded_database_url: str) -> None:
    words = " ".join(["citation"] * 444)[:4000]
    result = run_cli(
        "search", words, "--full-text-only", "-k", "3", env={"WIKIREF_DATABASE_URL": loaded_database_url}
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("data_dir", "reason"),
    [
        (
            "/proc/wikiref-nope/data",
            "cannot use /proc/wikiref-nope/data as the data folder: No such file or directory",
        ),
        ("{file}", "is a file, not a folder"),
        ("{file}/data", "Not a directory"),
    ],
)
def test_unusable_data_dir_is_one_line(run_cli, tmp_path: Path, data_dir: str, reason: str) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    result = run_cli("db", "status", env={"WIKIREF_DATA_DIR": data_dir.format(file=afile)})
    line = one_error_line(result)
    assert line.startswith("invalid settings: WIKIREF_DATA_DIR: ") and reason in line


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--backend", "garbage"],
            "--backend 'garbage': Input should be 'auto', 'torch', 'onnx' or 'openvino'",
        ),
        (
            ["--device", "garbage"],
            "--device 'garbage': unknown device 'garbage'; use one of: cpu, cuda, cuda:N",
        ),
        (["--model-version", "nope"], "unknown model version 'nope': see `wikiref models list`"),
    ],
)
def test_embed_options_are_checked_before_the_flow(
    run_cli, database_url: str, option: list[str], message: str
) -> None:
    result = run_cli("embed", *option, env={"WIKIREF_DATABASE_URL": database_url})
    assert one_error_line(result).startswith(message)
    assert "prefect" not in result.stderr.lower()


@pytest.mark.slow
def test_db_stop_during_a_scrape_is_one_line_and_a_rerun_converges(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WIKIREF_")}
    environment.update(
        {"PYTHONPATH": str(REPO_ROOT), "WIKIREF_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    )

    def cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wikiref.flows.cli", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            **kwargs,
        )

    scrape = ["scrape", "--mirror", str(SHARED_WIKIPEDIA), "--limit", "40", "--concurrency", "1"]
    assert cli("db", "upgrade").returncode == 0  # starts the embedded server of this data folder
    running = subprocess.Popen(
        [sys.executable, "-m", "wikiref.flows.cli", *scrape, "--rate", "4"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)  # resolving done, pages being written
    assert cli("db", "stop").returncode == 0
    stdout, stderr = running.communicate(timeout=300)
    assert running.returncode == 2, (stdout, stderr)
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("wikiref: error: ")]
    assert len(errors) == 1 and errors[0].startswith("wikiref: error: lost the database connection"), stderr
    rerun = cli(*scrape, "--rate", "1000")
    assert rerun.returncode == 0, rerun.stderr
    url = cli("db", "url", "--show-password").stdout.strip()
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM articles")).scalar_one() == 40
    finally:
        engine.dispose()
        cli("db", "stop")
