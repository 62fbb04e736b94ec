"""The commands' one console and one way to print a table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console, ConsoleRenderable, RenderableType
from rich.markup import escape
from rich.table import Table

console = Console()
errors = Console(stderr=True)

# Query results cut longer texts (a reference can be a paragraph) so a row stays readable.
MAX_CELL_CHARS = 160


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
    table = Table(*columns, title=title, caption=caption)
    for row in rows:
        table.add_row(*(cell(value, max_chars) for value in row))
    console.print(table)
