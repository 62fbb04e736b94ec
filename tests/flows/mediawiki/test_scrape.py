"""Scraping the shared pages over real HTTP from the mirror into a real PostgreSQL."""

from __future__ import annotations

import csv
import re

import ftfy.badness
import pytest
from sqlalchemy import Engine, text

from tests.conftest import SHARED_WIKIPEDIA
from tests.flows.mediawiki.conftest import ALL_PAGES, ONE_BATCH, client_config, scrape
from wikiref.flows.mediawiki.client import ResolvedTitle
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.mirror.server import Faults, MirrorApp, MirrorData, serving
from wikiref.flows.steps.scraping import fetch_pages

MOJIBAKE = re.compile("Ã[\u0080-\u00bf]|â€|Â[\u00a0-\u00bf]|[\u0080-\u009f]")


def manifest_counts() -> dict[str, int]:
    with (SHARED_WIKIPEDIA / "MANIFEST.tsv").open(encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {
            row["title"]: int(row["n_cite_note_li_parsed"])
            for row in rows
            if row["file"].startswith("pages/")
        }


def all_rows(engine: Engine) -> tuple[list, list]:
    """Every article and reference by natural key (no surrogate ids), for comparing two databases."""
    with engine.connect() as connection:
        articles = connection.execute(
            text(
                "SELECT wiki, title, page_id, revision_id, url, redirects FROM articles ORDER BY wiki, title"
            )
        ).all()
        references = connection.execute(
            text(
                "SELECT a.title, r.position, r.text, r.content_hash, r.urls, r.archive_url, r.doi, r.pmid, r.isbn,"
                " r.cited_title, r.date FROM article_references r JOIN articles a ON a.id = r.article_id"
                " ORDER BY a.title, r.position"
            )
        ).all()
    return articles, references


def snapshot(engine: Engine) -> tuple[list, list]:
    """Rows with their ids, timestamps and xmin: any rewrite of a row changes its xmin."""
    with engine.connect() as connection:
        articles = connection.execute(
            text("SELECT id, xmin::text, fetched_at FROM articles ORDER BY id")
        ).all()
        references = connection.execute(
            text("SELECT id, xmin::text FROM article_references ORDER BY id")
        ).all()
    return articles, references


def parse_requests(app: MirrorApp) -> int:
    return sum(1 for _t, _path, params, _ua, _enc in app.requests if params.get("action") == "parse")


# The four slow tests here scrape all 303 shared pages through the mirror (the scraped_template fixture).
@pytest.mark.slow
def test_scrape_stores_every_reference_of_every_page(scraped_engine: Engine) -> None:
    with scraped_engine.connect() as connection:
        stored = dict(
            connection.execute(
                text(
                    "SELECT a.title, count(r.id) FROM articles a"
                    " LEFT JOIN article_references r ON r.article_id = a.id GROUP BY a.title"
                )
            ).all()
        )
        texts = connection.execute(text("SELECT text FROM article_references")).scalars().all()
    assert stored == manifest_counts()
    assert len(texts) == 13_992
    dirty = [
        t
        for t in texts
        if MOJIBAKE.search(t)
        or ftfy.badness.is_bad(t)
        or "^" in t
        or re.search(r"CS1 (maint|errors?)|Cite error", t)
    ]
    assert dirty == []


@pytest.mark.slow
def test_scrape_stores_the_lead_and_short_description_of_every_page(scraped_engine: Engine) -> None:
    from tests.flows.mediawiki.test_lead import CLUTTER
    from wikiref.flows.mediawiki.extract import extract_page
    from wikiref.flows.mediawiki.saved import iter_saved_pages

    with scraped_engine.connect() as connection:
        stored = {
            title: (lead, description)
            for title, lead, description in connection.execute(
                text("SELECT title, lead, short_description FROM articles")
            )
        }
    expected = {}
    for page in iter_saved_pages(SHARED_WIKIPEDIA):
        extracted = extract_page(page.html)
        expected[page.title] = (extracted.lead, extracted.short_description)
    assert stored == expected
    # The mirror answers prop=properties like MediaWiki: the short description came with the parse response.
    assert stored["Rust (programming language)"][1] == "General-purpose programming language"
    assert [title for title, (lead, _) in stored.items() if lead and CLUTTER.search(lead)] == []
    assert sum(lead is None for lead, _ in stored.values()) == 1


@pytest.mark.slow
def test_second_identical_scrape_writes_nothing(
    scraped_engine: Engine, mirror: tuple[str, MirrorApp]
) -> None:
    api_url, app = mirror
    before = snapshot(scraped_engine)
    summary = scrape(scraped_engine, client_config(api_url), ALL_PAGES)
    assert snapshot(scraped_engine) == before
    assert (summary.skipped_current, summary.counts.articles, parse_requests(app)) == (303, 0, 0)
    # Fetched again anyway (force), identical pages still write nothing.
    forced = scrape(
        scraped_engine,
        client_config(api_url),
        TitleSources(list_page=ALL_PAGES.list_page, limit=40),
        force=True,
    )
    assert snapshot(scraped_engine) == before
    assert (forced.counts.articles_unchanged, forced.counts.references_added, parse_requests(app)) == (
        40,
        0,
        40,
    )


@pytest.mark.slow
def test_stale_revisions_are_refetched_and_nothing_else(
    scraped_engine: Engine, mirror: tuple[str, MirrorApp]
) -> None:
    api_url, app = mirror
    with scraped_engine.begin() as connection:
        connection.execute(text("UPDATE articles SET revision_id = 1 WHERE title IN ('Dog', 'Bengaluru')"))
        reference_ids = (
            connection.execute(text("SELECT id FROM article_references ORDER BY id")).scalars().all()
        )
    summary = scrape(scraped_engine, client_config(api_url), ALL_PAGES)
    assert parse_requests(app) == 2
    assert (summary.skipped_current, summary.counts.articles_updated, summary.counts.references_added) == (
        301,
        2,
        0,
    )
    with scraped_engine.connect() as connection:
        assert (
            connection.execute(text("SELECT id FROM article_references ORDER BY id")).scalars().all()
            == reference_ids
        )
        revisions = dict(
            connection.execute(
                text("SELECT title, revision_id FROM articles WHERE title IN ('Dog', 'Bengaluru')")
            ).all()
        )
    assert revisions == {"Dog": 845493773, "Bengaluru": 1347626746}


@pytest.mark.slow
def test_scrape_under_twenty_percent_faults_ends_with_the_clean_rows(
    engine: Engine, scraped_engine: Engine, mirror_data: MirrorData
) -> None:
    faults = Faults(rate=0.2, kinds=("429", "503", "reset", "truncate"), retry_after=1, seed=7)
    app = MirrorApp(mirror_data, faults=faults)
    with serving(app) as api_url:
        summary = scrape(engine, client_config(api_url), ALL_PAGES, batch_size=ONE_BATCH)
    assert set(app.faults_injected) == {"429", "503", "reset", "truncate"}
    assert summary.stats.retries == sum(app.faults_injected.values())
    assert {"HTTP 429", "HTTP 503", "ReadError", "RemoteProtocolError"} <= set(summary.stats.retry_reasons)
    assert all_rows(engine) == all_rows(scraped_engine)


def test_redirects_are_followed_and_recorded(engine: Engine, mirror: tuple[str, MirrorApp]) -> None:
    api_url, _ = mirror
    hyphenated = "1963-64 Michigan Wolverines men's ice hockey season"
    sources = TitleSources(titles=(hyphenated, "dog", "No such article", "Bad|<title>"))
    summary = scrape(engine, client_config(api_url), sources)
    assert (summary.counts.articles_new, summary.missing, summary.invalid) == (
        2,
        ["No such article"],
        ["Bad|<title>"],
    )
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT title, redirects FROM articles ORDER BY title")).all()
    assert [tuple(row) for row in rows] == [
        ("1963–64 Michigan Wolverines men's ice hockey season", [hyphenated]),
        ("Dog", []),
    ]


def test_a_page_gone_between_resolve_and_fetch_is_missing(mirror: tuple[str, MirrorApp]) -> None:
    api_url, _ = mirror
    batch = fetch_pages(
        client_config(api_url), [ResolvedTitle("Dog", 4269567, 845493773), ResolvedTitle("Gone", 1, 1)]
    )
    assert [page.title for page in batch.pages] == ["Dog"]
    assert batch.missing == ["Gone"]
    assert batch.pages[0].revision_id == 845493773 and "cite_note-" in batch.pages[0].html
