"""Corpus refresh over real HTTP against the mirror: category corpora, reference history, quarantine of
damaged pages, deleted and redirected pages, and the cost of refreshing."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import replace

import pytest
from selectolax.lexbor import LexborHTMLParser
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from tests.conftest import SHARED_WIKIPEDIA, register_base_version
from tests.flows.mediawiki.conftest import client_config
from wikiref.db.corpora import SourceSpec, add_sources, corpora
from wikiref.db.errors import DatabaseError
from wikiref.db.quarantine import accept_quarantined, quarantined
from wikiref.db.revision_checks import RevisionChecks
from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.saved import SavedPage, iter_saved_pages
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.mirror.server import MirrorApp, MirrorData, serving
from wikiref.flows.steps.records import page_record
from wikiref.flows.steps.scrape_sequence import ScrapeRequest, ScrapeSteps, run_refresh

WIKI = "en.wikipedia.org"
BIRDS = "Category:Birds"


@pytest.fixture(scope="module")
def saved_pages() -> list[SavedPage]:
    """12 shared pages with 8-30 references each, in a stable, non-alphabetical order (md5 of the title)."""
    chosen = []
    for page in iter_saved_pages(SHARED_WIKIPEDIA):
        record = page_record(wiki=WIKI, title=page.title, html=page.html, page_id=1, revision_id=1)
        if 8 <= len(record.references) <= 30:
            chosen.append(page)
    chosen.sort(key=lambda page: hashlib.md5(page.title.encode()).hexdigest())
    return chosen[:12]


@pytest.fixture
def mirror_data(saved_pages: list[SavedPage]) -> MirrorData:
    """A category tree: Birds ⊃ Birds of Europe ⊃ Birds of Spain ⊃ Birds of Madrid (one page per level
    below depth 2 left out of a depth-2 corpus), with a cycle back to the root, and pages in no category."""
    data = MirrorData(wiki=WIKI)
    for page in saved_pages:
        data.add(page)
    titles = [page.title for page in saved_pages]
    data.categories = {
        BIRDS: [*titles[0:3], "Category:Birds of Europe"],
        "Category:Birds of Europe": [*titles[3:6], "Category:Birds of Spain", BIRDS],
        "Category:Birds of Spain": [*titles[6:8], "Category:Birds of Madrid"],
        "Category:Birds of Madrid": [titles[8]],
    }
    return data


@pytest.fixture
def mirror(mirror_data: MirrorData) -> Iterator[tuple[str, MirrorApp]]:
    app = MirrorApp(mirror_data)
    with serving(app) as api_url:
        yield api_url, app


def refresh(engine: Engine, api_url: str, corpus: str | None = None):
    """The command's refresh (the shared sequence, its steps in this process) with a test client; ``corpus``:
    refresh only that one."""
    request = ScrapeRequest(
        sources=TitleSources(),
        client=client_config(api_url),
        wiki=None,
        batch_size=50,
        checks=RevisionChecks(),
        corpus=corpus,
        refresh=True,
    )
    return run_refresh(request, ScrapeSteps.in_process(engine))


def define_birds(engine: Engine) -> None:
    with Session(engine) as session:
        add_sources(
            session=session,
            corpus="birds",
            wiki=WIKI,
            sources=[SourceSpec("category", {"name": BIRDS, "depth": 2})],
        )


def stored_references(engine: Engine, title: str) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT r.text FROM article_references r JOIN articles a ON a.id = r.article_id "
                    "WHERE a.title = :title ORDER BY r.position"
                ),
                {"title": title},
            ).scalars()
        )


def snapshot(engine: Engine) -> tuple[list, list, list]:
    """Every article, reference and embedding row with its xmin: any write changes it."""
    with engine.connect() as connection:
        return (
            connection.execute(text("SELECT id, xmin::text, revision_id FROM articles ORDER BY id")).all(),
            connection.execute(text("SELECT id, xmin::text, text FROM article_references ORDER BY id")).all(),
            connection.execute(
                text("SELECT reference_id, xmin::text FROM reference_embeddings ORDER BY reference_id")
            ).all(),
        )


def embed_all(engine: Engine) -> None:
    """Factory: a vector for every reference (values do not matter here, only that they survive)."""
    with Session(engine) as session:
        version = register_base_version(session)
        session.execute(
            text(
                "INSERT INTO reference_embeddings (model_version_id, reference_id, content_hash, embedding) "
                "SELECT :v, id, content_hash, array_fill(0.1, ARRAY[384])::vector FROM article_references"
            ),
            {"v": version},
        )
        session.commit()


def without_references(html: str, count: int) -> str:
    """The page with its first ``count`` reference items removed."""
    parser = LexborHTMLParser(html)
    for item in parser.css('li[id^="cite_note"]')[:count]:
        item.decompose()
    return parser.html


def with_first_reference_rewritten(html: str, new_text: str) -> str:
    parser = LexborHTMLParser(html)
    item = parser.css_first('li[id^="cite_note"]')
    span = item.css_first(".reference-text, .mw-reference-text") or item
    for child in list(span.iter(include_text=True)):
        child.decompose()
    span.insert_child(new_text)
    return parser.html


def test_a_category_corpus_refresh_gets_exactly_the_new_revisions_references(
    engine: Engine, mirror: tuple[str, MirrorApp], mirror_data: MirrorData, saved_pages: list[SavedPage]
) -> None:
    api_url, app = mirror
    define_birds(engine)
    first = refresh(engine, api_url)
    in_corpus = {page.title for page in saved_pages[:8]}
    with engine.connect() as connection:
        stored = set(connection.execute(text("SELECT title FROM articles")).scalars())
    assert stored == in_corpus  # depth 2: Birds of Madrid (depth 3) is left out
    assert first.scrape.counts.articles_new == 8
    (counts,) = first.corpora
    assert (counts.corpus, counts.titles, counts.articles, counts.changed) == ("birds", 8, 8, 8)

    shrunk, rewritten = saved_pages[1].title, saved_pages[6].title
    old_revision = mirror_data.pages[shrunk].revision_id
    before_removed = stored_references(engine, shrunk)
    new_revision = mirror_data.edit_page(shrunk, without_references(mirror_data.pages[shrunk].html, 2))
    mirror_data.edit_page(
        rewritten,
        with_first_reference_rewritten(
            mirror_data.pages[rewritten].html, "Smith, J. (2020). Birds. Example Press."
        ),
    )
    before = snapshot(engine)
    requests_before = len(app.requests)
    second = refresh(engine, api_url)

    for title in (shrunk, rewritten):
        expected = page_record(
            wiki=WIKI, title=title, html=mirror_data.pages[title].html, page_id=1, revision_id=1
        )
        assert stored_references(engine, title) == [ref.text for ref in expected.references]
    assert "Smith, J. (2020). Birds. Example Press." in stored_references(engine, rewritten)
    assert second.scrape.counts.articles_updated == 2
    assert second.scrape.articles_unchanged == 6
    assert (second.scrape.counts.references_added, second.scrape.counts.references_removed) == (1, 3)
    assert second.corpora[0].changed == 2
    # Unchanged articles: not a row written. Requests: siteinfo, 3 category levels, 1 batch of titles, 2 pages.
    assert len(set(snapshot(engine)[0]) & set(before[0])) == 6
    assert len(app.requests) - requests_before == 1 + 3 + 1 + 2

    # Removed references are history: their last revision, the revision that dropped them, when.
    with engine.connect() as connection:
        history = connection.execute(
            text(
                "SELECT h.text, h.last_seen_revision_id, h.removed_revision_id FROM reference_history h "
                "JOIN articles a ON a.id = h.article_id WHERE a.title = :title ORDER BY h.position"
            ),
            {"title": shrunk},
        ).all()
        changes = connection.execute(
            text(
                "SELECT change, revision_id, reference FROM wikiref.reference_changes(now() - interval '1 hour', :t)"
                " WHERE change = 'removed'"
            ),
            {"t": shrunk},
        ).all()
    assert [row[0] for row in history] == before_removed[:2]
    assert {(row[1], row[2]) for row in history} == {(old_revision, new_revision)}
    assert sorted(row[2] for row in changes) == sorted(before_removed[:2])
    assert {row[1] for row in changes} == {new_revision}


DAMAGES = {
    "cut to 30%": lambda html, n: html[: int(len(html) * 0.3)],
    "random bytes": lambda html, n: random.Random(7).randbytes(len(html.encode()) // 4),
    "lorem ipsum": lambda html, n: (
        '<div class="mw-parser-output"><ol class="references">'
        + "".join(
            f'<li id="cite_note-{i}"><span class="reference-text">&lt;&lt;&lt;&gt;&gt;&gt; lorem ipsum</span></li>'
            for i in range(n)
        )
        + "</ol></div>"
    ),
    "empty": lambda html, n: "",
    "invalid UTF-8": lambda html, n: (
        html.encode()[: len(html) // 2] + b"\xff\xfe\xc3(" + html.encode()[len(html) // 2 :]
    ),
}
REASONS = {
    "cut to 30%": "reference list gone",
    "random bytes": "not valid UTF-8",
    "lorem ipsum": "look like markup, not references",
    "empty": "empty body",
    "invalid UTF-8": "not valid UTF-8",
}


def test_damaged_pages_are_quarantined_and_change_nothing_stored(
    engine: Engine, mirror: tuple[str, MirrorApp], mirror_data: MirrorData, saved_pages: list[SavedPage]
) -> None:
    api_url, _app = mirror
    define_birds(engine)
    refresh(engine, api_url)
    embed_all(engine)
    damaged = dict(zip(DAMAGES, (page.title for page in saved_pages[:5]), strict=True))
    originals = {title: mirror_data.pages[title].html for title in damaged.values()}
    for kind, title in damaged.items():
        mirror_data.edit_page(title, DAMAGES[kind](originals[title], len(stored_references(engine, title))))
    before = snapshot(engine)

    summary = refresh(engine, api_url)

    assert snapshot(engine) == before
    assert summary.scrape.counts.articles_quarantined == 5
    assert summary.corpora[0].quarantined == 5
    with Session(engine) as session:
        pending = {row.title: row for row in quarantined(session=session)}
    assert set(pending) == set(damaged.values())
    for kind, title in damaged.items():
        assert REASONS[kind] in pending[title].reason, (kind, pending[title].reason)
        assert pending[title].revision_id == mirror_data.pages[title].revision_id
    assert "Warning: 5 pages quarantined" in summary.scrape.markdown()
    assert summary.scrape.quarantined_markdown().count("\n|") == 2 + 5  # header, rule, one row per page

    # Unchanged on the wiki since: no fetch, still pending.
    again = refresh(engine, api_url)
    assert again.scrape.counts.articles == 0 and again.scrape.skipped_current == 8

    # Accepting one applies it; a later good revision (the original back) clears another.
    lorem = damaged["lorem ipsum"]
    with Session(engine) as session:
        result = accept_quarantined(session=session, wiki=WIKI, title=lorem)
    assert result.status == "updated"
    assert set(stored_references(engine, lorem)) == {"<<<>>> lorem ipsum"}
    empty = damaged["empty"]
    mirror_data.edit_page(empty, originals[empty])
    cleared = refresh(engine, api_url)
    assert cleared.scrape.counts.quarantines_cleared == 1
    with Session(engine) as session:
        assert {row.title for row in quarantined(session=session)} == set(damaged.values()) - {lorem, empty}
    with engine.connect() as connection:
        # The accepted page's old references went to history with their embeddings.
        moved = connection.execute(
            text(
                "SELECT count(*), count(e.reference_id) FROM reference_history h "
                "LEFT JOIN reference_history_embeddings e ON e.reference_id = h.id"
            )
        ).one()
    assert moved[0] == moved[1] > 0


def test_deleted_and_redirected_pages_are_marked(
    engine: Engine, mirror: tuple[str, MirrorApp], mirror_data: MirrorData, saved_pages: list[SavedPage]
) -> None:
    api_url, _app = mirror
    define_birds(engine)
    refresh(engine, api_url)
    gone, moved, target = saved_pages[0].title, saved_pages[3].title, saved_pages[4].title
    mirror_data.delete_page(gone)
    mirror_data.redirect_page(moved, target)

    summary = refresh(engine, api_url)

    assert (summary.marked_deleted, summary.marked_redirects) == (1, 1)
    with engine.connect() as connection:
        rows = {
            row[0]: row[1:]
            for row in connection.execute(text("SELECT title, status, redirect_target FROM articles"))
        }
    assert rows[gone] == ("deleted", None)
    assert rows[moved] == ("redirect", target)
    assert {status for title, (status, _t) in rows.items() if title not in (gone, moved)} == {"current"}
    assert stored_references(engine, gone)  # marked, not dropped
    assert refresh(engine, api_url).marked_deleted == 0  # marked once


def test_unchanged_corpus_refresh_costs_one_request_per_50_articles(
    engine: Engine, mirror: tuple[str, MirrorApp], mirror_data: MirrorData, saved_pages: list[SavedPage]
) -> None:
    """Stored articles outside any corpus are re-checked too, 50 titles per query."""
    api_url, app = mirror
    with Session(engine) as session:
        titles = [page.title for page in saved_pages]
        add_sources(
            session=session, corpus="picked", wiki=WIKI, sources=[SourceSpec("titles", {"titles": titles})]
        )
    refresh(engine, api_url)
    with Session(engine) as session:
        (definition,) = corpora(session=session)
    assert definition.refreshed_at is not None and definition.last_counts["articles"] == 12
    before = len(app.requests)
    summary = refresh(engine, api_url)
    queries = [params for _t, _p, params, _ua, _ae in app.requests[before:] if "titles" in params]
    assert summary.scrape.articles_unchanged == 12
    assert len(app.requests) - before == 2  # siteinfo + one query of 12 (<= 50) titles
    assert [len(q["titles"].split("|")) for q in queries] == [12]
    assert replace(summary.scrape.counts, quarantined=[]).articles == 0


def test_a_refresh_touches_only_the_corpora_of_the_wiki_it_reaches(
    engine: Engine, mirror: tuple[str, MirrorApp], saved_pages: list[SavedPage]
) -> None:
    """Issue 27, item 9: a corpus belongs to the wiki it was defined on."""
    api_url, _app = mirror
    define_birds(engine)
    with Session(engine) as session:
        add_sources(
            session=session,
            corpus="hunde",
            wiki="de.wikipedia.org",
            sources=[SourceSpec("titles", {"titles": ["Haushund", "Wolf"]})],
        )
        add_sources(
            session=session, corpus="legacy", wiki=WIKI, sources=[SourceSpec("titles", {"titles": ["Nope"]})]
        )
        # A corpus defined before corpora had a wiki (migration 0009 could not tell): the next refresh's.
        session.execute(text("UPDATE corpora SET wiki = NULL WHERE name = 'legacy'"))
        session.commit()
        with pytest.raises(
            DatabaseError, match=r"^corpus hunde belongs to de\.wikipedia\.org, not en\.wikipedia"
        ):
            add_sources(
                session=session,
                corpus="hunde",
                wiki=WIKI,
                sources=[SourceSpec("titles", {"titles": ["Dog"]})],
            )

    summary = refresh(engine, api_url)
    assert [counts.corpus for counts in summary.corpora] == ["birds", "legacy"]
    assert summary.other_wikis == {"hunde": "de.wikipedia.org"}
    assert "Haushund" not in summary.scrape.missing and "Wolf" not in summary.scrape.missing
    with Session(engine) as session:
        found = {c.name: (c.wiki, c.refreshed_at is not None) for c in corpora(session=session)}
    assert found == {"birds": (WIKI, True), "hunde": ("de.wikipedia.org", False), "legacy": (WIKI, True)}

    with pytest.raises(ScrapeError, match=r"^corpus hunde \(de\.wikipedia\.org\) belongs to another wiki"):
        refresh(engine, api_url, corpus="hunde")
