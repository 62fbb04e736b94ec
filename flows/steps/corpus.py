"""Corpus refresh as plain steps: re-resolve every source of every corpus, re-check every stored article's
current revision (50 titles per query), fetch only what changed, mark deleted and redirected articles.

An unchanged corpus of N stored articles costs about N/50 requests (plus one per category level or list
page of its sources). ``wikiref.flows.steps.scrape_sequence.run_refresh`` runs these steps for both the Prefect
flow (``scrape_wikipedia(refresh=True)``) and ``wikiref scrape --refresh``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from wikiref.db.articles import mark_gone, stored_titles
from wikiref.db.corpora import (
    CorpusDefinition,
    SourceSpec,
    add_sources,
    claim_corpora,
    corpora,
    record_refresh,
)
from wikiref.db.reference_history import prune_history_embeddings
from wikiref.flows import markdown
from wikiref.flows.mediawiki.client import ClientConfig, ClientStats, MediaWikiClient, TitleResolution
from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.title_rules import InvalidTitle, check_title_length, shortened
from wikiref.flows.mediawiki.titles import TitleSources, gather_titles, read_titles_file
from wikiref.flows.steps.scraping import ResolvedTitles, ScrapeSummary

log = logging.getLogger(__name__)

TOP_DEFAULT = 100  # articles of a day's top list recorded when a scrape gives a day without a limit


def source_specs(sources: TitleSources, *, dump: Path | None = None) -> list[SourceSpec]:
    """The sources of one scrape as corpus sources (a titles file is recorded as its titles); a title no wiki
    can have (over 255 bytes) is refused here, before a corpus stores it."""
    specs = []
    titles = list(sources.titles) + (read_titles_file(sources.titles_file) if sources.titles_file else [])
    for title in (*titles, sources.category or "", sources.list_page or ""):
        try:
            check_title_length(title)
        except InvalidTitle as exc:
            raise ScrapeError(
                f"title {shortened(title)!r} ({len(title.encode('utf-8', errors='surrogatepass')):,} bytes): "
                f"{exc.reason}"
            ) from None
    if titles:
        specs.append(SourceSpec("titles", {"titles": list(dict.fromkeys(titles))}))
    if sources.category:
        specs.append(SourceSpec("category", {"name": sources.category, "depth": sources.category_depth}))
    if sources.list_page:
        specs.append(SourceSpec("list_page", {"name": sources.list_page}))
    if sources.top_day:
        specs.append(SourceSpec("top", {"n": sources.limit or TOP_DEFAULT}))
    if dump:
        specs.append(SourceSpec("dump", {"path": str(Path(dump).resolve())}))
    return specs


def record_sources(engine: Engine, corpus: str, specs: list[SourceSpec], *, wiki: str) -> int:
    """Record ``specs`` under ``corpus`` of ``wiki``; how many were new."""
    with Session(engine) as session:
        added = add_sources(session=session, corpus=corpus, wiki=wiki, sources=specs)
    log.info("corpus %s of %s: %d of %d sources new", corpus, wiki, added, len(specs))
    return added


def wiki_of(config: ClientConfig, wiki: str | None) -> str:
    """``wiki`` if given (WIKIREF_WIKI), else the server name of the wiki ``config`` reaches (one request)."""
    if wiki:
        return wiki

    async def ask() -> str:
        async with MediaWikiClient(config) as client:
            return await client.wiki_name()

    return asyncio.run(ask())


def title_sources(source: SourceSpec, *, today: date | None = None) -> TitleSources:
    """What to ask the wiki for one (non-dump) source."""
    spec = source.spec
    if source.kind == "titles":
        return TitleSources(titles=tuple(spec["titles"]))
    if source.kind == "category":
        return TitleSources(category=spec["name"], category_depth=int(spec.get("depth", 0)))
    if source.kind == "list_page":
        return TitleSources(list_page=spec["name"])
    if source.kind == "top":
        # The Pageviews API publishes a day once it is over: "each day" means yesterday's list (UTC).
        yesterday = (today or datetime.now(UTC).date()) - timedelta(days=1)
        return TitleSources(top_day=yesterday, limit=int(spec["n"]))
    raise ValueError(f"a {source.kind} source has no titles to ask the wiki for")


@dataclass
class RefreshPlan:
    """Every corpus's titles and every stored title, resolved against the wiki in one pass."""

    resolved: ResolvedTitles
    corpus_titles: dict[str, list[str]]
    stored: list[str]
    dumps: list[tuple[str, Path]] = field(default_factory=list)
    other_wikis: dict[str, str] = field(default_factory=dict)
    """Corpora of other wikis, left alone (name -> their wiki)."""

    def gone(self) -> tuple[list[str], dict[str, str]]:
        """Stored titles the wiki no longer has, and stored titles that now redirect (to their target)."""
        resolution = self.resolved.resolution
        missing = set(resolution.missing)
        deleted = [title for title in self.stored if title in missing]
        redirects = {
            title: canonical(title, resolution) for title in self.stored if title in resolution.redirects
        }
        return deleted, redirects


