"""``wikiref scrape``: articles and reference lists from a MediaWiki, a mirror folder or a dump, with progress."""

from __future__ import annotations

import contextlib
import time
from datetime import date, datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from wikiref.flows.cli.output import JSON_OPTION, console, count, print_json, print_table, progress
from wikiref.flows.database import prepare_database
from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.saved import MANIFEST
from wikiref.flows.mediawiki.title_rules import MAX_ECHOED_CHARS, shortened
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.settings import get_settings
from wikiref.flows.steps.corpus import RefreshSummary, record_sources, run_refresh, source_specs, wiki_of
from wikiref.flows.steps.loading import load_dump
from wikiref.flows.steps.scraping import ScrapeSummary, client_config, revision_checks, run_scrape


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ScrapeError(f"--top-day must be a date like 2024-01-31, got {value!r}") from None


def print_refresh(summary: RefreshSummary, seconds: float, *, as_json: bool = False) -> None:
    if as_json:
        print_json({**summary.record(), "seconds": round(seconds, 1)})
        return
    print_table(
        ("corpus", "titles", "articles", "changed", "missing", "quarantined"),
        [
            (c.corpus, *(count(v) for v in (c.titles, c.articles, c.changed, c.missing, c.quarantined)))
            for c in summary.corpora
        ],
        title="Corpora refreshed",
    )
    if summary.other_wikis:
        others = ", ".join(f"{name} ({wiki})" for name, wiki in sorted(summary.other_wikis.items()))
        console.print(f"corpora of other wikis, not refreshed: {others}", markup=False)
    console.print(
        f"stored articles checked: {summary.stored_checked:,}; marked deleted: {summary.marked_deleted}, "
        f"redirects: {summary.marked_redirects}; history embeddings pruned: {summary.history_embeddings_pruned}"
    )
    print_summary(summary.scrape, seconds)


