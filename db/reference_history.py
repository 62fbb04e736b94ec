"""The history of removed references: pruning the embeddings kept with it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session


def prune_history_embeddings(*, session: Session, older_than: datetime | None = None) -> int:
    """Delete the embeddings of history references removed before ``older_than`` (all of them with None)."""
    query = text(
        "DELETE FROM reference_history_embeddings e USING reference_history h "
        "WHERE h.id = e.reference_id AND (CAST(:before AS timestamptz) IS NULL OR h.removed_at < :before)"
    )
    deleted = session.execute(query, {"before": older_than}).rowcount
    session.commit()
    return deleted
