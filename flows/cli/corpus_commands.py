"""``wikiref corpus``: named sets of title sources that ``scrape-daily`` (and ``wikiref scrape --refresh``)
keep fresh, and the revisions quarantined by the sanity checks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from sqlalchemy.orm import Session

from wikiref.db.corpora import CorpusDefinition, SourceSpec, add_sources, corpora, remove_corpus
from wikiref.db.quarantine import accept_quarantined, quarantined
from wikiref.db.reference_history import prune_history_embeddings
from wikiref.flows.cli.output import (
    JSON_OPTION,
    OLD_DEPTH_OPTION,
    OLD_DUMP_OPTION,
    console,
    print_json,
    print_table,
)
from wikiref.flows.database import prepare_database
from wikiref.flows.errors import UserError
from wikiref.flows.mediawiki.title_rules import MAX_ECHOED_CHARS, shortened
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
    category_depth: int = typer.Option(
        0, "--category-depth", min=0, help="Sub-category levels to follow with --category."
    ),
    list_page: str | None = typer.Option(None, "--list-page", help="The articles a page links."),
    top: int | None = typer.Option(
        None, "--top", min=1, max=1000, help="The N most-viewed articles of each day."
    ),
    dump_path: Path | None = typer.Option(
        None, "--dump-path", help="An Enterprise HTML dump, re-read on every refresh."
    ),
    wiki: str | None = typer.Option(
        None,
        "--wiki",
        help="The wiki the corpus belongs to (default: WIKIREF_WIKI, else the host of WIKIREF_API_URL); only "
        "refreshes that reach it refresh the corpus.",
    ),
    old_depth: int | None = OLD_DEPTH_OPTION,
    old_dump: Path | None = OLD_DUMP_OPTION,
) -> None:
    """Record sources under a corpus name; the next refresh scrapes them. Nothing is fetched now."""
    category_depth = old_depth if old_depth is not None else category_depth
    dump_path = dump_path or old_dump
    if dump_path is not None and not dump_path.is_file():
        raise UserError(f"--dump-path {dump_path}: no such file")
    specs = source_specs(
        TitleSources(
            titles=tuple(titles or ()),
            titles_file=titles_file,
            category=category,
            category_depth=category_depth,
            list_page=list_page,
        ),
        dump=dump_path,
    )
    if top is not None:
        specs.append(SourceSpec("top", {"n": top}))
    if not specs:
        raise UserError(
            "no sources: give titles, --titles-file, --category, --list-page, --top or --dump-path"
        )
    settings = get_settings()
    _, engine = prepare_database(settings)
    with Session(engine) as session:
        added = add_sources(
            session=session, corpus=name, wiki=wiki or settings.wiki or settings.api_url.host, sources=specs
        )
    console.print(
        f"corpus {shortened(name)}: {added} new sources ({len(specs) - added} already there)", markup=False
    )


def corpus_record(corpus: CorpusDefinition) -> dict:
    """One corpus for ``--json`` (docs/operations.md, 'JSON output')."""
    return {
        "name": corpus.name,
        "wiki": corpus.wiki,
        "created_at": corpus.created_at,
        "refreshed_at": corpus.refreshed_at,
        "sources": [{"kind": source.kind, "spec": source.spec} for source in corpus.sources],
        "last_counts": corpus.last_counts,
    }


@app.command("list")
def list_corpora(as_json: bool = JSON_OPTION) -> None:
    """Every corpus: its sources, last refresh and what it counted."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        found = corpora(session=session)
    if as_json:
        print_json({"corpora": [corpus_record(corpus) for corpus in found]})
        return
    print_table(
        ("corpus", "wiki", "sources", "refreshed", "articles", "changed", "quarantined"),
        [
            (
                corpus.name,
                corpus.wiki or "(next refresh's)",
                len(corpus.sources),
                f"{corpus.refreshed_at:%Y-%m-%d %H:%M}" if corpus.refreshed_at else "never",
                *(corpus.last_counts.get(key) for key in ("articles", "changed", "quarantined")),
            )
            for corpus in found
        ],
        title="Corpora",
    )


@app.command("show")
def show(name: str = typer.Argument(..., help="The corpus name."), as_json: bool = JSON_OPTION) -> None:
    """One corpus's sources and the counts of its last refresh."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        (corpus,) = corpora(session=session, names=[name])
    if as_json:
        print_json(corpus_record(corpus))
        return
    console.print(
        f"[bold]{escape(corpus.name)}[/bold] on {escape(corpus.wiki or 'the wiki of its next refresh')} "
        f"(created {corpus.created_at:%Y-%m-%d %H:%M})"
    )
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
    console.print(f"removed corpus {shortened(name)}", markup=False)


@app.command("quarantine")
def quarantine(as_json: bool = JSON_OPTION) -> None:
    """Revisions that failed the sanity checks: stored references kept, new revision pending."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        pending = quarantined(session=session)
    if as_json:
        print_json(
            {
                "quarantined": [
                    {
                        "wiki": row.wiki,
                        "title": row.title,
                        "stored_revision_id": row.stored_revision_id,
                        "revision_id": row.revision_id,
                        "references_stored": row.references_stored,
                        "references_pending": row.references_pending,
                        "reason": row.reason,
                        "quarantined_at": row.quarantined_at,
                    }
                    for row in pending
                ]
            }
        )
        return
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
        None, "--wiki", help="The wiki, when the title is quarantined on several (default: the one it is on)."
    ),
) -> None:
    """Apply a quarantined revision as it is: its references replace the stored ones (kept as history)."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        if wiki is None:
            # The wiki of the quarantined article: a corpus's articles are stored under the corpus's wiki.
            wikis = sorted({row.wiki for row in quarantined(session=session) if row.title == title})
            if not wikis:
                raise UserError(
                    f"no quarantined revision of {shortened(title)!r}; list them with: wikiref corpus quarantine"
                )
            if len(wikis) > 1:
                raise UserError(
                    f"{shortened(title)} is quarantined on {', '.join(wikis)}: choose one with --wiki"
                )
            (wiki,) = wikis
        result = accept_quarantined(session=session, wiki=wiki, title=title)
    console.print(
        f"accepted {shortened(title, MAX_ECHOED_CHARS)}: {result.references_added} references added, "
        f"{result.references_removed} moved to history",
        markup=False,
    )


@app.command("prune")
def prune() -> None:
    """Delete the embeddings of every removed (history) reference now (WIKIREF_SCRAPE_HISTORY_EMBEDDING_DAYS
    prunes by age on every refresh)."""
    _, engine = prepare_database(get_settings())
    with Session(engine) as session:
        deleted = prune_history_embeddings(session=session)
    console.print(f"deleted {deleted} embeddings of history references")