def print_summary(summary: ScrapeSummary, seconds: float, *, as_json: bool = False) -> None:
    if as_json:
        print_json({**summary.record(), "seconds": round(seconds, 1)})
        return
    print_table(
        ("what", "count"),
        [(name, count(value)) for name, value in summary.rows()],
        title=f"Scrape of {summary.wiki}",
        caption=f"{seconds:.1f} s",
    )
    if summary.stats.retry_reasons:
        reasons = ", ".join(
            f"{reason} ×{count}" for reason, count in sorted(summary.stats.retry_reasons.items())
        )
        console.print(f"retried: {reasons}")
    for label, titles in (
        ("missing", summary.missing),
        ("invalid", summary.invalid),
        ("failed", summary.failed),
    ):
        if titles:
            more = f" … and {len(titles) - 10} more" if len(titles) > 10 else ""
            # Titles are user text: "Foo[bar]" must not be read as rich markup.
            console.print(
                f"{label}: {', '.join(shortened(title, MAX_ECHOED_CHARS) for title in titles[:10])}{more}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    if summary.skipped_records:
        console.print(f"bad records skipped: {len(summary.skipped_records):,}", markup=False)
        for record in summary.skipped_records[:10]:
            console.print(f"  {record}", markup=False, highlight=False, soft_wrap=True)
        if len(summary.skipped_records) > 10:
            console.print(f"  … and {len(summary.skipped_records) - 10:,} more", markup=False)
    if summary.counts.older:
        shown = "; ".join(
            f"{shortened(title, MAX_ECHOED_CHARS)} ({reason})" for title, reason in summary.counts.older[:10]
        )
        more = f" … and {len(summary.counts.older) - 10:,} more" if len(summary.counts.older) > 10 else ""
        console.print(f"older, skipped: {shown}{more}", markup=False, highlight=False, soft_wrap=True)
    for title, reason in summary.counts.quarantined:
        console.print(
            f"warning: quarantined {shortened(title, MAX_ECHOED_CHARS)}: {reason} (stored references kept)",
            style="yellow",
            markup=False,
        )
    if summary.counts.quarantined:
        console.print("review with: wikiref corpus quarantine", markup=False)


def scrape(
    titles: list[str] = typer.Argument(None, help="Article titles to scrape (redirects are followed)."),
    titles_file: Path | None = typer.Option(
        None, "--titles-file", "-f", help="File with one title per line."
    ),
    category: str | None = typer.Option(None, "--category", "-c", help="Scrape the articles of a category."),
    depth: int = typer.Option(0, "--depth", min=0, help="Sub-category levels to follow with --category."),
    list_page: str | None = typer.Option(
        None, "--list-page", help='Scrape the articles a page links, e.g. "Wikipedia:Vital articles/Level/3".'
    ),
    top_day: str | None = typer.Option(
        None, "--top-day", help="Scrape the most-viewed articles of a day (YYYY-MM-DD)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", "-n", min=1, help="At most this many titles per source and in all."
    ),
    api_url: str | None = typer.Option(
        None, "--api-url", help="The wiki's api.php (default: WIKIREF_API_URL)."
    ),
    mirror: Path | None = typer.Option(
        None,
        "--mirror",
        help="Scrape a folder of saved pages through a local mirror (all its pages if no titles).",
    ),
    bulk: bool = typer.Option(False, "--bulk", help="With --mirror: also serve the folder's bulk.tar.gz."),
    dump: Path | None = typer.Option(
        None, "--dump", help="Load an Enterprise HTML dump (.ndjson, .gz, .tar.gz)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Fetch every page even when its stored revision is current."
    ),
    rate: float | None = typer.Option(
        None, "--rate", min=0.01, help="Requests per second (default: settings)."
    ),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, help="Requests in flight at once."),
    corpus: str | None = typer.Option(
        None,
        "--corpus",
        help="Record this scrape's sources under a corpus name (kept fresh by scrape-daily).",
    ),
    refresh: bool = typer.Option(
        False,
        "--refresh",
        help="Re-resolve every corpus (or --corpus) and re-check every stored article; fetch what changed.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Scrape articles and their references into Postgres; unchanged revisions are skipped.

    Runs in this process with a progress bar; `wikiref run scrape` runs the same steps as a Prefect flow.
    """
    if mirror and dump:
        raise ScrapeError("give --mirror or --dump, not both")
    if refresh and (dump or force):
        raise ScrapeError("--refresh re-checks the corpora's own sources: give no --dump or --force with it")
    sources = TitleSources(
        titles=tuple(titles or ()),
        titles_file=titles_file,
        category=category,
        category_depth=depth,
        list_page=list_page,
        top_day=_day(top_day),
        limit=limit,
    )
    if mirror and not (mirror / MANIFEST).is_file():
        raise ScrapeError(f"{mirror} has no {MANIFEST}: not a folder of saved Wikipedia pages")
    settings = get_settings()
    overrides = {}
    if rate is not None:
        overrides["scrape_requests_per_second"] = rate
    if concurrency is not None:
        overrides["scrape_concurrency"] = concurrency
    settings = settings.model_copy(update=overrides)
    _, engine = prepare_database(settings)
    specs = source_specs(sources, dump=dump)
    if corpus and not specs and not refresh:
        raise ScrapeError(
            "--corpus records a scrape's sources: give titles, a category, a list page, a day or a dump"
        )
    elif refresh and specs:
        raise ScrapeError("sources given with --refresh are refreshed only when recorded: add --corpus NAME")
    started = time.monotonic()
    bars = progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
    with bars:
        if dump:
            task = bars.add_task("loading dump", total=limit)
            summary = load_dump(
                engine,
                dump,
                wiki=settings.wiki,
                limit=limit,
                force=force,
                checks=revision_checks(settings),
                on_batch=lambda read: bars.update(task, completed=read),
            )
            if corpus:
                # A corpus belongs to the wiki its sources were read from: known once the dump is read.
                record_sources(engine, corpus, specs, wiki=summary.wiki)
        else:
            with contextlib.ExitStack() as stack:
                if mirror:
                    from wikiref.flows.mirror.server import (
                        LIST_PAGE,
                        running_mirror,
                    )  # the mirror loads only when used

                    api_url = stack.enter_context(running_mirror(mirror, include_bulk=bulk))
                    if sources.empty and not refresh:
                        sources = TitleSources(list_page=LIST_PAGE, limit=limit)
                task = bars.add_task("resolving titles", total=None)
                if refresh:
                    refreshed = run_refresh(
                        engine,
                        client_config(settings, api_url),
                        names=[corpus] if corpus else None,
                        wiki=settings.wiki,
                        checks=revision_checks(settings),
                        batch_size=settings.scrape_batch_size,
                        history_embedding_days=settings.scrape_history_embedding_days,
                        on_batch=lambda done, total: bars.update(
                            task, description="refreshing", completed=done, total=total
                        ),
                    )
                    bars.stop()
                    print_refresh(refreshed, time.monotonic() - started, as_json=as_json)
                    return
                if corpus and specs:
                    record_sources(
                        engine, corpus, specs, wiki=wiki_of(client_config(settings, api_url), settings.wiki)
                    )
                summary = run_scrape(
                    engine,
                    client_config(settings, api_url),
                    sources,
                    wiki=settings.wiki,
                    force=force,
                    batch_size=settings.scrape_batch_size,
                    checks=revision_checks(settings),
                    on_batch=lambda done, total: bars.update(
                        task, description="scraping", completed=done, total=total
                    ),
                )
    print_summary(summary, time.monotonic() - started, as_json=as_json)
