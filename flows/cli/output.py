"""The commands' one console, one way to print a table and one way to print JSON (``--json``)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console, ConsoleRenderable, RenderableType
from rich.markup import escape
from rich.progress import Progress, ProgressColumn
from rich.table import Table
from rich.text import Text

# Wider than any value: rich otherwise assumes 80 columns when the output is not a terminal.
UNLIMITED_WIDTH = 1_000_000


def _console(*, stderr: bool) -> Console:
    """A terminal's console as rich makes it; piped or redirected output never wraps nor cuts a value, since a
    script (``grep``, ``awk``) reads it line by line."""
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=UNLIMITED_WIDTH, soft_wrap=True)


console = _console(stderr=False)
errors = _console(stderr=True)

# Query results on a terminal cut longer texts (a reference can be a paragraph) so a row stays readable.
MAX_CELL_CHARS = 160

# The scrape flags are spelled as the flow's parameters since issue 26 (--category-depth, --dump-path); the
# earlier spellings still work, unlisted, so that no script breaks.
OLD_DEPTH_OPTION = typer.Option(None, "--depth", min=0, hidden=True)
OLD_DUMP_OPTION = typer.Option(None, "--dump", hidden=True)

JSON_OPTION = typer.Option(
    False,
    "--json",
    help="Print one JSON document on stdout instead of tables (its keys: docs/operations.md, 'JSON output').",
)


def cell(value: Any, max_chars: int | None = None) -> RenderableType:
    """A table cell: empty for None, four decimals for floats, text as text (never read as rich markup) cut
    to ``max_chars``; rich renderables such as a styled ``Text`` pass through."""
    if value is None:
        return ""
    if isinstance(value, ConsoleRenderable):
        return value
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return escape(text)


def count(value: int) -> str:
    return f"{value:,}"


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
    max_chars: int | None = None,
) -> None:
    """A table; ``max_chars`` cuts long cells on a terminal only (piped output keeps every value whole)."""
    table = Table(*columns, title=title, caption=caption)
    cut = max_chars if console.is_terminal else None
    for row in rows:
        table.add_row(*(cell(value, cut) for value in row))
    console.print(table)


def progress(*columns: ProgressColumn | str, **options: Any) -> Progress:
    """A progress display on stderr, shown only on a terminal: a log file or a pipe gets no frames."""
    return Progress(*columns, console=errors, disable=not errors.is_terminal, **options)


def json_value(value: Any) -> Any:
    """What ``json.dumps`` cannot encode by itself: times as ISO 8601, paths and styled text as strings,
    numpy values and decimals as numbers, dataclasses as objects."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Text):
        return value.plain
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def print_json(document: Any) -> None:
    """One JSON document on stdout, keys in the order the command gives them."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2, default=json_value) + "\n")
    sys.stdout.flush()


def records(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows as objects keyed by column name: every column a query returns comes through."""
    return [dict(zip(columns, row, strict=True)) for row in rows]
