"""The revision policy: whether a new revision may replace an article's stored references."""

from __future__ import annotations

import re
from dataclasses import dataclass

from wikiref.db.page_records import PageRecord, ReferenceRecord


@dataclass(frozen=True)
class RevisionChecks:
    """Limits a new revision must keep to before it replaces the stored references."""

    max_shrink: float = 0.5  # share of the stored references a new revision may drop
    max_debris: float = 0.2  # share of its reference texts that may look like markup debris

    def __post_init__(self) -> None:
        for name in ("max_shrink", "max_debris"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be at least 0 and below 1, got {getattr(self, name)}")


# Markup that survived as text: runs of brackets or pipes, tags, template or link syntax, placeholder text.
_DEBRIS = re.compile(
    r"[<>{}\[\]|]{3,}|</?[a-z][a-z0-9]*[\s>/]|\{\{|\}\}|\[\[|\]\]|lorem ipsum", re.IGNORECASE
)
_LETTER = re.compile(r"[^\W\d_]")


def looks_like_debris(reference: ReferenceRecord) -> bool:
    """True for a reference that is markup or filler rather than a citation. A bare link (text ``[1]``)
    is a citation: its URL is what it cites."""
    if _DEBRIS.search(reference.text):
        return True
    cites_something = reference.urls or reference.doi or reference.pmid or reference.isbn
    return len(_LETTER.findall(reference.text)) < 3 and not cites_something


def revision_problem(stored_count: int, page: PageRecord, checks: RevisionChecks) -> str | None:
    """Why ``page`` must not replace an article that has ``stored_count`` references, or None if it may."""
    if page.problem:
        return page.problem
    count = len(page.references)
    if stored_count and count == 0:
        return f"reference list gone: {stored_count} stored, none in the new revision"
    if stored_count and count < stored_count * (1 - checks.max_shrink):
        return (
            f"reference list shrank from {stored_count} to {count} "
            f"(more than the {checks.max_shrink:.0%} allowed)"
        )
    debris = [ref.text for ref in page.references if looks_like_debris(ref)]
    if debris and len(debris) > checks.max_debris * count:
        return f"{len(debris)} of {count} reference texts look like markup, not references (e.g. {debris[0][:40]!r})"
    return None


def older_revision(stored_revision_id: int | None, page: PageRecord) -> str | None:
    """Why ``page`` must not replace the stored revision because it is an older one, or None.

    MediaWiki's revision ids only grow, so a lower id is an earlier edit: from a stale dump, a mirror or a
    lagging replica. It never overwrites a newer stored revision, whatever its source, checks or not.
    """
    if stored_revision_id is None or page.revision_id is None or page.revision_id >= stored_revision_id:
        return None
    return f"revision {page.revision_id} is older than the stored {stored_revision_id}"
