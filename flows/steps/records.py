"""From a rendered page to the records ``db.articles`` writes, and the counts a scrape reports."""

from __future__ import annotations

from dataclasses import dataclass, fields
from urllib.parse import quote

from db.articles import PageRecord, PageWriteResult, ReferenceRecord
from flows.mediawiki.extract import ExtractedReference, extract_page


def article_url(wiki: str, title: str) -> str:
    return f"https://{wiki}/wiki/{quote(title.replace(' ', '_'), safe='/:(),!*@$;')}"


def reference_record(reference: ExtractedReference) -> ReferenceRecord:
    return ReferenceRecord(
        text=reference.text,
        urls=reference.urls,
        archive_url=reference.archive_url,
        doi=reference.doi,
        pmid=reference.pmid,
        isbn=reference.isbn,
        cited_title=reference.cited_title,
        date=reference.date,
    )


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

    ``short_description`` is the one the API gave with the page, if any; else the page's own is kept.
    """
    extracted = extract_page(html)
    return PageRecord(
        wiki=wiki,
        title=title,
        page_id=page_id,
        revision_id=revision_id,
        url=article_url(wiki, title),
        references=tuple(reference_record(ref) for ref in extracted.references),
        redirects=tuple(redirects),
        lead=extracted.lead,
        short_description=short_description or extracted.short_description,
    )


@dataclass
class WriteCounts:
    """What a load or scrape wrote: articles by outcome, references added and removed."""

    articles_new: int = 0
    articles_updated: int = 0
    articles_unchanged: int = 0
    references_added: int = 0
    references_removed: int = 0

    def add(self, result: PageWriteResult) -> None:
        setattr(self, f"articles_{result.status}", getattr(self, f"articles_{result.status}") + 1)
        self.references_added += result.references_added
        self.references_removed += result.references_removed

    def merge(self, other: WriteCounts) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @property
    def articles(self) -> int:
        return self.articles_new + self.articles_updated + self.articles_unchanged
