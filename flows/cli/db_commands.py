"""``wikiref db``: migrate, inspect and open the database."""

from __future__ import annotations

import os
import shutil
import subprocess

import typer
from sqlalchemy import make_url

from wikiref.db import migrate
from wikiref.db.engine import check_server, libpq_url, make_engine, masked_url
from wikiref.db.server import bundled_psql, stop_embedded_server
from wikiref.flows.cli.output import JSON_OPTION, console, count, print_json, print_table
from wikiref.flows.database import prepare_database, resolve_database_url
from wikiref.flows.settings import get_settings

app = typer.Typer(help="Create, migrate and inspect the database.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Apply all migrations (idempotent); every flow does this first too."""
    url, _ = prepare_database()
    console.print(
        f"database {masked_url(libpq_url(url))} is at revision [bold]{migrate.head_revision()}[/bold]"
    )


@app.command()
def url(
    show_password: bool = typer.Option(False, "--show-password", help="Print the password in clear."),
) -> None:
    """Print the database URL (starts the embedded server if none is configured)."""
    resolved = resolve_database_url(get_settings())
    check_server(make_engine(resolved))
    print(libpq_url(resolved) if show_password else masked_url(libpq_url(resolved)))


@app.command()
def status(as_json: bool = JSON_OPTION) -> None:
    """Print the migration revision and the row count of every table."""
    resolved = resolve_database_url(get_settings())
    engine = make_engine(resolved)
    check_server(engine)
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    tables = migrate.table_row_counts(engine)
    if as_json:
        print_json(
            {"database": masked_url(libpq_url(resolved)), "revision": current, "head": head, "tables": tables}
        )
        return
    note = "" if current == head else f" (head is {head}: run `wikiref db upgrade`)"
    console.print(f"database {masked_url(libpq_url(resolved))}\nrevision {current or 'none'}{note}")
    print_table(("table", "rows"), [(name, count(rows)) for name, rows in tables.items()])


def _psql_executable() -> str:
    return str(bundled_psql() or shutil.which("psql") or "psql")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql(ctx: typer.Context) -> None:
    """Open psql on the database; extra arguments go to psql (e.g. -c "select 1")."""
    resolved = resolve_database_url(get_settings())
    check_server(make_engine(resolved))
    # The password goes through the environment: psql's arguments are visible to every user in `ps`.
    url = make_url(libpq_url(resolved))
    environment = os.environ.copy()
    if url.password is not None:
        environment["PGPASSWORD"] = str(url.password)
    # URL.set(password=None) leaves the password as it is; the named tuple's _replace drops it.
    without_password = url._replace(password=None).render_as_string(hide_password=False)
    raise typer.Exit(subprocess.call([_psql_executable(), without_password, *ctx.args], env=environment))


@app.command()
def stop() -> None:
    """Stop the embedded server (it otherwise keeps running for the next command)."""
    settings = get_settings()
    if settings.database_url:
        console.print("a database URL is configured: nothing embedded to stop")
        return
    stopped = stop_embedded_server(settings.pgdata_dir)
    console.print("embedded server stopped" if stopped else "embedded server was not running")
