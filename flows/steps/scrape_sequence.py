"""The scrape stage as one sequence per kind of run, called by both ``wikiref scrape`` and the
``scrape-wikipedia`` flow: ``run_scrape`` (titles from sources, or a dump) and ``run_refresh`` (every corpus).

Each caller builds its ``ScrapeRequest`` with ``ScrapeRequest.from_options`` (the one place options are checked
and combined with settings), handing over its own arguments by name (``scrape_options``): the flow's parameters
and the command's arguments are spelled as ``from_options``'s keywords, so neither restates the list. Each passes
the steps to run: the command runs them in its own process (``ScrapeSteps.in_process``, with a progress
callback), the flow passes its Prefect tasks, which retry and fan the fetch-extract-write batches out over the
flow's task runner.

scrape: a dump: load it -> record the corpus's sources | titles: resolve them -> record the corpus's sources ->
pick the stale pages -> fetch, extract, write them batch by batch.
refresh: find the wiki reached -> record the corpus's sources -> resolve the sources of every corpus of that
wiki and every stored title -> pick the stale pages -> fetch, extract, write -> load the corpora's dumps -> mark
deleted and redirected articles -> store each corpus's counts, prune history embeddings.

A corpus belongs to the wiki its sources were read from (issue 27, item 9), so its sources are recorded once
that wiki is known: after the dump is read or the titles resolved, or once the refresh has asked the wiki.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import Engine

from wikiref.db.corpora import SourceSpec
from wikiref.db.revision_checks import RevisionChecks
from wikiref.flows.mediawiki.client import ClientConfig, ResolvedTitle
from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.saved import MANIFEST
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.settings import Settings
from wikiref.flows.steps import corpus, loading, scraping
from wikiref.flows.steps.corpus import RefreshPlan, RefreshSummary
from wikiref.flows.steps.records import WriteCounts
from wikiref.flows.steps.scraping import FetchBatch, ResolvedTitles, ScrapeSummary

ProgressCallback = Callable[[int, int], None]
"""(pages written so far, pages to write), after each batch."""


@dataclass(frozen=True)
class ScrapeRequest:
    """One scrape or refresh: what to scrape from where, and how, from settings plus the caller's options."""

    sources: TitleSources
    client: ClientConfig
    wiki: str | None
    batch_size: int
    checks: RevisionChecks
    mirror_dir: Path | None = None
    mirror_bulk: bool = False
    dump_path: Path | None = None
    force: bool = False
    corpus: str | None = None
    refresh: bool = False
    history_embedding_days: int | None = None

    @classmethod
    def from_options(
        cls,
        settings: Settings,
        *,
        titles: Iterable[str] | None = None,
        titles_file: Path | None = None,
        category: str | None = None,
        category_depth: int = 0,
        list_page: str | None = None,
        top_day: date | None = None,
        limit: int | None = None,
        api_url: str | None = None,
        mirror_dir: Path | None = None,
        mirror_bulk: bool = False,
        dump_path: Path | None = None,
        force: bool = False,
        batch_size: int | None = None,
        corpus: str | None = None,
        refresh: bool = False,
    ) -> ScrapeRequest:
        """The request both callers build; raises ScrapeError for options that do not go together."""
        if mirror_dir and dump_path:
            raise ScrapeError("give a mirror folder or a dump, not both")
        if refresh and (dump_path or force):
            raise ScrapeError(
                "a refresh re-checks the corpora's own sources: give no dump and no force with it"
            )
        if mirror_dir and not (Path(mirror_dir) / MANIFEST).is_file():
            raise ScrapeError(f"{mirror_dir} has no {MANIFEST}: not a folder of saved Wikipedia pages")
        sources = TitleSources(
            titles=tuple(titles or ()),
            titles_file=titles_file,
            category=category,
            category_depth=category_depth,
            list_page=list_page,
            top_day=top_day,
            limit=limit,
        )
        request = cls(
            sources=sources,
            client=scraping.client_config(settings, api_url),
            wiki=settings.wiki,
            batch_size=batch_size or settings.scrape_batch_size,
            checks=scraping.revision_checks(settings),
            mirror_dir=Path(mirror_dir) if mirror_dir else None,
            mirror_bulk=mirror_bulk,
            dump_path=Path(dump_path) if dump_path else None,
            force=force,
            corpus=corpus,
            refresh=refresh,
            history_embedding_days=settings.scrape_history_embedding_days,
        )
        specs = request.specs  # refuses a title no wiki can have (over 255 bytes) before anything runs
        if corpus and not specs and not refresh:
            raise ScrapeError(
                "a corpus records a scrape's sources: give titles, a category, a list page, a day or a dump"
            )
        if refresh and specs and not corpus:
            raise ScrapeError("sources given with a refresh are refreshed only when recorded: name a corpus")
        if sources.empty and not (refresh or dump_path or mirror_dir):
            raise ScrapeError(
                "no titles to scrape: give titles, a titles file, a category, a list page or a day"
            )
        return request

    @property
    def specs(self) -> list[SourceSpec]:
        """The sources as a corpus records them."""
        return corpus.source_specs(self.sources, dump=self.dump_path)


