"""Mirror fixtures: the shared pages loaded once, served over real HTTP, and a database scraped through it once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tests.conftest import SHARED_WIKIPEDIA, TEMPLATE_DATABASE, create_database, drop_database
from wikiref.db.engine import make_engine
from wikiref.db.revision_checks import RevisionChecks
from wikiref.flows.mediawiki.client import ClientConfig
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.mirror.server import MirrorApp, MirrorData, serving
from wikiref.flows.steps.scrape_sequence import ScrapeRequest, ScrapeSteps, run_scrape
from wikiref.flows.steps.scraping import ScrapeSummary

ALL_PAGES = TitleSources(list_page="Wikipedia:Saved pages")
# All pages in one fetch batch: retry waits (Retry-After) overlap instead of adding up batch after batch.
ONE_BATCH = 1000


def client_config(api_url: str, **overrides) -> ClientConfig:
    """Fast retries for tests; everything else as in production."""
    values = {
        "api_url": api_url,
        "user_agent": "wikiref-tests/0.1 (https://example.org/wikiref; tests@example.org)",
        "requests_per_second": 1000.0,
        "concurrency": 10,
        "max_retries": 8,
        "backoff_base": 0.05,
        "request_timeout": 20.0,
    }
    values.update(overrides)
    return ClientConfig(**values)


def scrape(
    engine: Engine, config: ClientConfig, sources: TitleSources, *, force: bool = False, batch_size: int = 25
) -> ScrapeSummary:
    """The command's scrape (the shared sequence, its steps in this process) with a test client."""
    request = ScrapeRequest(
        sources=sources, client=config, wiki=None, batch_size=batch_size, checks=RevisionChecks(), force=force
    )
    return run_scrape(request, ScrapeSteps.in_process(engine))


@pytest.fixture(scope="session")
def mirror_data() -> MirrorData:
    return MirrorData.from_folder(SHARED_WIKIPEDIA)


@pytest.fixture
def mirror(mirror_data: MirrorData) -> Iterator[tuple[str, MirrorApp]]:
    """A clean mirror of the shared pages: (api_url, app) — the app records every request it got."""
    app = MirrorApp(mirror_data)
    with serving(app) as api_url:
        yield api_url, app


@pytest.fixture(scope="session")
def scraped_template(server_url: str, template_url: str, mirror_data: MirrorData) -> Iterator[str]:
    """Name of a database holding a clean scrape of every shared page through the mirror (done once)."""
    url = create_database(server_url, template=TEMPLATE_DATABASE)
    engine = make_engine(url)
    try:
        with serving(MirrorApp(mirror_data)) as api_url:
            scrape(engine, client_config(api_url), ALL_PAGES, batch_size=ONE_BATCH)
    finally:
        engine.dispose()
    yield make_url(url).database
    drop_database(server_url, url)


@pytest.fixture
def scraped_engine(server_url: str, scraped_template: str) -> Iterator[Engine]:
    """A database of its own holding the clean scrape of every shared page."""
    url = create_database(server_url, template=scraped_template)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop_database(server_url, url)
