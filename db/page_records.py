"""The records a scrape writes: one article with its references, and what writing it did."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

WriteStatus = Literal["new", "updated", "unchanged", "quarantined", "older"]
REFERENCE_FIELDS = ("text", "urls", "archive_url", "doi", "pmid", "isbn", "cited_title", "date")


def content_hash(text: str) -> str:
    """The hash stored with a reference (sha256 hex of its clean text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReferenceRecord:
    """One reference as written: clean text plus parsed fields."""

    text: str
    urls: tuple[str, ...] = ()
    archive_url: str | None = None
    doi: str | None = None
    pmid: str | None = None
    isbn: str | None = None
    cited_title: str | None = None
    date: str | None = None

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)

    def values(self) -> dict[str, object]:
        return {name: list(self.urls) if name == "urls" else getattr(self, name) for name in REFERENCE_FIELDS}


@dataclass(frozen=True)
class PageRecord:
    """One article as written: natural key (wiki, title), ids, its references in page order, and its lead."""

    wiki: str
    title: str
    page_id: int | None = None
    revision_id: int | None = None
    url: str | None = None
    references: tuple[ReferenceRecord, ...] = ()
    redirects: tuple[str, ...] = ()  # titles that redirected here; stored as the union over scrapes
    lead: str | None = None  # paragraphs before the first heading; None: the page has none
    short_description: str | None = None
    problem: str | None = None  # why the body could not be read (undecodable, not HTML), found at extraction

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "problem": None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PageRecord:
        references = tuple(
            ReferenceRecord(**{**ref, "urls": tuple(ref.get("urls") or ())}) for ref in data["references"]
        )
        fields = {
            key: value for key, value in data.items() if key not in ("references", "redirects", "problem")
        }
        return cls(**fields, references=references, redirects=tuple(data.get("redirects") or ()))


@dataclass(frozen=True)
class PageWriteResult:
    article_id: int
    status: WriteStatus
    references_added: int = 0
    references_removed: int = 0
    references_kept: int = 0
    reason: str | None = None  # why the revision was quarantined, or skipped as older
    quarantine_cleared: bool = False
    title: str = ""
