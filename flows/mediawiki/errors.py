"""The one base of the scrape area's expected errors: the CLI prints them as one line, without a traceback."""

from __future__ import annotations

from wikiref.flows.errors import WikirefError


class ScrapeError(WikirefError):
    """Bad input or an unreachable/unwilling source, described in one line that says what to change."""
