"""The ``scrape-wikipedia`` flow: titles → current revisions → fetch → extract → write, as Prefect tasks.

Thin by design: the sequence is ``wikiref.flows.steps.scrape_sequence``'s (``wikiref scrape`` runs the same one);
the flow passes its tasks as the steps and fans the fetch, extract and write steps out over batches of titles
(``.map``), so that a ``DaskTaskRunner`` given with ``scrape_wikipedia.with_options(task_runner=...)`` spreads
them over its workers. Inputs and outputs of
every task are plain picklable values (dataclasses, strings, the database URL).

Rate limits: each process keeps its own request-rate limit towards the wiki (``WIKIREF_SCRAPE_*``). When a
Prefect global concurrency limit named ``WIKIREF_SCRAPE_PREFECT_RATE_LIMIT`` exists (with slot decay, e.g.
``prefect gcl create mediawiki-api --limit 10 --slot-decay-per-second 10``), every request also takes a slot
of it, which bounds the rate across all workers and flow runs; without such a limit that step is skipped.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import rate_limit
from prefect.exceptions import ObjectNotFound

from wikiref.db.corpora import SourceSpec
from wikiref.db.page_records import PageRecord
from wikiref.db.revision_checks import RevisionChecks
from wikiref.flows import markdown
from wikiref.flows.database import engine_for, prepare_database
from wikiref.flows.mediawiki.client import ClientConfig, ResolvedTitle
from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.secrets import has_credentials
from wikiref.flows.settings import get_settings
from wikiref.flows.steps.corpus import (
    RefreshPlan,
    RefreshSummary,
    finish_refresh,
    mark_gone_articles,
    plan_refresh,
    record_sources,
    wiki_of,
)
from wikiref.flows.steps.loading import load_dump
from wikiref.flows.steps.records import WriteCounts
from wikiref.flows.steps.scrape_sequence import (
    ScrapeRequest,
    ScrapeSteps,
    run_refresh,
    run_scrape,
    scrape_options,
)
from wikiref.flows.steps.scraping import (
    FetchBatch,
    ResolvedTitles,
    ScrapeSummary,
    extract_pages,
    fetch_pages,
    resolve_titles,
    stale_pages,
    write_records,
)

log = logging.getLogger(__name__)


def _prefect_rate_limit_exists(name: str | None) -> bool:
    if not name:
        return False
    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return False
    return True


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_jitter_factor=0.5)
def resolve_scrape_titles(config: ClientConfig, sources: TitleSources, wiki: str | None) -> ResolvedTitles:
    """Gather titles from the sources and resolve them: normalised, redirects followed, current revisions."""
    return resolve_titles(config, sources, wiki=wiki)


@task(retries=2, retry_delay_seconds=[2, 10])
def select_stale_pages(
    database_url: str, wiki: str, pages: list[ResolvedTitle], force: bool
) -> tuple[list[ResolvedTitle], int]:
    """Pages whose stored revision is not the current one (all of them with ``force``), and the count skipped."""
    return stale_pages(engine_for(database_url), wiki=wiki, pages=pages, force=force)


@task(retries=3, retry_delay_seconds=[5, 30, 120], retry_jitter_factor=0.5)
def fetch_page_batch(
    config: ClientConfig, pages: list[ResolvedTitle], prefect_rate_limit: str | None
) -> FetchBatch:
    """Fetch one batch of pages; the client retries single requests, Prefect retries the batch."""

    async def take_slot() -> None:
        await rate_limit(prefect_rate_limit, strict=False)

    return fetch_pages(config, pages, before_request=take_slot if prefect_rate_limit else None)


@task
def extract_page_batch(wiki: str, batch: FetchBatch) -> list[PageRecord]:
    """Reference extraction (CPU only, nothing to retry)."""
    return extract_pages(wiki, batch.pages)


@task(retries=2, retry_delay_seconds=[2, 10])
def write_page_batch(database_url: str, records: list[PageRecord], checks: RevisionChecks) -> WriteCounts:
    """Upsert the batch, one transaction per article (a retry re-applies only what did not commit)."""
    return write_records(engine_for(database_url), records, checks)


@task(retries=1, retry_delay_seconds=[5])
def load_dump_file(
    database_url: str,
    dump_path: Path,
    wiki: str | None,
    limit: int | None,
    force: bool,
    checks: RevisionChecks,
) -> ScrapeSummary:
    """Load an Enterprise HTML dump (no HTTP): stream, skip current revisions, extract, write."""
    return load_dump(engine_for(database_url), dump_path, wiki=wiki, limit=limit, force=force, checks=checks)


@task(retries=2, retry_delay_seconds=[2, 10])
def record_corpus_sources(database_url: str, corpus: str, specs: list[SourceSpec], wiki: str) -> int:
    """Record the scrape's sources under the corpus name, of the wiki they were read from, for scrape-daily."""
    return record_sources(engine_for(database_url), corpus, specs, wiki=wiki)


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_jitter_factor=0.5)
def find_wiki(config: ClientConfig, wiki: str | None) -> str:
    """The wiki a refresh works on: ``wiki`` (WIKIREF_WIKI) if set, else the one ``config`` reaches."""
    return wiki_of(config, wiki)


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_jitter_factor=0.5)
def plan_corpus_refresh(
    database_url: str, config: ClientConfig, names: list[str] | None, wiki: str | None
) -> RefreshPlan:
    """Every corpus's sources re-resolved, plus every stored title, looked up 50 per query."""
    return plan_refresh(engine_for(database_url), config, names=names, wiki=wiki)


