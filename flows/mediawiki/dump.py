"""Streaming reader of Wikimedia Enterprise HTML dumps: NDJSON, gzipped NDJSON, or NDJSON files in a .tar.gz.

One JSON object per line in the Enterprise article model; the fields used are ``name``, ``identifier``
(page id), ``version.identifier`` (revision id), ``url`` (its host is the wiki), ``namespace.identifier``,
``article_body.html``, ``redirects[].name`` and ``description`` (the short description). Only articles (namespace 0) with HTML are yielded. Nothing is
unpacked to disk and only one line is held in memory at a time.
"""

from __future__ import annotations

import gzip
import json
import logging
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from flows.mediawiki.errors import ScrapeError

log = logging.getLogger(__name__)


class DumpError(ScrapeError):
    """The dump cannot be read (missing file, not NDJSON, corrupt archive)."""


@dataclass(frozen=True)
class DumpPage:
    title: str
    html: str
    page_id: int | None
    revision_id: int | None
    wiki: str | None
    redirects: tuple[str, ...] = ()
    description: str | None = None


def _page(record: dict) -> DumpPage | None:
    if (record.get("namespace") or {}).get("identifier", 0) != 0:
        return None
    html = (record.get("article_body") or {}).get("html")
    if not html or not record.get("name"):
        return None
    url = record.get("url") or (record.get("is_part_of") or {}).get("url") or ""
    return DumpPage(
        title=record["name"],
        html=html,
        page_id=record.get("identifier"),
        revision_id=(record.get("version") or {}).get("identifier"),
        wiki=urlsplit(url).hostname,
        redirects=tuple(r["name"] for r in record.get("redirects") or () if r.get("name")),
        description=record.get("description") or None,
    )


def _lines(stream: IO[bytes], source: str) -> Iterator[DumpPage]:
    skipped = 0
    # Byte lines, decoded one by one: TextIOWrapper would ask a streamed tar member whether it can seek.
    for number, raw in enumerate(stream, start=1):
        line = raw.decode("utf-8")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DumpError(f"{source} line {number} is not JSON ({exc.msg}): not an NDJSON dump?") from None
        page = _page(record)
        if page is None:
            skipped += 1
        else:
            yield page
    if skipped:
        log.info("%s: %d records skipped (not articles or without HTML)", source, skipped)


def iter_dump(path: Path) -> Iterator[DumpPage]:
    """Every article of the dump at ``path`` (.ndjson, .json, .gz, or .tar.gz/.tgz of NDJSON files)."""
    path = Path(path)
    if not path.is_file():
        raise DumpError(f"dump {path} does not exist")
    name = path.name.lower()
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(path, mode="r|*") as tar:
                for member in tar:
                    if member.isfile() and member.name.lower().endswith((".ndjson", ".json", ".jsonl")):
                        yield from _lines(tar.extractfile(member), f"{path}:{member.name}")
        elif name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                yield from _lines(stream, str(path))
        else:
            with path.open("rb") as stream:
                yield from _lines(stream, str(path))
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, UnicodeDecodeError) as exc:
        raise DumpError(f"cannot read dump {path}: {exc}") from None
