"""A MediaWiki-compatible mirror of a folder of saved pages, with latency and fault injection.

It answers the subset of the Action API (``/w/api.php``, ``formatversion=2``) and of the Pageviews API
(``/api/rest_v1/metrics/pageviews/top/...``) that wikiref's client and title sources use:

* ``action=query&meta=siteinfo``: the wiki's server name (``en.wikipedia.org`` for the shared folder), so
  rows scraped through the mirror carry the same ``wiki`` as rows scraped from the live site;
* ``action=query&titles=...&redirects=1&prop=info``: normalisation, redirects, missing and invalid titles,
  page ids and ``lastrevid``;
* ``action=parse&page=...&prop=text|revid|properties``: the saved HTML (and its short description);
* ``action=query&list=categorymembers``: ``Category:Saved pages`` holds one sub-category per saved format
  (``Category:Saved pages (other)``...), each holding its pages and, as real category graphs do, a
  cycle back to the root;
* ``action=query&prop=links``: internal links found in a saved page; the list page ``Wikipedia:Saved pages``
  links every saved article;
* pageviews ``top``: every article with a view count derived from a hash of (title, day), after
  ``Main_Page`` and ``Special:Search`` as on the real list.

Edits (for refresh tests and benches): ``MirrorData.edit_page`` serves a new body (a new revision id, derived
from the content unless given; bytes are decoded as a wiki would, undecodable bytes replaced),
``delete_page`` removes a page and ``redirect_page`` turns one into a redirect; each takes effect on the next
request, the parse cache included.

Redirects: every title with an en dash also answers to its hyphen spelling ("1963-64 ..." -> "1963–64 ..."),
like the redirects Wikipedia keeps for them. Pages saved without ids get stable synthetic ones (crc32).

Faults (``fault_rate`` of all requests, kinds picked uniformly): ``429`` with ``Retry-After``, ``503``,
``reset`` (TCP RST before any response), ``truncate`` (headers promise the full body, half is sent, then the
connection is cut), and ``maxlag`` (the API's own lag error with ``Retry-After``, only for requests that send
``maxlag``). The server is uvicorn running a plain ASGI app; resets need uvicorn's transport, which the
ASGI ``send`` callable is bound to.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import random
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import unquote

import uvicorn
from selectolax.lexbor import LexborHTMLParser
from starlette.requests import Request

from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.extract import extract_short_description
from wikiref.flows.mediawiki.saved import SAVED_PAGES_WIKI, SavedPage, UnreadablePage, iter_saved_pages
from wikiref.flows.mediawiki.title_rules import NAMESPACES, InvalidTitle, parse_title
from wikiref.flows.mirror import FAULT_KINDS

log = logging.getLogger(__name__)

ROOT_CATEGORY = "Category:Saved pages"
LIST_PAGE = "Wikipedia:Saved pages"
_WIKI_LINK = re.compile(r"^(?:https?:)?(?://[^/]+)?/wiki/|^\./")
_MAX_TOP = 1000


class MirrorError(ScrapeError):
    """Bad mirror options (unknown fault kind, rate out of range)."""


@dataclass(frozen=True)
class Faults:
    """Fault injection: ``rate`` of requests get one of ``kinds``; 429/maxlag answers carry ``retry_after``."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "503", "reset", "truncate")
    retry_after: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise MirrorError(f"fault rate must be between 0 and 1, got {self.rate}")
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        if unknown:
            raise MirrorError(f"unknown fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}")
        if self.rate and not self.kinds:
            raise MirrorError("a fault rate needs at least one fault kind")


def normalize_title(title: str) -> str:
    """MediaWiki's title normalisation (``title_rules.parse_title``); an invalid title is returned as given."""
    try:
        return parse_title(title).text
    except InvalidTitle:
        return title


def namespace_of(title: str) -> int:
    prefix, sep, _ = title.partition(":")
    return NAMESPACES.get(prefix, 0) if sep else 0


def _synthetic_id(base: int, text: str) -> int:
    return base + zlib.crc32(text.encode("utf-8")) % 100_000_000


@dataclass
class MirrorPage:
    title: str
    html: str
    page_id: int
    revision_id: int
    category: str
    links: list[str] | None = None


