"""Async MediaWiki Action API client with the etiquette Wikimedia asks of bots.

Every request: a descriptive User-Agent, ``maxlag``, gzip, an explicit timeout, a process-wide request-rate
limit and a per-client concurrency limit; 429 / 5xx / timeouts / resets / truncated bodies / ``maxlag`` errors
are retried with exponential backoff and jitter, honouring ``Retry-After``, up to a retry cap.

Pages are fetched with ``action=parse&formatversion=2`` rather than the REST ``page/html`` endpoint: it is
served by every MediaWiki (REST ``page/html`` needs RESTBase/Parsoid, missing on many third-party wikis),
it returns the page id and the revision id of the HTML in the same response, it follows redirects and
reports them, and it goes through the same ``api.php`` etiquette (``maxlag``) as the other calls.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Self
from urllib.parse import urlsplit

import httpx

from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.secrets import mask_credentials, mask_logged_urls

log = logging.getLogger(__name__)
# httpx logs each request's URL, credentials included; so do this module's retry messages.
mask_logged_urls("httpx", "httpcore", __name__)

TITLES_PER_QUERY = 50
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_API_ERRORS = frozenset({"maxlag", "ratelimited", "readonly", "internal_api_error_DBQueryTimeoutError"})
_MAX_RETRY_AFTER = 600.0
_WIKIMEDIA_HOSTS = (
    "wikipedia.org",
    "wikimedia.org",
    "wiktionary.org",
    "wikibooks.org",
    "wikiquote.org",
    "wikisource.org",
    "wikinews.org",
    "wikiversity.org",
    "wikivoyage.org",
    "wikidata.org",
    "mediawiki.org",
)


class MediaWikiError(ScrapeError):
    """A scrape problem described in one line (bad source, API error, retries exhausted)."""


class RetriesExhausted(MediaWikiError):
    pass


class APIUnreachable(MediaWikiError):
    """No connection to a host that has never answered this process: no network, a firewall or a wrong URL.

    Not retried (by the client nor by Prefect): retries help a flaky network, not an absent one.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"the MediaWiki API at {mask_credentials(url)} is unreachable ({reason}); without network, scrape "
            "saved pages instead: `wikiref scrape --mirror DIR` or `wikiref run pipeline --param mirror_dir=DIR`"
        )


# Hosts that have answered this process at least once: a connection failure to one of them is a flaky network
# (retried); to any other host it means there is no way there at all (APIUnreachable at once).
_ANSWERED_HOSTS: set[str] = set()


def _host(url: str) -> str:
    return urlsplit(url).netloc


@dataclass(frozen=True)
class ClientConfig:
    """How to talk to one wiki; plain values so that it pickles into Dask workers."""

    api_url: str
    user_agent: str
    requests_per_second: float = 10.0
    concurrency: int = 4
    max_retries: int = 6
    request_timeout: float = 30.0
    connect_timeout: float = 10.0
    maxlag: int | None = 5
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    pageviews_url: str | None = None

    def __post_init__(self) -> None:
        if self.requests_per_second <= 0:
            raise MediaWikiError(f"requests per second must be positive, got {self.requests_per_second}")
        if self.concurrency < 1:
            raise MediaWikiError(f"concurrency must be at least 1, got {self.concurrency}")

    @property
    def pageviews(self) -> str:
        return self.pageviews_url or pageviews_url_for(self.api_url)


def pageviews_url_for(api_url: str) -> str:
    """Wikimedia wikis get their page views from wikimedia.org; any other server (the mirror) serves its own."""
    parts = urlsplit(api_url)
    host = parts.hostname or ""
    if any(host == suffix or host.endswith(f".{suffix}") for suffix in _WIKIMEDIA_HOSTS):
        return "https://wikimedia.org/api/rest_v1/metrics/pageviews"
    return f"{parts.scheme}://{parts.netloc}/api/rest_v1/metrics/pageviews"


