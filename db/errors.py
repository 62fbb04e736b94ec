"""The one base of the database layer's expected errors."""

from __future__ import annotations


class DatabaseError(RuntimeError):
    """An expected database problem (unreachable, unknown version, bad query), described in one line."""