SCRAPE_OPTIONS = tuple(
    name for name in inspect.signature(ScrapeRequest.from_options).parameters if name != "settings"
)
"""The options a scrape takes, by the names the flow's parameters, the command's arguments, prefect.yaml and
stored deployments use."""


def scrape_options(arguments: Mapping[str, object]) -> dict[str, object]:
    """The scrape options among a caller's arguments by name (the flow's parameters, the command's arguments),
    for ``ScrapeRequest.from_options(settings, **options)``; the caller's own (--json, --rate) are left out."""
    return {name: value for name, value in arguments.items() if name in SCRAPE_OPTIONS}


@dataclass(frozen=True)
class ScrapeSteps:
    """The steps the sequences run, as callables: plain functions in the command, Prefect tasks in the flow."""

    record_sources: Callable[[str, list[SourceSpec], str], int]  # (corpus, its sources, their wiki)
    find_wiki: Callable[[ClientConfig, str | None], str]  # the wiki given, else the one the client reaches
    load_dump: Callable[[Path, str | None, int | None, bool, RevisionChecks], ScrapeSummary]
    resolve_titles: Callable[[ClientConfig, TitleSources, str | None], ResolvedTitles]
    plan_refresh: Callable[[ClientConfig, list[str] | None, str | None], RefreshPlan]
    select_stale: Callable[[str, list[ResolvedTitle], bool], tuple[list[ResolvedTitle], int]]
    # Fetch, extract and write each batch of pages: what each batch fetched, and what its write did.
    scrape_batches: Callable[
        [ClientConfig, str, list[list[ResolvedTitle]], RevisionChecks],
        Iterable[tuple[FetchBatch, WriteCounts]],
    ]
    mark_gone: Callable[[RefreshPlan], tuple[int, int]]
    finish_refresh: Callable[[RefreshSummary, int | None], RefreshSummary]

    @classmethod
    def in_process(
        cls,
        engine: Engine,
        *,
        on_batch: ProgressCallback | None = None,
        on_dump: Callable[[int], None] | None = None,
    ) -> ScrapeSteps:
        """The steps run one after the other in this process; ``on_batch`` and ``on_dump`` report progress."""

        def scrape_batches(
            config: ClientConfig, wiki: str, batches: list[list[ResolvedTitle]], checks: RevisionChecks
        ) -> Iterator[tuple[FetchBatch, WriteCounts]]:
            total, done = sum(len(batch) for batch in batches), 0
            if on_batch:
                on_batch(0, total)
            for batch in batches:
                fetched = scraping.fetch_pages(config, batch)
                yield (
                    fetched,
                    scraping.write_records(engine, scraping.extract_pages(wiki, fetched.pages), checks),
                )
                done += len(batch)
                if on_batch:
                    on_batch(done, total)

        return cls(
            record_sources=lambda name, specs, wiki: corpus.record_sources(engine, name, specs, wiki=wiki),
            find_wiki=corpus.wiki_of,
            load_dump=lambda path, wiki, limit, force, checks: loading.load_dump(
                engine, path, wiki=wiki, limit=limit, force=force, checks=checks, on_batch=on_dump
            ),
            resolve_titles=lambda config, sources, wiki: scraping.resolve_titles(config, sources, wiki=wiki),
            plan_refresh=lambda config, names, wiki: corpus.plan_refresh(
                engine, config, names=names, wiki=wiki
            ),
            select_stale=lambda wiki, pages, force: scraping.stale_pages(
                engine, wiki=wiki, pages=pages, force=force
            ),
            scrape_batches=scrape_batches,
            mark_gone=lambda plan: corpus.mark_gone_articles(engine, plan),
            finish_refresh=lambda summary, days: corpus.finish_refresh(
                engine, summary, history_embedding_days=days
            ),
        )