def canonical(title: str, resolution: TitleResolution) -> str:
    """The title ``title`` leads to on the wiki: normalised, redirects followed."""
    title = resolution.normalized.get(title, title)
    seen = {title}
    while title in resolution.redirects and resolution.redirects[title] not in seen:
        title = resolution.redirects[title]
        seen.add(title)
    return title


def corpora_of(definitions: list[CorpusDefinition], wiki: str, *, named: bool) -> list[CorpusDefinition]:
    """The corpora of ``wiki`` (and those of no wiki yet) among ``definitions``; a corpus the caller named that
    belongs to another wiki is an error rather than a silent skip."""
    foreign = [d for d in definitions if d.wiki not in (None, wiki)]
    if named and foreign:
        listed = ", ".join(f"{shortened(d.name)} ({d.wiki})" for d in foreign)
        raise ScrapeError(
            f"corpus {listed} belongs to another wiki than {wiki}: refresh it with WIKIREF_API_URL (or --api-url) "
            "set to its wiki's api.php"
        )
    return [d for d in definitions if d.wiki in (None, wiki)]


async def _corpus_titles(
    config: ClientConfig, definitions: list[CorpusDefinition], wiki: str, today: date | None
) -> tuple[dict[str, list[str]], ClientStats]:
    async with MediaWikiClient(config) as client:
        titles: dict[str, list[str]] = {}
        for definition in definitions:
            found: dict[str, None] = {}
            for source in definition.sources:
                if source.kind == "dump":
                    continue
                for title in await gather_titles(client, title_sources(source, today=today), wiki=wiki):
                    found.setdefault(title, None)
            titles[definition.name] = list(found)
        return titles, client.stats


async def _resolve(config: ClientConfig, titles: list[str]) -> tuple[TitleResolution, ClientStats]:
    async with MediaWikiClient(config) as client:
        return await client.resolve_titles(titles), client.stats


def plan_refresh(
    engine: Engine,
    config: ClientConfig,
    *,
    names: Iterable[str] | None = None,
    wiki: str | None = None,
    today: date | None = None,
) -> RefreshPlan:
    """Gather the titles of every corpus of the wiki ``config`` reaches (or those named), add every stored
    title of that wiki, resolve them all. Corpora of other wikis are left alone; those of no wiki yet become
    this wiki's."""
    wiki = wiki_of(config, wiki)
    with Session(engine) as session:
        known = corpora(session=session, names=names)
        definitions = corpora_of(known, wiki, named=names is not None)
        claim_corpora(session=session, names=[d.name for d in definitions if d.wiki is None], wiki=wiki)
    other_wikis = {d.name: d.wiki for d in known if d.wiki not in (None, wiki)}
    if other_wikis:
        log.info("refresh on %s leaves %d corpora of other wikis alone", wiki, len(other_wikis))
    titles, stats = asyncio.run(_corpus_titles(config, definitions, wiki, today))
    with Session(engine) as session:
        stored = stored_titles(session=session, wiki=wiki)
    everything = list(dict.fromkeys([*(t for ts in titles.values() for t in ts), *stored]))
    resolution, resolve_stats = asyncio.run(_resolve(config, everything))
    stats.merge(resolve_stats)
    dumps = [
        (definition.name, Path(source.spec["path"]))
        for definition in definitions
        for source in definition.sources
        if source.kind == "dump"
    ]
    log.info(
        "refresh plan for %d corpora on %s: %d corpus titles, %d stored, %d resolved with %d requests",
        len(definitions),
        wiki,
        sum(len(ts) for ts in titles.values()),
        len(stored),
        len(resolution.pages),
        stats.requests,
    )
    resolved = ResolvedTitles(wiki=wiki, requested=everything, resolution=resolution, stats=stats)
    return RefreshPlan(
        resolved=resolved, corpus_titles=titles, stored=stored, dumps=dumps, other_wikis=other_wikis
    )