@dataclass
class MirrorData:
    """What the mirror serves, built once from the folder."""

    wiki: str
    pages: dict[str, MirrorPage] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    generation: int = 0  # bumped by every edit, so that cached responses of older content are not served
    unreadable: dict[str, UnreadablePage] = field(default_factory=dict)
    """Listed pages whose saved file cannot be used: they exist, and fetching them is an API error."""

    @classmethod
    def from_folder(
        cls, root: Path, *, include_bulk: bool = False, wiki: str = SAVED_PAGES_WIKI
    ) -> MirrorData:
        data = cls(wiki=wiki)
        unreadable: list[UnreadablePage] = []
        for saved in iter_saved_pages(root, include_bulk=include_bulk, unreadable=unreadable):
            data.add(saved)
        data.unreadable = {normalize_title(page.title): page for page in unreadable}
        data.categories[ROOT_CATEGORY] = sorted(c for c in data.categories if c != ROOT_CATEGORY)
        for name in data.categories[ROOT_CATEGORY]:
            data.categories[name].append(ROOT_CATEGORY)
        log.info(
            "mirror of %s: %d pages, %d redirects, %d unreadable",
            root,
            len(data.pages),
            len(data.redirects),
            len(data.unreadable),
        )
        return data

    def add(self, saved: SavedPage) -> None:
        title = normalize_title(saved.title)
        category = f"{ROOT_CATEGORY} ({saved.format})"
        self.pages[title] = MirrorPage(
            title=title,
            html=saved.html,
            page_id=saved.page_id or _synthetic_id(1_000_000_000, title),
            revision_id=saved.revision_id or _synthetic_id(2_000_000_000, saved.html),
            category=category,
        )
        self.categories.setdefault(category, []).append(title)
        if "–" in title:
            self.redirects.setdefault(title.replace("–", "-"), title)

    def edit_page(self, title: str, body: str | bytes, *, revision_id: int | None = None) -> int:
        """Serve ``body`` as the new revision of ``title``; returns its revision id."""
        page = self.pages[normalize_title(title)]
        html = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        page.html = html
        # As on MediaWiki, a new revision's id is above every earlier one: an older id is an older revision,
        # which a scrape never stores over a newer one.
        page.revision_id = revision_id or max(other.revision_id for other in self.pages.values()) + 1
        page.links = None
        self.generation += 1
        return page.revision_id

    def delete_page(self, title: str) -> None:
        """The wiki no longer has ``title`` (its category memberships go too)."""
        title = normalize_title(title)
        del self.pages[title]
        for members in self.categories.values():
            if title in members:
                members.remove(title)
        self.generation += 1

    def redirect_page(self, title: str, target: str) -> None:
        """``title`` becomes a redirect to the existing page ``target``."""
        title, target = normalize_title(title), normalize_title(target)
        if target not in self.pages:
            raise MirrorError(f"cannot redirect {title!r} to {target!r}: no such page")
        self.delete_page(title)
        self.redirects[title] = target

    def links_of(self, title: str) -> list[str]:
        if title == LIST_PAGE:
            return sorted([*self.pages, *self.unreadable])
        page = self.pages[title]
        if page.links is None:
            found: dict[str, None] = {}
            for anchor in LexborHTMLParser(page.html).css("a[href]"):
                href = anchor.attributes.get("href") or ""
                classes = anchor.attributes.get("class") or ""
                match = _WIKI_LINK.match(href)
                if not match or "external" in classes:
                    continue
                target = unquote(href[match.end() :].split("#", 1)[0].split("?", 1)[0])
                if target:
                    found.setdefault(normalize_title(target), None)
            page.links = sorted(found, key=lambda t: (namespace_of(t), t))
        return page.links

    def top_views(self, day: date) -> list[tuple[str, int]]:
        views = [
            (title.replace(" ", "_"), 1_000 + zlib.crc32(f"{title}|{day.isoformat()}".encode()) % 100_000)
            for title in self.pages
        ]
        views.sort(key=lambda item: (-item[1], item[0]))
        return [("Main_Page", 5_000_000), ("Special:Search", 1_000_000), *views][:_MAX_TOP]