@task(retries=2, retry_delay_seconds=[2, 10])
def mark_gone(database_url: str, plan: RefreshPlan) -> tuple[int, int]:
    """Mark stored articles deleted on the wiki, or turned into redirects."""
    return mark_gone_articles(engine_for(database_url), plan)


@task(retries=2, retry_delay_seconds=[2, 10])
def finish_corpus_refresh(
    database_url: str, summary: RefreshSummary, history_embedding_days: int | None
) -> RefreshSummary:
    """Store each corpus's refresh counts; prune history embeddings past retention."""
    return finish_refresh(engine_for(database_url), summary, history_embedding_days=history_embedding_days)


def flow_steps(database_url: str, prefect_rate_limit: str | None) -> ScrapeSteps:
    """The scrape sequence's steps as this flow's tasks; the fetch-extract-write batches are mapped, so that the
    flow's task runner spreads them."""

    def scrape_batches(
        config: ClientConfig, wiki: str, batches: list[list[ResolvedTitle]], checks: RevisionChecks
    ) -> list[tuple[FetchBatch, WriteCounts]]:
        limit = prefect_rate_limit if _prefect_rate_limit_exists(prefect_rate_limit) else None
        fetched = fetch_page_batch.map(unmapped(config), batches, unmapped(limit))
        records = extract_page_batch.map(unmapped(wiki), fetched)
        written = write_page_batch.map(unmapped(database_url), records, unmapped(checks))
        return list(zip(fetched.result(), written.result(), strict=True))

    return ScrapeSteps(
        record_sources=lambda name, specs, wiki: record_corpus_sources(database_url, name, specs, wiki),
        find_wiki=find_wiki,
        load_dump=lambda path, wiki, limit, force, checks: load_dump_file(
            database_url, path, wiki, limit, force, checks
        ),
        resolve_titles=resolve_scrape_titles,
        plan_refresh=lambda config, names, wiki: plan_corpus_refresh(database_url, config, names, wiki),
        select_stale=lambda wiki, pages, force: select_stale_pages(database_url, wiki, pages, force),
        scrape_batches=scrape_batches,
        mark_gone=lambda plan: mark_gone(database_url, plan),
        finish_refresh=lambda summary, days: finish_corpus_refresh(database_url, summary, days),
    )