def mark_gone_articles(engine: Engine, plan: RefreshPlan) -> tuple[int, int]:
    """Mark the stored articles deleted on the wiki or turned into redirects; counts newly marked."""
    deleted, redirects = plan.gone()
    with Session(engine) as session:
        counts = mark_gone(session=session, wiki=plan.resolved.wiki, deleted=deleted, redirects=redirects)
    log.info(
        "marked %d articles deleted and %d redirects (of %d and %d seen)",
        *counts,
        len(deleted),
        len(redirects),
    )
    return counts


@dataclass
class CorpusCounts:
    """What one corpus's refresh found."""

    corpus: str
    titles: int = 0
    articles: int = 0
    changed: int = 0
    missing: int = 0
    quarantined: int = 0


@dataclass
class RefreshSummary:
    """What a refresh of every corpus did: the scrape it ran, per-corpus counts, articles marked."""

    scrape: ScrapeSummary
    corpora: list[CorpusCounts] = field(default_factory=list)
    stored_checked: int = 0
    marked_deleted: int = 0
    marked_redirects: int = 0
    history_embeddings_pruned: int = 0
    other_wikis: dict[str, str] = field(default_factory=dict)
    """Corpora of other wikis, not refreshed (name -> their wiki)."""

    def rows(self) -> list[tuple[str, int]]:
        return [
            ("corpora refreshed", len(self.corpora)),
            ("stored articles checked", self.stored_checked),
            *self.scrape.rows(),
            ("articles marked deleted", self.marked_deleted),
            ("articles marked redirects", self.marked_redirects),
            ("history embeddings pruned", self.history_embeddings_pruned),
        ]

    def record(self) -> dict[str, Any]:
        """The refresh as JSON-ready data (``--json``; keys in docs/operations.md, 'JSON output')."""
        return {
            "corpora": self.corpus_table(),
            "stored_checked": self.stored_checked,
            "marked_deleted": self.marked_deleted,
            "marked_redirects": self.marked_redirects,
            "history_embeddings_pruned": self.history_embeddings_pruned,
            "other_wikis": self.other_wikis,
            "scrape": self.scrape.record(),
        }

    def corpus_table(self) -> list[dict[str, Any]]:
        return [vars(counts).copy() for counts in self.corpora]

    def markdown(self) -> str:
        """Per corpus counts and what the refresh marked, for the ``corpus-refresh`` artifact."""
        lines = [f"# Refresh of {len(self.corpora)} corpora on {markdown.escape(self.scrape.wiki)}", ""]
        lines += markdown.table(
            ("corpus", "titles", "articles", "changed", "missing", "quarantined"),
            [(c.corpus, c.titles, c.articles, c.changed, c.missing, c.quarantined) for c in self.corpora],
        )
        lines += [
            "",
            f"Stored articles re-checked: {self.stored_checked:,}; marked deleted: {self.marked_deleted:,}; "
            f"marked redirects: {self.marked_redirects:,}; history embeddings pruned: "
            f"{self.history_embeddings_pruned:,}.",
        ]
        return "\n".join(lines)


def corpus_counts(plan: RefreshPlan, stale: Iterable[str], summary: ScrapeSummary) -> list[CorpusCounts]:
    """Per corpus: titles its sources gave, articles they lead to, changed, missing, quarantined."""
    resolution = plan.resolved.resolution
    existing = {page.title for page in resolution.pages}
    stale_titles = set(stale)
    missing = set(resolution.missing) | set(summary.missing)
    quarantined = {title for title, _reason in summary.counts.quarantined}
    counts = []
    for name, titles in plan.corpus_titles.items():
        articles = {canonical(title, resolution) for title in titles} & existing
        counts.append(
            CorpusCounts(
                corpus=name,
                titles=len(titles),
                articles=len(articles),
                changed=len(articles & stale_titles),
                missing=sum(1 for title in titles if canonical(title, resolution) in missing),
                quarantined=len(articles & quarantined),
            )
        )
    return counts


def finish_refresh(
    engine: Engine, summary: RefreshSummary, *, history_embedding_days: int | None
) -> RefreshSummary:
    """Store each corpus's counts with its refresh time, and prune history embeddings past retention."""
    with Session(engine) as session:
        for counts in summary.corpora:
            record_refresh(session=session, name=counts.corpus, counts=vars(counts))
        if history_embedding_days is not None:
            cutoff = datetime.now(UTC) - timedelta(days=history_embedding_days)
            summary.history_embeddings_pruned = prune_history_embeddings(session=session, older_than=cutoff)
    return summary
