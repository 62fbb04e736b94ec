"""Streaming reader of Wikimedia Enterprise HTML dumps: NDJSON, gzipped NDJSON, or NDJSON files in a .tar.gz.

One JSON object per line in the Enterprise article model; the fields used are ``name``, ``identifier``
(page id), ``version.identifier`` (revision id), ``url`` (its host is the wiki), ``namespace.identifier``,
``article_body.html``, ``redirects[].name`` and ``description`` (the short description). Only articles
(namespace 0) with HTML are yielded. Nothing is unpacked to disk and only one line is held in memory at a time.

A bad record (not JSON, not an object, a field of the wrong type, an id outside bigint, a title MediaWiki
would reject) is skipped and kept in ``DumpReader.skipped`` with its line number; the records after it still
load. A broken stream (truncated or corrupt compression) raises ``DumpError`` once the records before the
break have been yielded. A dump without a single article raises ``DumpError`` too.
"""

from __future__ import annotations

import gzip
import json
import logging
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.title_rules import InvalidTitle, parse_title, shortened

log = logging.getLogger(__name__)

MAX_BIGINT = 2**63 - 1
LOGGED_SKIPS = 20
"""Skipped records logged one by one; the rest are only counted (the summary and artifact list them)."""
_NDJSON_SUFFIXES = (".ndjson", ".json", ".jsonl")


class DumpError(ScrapeError):
    """The dump cannot be read (missing file, broken compression, no articles at all)."""


class BadRecord(ValueError):
    """One record of the dump that cannot be loaded; the reader skips it."""


@dataclass(frozen=True)
class DumpPage:
    title: str
    html: str
    page_id: int | None
    revision_id: int | None
    wiki: str
    redirects: tuple[str, ...] = ()
    short_description: str | None = None


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out of the load: where it is (file and line) and why."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source} line {self.line}: {self.reason}"


