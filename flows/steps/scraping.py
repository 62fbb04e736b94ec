"""The scrape as plain, picklable steps: resolve titles, pick the stale ones, fetch, extract, write.

``wikiref.flows.steps.scrape_sequence`` runs them for both the Prefect flow (``flows/scrape.py``) and the CLI
(``wikiref scrape``); each step takes and returns plain values so that Prefect can retry it and Dask can ship
it to another process.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from wikiref.db.articles import stored_revisions, upsert_page
from wikiref.db.bulk_writes import upsert_pages
from wikiref.db.lexical import refresh_lexical_statistics
from wikiref.db.page_records import PageRecord
from wikiref.db.quarantine import pending_revisions
from wikiref.db.revision_checks import RevisionChecks
from wikiref.flows import markdown
from wikiref.flows.mediawiki.client import (
    ClientConfig,
    ClientStats,
    FetchedPage,
    MediaWikiAPIError,
    MediaWikiClient,
    ResolvedTitle,
    TitleResolution,
)
from wikiref.flows.mediawiki.dump import SkippedRecord
from wikiref.flows.mediawiki.titles import TitleSources, gather_titles
from wikiref.flows.settings import Settings
from wikiref.flows.steps.records import WriteCounts, page_record

log = logging.getLogger(__name__)


def _snake(label: str) -> str:
    """A summary row's label as a JSON key: "not articles (skipped)" -> "not_articles_skipped"."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def client_config(settings: Settings, api_url: str | None = None) -> ClientConfig:
    """The client's etiquette from settings; ``api_url`` overrides the configured wiki (e.g. a mirror)."""
    return ClientConfig(
        api_url=api_url or str(settings.api_url),
        user_agent=settings.user_agent,
        requests_per_second=settings.scrape_requests_per_second,
        concurrency=settings.scrape_concurrency,
        max_retries=settings.scrape_max_retries,
        request_timeout=settings.scrape_request_timeout,
        maxlag=settings.scrape_maxlag,
        pageviews_url=str(settings.pageviews_url) if settings.pageviews_url and not api_url else None,
    )


def check_reachable(config: ClientConfig) -> str:
    """The wiki's name, asked once before a flow run starts: with no network this is one line within seconds
    (``APIUnreachable``), instead of a flow run failing after its tasks' retries."""

    async def ask() -> str:
        async with MediaWikiClient(config) as client:
            return await client.wiki_name()

    return asyncio.run(ask())


def revision_checks(settings: Settings) -> RevisionChecks:
    """The sanity checks every new revision passes before it replaces stored references."""
    return RevisionChecks(max_shrink=settings.scrape_max_reference_shrink)


@dataclass
class ResolvedTitles:
    """Titles from the sources, resolved against the wiki: what exists, what is missing or invalid."""

    wiki: str
    requested: list[str]
    resolution: TitleResolution
    stats: ClientStats


@dataclass
class FetchBatch:
    pages: list[FetchedPage]
    missing: list[str]
    stats: ClientStats
    failed: list[str] = field(default_factory=list)
    """Pages the wiki answered with an API error of their own (``title: error``); the batch goes on."""


