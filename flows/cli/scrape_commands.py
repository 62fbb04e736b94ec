"""``wikiref scrape``: articles and reference lists from a MediaWiki, a mirror folder or a dump, with progress."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from wikiref.flows.cli.output import (
    JSON_OPTION,
    OLD_DEPTH_OPTION,
    OLD_DUMP_OPTION,
    console,
    count,
    print_json,
    print_table,
    progress,
)
from wikiref.flows.database import prepare_database
from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.title_rules import MAX_ECHOED_CHARS, shortened
from wikiref.flows.settings import Settings, get_settings
from wikiref.flows.steps.corpus import RefreshSummary
from wikiref.flows.steps.scrape_sequence import (
    ScrapeRequest,
    ScrapeSteps,
    run_refresh,
    run_scrape,
    scrape_options,
)
from wikiref.flows.steps.scraping import ScrapeSummary


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ScrapeError(f"--top-day must be a date like 2024-01-31, got {value!r}") from None


def _with_rate(settings: Settings, rate: float | None, concurrency: int | None) -> Settings:
    """The settings with --rate and --concurrency, when given, in place of WIKIREF_SCRAPE_*."""
    overrides: dict[str, float | int] = {}
    if rate is not None:
        overrides["scrape_requests_per_second"] = rate
    if concurrency is not None:
        overrides["scrape_concurrency"] = concurrency
    return settings.model_copy(update=overrides)


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
    category_depth: int = typer.Option(
        0, "--category-depth", min=0, help="Sub-category levels to follow with --category."
    ),
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
    mirror_dir: Path | None = typer.Option(
        None,
        "--mirror",
        help="Scrape a folder of saved pages through a local mirror (all its pages if no titles).",
    ),
    mirror_bulk: bool = typer.Option(
        False, "--bulk", help="With --mirror: also serve the folder's bulk.tar.gz."
    ),
    dump_path: Path | None = typer.Option(
        None, "--dump-path", help="Load an Enterprise HTML dump (.ndjson, .gz, .tar.gz)."
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
    old_depth: int | None = OLD_DEPTH_OPTION,
    old_dump: Path | None = OLD_DUMP_OPTION,
) -> None:
    """Scrape articles and their references into Postgres; unchanged revisions are skipped.

    Runs in this process with a progress bar; `wikiref run scrape` runs the same steps as a Prefect flow.
    """
    # 1. The request: the arguments by the names the flow's parameters have (the earlier flags folded in), and
    # the settings with this run's rate and concurrency.
    category_depth = old_depth if old_depth is not None else category_depth
    dump_path = dump_path or old_dump
    options = scrape_options(locals())  # the arguments, by the names ScrapeRequest.from_options takes
    options["top_day"] = _day(top_day)
    settings = _with_rate(get_settings(), rate, concurrency)
    request = ScrapeRequest.from_options(settings, **options)
    _, engine = prepare_database(settings)

    # 2. The steps, run in this process, reporting to a progress bar.
    started = time.monotonic()
    bars = progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
    with bars:
        task = bars.add_task(
            "loading dump" if dump_path else "resolving titles", total=limit if dump_path else None
        )
        steps = ScrapeSteps.in_process(
            engine,
            on_batch=lambda done, total: bars.update(
                task, description="refreshing" if refresh else "scraping", completed=done, total=total
            ),
            on_dump=lambda read: bars.update(task, completed=read),
        )

        # 3. The sequence (the flow runs the same one), then what it did.
        if refresh:
            refreshed = run_refresh(request, steps)
            bars.stop()
            print_refresh(refreshed, time.monotonic() - started, as_json=as_json)
            return
        summary = run_scrape(request, steps)
    print_summary(summary, time.monotonic() - started, as_json=as_json)
