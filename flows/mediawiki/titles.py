"""Title sources, composable: explicit titles or a file, a category tree, a list page's links, a day's top views.

Each source stops at ``limit`` titles and so does their union (first come, first kept; duplicates dropped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from wikiref.flows.mediawiki.client import MediaWikiClient, MediaWikiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TitleSources:
    titles: tuple[str, ...] = ()
    titles_file: Path | None = None
    category: str | None = None
    category_depth: int = 0
    list_page: str | None = None
    top_day: date | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise MediaWikiError(f"limit must be at least 1, got {self.limit}")
        if self.category_depth < 0:
            raise MediaWikiError(f"category depth must be 0 or more, got {self.category_depth}")

    @property
    def empty(self) -> bool:
        return not (self.titles or self.titles_file or self.category or self.list_page or self.top_day)


def read_titles_file(path: Path) -> list[str]:
    """One title per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise MediaWikiError(f"cannot read titles file {path}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _limited(titles: list[str], limit: int | None) -> list[str]:
    return titles[:limit] if limit is not None else titles


async def gather_titles(client: MediaWikiClient, sources: TitleSources, *, wiki: str) -> list[str]:
    """The union of all configured sources, in source order, each and the whole cut at ``sources.limit``."""
    if sources.empty:
        raise MediaWikiError(
            "no titles to scrape: give titles, a titles file, a category, a list page or a day"
        )
    found: dict[str, None] = {}
    lists: list[tuple[str, list[str]]] = [("titles", _limited(list(sources.titles), sources.limit))]
    if sources.titles_file:
        lists.append(("titles file", _limited(read_titles_file(sources.titles_file), sources.limit)))
    if sources.category:
        members = await client.category_members(
            sources.category, depth=sources.category_depth, limit=sources.limit
        )
        lists.append((f"category {sources.category} (depth {sources.category_depth})", members))
    if sources.list_page:
        lists.append(
            (f"links of {sources.list_page}", await client.page_links(sources.list_page, limit=sources.limit))
        )
    if sources.top_day:
        top = await client.top_viewed(sources.top_day, project=wiki, limit=sources.limit)
        lists.append((f"top viewed on {sources.top_day:%Y-%m-%d}", top))
    for name, titles in lists:
        if titles or name != "titles":
            log.info("%s: %d titles", name, len(titles))
        for title in titles:
            found.setdefault(title, None)
    return _limited(list(found), sources.limit)
