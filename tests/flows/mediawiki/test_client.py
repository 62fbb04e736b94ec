"""The MediaWiki client and the title sources against the mirror over real HTTP."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import SHARED_WIKIPEDIA
from tests.flows.mediawiki.conftest import client_config
from wikiref.flows.mediawiki.client import (
    MediaWikiClient,
    MediaWikiError,
    RetriesExhausted,
    pageviews_url_for,
)
from wikiref.flows.mediawiki.saved import saved_titles
from wikiref.flows.mediawiki.titles import TitleSources, gather_titles
from wikiref.flows.mirror.server import Faults, MirrorApp, MirrorData, serving


def run(coroutine):
    return asyncio.run(coroutine)


async def with_client(config, work):
    async with MediaWikiClient(config) as client:
        return await work(client), client.stats


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_rate_limit_of_n_requests_per_second_holds(mirror_data: MirrorData) -> None:
    rate, total = 20.0, 60
    app = MirrorApp(mirror_data)
    with serving(app) as api_url:
        config = client_config(api_url, requests_per_second=rate, concurrency=10)

        async def burst(client: MediaWikiClient) -> list[dict]:
            return await asyncio.gather(*(client.api(action="query", meta="siteinfo") for _ in range(total)))

        started = time.monotonic()
        results, stats = run(with_client(config, burst))
        elapsed = time.monotonic() - started
    arrivals = [t for t, *_ in app.requests]
    assert len(results) == total == stats.requests == len(arrivals)
    # 60 requests at 20/s need at least 59 intervals of 50 ms; within 10 % of that, not faster.
    assert elapsed >= (total - 1) / rate * 0.95
    assert elapsed <= (total - 1) / rate * 1.5
    assert max_in_window(arrivals) <= rate + 1  # one request of tolerance for the window's edges


def test_retry_after_is_honoured_and_retries_are_capped(mirror_data: MirrorData) -> None:
    app = MirrorApp(mirror_data, faults=Faults(rate=1.0, kinds=("429",), retry_after=1))
    with serving(app) as api_url:
        config = client_config(api_url, max_retries=2)
        with pytest.raises(RetriesExhausted, match="after 3 attempts.*HTTP 429"):
            run(with_client(config, lambda client: client.api(action="query", meta="siteinfo")))
    arrivals = [t for t, *_ in app.requests]
    assert len(arrivals) == 3
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(1.0 <= gap < 2.0 for gap in gaps), gaps


def test_backoff_grows_exponentially_without_retry_after(mirror_data: MirrorData) -> None:
    app = MirrorApp(mirror_data, faults=Faults(rate=1.0, kinds=("503",)))
    with serving(app) as api_url:
        config = client_config(api_url, max_retries=4, backoff_base=0.1)
        with pytest.raises(RetriesExhausted):
            run(with_client(config, lambda client: client.api(action="query", meta="siteinfo")))
    arrivals = [t for t, *_ in app.requests]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == 4
    # Retry k waits between half and all of 0.1 * 2**k seconds (equal jitter); 10 ms of timer slack.
    for k, gap in enumerate(gaps):
        assert 0.05 * 2**k - 0.01 <= gap <= 0.1 * 2**k + 0.1, (k, gaps)


def test_etiquette_user_agent_gzip_maxlag(mirror_data: MirrorData) -> None:
    app = MirrorApp(mirror_data, faults=Faults(rate=0.5, kinds=("maxlag",), retry_after=0, seed=3))
    with serving(app) as api_url:
        config = client_config(api_url, maxlag=5)

        async def work(client: MediaWikiClient):
            return await client.wiki_name(), await client.fetch_page("Dog"), await client.fetch_page("Cat")

        (name, dog, cat), stats = run(with_client(config, work))
    assert name == "en.wikipedia.org"
    assert (dog.page_id, dog.revision_id, cat.title) == (4269567, 845493773, "Cat")
    assert {ua for _t, _p, _params, ua, _e in app.requests} == {config.user_agent}
    assert all("gzip" in encoding for *_, encoding in app.requests)
    assert all(params.get("maxlag") == "5" for _t, _p, params, _ua, _e in app.requests)
    # The lag answers (HTTP 200 with error code maxlag) were retried, not returned.
    assert app.faults_injected["maxlag"] >= 1
    assert stats.retry_reasons == {"API maxlag": app.faults_injected["maxlag"]}
    assert stats.requests == 3 + app.faults_injected["maxlag"]


def test_resolve_titles_in_batches_of_fifty(mirror: tuple[str, MirrorApp]) -> None:
    api_url, app = mirror
    titles = saved_titles(SHARED_WIKIPEDIA)[:120]
    wanted = [
        "dog",
        "1963-64 Michigan Wolverines men's ice hockey season",
        "Nope",
        "a<b",
        "Wikipedia:Saved pages",
    ]
    resolution, _ = run(
        with_client(client_config(api_url), lambda client: client.resolve_titles([*titles, *wanted]))
    )
    queries = [params for _t, _p, params, *_ in app.requests if "titles" in params]
    # The batches go out concurrently, so they may arrive in any order.
    assert sorted(len(params["titles"].split("|")) for params in queries) == [25, 50, 50]
    assert all(params["prop"] == "info" and params["redirects"] == "1" for params in queries)
    found = {page.title: page for page in resolution.pages}
    assert set(found) == set(titles) | {"Dog", "1963–64 Michigan Wolverines men's ice hockey season"}
    assert found["Dog"].revision_id == 845493773
    assert found["1963–64 Michigan Wolverines men's ice hockey season"].redirects == (wanted[1],)
    assert resolution.normalized == {"dog": "Dog"}
    assert resolution.missing == ["Nope"]
    assert [title for title, _ in resolution.invalid] == ["a<b"]
    assert resolution.not_articles == ["Wikipedia:Saved pages"]


def test_category_source_recurses_to_depth_and_keeps_articles_only(mirror: tuple[str, MirrorApp]) -> None:
    api_url, _ = mirror
    config = client_config(api_url)

    async def members(client: MediaWikiClient) -> tuple[list[str], list[str], list[str], list[str]]:
        return (
            await client.category_members("Saved pages", depth=0),
            await client.category_members("Category:Saved pages", depth=1),
            await client.category_members("Category:Saved pages", depth=5),
            await client.category_members("Category:Saved pages (action-parse-json)", depth=0),
        )

    (depth0, depth1, depth5, json_pages), _ = run(with_client(config, members))
    assert depth0 == []  # the root holds only sub-categories
    assert sorted(depth1) == sorted(saved_titles(SHARED_WIKIPEDIA))
    assert depth5 == depth1  # the category cycle back to the root is not followed twice
    assert sorted(json_pages) == ["Blue Train (album)", "Douglas Adams"]


def test_sources_compose_with_limits(mirror: tuple[str, MirrorApp], tmp_path: Path) -> None:
    api_url, _ = mirror
    titles_file = tmp_path / "titles.txt"
    titles_file.write_text("# my titles\nDog\n\nCat\nDuck\n", encoding="utf-8")
    config = client_config(api_url)

    async def gather(client: MediaWikiClient, sources: TitleSources) -> list[str]:
        return await gather_titles(client, sources, wiki="en.wikipedia.org")

    links, _ = run(
        with_client(config, lambda c: gather(c, TitleSources(list_page="Wikipedia:Saved pages", limit=7)))
    )
    assert links == sorted(saved_titles(SHARED_WIKIPEDIA))[:7]
    day = date(2024, 1, 5)
    top, _ = run(with_client(config, lambda c: gather(c, TitleSources(top_day=day, limit=25))))
    assert len(top) == 25 and "Main Page" not in top and not any(t.startswith("Special:") for t in top)
    views = dict(mirror[1].data.top_views(day))
    top_views = [views[title.replace(" ", "_")] for title in top]
    assert top_views == sorted(top_views, reverse=True)
    union, _ = run(
        with_client(
            config,
            lambda c: gather(
                c,
                TitleSources(
                    titles=("Duck", "Rust (programming language)"), titles_file=titles_file, limit=4
                ),
            ),
        )
    )
    assert union == ["Duck", "Rust (programming language)", "Dog", "Cat"]
    with pytest.raises(MediaWikiError, match="no titles to scrape"):
        run(with_client(config, lambda c: gather(c, TitleSources())))
    with pytest.raises(MediaWikiError, match="no page views"):
        run(with_client(config, lambda c: gather(c, TitleSources(top_day=date(2999, 1, 1)))))


def test_pageviews_url_follows_the_wiki() -> None:
    assert (
        pageviews_url_for("https://en.wikipedia.org/w/api.php")
        == "https://wikimedia.org/api/rest_v1/metrics/pageviews"
    )
    assert (
        pageviews_url_for("http://127.0.0.1:8800/w/api.php")
        == "http://127.0.0.1:8800/api/rest_v1/metrics/pageviews"
    )