class RateLimiter:
    """Lets requests through at least ``1/rate`` s apart, measured between actual grants, not planned slots:
    a grant that woke up late cannot be followed early, so no 1-second window ever holds more than ``rate``.

    Grants take a thread lock, not an asyncio one, so one limiter serves every event loop and thread of the
    process (Prefect runs tasks in threads, each with its own loop).
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """0 when granted now, else the seconds to wait before asking again."""
        with self._lock:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + self.interval
                return 0.0
            return self._next - now

    async def acquire(self) -> None:
        while (wait := self.try_acquire()) > 0:
            await asyncio.sleep(wait)


_LIMITERS: dict[tuple[str, float], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_rate_limiter(api_url: str, rate: float) -> RateLimiter:
    """The process-wide limiter of one host at one rate."""
    key = (urlsplit(api_url).netloc, rate)
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(key, RateLimiter(rate))


@dataclass
class ClientStats:
    """What the client did: requests sent (retries included), retries, and why it retried."""

    requests: int = 0
    retries: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)

    def merge(self, other: ClientStats) -> None:
        self.requests += other.requests
        self.retries += other.retries
        for reason, count in other.retry_reasons.items():
            self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + count


@dataclass(frozen=True)
class ResolvedTitle:
    """An existing article: its canonical title, ids, and the titles that led to it."""

    title: str
    page_id: int
    revision_id: int | None
    redirects: tuple[str, ...] = ()


@dataclass
class TitleResolution:
    pages: list[ResolvedTitle] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    not_articles: list[str] = field(default_factory=list)
    normalized: dict[str, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchedPage:
    """The rendered HTML of one article and the ids of exactly that revision."""

    title: str
    page_id: int
    revision_id: int
    html: str
    redirects: tuple[str, ...] = ()
    short_description: str | None = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), _MAX_RETRY_AFTER)


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class MediaWikiClient:
    """Use as ``async with MediaWikiClient(config) as client: ...``."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        limiter: RateLimiter | None = None,
        before_request: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``before_request`` is awaited before every request, retries included: a hook for a limit shared
        beyond this process (the flow plugs in a Prefect global rate limit there)."""
        self.config = config
        self.limiter = limiter or shared_rate_limiter(config.api_url, config.requests_per_second)
        self.before_request = before_request
        self.stats = ClientStats()
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._http: httpx.AsyncClient | None = None
        self._random = random.Random()

    async def __aenter__(self) -> Self:
        self._http = httpx.AsyncClient(
            headers={"User-Agent": self.config.user_agent, "Accept-Encoding": "gzip"},
            timeout=httpx.Timeout(self.config.request_timeout, connect=self.config.connect_timeout),
            limits=httpx.Limits(
                max_connections=self.config.concurrency, max_keepalive_connections=self.config.concurrency
            ),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.aclose()

    # -- transport ---------------------------------------------------------------------------------------

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # Honour the server's wait, plus a little jitter so that waiting clients don't return in lockstep.
            return retry_after + self._random.uniform(0, min(1.0, 0.1 * retry_after + 0.05))
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2**attempt)
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)

    async def _attempt(self, url: str, params: dict[str, str] | None) -> dict:
        assert self._http is not None, "use the client as an async context manager"
        if self.before_request is not None:
            await self.before_request()
        await self.limiter.acquire()
        self.stats.requests += 1
        try:
            response = await self._http.get(url, params=params)
            _ANSWERED_HOSTS.add(_host(url))
            if response.status_code in RETRY_STATUSES:
                raise _Retry(
                    f"HTTP {response.status_code}", _retry_after(response.headers.get("retry-after"))
                )
            if response.status_code >= 400:
                raise MediaWikiError(f"{mask_credentials(url)} answered HTTP {response.status_code}")
            body = response.json()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # DNS failure, connection refused, network unreachable, or a firewall dropping the connection.
            reason = f"{type(exc).__name__}: {str(exc).strip() or 'no detail'}"
            if _host(url) not in _ANSWERED_HOSTS:
                raise APIUnreachable(url, reason) from None
            raise _Retry(type(exc).__name__) from None
        except httpx.TimeoutException as exc:
            raise _Retry(f"timeout ({type(exc).__name__})") from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise _Retry(type(exc).__name__) from None
        except json.JSONDecodeError:
            raise _Retry("invalid JSON") from None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("code") in RETRY_API_ERRORS:
            retry_after = _retry_after(response.headers.get("retry-after"))
            raise _Retry(f"API {error['code']}", 5.0 if retry_after is None else retry_after)
        return body

    async def get_json(self, url: str, params: dict[str, str] | None = None) -> dict:
        """GET ``url`` and decode JSON, retrying transient failures with backoff up to ``max_retries``."""
        for attempt in range(self.config.max_retries + 1):
            async with self._semaphore:
                try:
                    return await self._attempt(url, params)
                except _Retry as retry:
                    reason, retry_after = retry.reason, retry.retry_after
            if attempt == self.config.max_retries:
                raise RetriesExhausted(
                    f"{mask_credentials(url)} still failing after {attempt + 1} attempts (last: {reason}); "
                    "raise the retry cap or try later"
                )
            self.stats.retries += 1
            self.stats.retry_reasons[reason] = self.stats.retry_reasons.get(reason, 0) + 1
            delay = self._backoff(attempt, retry_after)
            log.debug("retry %d of %s in %.2fs: %s", attempt + 1, url, delay, reason)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def api(self, **params: str) -> dict:
        """One Action API call (JSON, formatversion 2, maxlag); API errors other than lag raise."""
        query = {"format": "json", "formatversion": "2", **params}
        if self.config.maxlag is not None:
            query["maxlag"] = str(self.config.maxlag)
        body = await self.get_json(self.config.api_url, query)
        error = body.get("error")
        if isinstance(error, dict):
            raise MediaWikiAPIError(error.get("code", "unknown"), error.get("info", ""))
        return body

    async def api_all(self, **params: str) -> list[dict]:
        """Every response of a query that continues (``continue`` parameters merged in), in order."""
        responses, extra = [], {}
        while True:
            body = await self.api(**params, **extra)
            responses.append(body)
            if "continue" not in body:
                return responses
            extra = {key: str(value) for key, value in body["continue"].items()}

    # -- wiki operations ---------------------------------------------------------------------------------

    async def wiki_name(self) -> str:
        """The wiki's server name (``en.wikipedia.org``): the ``wiki`` key of stored articles."""
        body = await self.api(action="query", meta="siteinfo", siprop="general")
        general = body["query"]["general"]
        return general.get("servername") or urlsplit(general["server"]).hostname

    async def resolve_titles(self, titles: Iterable[str]) -> TitleResolution:
        """Normalise, follow redirects and look up ``titles`` in batches of 50 with their current revision."""
        resolution = TitleResolution()
        wanted = []
        for title in dict.fromkeys(titles):
            # "|" separates titles in a query: such a title cannot even be asked for.
            if "|" in title or not title.strip():
                resolution.invalid.append((title, "empty or contains '|'"))
            else:
                wanted.append(title)
        bodies = await asyncio.gather(
            *(
                self.api(action="query", titles="|".join(batch), redirects="1", prop="info")
                for batch in _batches(wanted, TITLES_PER_QUERY)
            )
        )
        found: dict[str, dict] = {}
        for body in bodies:
            query = body.get("query", {})
            resolution.normalized.update({item["from"]: item["to"] for item in query.get("normalized", [])})
            resolution.redirects.update({item["from"]: item["to"] for item in query.get("redirects", [])})
            for page in query.get("pages", []):
                if page.get("invalid"):
                    resolution.invalid.append((page["title"], page.get("invalidreason", "invalid title")))
                elif page.get("ns", 0) != 0:  # Special:Search, Category:X (existing or not): not articles
                    resolution.not_articles.append(page["title"])
                elif page.get("missing"):
                    resolution.missing.append(page["title"])
                else:
                    found[page["title"]] = page
        sources: dict[str, list[str]] = {}
        for title in wanted:
            canonical = resolution.normalized.get(title, title)
            seen = {canonical}
            while canonical in resolution.redirects:
                source = canonical
                canonical = resolution.redirects[canonical]
                sources.setdefault(canonical, []).append(source)
                if canonical in seen:
                    break
                seen.add(canonical)
            if canonical in found and canonical not in {page.title for page in resolution.pages}:
                page = found[canonical]
                resolution.pages.append(
                    ResolvedTitle(title=canonical, page_id=page["pageid"], revision_id=page.get("lastrevid"))
                )
        resolution.pages = [
            ResolvedTitle(p.title, p.page_id, p.revision_id, tuple(dict.fromkeys(sources.get(p.title, ()))))
            for p in resolution.pages
        ]
        return resolution

    async def fetch_page(self, title: str) -> FetchedPage | None:
        """Rendered HTML of the current revision of ``title`` (redirects followed), or None if missing."""
        try:
            body = await self.api(
                action="parse",
                page=title,
                # The page properties come in the same response: the short description, no extra request.
                prop="text|revid|properties",
                redirects="1",
                disableeditsection="1",
                disablelimitreport="1",
                disabletoc="1",
            )
        except MediaWikiAPIError as exc:
            if exc.code in ("missingtitle", "invalidtitle", "nosuchpageid"):
                return None
            raise
        parse = body["parse"]
        text = parse["text"]["*"] if isinstance(parse["text"], dict) else parse["text"]
        properties = parse.get("properties") or {}
        if isinstance(properties, list):  # formatversion 1 lists {"name": ..., "*": ...}
            properties = {item.get("name"): item.get("*") for item in properties}
        return FetchedPage(
            title=parse["title"],
            page_id=parse["pageid"],
            revision_id=parse["revid"],
            html=text,
            redirects=tuple(item["from"] for item in parse.get("redirects", [])),
            short_description=properties.get("wikibase-shortdesc") or None,
        )

    async def category_members(self, category: str, *, depth: int = 0, limit: int | None = None) -> list[str]:
        """Articles (namespace 0) in ``category`` and, down to ``depth`` levels, in its sub-categories."""
        if not category.lower().startswith("category:"):
            category = f"Category:{category}"
        articles: dict[str, None] = {}
        seen = {category}
        level = [category]
        for current_depth in range(depth + 1):
            next_level: list[str] = []
            for name in level:
                for body in await self.api_all(
                    action="query",
                    list="categorymembers",
                    cmtitle=name,
                    cmtype="page|subcat",
                    cmnamespace="0|14",
                    cmlimit="max",
                ):
                    for member in body.get("query", {}).get("categorymembers", []):
                        if member["ns"] == 0:
                            articles.setdefault(member["title"], None)
                            if limit is not None and len(articles) >= limit:
                                return list(articles)
                        elif member["ns"] == 14 and member["title"] not in seen and current_depth < depth:
                            seen.add(member["title"])
                            next_level.append(member["title"])
            level = next_level
        return list(articles)

    async def page_links(self, title: str, *, limit: int | None = None) -> list[str]:
        """Articles linked from ``title`` (e.g. ``Wikipedia:Vital articles/Level/3``), in API order."""
        links: dict[str, None] = {}
        for body in await self.api_all(
            action="query", titles=title, prop="links", plnamespace="0", pllimit="max"
        ):
            for page in body.get("query", {}).get("pages", []):
                if page.get("missing") or page.get("invalid"):
                    raise MediaWikiError(
                        f"list page {title!r} does not exist on {mask_credentials(self.config.api_url)}"
                    )
                for link in page.get("links", []):
                    links.setdefault(link["title"], None)
        titles = list(links)
        return titles[:limit] if limit is not None else titles

    async def top_viewed(self, day: date, *, project: str, limit: int | None = None) -> list[str]:
        """The most-viewed articles of ``day`` (Pageviews API ``top``), main page and special pages left out."""
        url = f"{self.config.pageviews}/top/{project}/all-access/{day:%Y/%m/%d}"
        try:
            body = await self.get_json(url)
        except MediaWikiError as exc:
            raise MediaWikiError(f"no page views for {project} on {day:%Y-%m-%d} ({exc})") from None
        titles = []
        for item in body.get("items", []):
            for article in sorted(item.get("articles", []), key=lambda a: a.get("rank", 0)):
                name = article["article"].replace("_", " ")
                if (":" in name and name.split(":", 1)[0] in _NON_ARTICLE_PREFIXES) or name in (
                    "Main Page",
                    "-",
                ):
                    continue
                titles.append(name)
        return titles[:limit] if limit is not None else titles


_NON_ARTICLE_PREFIXES = frozenset(
    {
        "Special",
        "Wikipedia",
        "File",
        "Template",
        "Help",
        "Category",
        "Portal",
        "User",
        "Talk",
        "Draft",
        "MediaWiki",
    }
)


class MediaWikiAPIError(MediaWikiError):
    def __init__(self, code: str, info: str) -> None:
        super().__init__(f"MediaWiki API error {code}: {info}")
        self.code = code
        self.info = info