@dataclass
class ScrapeSummary:
    """What one scrape did, for the CLI table and the Prefect artifact."""

    wiki: str = ""
    requested: int = 0
    counts: WriteCounts = field(default_factory=WriteCounts)
    skipped_current: int = 0
    missing: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    not_articles: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Pages the wiki would not serve (a per-page API error), as ``title: reason``."""
    skipped_records: list[SkippedRecord] = field(default_factory=list)
    """Bad records of a dump, with their line numbers."""
    stats: ClientStats = field(default_factory=ClientStats)

    @property
    def articles_unchanged(self) -> int:
        """Skipped because the stored revision is current, plus fetched but identical."""
        return self.skipped_current + self.counts.articles_unchanged

    def rows(self) -> list[tuple[str, int]]:
        return [
            ("titles requested", self.requested),
            ("articles new", self.counts.articles_new),
            ("articles updated", self.counts.articles_updated),
            ("articles unchanged", self.articles_unchanged),
            ("articles quarantined", self.counts.articles_quarantined),
            ("articles older, skipped", self.counts.articles_older),
            ("quarantines cleared", self.counts.quarantines_cleared),
            ("articles missing", len(self.missing)),
            ("titles invalid", len(self.invalid)),
            ("not articles (skipped)", len(self.not_articles)),
            ("pages failed", len(self.failed)),
            ("bad records (skipped)", len(self.skipped_records)),
            ("references added", self.counts.references_added),
            ("references removed", self.counts.references_removed),
            ("requests", self.stats.requests),
            ("retries", self.stats.retries),
        ]

    def record(self) -> dict[str, Any]:
        """The summary as JSON-ready data (``--json``; keys in docs/operations.md, 'JSON output')."""
        return {
            "wiki": self.wiki,
            "counts": {_snake(name): value for name, value in self.rows()},
            "missing": self.missing,
            "invalid": self.invalid,
            "not_articles": self.not_articles,
            "failed": self.failed,
            "skipped_records": [vars(record).copy() for record in self.skipped_records],
            "quarantined": [{"title": title, "reason": reason} for title, reason in self.counts.quarantined],
            "older": [{"title": title, "reason": reason} for title, reason in self.counts.older],
            "retry_reasons": dict(sorted(self.stats.retry_reasons.items())),
        }

    def markdown(self) -> str:
        lines = [f"# Scrape of {markdown.escape(self.wiki)}", "", "| what | count |", "| --- | ---: |"]
        lines += [f"| {name} | {value:,} |" for name, value in self.rows()]
        if self.counts.quarantined:
            lines += [
                "",
                f"**Warning: {len(self.counts.quarantined)} pages quarantined** (stored references kept):",
            ]
            lines += [
                f"- {markdown.escape(title)}: {markdown.escape(reason)}"
                for title, reason in self.counts.quarantined[:50]
            ]
        if self.stats.retry_reasons:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.stats.retry_reasons.items()))
            lines += ["", f"Retries by reason: {markdown.escape(reasons)}."]
        for label, titles in (("Missing", self.missing), ("Invalid", self.invalid), ("Failed", self.failed)):
            if titles:
                shown = ", ".join(markdown.escape(title) for title in titles[:20])
                lines += ["", f"{label}: {shown}" + (" …" if len(titles) > 20 else "")]
        if self.skipped_records:
            lines += [
                "",
                f"Bad records skipped: {len(self.skipped_records):,} (see the skipped-records artifact).",
            ]
        return "\n".join(lines)

    def quarantined_markdown(self, limit: int = 1000) -> str:
        """The quarantined pages as a table (the first ``limit``), for the ``quarantined-pages`` artifact."""
        quarantined = self.counts.quarantined
        lines = [f"# Pages quarantined: {len(quarantined):,}", ""]
        lines += [
            "Revisions that failed the sanity checks: not applied, stored references kept. Review with "
            "`wikiref corpus quarantine`, apply one with `wikiref corpus accept TITLE`.",
            "",
        ]
        lines += markdown.table(("article", "reason"), quarantined[:limit])
        if len(quarantined) > limit:
            lines += ["", f"… and {len(quarantined) - limit:,} more."]
        return "\n".join(lines)

    def skipped_records_markdown(self, limit: int = 1000) -> str:
        """The bad records as a table (the first ``limit``), for the ``skipped-records`` artifact."""
        rows = [(record.source, record.line, record.reason) for record in self.skipped_records[:limit]]
        lines = [f"# Bad records skipped: {len(self.skipped_records):,}", ""]
        lines += markdown.table(("file", "line", "reason"), rows)
        if len(self.skipped_records) > limit:
            lines += ["", f"… and {len(self.skipped_records) - limit:,} more."]
        return "\n".join(lines)


async def _resolve(config: ClientConfig, sources: TitleSources, wiki: str | None) -> ResolvedTitles:
    async with MediaWikiClient(config) as client:
        wiki = wiki or await client.wiki_name()
        requested = await gather_titles(client, sources, wiki=wiki)
        resolution = await client.resolve_titles(requested)
        return ResolvedTitles(wiki=wiki, requested=requested, resolution=resolution, stats=client.stats)


def resolve_titles(config: ClientConfig, sources: TitleSources, *, wiki: str | None = None) -> ResolvedTitles:
    """Gather titles from ``sources`` and resolve them (normalised, redirects followed, current revisions)."""
    resolved = asyncio.run(_resolve(config, sources, wiki))
    resolution = resolved.resolution
    log.info(
        "resolved %d titles on %s: %d articles, %d missing, %d invalid, %d redirects, %d not articles",
        len(resolved.requested),
        resolved.wiki,
        len(resolution.pages),
        len(resolution.missing),
        len(resolution.invalid),
        len(resolution.redirects),
        len(resolution.not_articles),
    )
    return resolved


def stale_pages(
    engine: Engine, *, wiki: str, pages: Sequence[ResolvedTitle], force: bool = False
) -> tuple[list[ResolvedTitle], int]:
    """The pages whose stored revision is absent or older than the wiki's, and how many are current.

    A page with a quarantined revision counts as current while the wiki still serves that revision (it was
    checked already), and as stale once the wiki serves another one, even the stored one (a revert): the
    write then clears the quarantine.
    """
    if force:
        return list(pages), 0
    titles = [page.title for page in pages]
    with Session(engine) as session:
        stored = stored_revisions(session=session, wiki=wiki, titles=titles)
        pending = pending_revisions(session=session, wiki=wiki, titles=titles)

    def is_stale(page: ResolvedTitle) -> bool:
        if page.revision_id is None:
            return True
        if page.title in pending:
            return pending[page.title] != page.revision_id
        return stored.get(page.title) != page.revision_id

    stale = [page for page in pages if is_stale(page)]
    return stale, len(pages) - len(stale)


async def _fetch_one(client: MediaWikiClient, title: str) -> FetchedPage | MediaWikiAPIError | None:
    # One page's own API error (a page the wiki cannot render) fails that page, not the batch; transport
    # failures still raise, so that the batch is retried.
    try:
        return await client.fetch_page(title)
    except MediaWikiAPIError as exc:
        return exc


async def _fetch(
    config: ClientConfig, pages: Sequence[ResolvedTitle], before_request: Callable[[], Awaitable[None]] | None
) -> FetchBatch:
    async with MediaWikiClient(config, before_request=before_request) as client:
        fetched = await asyncio.gather(*(_fetch_one(client, page.title) for page in pages))
        batch = FetchBatch(pages=[], missing=[], stats=client.stats)
    for wanted, page in zip(pages, fetched, strict=True):
        if isinstance(page, MediaWikiAPIError):
            batch.failed.append(f"{wanted.title}: {page}")
        elif page is None:
            batch.missing.append(wanted.title)
        else:
            # The redirects seen while resolving lead here too.
            redirects = tuple(dict.fromkeys((*wanted.redirects, *page.redirects)))
            batch.pages.append(
                FetchedPage(
                    page.title,
                    page.page_id,
                    page.revision_id,
                    page.html,
                    redirects=redirects,
                    short_description=page.short_description,
                )
            )
    return batch


def fetch_pages(
    config: ClientConfig,
    pages: Sequence[ResolvedTitle],
    *,
    before_request: Callable[[], Awaitable[None]] | None = None,
) -> FetchBatch:
    """Rendered HTML of ``pages`` (concurrently, within the client's limits); deleted meanwhile = missing."""
    batch = asyncio.run(_fetch(config, pages, before_request))
    log.info(
        "fetched %d pages (%d missing, %d failed) with %d requests, %d retries",
        len(batch.pages),
        len(batch.missing),
        len(batch.failed),
        batch.stats.requests,
        batch.stats.retries,
    )
    return batch


def extract_pages(wiki: str, pages: Iterable[FetchedPage]) -> list[PageRecord]:
    """Reference and lead extraction of fetched pages (pure CPU)."""
    return [
        page_record(
            wiki=wiki,
            title=page.title,
            html=page.html,
            page_id=page.page_id,
            revision_id=page.revision_id,
            redirects=page.redirects,
            short_description=page.short_description,
        )
        for page in pages
    ]


def write_records(
    engine: Engine,
    records: Iterable[PageRecord],
    checks: RevisionChecks = RevisionChecks(),
    *,
    bulk: bool = False,
) -> WriteCounts:
    """Upsert each article with its references, one transaction per article; failing revisions are quarantined.

    ``bulk``: the new articles among ``records`` are written together (``wikiref.db.bulk_writes.upsert_pages``: one
    INSERT and one COPY), the rest one by one as without it; same rows and counts.
    """
    counts = WriteCounts()
    with Session(engine) as session:
        if bulk:
            for result in upsert_pages(session=session, pages=list(records), checks=checks):
                counts.add(result)
        else:
            for record in records:
                counts.add(upsert_page(session=session, page=record, checks=checks))
        # Cheap unless the corpus drifted past the threshold since the last rebuild (then BM25 needs new counts).
        refresh_lexical_statistics(session=session)
    log.info(
        "wrote articles: %d new, %d updated, %d unchanged, %d quarantined; references: %d added, %d removed",
        counts.articles_new,
        counts.articles_updated,
        counts.articles_unchanged,
        counts.articles_quarantined,
        counts.references_added,
        counts.references_removed,
    )
    for title, reason in counts.quarantined:
        log.warning("quarantined %s: %s (stored references kept)", title, reason)
    return counts


def batched(items: Sequence, size: int) -> list[list]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def summary_of(resolved: ResolvedTitles) -> ScrapeSummary:
    """A summary holding what resolving found (missing, invalid, not articles) and its requests."""
    resolution = resolved.resolution
    summary = ScrapeSummary(
        wiki=resolved.wiki,
        requested=len(resolved.requested),
        missing=list(resolution.missing),
        invalid=[title for title, _reason in resolution.invalid],
        not_articles=list(resolution.not_articles),
    )
    summary.stats.merge(resolved.stats)
    return summary
