"""``wikiref corpus``: named sets of title sources that ``scrape-daily`` (and ``wikiref scrape --refresh``)
keep fresh, and the revisions quarantined by the sanity checks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from sqlalchemy.orm import Session

from wikiref.db import articles
from wikiref.db.corpora import SourceSpec, add_sources, corpora, remove_corpus
from wikiref.flows.cli.output import console, print_table
from wikiref.flows.database import prepare_database
from wikiref.flows.errors import UserError
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.settings import get_settings
from wikiref.flows.steps.corpus import source_specs

app = typer.Typer(
    help="Corpus definitions kept fresh by scrape-daily, and quarantined revisions.", no_args_is_help=True
)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The corpus name (created if new; sources are added to it)."),
    titles: list[str] = typer.Argument(None, help="Article titles."),
    titles_file: Path | None = typer.Option(
        None, "--titles-file", "-f", help="File with one title per line."
    ),
    category: str | None = typer.Option(None, "--category", "-c", help="A category's articles."),
    depth: int = typer.Option(0, "--depth", min=0, help="Sub-category levels to follow with --category."),
    list_page: str | None = typer.Option(None, "--list-page", help="The articles a page links."),
    top: int | None = typer.Option(
        None, "--top", min=1, max=1000, help="The N most-viewed articles of each day."
    ),
    dump: Path | None = typer.Option(
        None, "--dump", help="An Enterprise HTML dump, re-read on every refresh."
    ),
) -> None:
    """Record sources under a corpus name; the next refresh scrapes them. Nothing is fetched now."""
    if dump is not None and not dump.is_file():
        raise UserError(f"--dump {dump}: no such file")
    specs = source_specs(
        TitleSources(
            titles=tuple(titles or ()),
            titles_file=titles_file,
            category=category,
            category_depth=depth,
            list_page=list_page,
        ),
        dump=dump,
    )
    if top is not None:
        specs.append(SourceSpec("top", {"n": top}))
    if not specs:
        raise UserError("no sources: give titles, --titles-file, --category, --list-page, --top or --dump")
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        added = add_sources(session=session, corpus=name, sources=specs)
    console.print(f"corpus {name}: {added} new sources ({len(specs) - added} already there)", markup=False)


@app.command("list")
def list_corpora() -> None:
    """Every corpus: its sources, last refresh and what it counted."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        found = corpora(session=session)
    print_table(
        ("corpus", "sources", "refreshed", "articles", "changed", "quarantined"),
        [
            (
                corpus.name,
                len(corpus.sources),
                f"{corpus.refreshed_at:%Y-%m-%d %H:%M}" if corpus.refreshed_at else "never",
                *(corpus.last_counts.get(key) for key in ("articles", "changed", "quarantined")),
            )
            for corpus in found
        ],
        title="Corpora",
    )


@app.command("show")
def show(name: str = typer.Argument(..., help="The corpus name.")) -> None:
    """One corpus's sources and the counts of its last refresh."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        (corpus,) = corpora(session=session, names=[name])
    console.print(f"[bold]{escape(corpus.name)}[/bold] (created {corpus.created_at:%Y-%m-%d %H:%M})")
    for source in corpus.sources:
        console.print(f"  {source.describe()}", markup=False)
    if corpus.refreshed_at:
        counts = ", ".join(f"{key} {value}" for key, value in corpus.last_counts.items() if key != "corpus")
        console.print(f"last refresh {corpus.refreshed_at:%Y-%m-%d %H:%M}: {counts}", markup=False)
    else:
        console.print("not refreshed yet")


@app.command("remove")
def remove(name: str = typer.Argument(..., help="The corpus name.")) -> None:
    """Delete a corpus definition; its articles stay stored (and are still re-checked by refreshes)."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        remove_corpus(session=session, name=name)
    console.print(f"removed corpus {name}", markup=False)


@app.command("quarantine")
def quarantine() -> None:
    """Revisions that failed the sanity checks: stored references kept, new revision pending."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        pending = articles.quarantined(session=session)
    print_table(
        ("article", "stored rev", "pending rev", "references", "reason", "since"),
        [
            (
                row.title,
                row.stored_revision_id,
                row.revision_id,
                f"{row.references_stored} → {row.references_pending}",
                row.reason,
                f"{row.quarantined_at:%Y-%m-%d %H:%M}",
            )
            for row in pending
        ],
        title="Quarantined revisions",
    )
    console.print(f"{len(pending)} pending; apply one with: wikiref corpus accept TITLE")


@app.command("accept")
def accept(
    title: str = typer.Argument(..., help="The article whose quarantined revision to apply."),
    wiki: str | None = typer.Option(
        None, "--wiki", help="The wiki (default: WIKIREF_WIKI or en.wikipedia.org)."
    ),
) -> None:
    """Apply a quarantined revision as it is: its references replace the stored ones (kept as history)."""
    settings = get_settings()
    _, engine = prepare_database(settings)
    with Session(engine) as session:
        result = articles.accept_quarantined(
            session=session, wiki=wiki or settings.wiki or "en.wikipedia.org", title=title
        )
    console.print(
        f"accepted {title}: {result.references_added} references added, "
        f"{result.references_removed} moved to history",
        markup=False,
    )


@app.command("prune")
def prune() -> None:
    """Delete the embeddings of every removed (history) reference now (WIKIREF_SCRAPE_HISTORY_EMBEDDING_DAYS
    prunes by age on every refresh)."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        deleted = articles.prune_history_embeddings(session=session)
    console.print(f"deleted {deleted} embeddings of history references")
