"""Reader of a folder of saved Wikipedia pages (the layout of ``shared/data/wikipedia``).

``pages/*.html`` and ``pages/*.parse.json`` are listed in ``MANIFEST.tsv`` (which gives the real title);
``bulk.tar.gz`` holds ``bulk/pages/*.html`` and ``bulk/MANIFEST.tsv`` and is streamed, never unpacked.
Page and revision ids come from the manifests where they are recorded, else from the page itself (RLCONF
``wgArticleId``/``wgRevisionId``, Parsoid ``mw:pageId`` and revision URL, the ``action=render`` comment).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from wikiref.flows.mediawiki.errors import ScrapeError

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.tsv"
BULK_ARCHIVE = "bulk.tar.gz"
BULK_MANIFEST = "bulk/MANIFEST.tsv"

_REVID_CAPTURED = re.compile(r"\brevid (\d+)")
_CURID = re.compile(r"[?&]curid=(\d+)")
_OLDID = re.compile(r"[?&]oldid=(\d+)")
_HEAD_PATTERNS = {
    "page_id": (re.compile(r'"wgArticleId":(\d+)'), re.compile(r'property="mw:pageId" content="(\d+)"')),
    "revision_id": (re.compile(r'"wgRevisionId":(\d+)'), re.compile(r'about="[^"]*/revision/(\d+)"')),
}
# Where the ids sit: RLCONF and Parsoid <head> are near the top; a full page's RLCONF can be ~30 kB in.
_HEAD_BYTES = 200_000


SAVED_PAGES_WIKI = "en.wikipedia.org"
"""The wiki the shared saved pages were taken from, stored with the articles loaded from them."""


class SavedPagesError(ScrapeError):
    """The folder is not a saved-pages folder (no MANIFEST.tsv), or a listed file is unreadable."""


@dataclass(frozen=True)
class SavedPage:
    """One saved article: its title, rendered HTML, and the ids when the saved copy records them."""

    title: str
    html: str
    page_id: int | None
    revision_id: int | None
    source: str
    format: str = "bulk"  # the manifest's format column; "bulk" for pages of bulk.tar.gz


def _int(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def _id_from_html(html: str, kind: str) -> int | None:
    head = html[:_HEAD_BYTES]
    for pattern in _HEAD_PATTERNS[kind]:
        match = pattern.search(head)
        if match:
            return int(match.group(1))
    return None


def _render_comment_ids(html: str) -> tuple[int | None, int | None]:
    """``action=render`` fragments start with ``<!-- <url-encoded fetch URL> <timestamp> -->``."""
    if not html.startswith("<!--"):
        return None, None
    comment = unquote(html[: html.find("-->")])
    curid, oldid = _CURID.search(comment), _OLDID.search(comment)
    return (int(curid.group(1)) if curid else None, int(oldid.group(1)) if oldid else None)


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("%s is not valid UTF-8; undecodable bytes replaced", source)
        return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class UnreadablePage:
    """A listed page whose file cannot be used (truncated JSON, an API error saved instead of a page)."""

    title: str
    source: str
    reason: str


def _html_of_parse_json(text: str, source: str) -> tuple[str, int | None, int | None]:
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise SavedPagesError(f"{source} is not JSON ({reason}): truncated?") from None
    parse = body.get("parse") if isinstance(body, dict) else None
    if not isinstance(parse, dict):
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code, info = str(error.get("code", "unknown")), str(error.get("info", ""))
            raise SavedPagesError(f"{source} holds an API error ({code}: {info[:200]}), not a page")
        raise SavedPagesError(f"{source} has no 'parse' object: not an action=parse response")
    html = parse.get("text")
    html = html.get("*") if isinstance(html, dict) else html
    if not isinstance(html, str):
        raise SavedPagesError(f"{source} has no page text (parse.text)")
    return html, _int(str(parse.get("pageid", ""))), _int(str(parse.get("revid", "")))


def _page(
    *, title: str, data: bytes, source: str, page_id: int | None, revision_id: int | None, format: str
) -> SavedPage:
    text = _decode(data, source)
    if source.endswith(".json"):
        html, json_page_id, json_revision_id = _html_of_parse_json(text, source)
        page_id, revision_id = page_id or json_page_id, revision_id or json_revision_id
    else:
        html = text
    render_page_id, render_revision_id = _render_comment_ids(html)
    return SavedPage(
        title=title,
        html=html,
        page_id=page_id or render_page_id or _id_from_html(html, "page_id"),
        revision_id=revision_id or render_revision_id or _id_from_html(html, "revision_id"),
        source=source,
        format=format,
    )


def _manifest_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def _page_rows(root: Path) -> list[dict[str, str]]:
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise SavedPagesError(f"{root} has no {MANIFEST}: not a folder of saved Wikipedia pages")
    rows = _manifest_rows(manifest.read_text(encoding="utf-8"))
    return [row for row in rows if row["file"].startswith("pages/")]


def _id_from_notes(row: dict[str, str], pattern: re.Pattern[str]) -> int | None:
    match = pattern.search(row.get("notes") or "")
    return int(match.group(1)) if match else None


def _bulk_manifest(archive: Path) -> dict[str, dict[str, str]]:
    # The manifest is the archive's last member: one streaming pass to find it, a second for the pages.
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            if member.name == BULK_MANIFEST:
                rows = _manifest_rows(_decode(tar.extractfile(member).read(), BULK_MANIFEST))
                return {f"bulk/{row['file']}": row for row in rows}
    raise SavedPagesError(f"{archive} has no {BULK_MANIFEST}")


def _iter_bulk(archive: Path) -> Iterator[SavedPage]:
    rows = _bulk_manifest(archive)
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            row = rows.get(member.name)
            if row is None or not member.isfile():
                continue
            yield _page(
                title=row["title"],
                data=tar.extractfile(member).read(),
                source=f"{BULK_ARCHIVE}:{member.name}",
                page_id=_int(row.get("pageid")),
                revision_id=_int(row.get("revid")),
                format="bulk",
            )


def iter_saved_pages(
    root: Path, *, include_bulk: bool = False, unreadable: list[UnreadablePage] | None = None
) -> Iterator[SavedPage]:
    """Every saved article of ``root`` in manifest order, then (optionally) the bulk archive's.

    A page whose file cannot be used raises ``SavedPagesError``, or, given an ``unreadable`` list, is
    appended there and skipped (the mirror then answers that page with an error).
    """
    root = Path(root)
    for row in _page_rows(root):
        path = root / row["file"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SavedPagesError(f"cannot read {path}: {exc.strerror}") from None
        captured = _REVID_CAPTURED.search(row.get("captured") or "")
        try:
            yield _page(
                title=row["title"],
                data=data,
                source=row["file"],
                page_id=_id_from_notes(row, _CURID),
                revision_id=int(captured.group(1)) if captured else None,
                format=row.get("format") or "other",
            )
        except SavedPagesError as exc:
            if unreadable is None:
                raise
            log.warning("unreadable saved page %r: %s", row["title"], exc)
            unreadable.append(UnreadablePage(title=row["title"], source=row["file"], reason=str(exc)))
    if include_bulk:
        archive = root / BULK_ARCHIVE
        if not archive.is_file():
            raise SavedPagesError(f"{root} has no {BULK_ARCHIVE}")
        yield from _iter_bulk(archive)


def saved_titles(root: Path) -> list[str]:
    """The titles of ``pages/`` without reading the pages (for title sources and limits)."""
    return [row["title"] for row in _page_rows(Path(root))]
