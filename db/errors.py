"""The one base of the database layer's expected errors."""

from __future__ import annotations


class DatabaseError(RuntimeError):
    """An expected database problem (unreachable, unknown version, bad query), described in one line."""


def shown(value: str, limit: int = 80) -> str:
    """A caller's input as a message echoes it: at most ``limit`` characters (as SQL's ``wikiref.shown``)."""
    return value if len(value) <= limit else f"{value[: limit - 1]}…"