def _json_bytes(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _api_error(code: str, info: str) -> dict[str, object]:
    return {"error": {"code": code, "info": info}, "servedby": "wikiref-mirror"}


class MirrorApp:
    """The ASGI application (plain ASGI so that fault injection reaches uvicorn's transport)."""

    def __init__(self, data: MirrorData, *, faults: Faults = Faults(), latency: float = 0.0) -> None:
        self.data = data
        self.faults = faults
        self.latency = latency
        self.random = random.Random(faults.seed)
        self.faults_injected: dict[str, int] = {}
        self._parse_cache: dict[tuple, tuple[int, bytes]] = {}
        # (monotonic arrival time, path, params, User-Agent, Accept-Encoding) of every request, for tests
        # and benches that check rate limits and etiquette on the server side.
        self.requests: list[tuple[float, str, dict[str, str], str, str]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        arrival = time.monotonic()
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
        headers = request.headers
        self.requests.append(
            (
                arrival,
                scope["path"],
                params,
                headers.get("user-agent", ""),
                headers.get("accept-encoding", ""),
            )
        )
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._pick_fault(params)
        if fault == "reset":
            self._count(fault)
            _reset(send)
            return
        if fault in ("429", "503"):
            self._count(fault)
            headers = [(b"retry-after", str(self.faults.retry_after).encode())] if fault == "429" else []
            await _respond(send, int(fault), _json_bytes({"error": "injected fault"}), headers=headers)
            return
        if fault == "maxlag":
            self._count(fault)
            lag = _json_bytes(
                _api_error("maxlag", f"Waiting for a database server: {params['maxlag']} seconds lagged.")
            )
            headers = [
                (b"retry-after", str(self.faults.retry_after).encode()),
                (b"x-database-lag", params["maxlag"].encode()),
            ]
            await _respond(send, 200, lag, headers=headers)
            return
        gzipped = "gzip" in request.headers.get("accept-encoding", "")
        status, payload = self._payload(scope["path"], params, gzipped)
        content_encoding = [(b"content-encoding", b"gzip")] if gzipped else []
        if fault == "truncate":
            self._count(fault)
            await _truncate(send, status, payload, headers=content_encoding)
            return
        await _respond(send, status, payload, headers=content_encoding)

    def _payload(self, path: str, params: dict[str, str], gzipped: bool) -> tuple[int, bytes]:
        # Rendered pages are cached like MediaWiki's parser cache does, so that serving a page costs the
        # mirror little CPU next to the latency under test.
        key = None
        if params.get("action") == "parse":
            params_key = tuple(sorted((k, v) for k, v in params.items() if k != "maxlag"))
            key = (params_key, gzipped, self.data.generation)
            if key in self._parse_cache:
                return self._parse_cache[key]
        status, body = self._route(path, params)
        payload = _json_bytes(body)
        if gzipped:
            payload = gzip.compress(payload, compresslevel=1)
        if key is not None:
            self._parse_cache[key] = (status, payload)
        return status, payload

    def _count(self, fault: str) -> None:
        self.faults_injected[fault] = self.faults_injected.get(fault, 0) + 1

    def _pick_fault(self, params: dict[str, str]) -> str | None:
        if not self.faults.rate or self.random.random() >= self.faults.rate:
            return None
        kinds = [k for k in self.faults.kinds if k != "maxlag" or "maxlag" in params]
        return self.random.choice(kinds) if kinds else None

    def _route(self, path: str, params: dict[str, str]) -> tuple[int, object]:
        if path.endswith("/api.php"):
            return 200, self._action_api(params)
        top = re.search(r"/metrics/pageviews/top/([^/]+)/([^/]+)/(\d{4})/(\d{2})/(\d{2})$", path)
        if top:
            return self._pageviews_top(*top.groups())
        return 404, {"error": f"no such endpoint {path}; the Action API is at /w/api.php"}

    def _action_api(self, params: dict[str, str]) -> object:
        if params.get("format", "json") != "json":
            return _api_error("badvalue", "the mirror only speaks format=json")
        action = params.get("action")
        if action == "parse":
            return self._parse(params)
        if action != "query":
            return _api_error("badvalue", f'Unrecognized value for parameter "action": {action}.')
        result: dict[str, object] = {"batchcomplete": True}
        query: dict[str, object] = {}
        if "siteinfo" in params.get("meta", "").split("|"):
            query["general"] = {
                "sitename": "Wikipedia (wikiref mirror)",
                "servername": self.data.wiki,
                "server": f"//{self.data.wiki}",
                "mainpage": "Main Page",
                "generator": "wikiref-mirror",
            }
        if params.get("list") == "categorymembers":
            members, next_offset = self._category_members(params)
            query["categorymembers"] = members
            if next_offset is not None:
                result["continue"] = {"cmcontinue": str(next_offset), "continue": "-||"}
        if "titles" in params:
            query.update(self._titles(params, result))
        result["query"] = query
        return result

    def _resolve(self, raw: str, follow: bool) -> tuple[str, str | None, dict[str, str] | None]:
        """(normalised title, redirect target or None, normalisation record or None)."""
        title = normalize_title(raw)
        normalized = {"fromencoded": False, "from": raw, "to": title} if title != raw else None
        target = self.data.redirects.get(title) if follow else None
        return title, target, normalized

    def _titles(self, params: dict[str, str], result: dict[str, object]) -> dict[str, object]:
        raw_titles = params["titles"].split("|")
        if len(raw_titles) > 50:
            return {
                "warnings": {"query": 'Too many values supplied for parameter "titles". The limit is 50.'}
            }
        follow = "redirects" in params
        normalized, redirects, pages = [], [], []
        for raw in raw_titles:
            try:
                parsed = parse_title(raw)
            except InvalidTitle as exc:
                pages.append({"title": raw, "invalidreason": exc.reason, "invalid": True})
                continue
            title, target, norm = self._resolve(raw, follow)
            if norm:
                normalized.append(norm)
            if target:
                redirects.append({"from": title, "to": target})
                title = target
            page = self.data.pages.get(title)
            if parsed.namespace == -1:
                pages.append({"ns": -1, "title": title, "special": True})
            elif title == LIST_PAGE:
                pages.append({"pageid": 1, "ns": 4, "title": LIST_PAGE, "lastrevid": 1})
            elif title in self.data.unreadable:
                entry = {"pageid": _synthetic_id(1_000_000_000, title), "ns": 0, "title": title}
                if "info" in params.get("prop", "").split("|"):
                    entry["lastrevid"] = _synthetic_id(2_000_000_000, title)
                pages.append(entry)
            elif page is None:
                pages.append({"ns": parsed.namespace, "title": title, "missing": True})
            else:
                entry = {"pageid": page.page_id, "ns": 0, "title": page.title}
                if "info" in params.get("prop", "").split("|"):
                    entry.update(
                        {"contentmodel": "wikitext", "lastrevid": page.revision_id, "length": len(page.html)}
                    )
                if "links" in params.get("prop", "").split("|"):
                    entry["links"] = []
                pages.append(entry)
        if "links" in params.get("prop", "").split("|"):
            self._links(params, pages, result)
        out: dict[str, object] = {"pages": pages}
        if normalized:
            out["normalized"] = normalized
        if redirects:
            out["redirects"] = redirects
        return out

    def _links(self, params: dict[str, str], pages: list[dict], result: dict[str, object]) -> None:
        limit = _limit(params.get("pllimit"), 500)
        offset = int(params.get("plcontinue") or 0)
        namespaces = {int(n) for n in params["plnamespace"].split("|")} if params.get("plnamespace") else None
        for entry in pages:
            if (
                entry.get("missing")
                or entry.get("invalid")
                or entry.get("special")
                or entry["title"] in self.data.unreadable
            ):
                continue
            links = [
                t
                for t in self.data.links_of(entry["title"])
                if namespaces is None or namespace_of(t) in namespaces
            ]
            chunk = links[offset : offset + limit]
            entry["links"] = [{"ns": namespace_of(t), "title": t} for t in chunk]
            if offset + limit < len(links):
                result["continue"] = {"plcontinue": str(offset + limit), "continue": "||"}
                result.pop("batchcomplete", None)
            break  # like the real API, continuation walks one page's links at a time

    def _category_members(self, params: dict[str, str]) -> tuple[list[dict[str, object]], int | None]:
        category = normalize_title(params.get("cmtitle", ""))
        members = self.data.categories.get(category, [])
        types = set(params.get("cmtype", "page|subcat|file").split("|"))
        namespaces = {int(n) for n in params["cmnamespace"].split("|")} if params.get("cmnamespace") else None
        wanted = []
        for title in members:
            ns = namespace_of(title)
            kind = "subcat" if ns == 14 else "page"
            if kind in types and (namespaces is None or ns in namespaces):
                page = self.data.pages.get(title)
                wanted.append(
                    {
                        "pageid": page.page_id if page else _synthetic_id(3_000_000_000, title),
                        "ns": ns,
                        "title": title,
                    }
                )
        limit = _limit(params.get("cmlimit"), 500)
        offset = int(params.get("cmcontinue") or 0)
        next_offset = offset + limit if offset + limit < len(wanted) else None
        return wanted[offset : offset + limit], next_offset

    def _parse(self, params: dict[str, str]) -> object:
        raw = params.get("page")
        if raw is None:
            return _api_error("missingparam", 'The "page" parameter must be set.')
        try:
            parse_title(raw)
        except InvalidTitle as exc:
            return _api_error("invalidtitle", f'Bad title "{raw[:255]}": {exc.reason}')
        title, target, _ = self._resolve(raw, "redirects" in params)
        unreadable = self.data.unreadable.get(target or title)
        if unreadable is not None:
            return _api_error(
                "unreadablepage", f"The saved copy of this page cannot be served: {unreadable.reason}"
            )
        page = self.data.pages.get(target or title)
        if page is None:
            return _api_error("missingtitle", "The page you specified doesn't exist.")
        parse: dict[str, object] = {"title": page.title, "pageid": page.page_id, "revid": page.revision_id}
        if target:
            parse["redirects"] = [{"from": title, "to": target}]
        props = params.get("prop", "text|revid").split("|")
        if "text" in props:
            parse["text"] = page.html
        if "displaytitle" in props:
            parse["displaytitle"] = page.title
        if "properties" in props:
            # Like MediaWiki: the short description is a page property (Wikipedia's is in the HTML too).
            description = extract_short_description(page.html)
            parse["properties"] = {"wikibase-shortdesc": description} if description else {}
        return {"parse": parse}

    def _pageviews_top(
        self, project: str, access: str, year: str, month: str, day: str
    ) -> tuple[int, object]:
        try:
            when = date(int(year), int(month), int(day))
        except ValueError:
            return 400, {"type": "about:blank", "title": "Invalid date", "detail": f"{year}/{month}/{day}"}
        if project != self.data.wiki or when >= datetime.now(UTC).date():
            return 404, {
                "type": "about:blank",
                "title": "Not found.",
                "detail": "The date(s) you used are not valid",
            }
        articles = [
            {"article": article, "views": views, "rank": rank}
            for rank, (article, views) in enumerate(self.data.top_views(when), start=1)
        ]
        item = {
            "project": project,
            "access": access,
            "year": year,
            "month": month,
            "day": day,
            "articles": articles,
        }
        return 200, {"items": [item]}


def _limit(value: str | None, default: int) -> int:
    if value in (None, "max"):
        return default
    return max(1, min(int(value), default))


async def _respond(send, status: int, body: bytes, *, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    start_headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": [*start_headers, *headers]})
    await send({"type": "http.response.body", "body": body})


def _transport(send) -> asyncio.Transport | None:
    return getattr(getattr(send, "__self__", None), "transport", None)


def _reset(send) -> None:
    transport = _transport(send)
    if transport is None:
        raise RuntimeError("connection reset requested but the server exposes no transport")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0: close() sends RST instead of FIN, which is what a reset looks like to the client.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _truncate(send, status: int, body: bytes, *, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    start_headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": [*start_headers, *headers]})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    transport = _transport(send)
    if transport is None:
        raise RuntimeError("truncation requested but the server exposes no transport")
    await asyncio.sleep(0)
    transport.abort()


def _bound_socket(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP: asyncio turns on TCP_NODELAY only for sockets that say so, and without it every
    # response waits ~40 ms for the client's delayed ACK (headers and body are separate writes).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _InjectedFaultNoise(logging.Filter):
    """Injected resets and truncations make uvicorn log errors about the unfinished response: expected here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("ASGI callable returned without")


logging.getLogger("uvicorn.error").addFilter(_InjectedFaultNoise())


def _server(app: MirrorApp) -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", http="h11", loop="asyncio"
    )
    return uvicorn.Server(config)


def api_url_of(host: str, port: int) -> str:
    return f"http://{host}:{port}/w/api.php"


@contextlib.contextmanager
def serving(app: MirrorApp, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` over real HTTP in a background thread for the duration of the block; yields its API URL."""
    sock = _bound_socket(host, port)
    server = _server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="wikiref-mirror", daemon=True
    )
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the mirror server failed to start")
            thread.join(0.01)
        yield api_url_of(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def running_mirror(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: Faults = Faults(),
    latency: float = 0.0,
    include_bulk: bool = False,
    data: MirrorData | None = None,
) -> Iterator[str]:
    """Serve the saved pages of ``root`` on localhost for the duration of the block; yields the ``api.php`` URL.

    ``latency`` is in seconds, added to every response. Pass ``data`` to reuse an already loaded folder.
    """
    app = MirrorApp(
        data or MirrorData.from_folder(root, include_bulk=include_bulk), faults=faults, latency=latency
    )
    with serving(app, host=host, port=port) as api_url:
        yield api_url


def serve_mirror(
    root: Path, *, host: str, port: int, faults: Faults, latency: float, include_bulk: bool
) -> None:
    """Serve ``root`` in the foreground until interrupted (``wikiref mirror serve``)."""
    app = MirrorApp(MirrorData.from_folder(root, include_bulk=include_bulk), faults=faults, latency=latency)
    sock = _bound_socket(host, port)
    log.info("mirror serving %s at %s (Ctrl-C to stop)", root, api_url_of(host, sock.getsockname()[1]))
    _server(app).run(sockets=[sock])
