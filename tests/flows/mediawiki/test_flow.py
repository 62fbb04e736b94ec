"""The scrape-wikipedia Prefect flow end to end under prefect_test_harness, through the mirror and from a dump."""

from __future__ import annotations

import pickle

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import SHARED_WIKIPEDIA
from tests.flows.mediawiki.conftest import client_config
from tests.flows.mediawiki.test_dump import ndjson, record
from tests.flows.mediawiki.test_extract import manifest_counts
from wikiref.db.engine import sqlalchemy_url
from wikiref.flows.mediawiki.client import ClientStats, FetchedPage, ResolvedTitle, TitleResolution
from wikiref.flows.mediawiki.saved import iter_saved_pages
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.steps.records import page_record
from wikiref.flows.steps.scraping import FetchBatch, ResolvedTitles


@pytest.fixture
def configured_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from wikiref.flows.settings import get_settings

    monkeypatch.setenv("WIKIREF_DATABASE_URL", database_url)
    get_settings.cache_clear()
    return database_url


def reference_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            return dict(
                connection.execute(
                    text(
                        "SELECT a.title, count(r.id) FROM articles a"
                        " LEFT JOIN article_references r ON r.article_id = a.id GROUP BY a.title"
                    )
                ).all()
            )
    finally:
        engine.dispose()


def test_flow_scrapes_a_mirror_folder_and_publishes_its_summary(
    prefect_harness: None, configured_database: str
) -> None:
    from prefect.client.orchestration import get_client

    from wikiref.flows.scrape import scrape_wikipedia

    first = scrape_wikipedia(mirror_dir=SHARED_WIKIPEDIA, limit=40, batch_size=10)
    expected = manifest_counts()
    stored = reference_counts(configured_database)
    assert len(stored) == 40 and stored == {title: expected[title] for title in stored}
    assert (first["articles new"], first["references added"], first["retries"]) == (
        40,
        sum(stored.values()),
        0,
    )
    assert first["wiki"] == "en.wikipedia.org"

    second = scrape_wikipedia(mirror_dir=SHARED_WIKIPEDIA, limit=40, batch_size=10)
    assert (second["articles unchanged"], second["articles new"], second["articles updated"]) == (40, 0, 0)
    # siteinfo, the list page's links, one title query: no page fetched again.
    assert second["requests"] == 3

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    summaries = [artifact.data for artifact in artifacts if artifact.key == "scrape-summary"]
    assert any("| articles new | 40 |" in data for data in summaries)
    assert any("| articles unchanged | 40 |" in data for data in summaries)
    assert {artifact.type for artifact in artifacts if artifact.key == "scrape-counts"} == {"table"}


def test_flow_loads_a_dump(prefect_harness: None, configured_database: str, tmp_path) -> None:
    from wikiref.flows.scrape import scrape_wikipedia

    pages = [page for _, page in zip(range(12), iter_saved_pages(SHARED_WIKIPEDIA))]
    dump = tmp_path / "enwiki.ndjson"
    dump.write_bytes(ndjson([record(page) for page in pages]))
    result = scrape_wikipedia(dump_path=dump)
    assert (result["titles requested"], result["articles new"], result["requests"]) == (12, 12, 0)
    expected = manifest_counts()
    assert reference_counts(configured_database) == {page.title: expected[page.title] for page in pages}


def test_task_inputs_and_outputs_pickle_for_dask() -> None:
    page = next(iter_saved_pages(SHARED_WIKIPEDIA))
    values = [
        client_config("http://127.0.0.1:1/w/api.php"),
        TitleSources(titles=("Dog",), limit=3),
        ResolvedTitles(
            "en.wikipedia.org", ["Dog"], TitleResolution(pages=[ResolvedTitle("Dog", 1, 2)]), ClientStats()
        ),
        FetchBatch([FetchedPage(page.title, 1, 2, page.html)], ["Gone"], ClientStats(3, 1, {"HTTP 503": 1})),
        [page_record(wiki="en.wikipedia.org", title=page.title, html=page.html, page_id=1, revision_id=2)],
    ]
    assert [pickle.loads(pickle.dumps(value)) for value in values] == values


def test_prefect_global_rate_limit_is_taken_when_it_exists(
    prefect_harness: None, configured_database: str
) -> None:
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from wikiref.flows.scrape import scrape_wikipedia

    started = time.monotonic()
    baseline = scrape_wikipedia(mirror_dir=SHARED_WIKIPEDIA, limit=12, batch_size=12)
    baseline_seconds = time.monotonic() - started
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="mediawiki-api", limit=4, slot_decay_per_second=2.0)
        )
    try:
        started = time.monotonic()
        limited = scrape_wikipedia(mirror_dir=SHARED_WIKIPEDIA, limit=12, batch_size=12, force=True)
        limited_seconds = time.monotonic() - started
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name("mediawiki-api")
    assert (baseline["articles new"], limited["articles unchanged"]) == (12, 12)
    # 12 fetches through 4 slots refilled at 2/s: the last 8 wait about 4 s for their slots.
    assert limited_seconds >= baseline_seconds + 2.5, (baseline_seconds, limited_seconds)
