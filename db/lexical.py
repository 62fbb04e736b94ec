"""The lexical index's BM25 statistics (migration 0008): documents per lexeme, corpus size and average length.

The lexemes themselves are generated columns, current with every write; the statistics are rebuilt only when the
rows changed since the last rebuild (counted by triggers) exceed ``max_drift`` of a corpus, so that a scrape
never pays for a rebuild it does not need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

DEFAULT_MAX_DRIFT = 0.1
"""Rebuild a corpus's statistics once this share of its documents changed since the last rebuild."""


@dataclass(frozen=True)
class LexicalRefresh:
    corpus: str
    documents: int
    changed: int
    rebuilt: bool


def refresh_lexical_statistics(
    *, session: Session, max_drift: float = DEFAULT_MAX_DRIFT
) -> list[LexicalRefresh]:
    """Rebuild the statistics of each corpus (references, articles) that drifted past ``max_drift``; commit."""
    rows = session.execute(
        text("SELECT corpus, documents, changed, rebuilt FROM wikiref.refresh_lexical_statistics(:drift)"),
        {"drift": max_drift},
    ).all()
    session.commit()
    refreshes = [LexicalRefresh(row.corpus, row.documents or 0, row.changed, row.rebuilt) for row in rows]
    for refresh in refreshes:
        if refresh.rebuilt:
            log.info(
                "rebuilt the BM25 statistics of %s: %d documents (%d changed since the last rebuild)",
                refresh.corpus,
                refresh.documents,
                refresh.changed,
            )
    return refreshes