def _object(value: object, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRecord(f"{field} is {type(value).__name__}, not an object")
    return value


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise BadRecord(f"{field} is {type(value).__name__}, not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRecord(f"{field} holds an unpaired surrogate (\\ud800-\\udfff), not text") from None
    return value


def _identifier(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRecord(f"{field} is {shortened(json.dumps(value), 40)}, not an integer")
    if not 0 < value <= MAX_BIGINT:
        raise BadRecord(f"{field} {shortened(str(value), 40)} is outside 1..{MAX_BIGINT}")
    return value


def _description(value: object) -> str | None:
    if value is None or value == "":
        return None
    return _text(value, "description").replace("\x00", "\ufffd")


def _title(value: object, field: str) -> str:
    title = _text(value, field)
    try:
        parse_title(title)
    except InvalidTitle as exc:
        raise BadRecord(f"{field} {shortened(title)!r} is not a valid title: {exc.reason}") from None
    return title


def page_of(record: object, *, wiki: str | None = None) -> DumpPage | None:
    """The article a decoded record holds, None for a record that is not an article (another namespace, no
    HTML); raises ``BadRecord`` for a record that does not follow the Enterprise article model. ``wiki`` is
    the wiki of records whose URL names no host."""
    if not isinstance(record, dict):
        raise BadRecord(f"a JSON {type(record).__name__}, not an object")
    namespace = _object(record.get("namespace"), "namespace").get("identifier", 0)
    if isinstance(namespace, bool) or not isinstance(namespace, int):
        raise BadRecord(f"namespace.identifier is {type(namespace).__name__}, not an integer")
    if namespace != 0:
        return None
    html = _object(record.get("article_body"), "article_body").get("html")
    if html is None or record.get("name") is None:
        return None
    html = _text(html, "article_body.html")
    if not html:
        return None
    title = _title(record["name"], "name")
    url = record.get("url") or _object(record.get("is_part_of"), "is_part_of").get("url") or ""
    redirects = record.get("redirects") or []
    if not isinstance(redirects, list):
        raise BadRecord(f"redirects is {type(redirects).__name__}, not a list")
    names = []
    for number, redirect in enumerate(redirects):
        name = _object(redirect, f"redirects[{number}]").get("name")
        if name:
            names.append(_title(name, f"redirects[{number}].name"))
    try:
        wiki = urlsplit(_text(url, "url")).hostname or wiki
    except ValueError as exc:  # a malformed URL (bad port, unbalanced brackets)
        raise BadRecord(f"url is not a URL ({exc})") from None
    if not wiki:
        raise BadRecord("no url naming the wiki; set WIKIREF_WIKI (e.g. en.wikipedia.org) for such dumps")
    return DumpPage(
        title=title,
        # HTML parsers read NUL as U+FFFD; the database cannot store NUL in text at all.
        html=html.replace("\x00", "\ufffd"),
        page_id=_identifier(record.get("identifier"), "identifier"),
        revision_id=_identifier(
            _object(record.get("version"), "version").get("identifier"), "version.identifier"
        ),
        wiki=wiki,
        redirects=tuple(names),
        short_description=_description(record.get("description")),
    )


class DumpReader:
    """Iterate to get the dump's articles; afterwards ``skipped`` lists the bad records, in order.

    ``records`` counts the non-blank lines read and ``not_articles`` those of other namespaces or without HTML.
    """

    def __init__(self, path: Path, *, wiki: str | None = None) -> None:
        self.path = Path(path)
        self.wiki = wiki
        self.records = 0
        self.articles = 0
        self.not_articles = 0
        self.skipped: list[SkippedRecord] = []

    def _skip(self, source: str, line: int, reason: str) -> None:
        self.skipped.append(SkippedRecord(source, line, reason))
        if len(self.skipped) <= LOGGED_SKIPS:
            log.warning("skipped record: %s", self.skipped[-1])
        elif len(self.skipped) == LOGGED_SKIPS + 1:
            log.warning("more records skipped; only counting them from here (the summary lists them)")

    def _lines(self, stream: IO[bytes], source: str) -> Iterator[DumpPage]:
        # Byte lines, decoded one by one: TextIOWrapper would ask a streamed tar member whether it can seek.
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            self.records += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._skip(source, number, f"not UTF-8 (byte {exc.start})")
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                self._skip(source, number, f"not JSON ({reason})")
                continue
            try:
                page = page_of(record, wiki=self.wiki)
            except (BadRecord, RecursionError) as exc:
                self._skip(source, number, str(exc) if isinstance(exc, BadRecord) else "nested too deeply")
                continue
            if page is None:
                self.not_articles += 1
            else:
                self.articles += 1
                yield page

    def _members(self) -> Iterator[DumpPage]:
        name = self.path.name.lower()
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(self.path, mode="r|*") as tar:
                found = False
                for member in tar:
                    if member.isfile() and member.name.lower().endswith(_NDJSON_SUFFIXES):
                        found = True
                        yield from self._lines(tar.extractfile(member), f"{self.path}:{member.name}")
                if not found:
                    raise DumpError(
                        f"dump {self.path} holds no NDJSON files (.ndjson, .json, .jsonl): not an Enterprise dump?"
                    )
        elif name.endswith(".gz"):
            with gzip.open(self.path, "rb") as stream:
                yield from self._lines(stream, str(self.path))
        else:
            with self.path.open("rb") as stream:
                yield from self._lines(stream, str(self.path))

    def __iter__(self) -> Iterator[DumpPage]:
        if not self.path.is_file():
            raise DumpError(f"dump {self.path} does not exist")
        try:
            yield from self._members()
        except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, OSError) as exc:
            raise DumpError(
                f"dump {self.path} is broken after {self.records:,} records ({type(exc).__name__}: "
                f"{shortened(str(exc) or 'unexpected end of data')}); the articles before the break were kept"
            ) from None
        if self.skipped or self.not_articles:
            log.info(
                "%s: %d records, %d articles, %d not articles, %d bad (skipped)",
                self.path,
                self.records,
                self.articles,
                self.not_articles,
                len(self.skipped),
            )
        if not self.articles:
            raise DumpError(self._no_articles())

    def _no_articles(self) -> str:
        if not self.records:
            return f"dump {self.path} is empty: no records"
        detail = f"{self.not_articles:,} not articles, {len(self.skipped):,} bad"
        first = ""
        if self.skipped:
            bad = self.skipped[0]
            where = "" if bad.source == str(self.path) else f" of {bad.source}"
            first = f"; first bad record, line {bad.line}{where}: {bad.reason}"
        return f"dump {self.path} holds no articles ({self.records:,} records: {detail}){first}"


def iter_dump(path: Path, *, wiki: str | None = None) -> Iterator[DumpPage]:
    """Every article of the dump at ``path`` (.ndjson, .json, .gz, or .tar.gz/.tgz of NDJSON files)."""
    return iter(DumpReader(path, wiki=wiki))
