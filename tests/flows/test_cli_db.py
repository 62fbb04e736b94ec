import pytest

from wikiref.db.engine import libpq_url, masked_url

UNREACHABLE = "postgresql://alice:s3cret@127.0.0.1:9/nowhere"


def test_help_lists_every_command_with_one_line(run_cli) -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "db" in result.stdout and "Create, migrate and inspect the database." in result.stdout


def test_db_upgrade_then_status_reports_revision_and_counts(run_cli, empty_database_url: str) -> None:
    env = {"WIKIREF_DATABASE_URL": empty_database_url}
    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    status = run_cli("db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "revision 0001" in status.stdout or "revision" in status.stdout
    assert "articles" in status.stdout and "model_versions" in status.stdout


def test_db_url_prints_a_url_that_psql_accepts(run_cli, database_url: str) -> None:
    shown = run_cli("db", "url", "--show-password", env={"WIKIREF_DATABASE_URL": database_url})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == libpq_url(database_url)


def test_masked_url_hides_only_the_password() -> None:
    assert masked_url("postgresql+psycopg://alice:s3cret@db:5432/wikiref") == (
        "postgresql+psycopg://alice:***@db:5432/wikiref"
    )


def test_db_psql_runs_a_query(run_cli, database_url: str) -> None:
    result = run_cli(
        "db", "psql", "-tAc", "select count(*) from articles", env={"WIKIREF_DATABASE_URL": database_url}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "status"], ["db", "url"], ["db", "psql"]])
def test_unreachable_database_fails_in_one_line_without_password(run_cli, command: list[str]) -> None:
    result = run_cli(*command, env={"WIKIREF_DATABASE_URL": UNREACHABLE})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "127.0.0.1:9/nowhere" in lines[0] and "alice:***@" in lines[0]
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_is_one_clear_line(run_cli) -> None:
    result = run_cli("db", "status", env={"WIKIREF_DATABASE_URL": "mysql://x@y/z"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "wikiref: error: invalid settings: WIKIREF_DATABASE_URL: only PostgreSQL is supported, got 'mysql'"
    )
