"""Errors the user caused and can fix: the CLI prints them as one line, without a traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input (an unknown flow or parameter, an impossible option): one line that says what to change."""
