"""One scrape sequence for the command and the flow: the same input writes the same rows either way."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from tests.bulk_rows import stored_rows
from tests.conftest import SHARED_WIKIPEDIA, TEMPLATE_DATABASE, create_database, drop_database
from tests.flows.mediawiki.test_dump import ndjson, record
from wikiref.db.corpora import SourceSpec, add_sources, corpora
from wikiref.db.engine import make_engine
from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.saved import iter_saved_pages
from wikiref.flows.settings import Settings
from wikiref.flows.steps.scrape_sequence import SCRAPE_OPTIONS, ScrapeRequest


@pytest.fixture
def flow_database_url(server_url: str, template_url: str) -> Iterator[str]:
    """A second fresh database, for the flow's run."""
    url = create_database(server_url, template=TEMPLATE_DATABASE)
    yield url
    drop_database(server_url, url)


@pytest.mark.slow
def test_the_command_and_the_flow_write_the_same_rows(
    prefect_harness: None,
    run_cli,
    database_url: str,
    flow_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
) -> None:
    from wikiref.flows.scrape import scrape_wikipedia
    from wikiref.flows.settings import get_settings

    pages = list(itertools.islice(iter_saved_pages(SHARED_WIKIPEDIA), 200, 208))
    dump = tmp_path / "enwiki.ndjson"
    dump.write_bytes(ndjson([record(page) for page in pages]))

    command = {"WIKIREF_DATABASE_URL": database_url}
    for args in (("--mirror", str(SHARED_WIKIPEDIA), "--limit", "12"), ("--dump-path", str(dump))):
        result = run_cli("scrape", *args, env=command)
        assert result.returncode == 0, result.stderr

    monkeypatch.setenv("WIKIREF_DATABASE_URL", flow_database_url)
    get_settings.cache_clear()
    assert scrape_wikipedia(mirror_dir=SHARED_WIKIPEDIA, limit=12)["articles new"] == 12
    scrape_wikipedia(dump_path=dump)

    by_command, by_flow = (make_engine(url) for url in (database_url, flow_database_url))
    try:
        rows = stored_rows(by_command)
        assert len(rows["articles"]) >= 12 and len(rows["references"]) > 100
        assert stored_rows(by_flow) == rows
    finally:
        by_command.dispose()
        by_flow.dispose()


def test_options_that_do_not_go_together_are_refused_for_both_callers(tmp_path) -> None:
    settings = Settings()
    with pytest.raises(ScrapeError, match="a mirror folder or a dump, not both"):
        ScrapeRequest.from_options(settings, mirror_dir=SHARED_WIKIPEDIA, dump_path=tmp_path / "dump.ndjson")
    with pytest.raises(ScrapeError, match="no dump and no force"):
        ScrapeRequest.from_options(settings, refresh=True, force=True)
    with pytest.raises(ScrapeError, match="name a corpus"):
        ScrapeRequest.from_options(settings, refresh=True, titles=["Dog"])
    with pytest.raises(ScrapeError, match="records a scrape's sources"):
        ScrapeRequest.from_options(settings, corpus="birds")
    with pytest.raises(ScrapeError, match="no titles to scrape"):
        ScrapeRequest.from_options(settings)
    with pytest.raises(ScrapeError, match="has no MANIFEST.tsv"):
        ScrapeRequest.from_options(settings, mirror_dir=tmp_path)
    request = ScrapeRequest.from_options(settings, category="Category:Dogs", category_depth=2, corpus="dogs")
    assert request.batch_size == settings.scrape_batch_size
    assert [spec.kind for spec in request.specs] == ["category"]


@pytest.mark.slow
def test_the_flow_records_a_corpus_under_the_wiki_it_read_and_refreshes_that_wikis_corpora_only(
    prefect_harness: None, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27, item 9, through the flow (the command's side: tests/flows/test_corpus.py, test_cli_json.py)."""
    from wikiref.flows.scrape import scrape_wikipedia
    from wikiref.flows.settings import get_settings

    monkeypatch.setenv("WIKIREF_DATABASE_URL", database_url)
    get_settings.cache_clear()
    first, second, third = (page.title for page in itertools.islice(iter_saved_pages(SHARED_WIKIPEDIA), 3))
    scrape_wikipedia(mirror_dir=SHARED_WIKIPEDIA, titles=[first, second], corpus="picked")
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            add_sources(
                session=session,
                corpus="hunde",
                wiki="de.wikipedia.org",
                sources=[SourceSpec("titles", {"titles": ["Wolf"]})],
            )
        # Sources given with a refresh are recorded under the wiki the refresh reaches, then refreshed.
        refreshed = scrape_wikipedia(mirror_dir=SHARED_WIKIPEDIA, titles=[third], corpus="more", refresh=True)
        assert [counts["corpus"] for counts in refreshed["corpora"]] == ["more"]
        everything = scrape_wikipedia(mirror_dir=SHARED_WIKIPEDIA, refresh=True)
        assert [counts["corpus"] for counts in everything["corpora"]] == ["more", "picked"]
        with Session(engine) as session:
            found = {c.name: (c.wiki, c.refreshed_at is not None) for c in corpora(session=session)}
        assert found == {
            "picked": ("en.wikipedia.org", True),
            "more": ("en.wikipedia.org", True),
            "hunde": ("de.wikipedia.org", False),
        }
        with pytest.raises(
            ScrapeError, match=r"^corpus hunde \(de\.wikipedia\.org\) belongs to another wiki"
        ):
            scrape_wikipedia(mirror_dir=SHARED_WIKIPEDIA, refresh=True, corpus="hunde")
    finally:
        engine.dispose()


def test_the_flow_and_the_command_name_the_scrape_options_as_from_options_does() -> None:
    """Both hand their arguments over by name (scrape_options): a parameter spelled otherwise would be lost."""
    from wikiref.flows.cli.scrape_commands import scrape
    from wikiref.flows.scrape import scrape_wikipedia

    flow = inspect.signature(scrape_wikipedia.fn).parameters
    from_options = inspect.signature(ScrapeRequest.from_options).parameters
    assert list(flow) == list(SCRAPE_OPTIONS)
    assert {name: flow[name].default for name in flow} == {name: from_options[name].default for name in flow}
    command = set(inspect.signature(scrape).parameters)
    assert command - set(SCRAPE_OPTIONS) == {"rate", "concurrency", "as_json", "old_depth", "old_dump"}
    assert set(SCRAPE_OPTIONS) - command == {"batch_size"}  # a setting on the command line (WIKIREF_SCRAPE_*)