@contextlib.contextmanager
def serving(request: ScrapeRequest) -> Iterator[tuple[ClientConfig, TitleSources]]:
    """The client to scrape with and the sources to ask it for: a mirror's, served while the block runs, when
    the request names a mirror folder (without sources, all its pages); else the wiki's, as asked."""
    if request.mirror_dir is None:
        yield request.client, request.sources
        return
    from wikiref.flows.mirror.server import LIST_PAGE, running_mirror  # the mirror loads only when used

    with running_mirror(request.mirror_dir, include_bulk=request.mirror_bulk) as api_url:
        sources = request.sources
        if sources.empty:
            sources = TitleSources(list_page=LIST_PAGE, limit=sources.limit)
        # pageviews_url None: the mirror serves its own top lists (scraping.client_config).
        yield dataclasses.replace(request.client, api_url=api_url, pageviews_url=None), sources


def scrape_stale(
    request: ScrapeRequest,
    steps: ScrapeSteps,
    config: ClientConfig,
    resolved: ResolvedTitles,
    summary: ScrapeSummary,
) -> list[str]:
    """Fetch, extract and write the stale pages of ``resolved``, counting into ``summary``; the stale titles."""
    stale, summary.skipped_current = steps.select_stale(
        resolved.wiki, resolved.resolution.pages, request.force
    )
    batches = scraping.batched(stale, request.batch_size)
    for fetched, counts in steps.scrape_batches(config, resolved.wiki, batches, request.checks):
        summary.missing += fetched.missing
        summary.failed += fetched.failed
        summary.stats.merge(fetched.stats)
        summary.counts.merge(counts)
    return [page.title for page in stale]


def run_scrape(request: ScrapeRequest, steps: ScrapeSteps) -> ScrapeSummary:
    """A scrape of the request's sources (or its dump); unchanged revisions are skipped."""
    if request.refresh:
        raise ValueError("a refresh request runs with run_refresh")
    if request.dump_path:
        summary = steps.load_dump(
            request.dump_path, request.wiki, request.sources.limit, request.force, request.checks
        )
        if request.corpus:
            # A corpus belongs to the wiki its sources were read from: known once the dump is read.
            steps.record_sources(request.corpus, request.specs, summary.wiki)
        return summary
    with serving(request) as (config, sources):
        resolved = steps.resolve_titles(config, sources, request.wiki)
        if request.corpus and request.specs:
            steps.record_sources(request.corpus, request.specs, resolved.wiki)
        summary = scraping.summary_of(resolved)
        scrape_stale(request, steps, config, resolved, summary)
    return summary


def run_refresh(request: ScrapeRequest, steps: ScrapeSteps) -> RefreshSummary:
    """A refresh of every corpus of the wiki reached (or the request's one): re-resolve, re-check, fetch only
    what changed. Corpora of other wikis are left alone and listed (``other_wikis``); naming one is an error."""
    with serving(request) as (config, _sources):
        wiki = steps.find_wiki(config, request.wiki)
        if request.corpus and request.specs:
            steps.record_sources(request.corpus, request.specs, wiki)
        plan = steps.plan_refresh(config, [request.corpus] if request.corpus else None, wiki)
        scrape = scraping.summary_of(plan.resolved)
        stale = scrape_stale(request, steps, config, plan.resolved, scrape)
    for _corpus, path in plan.dumps:
        scrape.counts.merge(steps.load_dump(path, plan.resolved.wiki, None, False, request.checks).counts)
    summary = RefreshSummary(scrape=scrape, stored_checked=len(plan.stored), other_wikis=plan.other_wikis)
    summary.marked_deleted, summary.marked_redirects = steps.mark_gone(plan)
    summary.corpora = corpus.corpus_counts(plan, stale, scrape)
    return steps.finish_refresh(summary, request.history_embedding_days)