def publish_summary(summary: ScrapeSummary) -> None:
    create_markdown_artifact(
        key="scrape-summary", markdown=summary.markdown(), description="What the scrape did"
    )
    if summary.skipped_records:
        create_markdown_artifact(
            key="skipped-records",
            markdown=summary.skipped_records_markdown(),
            description="Dump records that could not be loaded, with their line numbers",
        )
    create_table_artifact(
        key="scrape-counts",
        table=[{"what": name, "count": value} for name, value in summary.rows()],
        description=f"Scrape of {markdown.escape(summary.wiki)}",
    )
    if summary.counts.quarantined:
        log.warning("%d pages quarantined (stored references kept)", len(summary.counts.quarantined))
        create_markdown_artifact(
            key="quarantined-pages",
            markdown=summary.quarantined_markdown(),
            description="Revisions not applied: they failed the sanity checks",
        )


def publish_refresh(summary: RefreshSummary) -> None:
    publish_summary(summary.scrape)
    create_markdown_artifact(
        key="corpus-refresh",
        markdown=summary.markdown(),
        description="Which corpora were refreshed, with counts",
    )


def summary_dict(summary: ScrapeSummary) -> dict[str, Any]:
    return {
        "wiki": summary.wiki,
        **dict(summary.rows()),
        "retry_reasons": dict(summary.stats.retry_reasons),
        "missing_titles": summary.missing,
        "invalid_titles": summary.invalid,
        "failed_pages": summary.failed,
        "skipped_records": [str(record) for record in summary.skipped_records],
    }


@flow(name="scrape-wikipedia")
def scrape_wikipedia(
    titles: list[str] | None = None,
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
) -> dict[str, Any]:
    """Scrape articles and their reference lists from a MediaWiki (or a mirror folder, or a dump) into Postgres.

    Args:
        titles: Article titles to scrape (normalised and redirects followed by the wiki).
        titles_file: A text file with one title per line (# starts a comment).
        category: A category whose articles to scrape, e.g. "Category:Birds of Europe".
        category_depth: How many levels of sub-categories to follow (0: the category itself).
        list_page: A page whose linked articles to scrape, e.g. "Wikipedia:Vital articles/Level/3".
        top_day: Scrape the most-viewed articles of this day (Wikimedia Pageviews "top").
        limit: At most this many titles from each source and in all.
        api_url: The wiki's api.php. Empty: WIKIREF_API_URL (English Wikipedia by default).
        mirror_dir: A folder of saved pages (e.g. ../shared/data/wikipedia) served by a local mirror and scraped
            over HTTP instead of the wiki; without other sources, all its pages.
        mirror_bulk: Also serve the folder's bulk.tar.gz (about 700 more articles) from the mirror.
        dump_path: A Wikimedia Enterprise HTML dump (NDJSON, .gz or .tar.gz) to load instead of the wiki.
        force: Fetch and compare every page even when the stored revision is current.
        batch_size: Titles per fetch task. Empty: WIKIREF_SCRAPE_BATCH_SIZE.
        corpus: Record the given sources under this corpus name, so that refreshes keep them fresh; with
            refresh, refresh only this corpus.
        refresh: Re-resolve every source of every corpus, re-check every stored article's revision (50 titles
            per query) and fetch only what changed; deleted and redirected articles are marked.
    """
    # 1. The request: the parameters by the names ScrapeRequest.from_options takes (the command hands over its
    # arguments the same way); credentials in a parameter would be stored in clear with the run.
    options = scrape_options(locals())
    if has_credentials(api_url):
        raise ScrapeError(
            "api_url holds credentials, which Prefect would store in clear with the flow run: "
            "set WIKIREF_API_URL instead"
        )
    settings = get_settings()
    request = ScrapeRequest.from_options(settings, **options)

    # 2. The steps: this flow's tasks, against the database the settings name.
    database_url, _ = prepare_database(settings)
    steps = flow_steps(database_url, settings.scrape_prefect_rate_limit)

    # 3. The sequence (`wikiref scrape` runs the same one), then what it did, as artifacts and the result.
    if refresh:
        refreshed = run_refresh(request, steps)
        log.info("refresh summary: %s", ", ".join(f"{name} {value}" for name, value in refreshed.rows()))
        publish_refresh(refreshed)
        return {**summary_dict(refreshed.scrape), "corpora": refreshed.corpus_table()}
    summary = run_scrape(request, steps)
    log.info("scrape summary: %s", ", ".join(f"{name} {value}" for name, value in summary.rows()))
    publish_summary(summary)
    return summary_dict(summary)
