"""From a rendered page to the records the article writes take (``wikiref.db.page_records``), and the counts a
scrape reports."""

from __future__ import annotations

import itertools
import re
from collections.abc import Container, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import quote

from wikiref.db.page_records import PageRecord, PageWriteResult, ReferenceRecord
from wikiref.flows.mediawiki.extract import extract_page
from wikiref.flows.mediawiki.saved import SAVED_PAGES_WIKI, iter_saved_pages

PAGES_PER_BATCH = 50
"""Pages a load extracts and writes together (a dump's, saved pages'): one INSERT and one COPY per batch."""


def article_url(wiki: str, title: str) -> str:
    return f"https://{wiki}/wiki/{quote(title.replace(' ', '_'), safe='/:(),!*@$;')}"


_ELEMENT = re.compile(r"<[A-Za-z][^>]*>")


def body_problem(html: str) -> str | None:
    """Why a fetched body cannot be read as a rendered page, or None."""
    if not html.strip():
        return "empty body"
    undecodable = html.count("\ufffd")
    if undecodable:
        return f"body is not valid UTF-8 ({undecodable} undecodable bytes replaced)"
    if not _ELEMENT.search(html):
        return "body is not HTML (no element)"
    return None


def page_record(
    *,
    wiki: str,
    title: str,
    html: str,
    page_id: int | None,
    revision_id: int | None,
    redirects: tuple[str, ...] = (),
    short_description: str | None = None,
) -> PageRecord:
    """Extract the references and lead of ``html`` and wrap them with the article's identity.

    ``short_description`` is the one the API gave with the page, if any; else the page's own is kept. A body
    that cannot be read as a page gets no references and says why (``problem``), so that the write
    quarantines it rather than take it for a page without references.
    """
    problem = body_problem(html)
    references: tuple[ReferenceRecord, ...] = ()
    lead = description = None
    if problem is None:
        try:
            extracted = extract_page(html)
        except Exception as exc:  # any parser failure on a damaged body is a reason to quarantine
            problem = f"body does not parse ({type(exc).__name__}: {exc})"
        else:
            references = tuple(extracted.references)
            lead, description = extracted.lead, extracted.short_description
    return PageRecord(
        wiki=wiki,
        title=title,
        page_id=page_id,
        revision_id=revision_id,
        url=article_url(wiki, title),
        references=references,
        redirects=tuple(redirects),
        lead=lead,
        short_description=short_description or description,
        problem=problem,
    )


def saved_page_batches(
    root: Path, *, include_bulk: bool = False, titles: Container[str] | None = None
) -> Iterator[list[PageRecord]]:
    """The saved pages of ``root`` (only ``titles``, when given) as records, ``PAGES_PER_BATCH`` a list: what a
    load without HTTP writes (test databases, benchmarks), extracted as a scrape extracts them."""
    pages = iter_saved_pages(root, include_bulk=include_bulk)
    if titles is not None:
        pages = (page for page in pages if page.title in titles)
    while batch := list(itertools.islice(pages, PAGES_PER_BATCH)):
        yield [
            page_record(
                wiki=SAVED_PAGES_WIKI,
                title=page.title,
                html=page.html,
                page_id=page.page_id,
                revision_id=page.revision_id,
            )
            for page in batch
        ]


@dataclass
class WriteCounts:
    """What a load or scrape wrote: articles by outcome, references added and removed, quarantined pages."""

    articles_new: int = 0
    articles_updated: int = 0
    articles_unchanged: int = 0
    articles_quarantined: int = 0
    articles_older: int = 0
    quarantines_cleared: int = 0
    references_added: int = 0
    references_removed: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (title, reason)
    older: list[tuple[str, str]] = field(
        default_factory=list
    )  # (title, reason): skipped, the stored is newer

    def add(self, result: PageWriteResult) -> None:
        setattr(self, f"articles_{result.status}", getattr(self, f"articles_{result.status}") + 1)
        self.references_added += result.references_added
        self.references_removed += result.references_removed
        self.quarantines_cleared += result.quarantine_cleared
        if result.status == "quarantined":
            self.quarantined.append((result.title, result.reason or ""))
        elif result.status == "older":
            self.older.append((result.title, result.reason or ""))

    def merge(self, other: WriteCounts) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @property
    def articles(self) -> int:
        return (
            self.articles_new
            + self.articles_updated
            + self.articles_unchanged
            + self.articles_quarantined
            + self.articles_older
        )
