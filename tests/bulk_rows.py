"""What the batched and the per-article write paths must agree on: every row but ids and timestamps."""

from __future__ import annotations

from sqlalchemy import Engine, text

from wikiref.db.page_records import PageWriteResult


def stored_rows(engine: Engine) -> dict[str, list[tuple]]:
    """Articles, references, quarantined revisions and history, keyed by title and position, without ids or
    timestamps (only whether each timestamp is set)."""
    with engine.connect() as connection:
        articles = connection.execute(
            text(
                "SELECT wiki, title, page_id, revision_id, url, redirects, lead, short_description, "
                "lead_extracted, status, redirect_target, fetched_at IS NOT NULL, status_changed_at IS NOT NULL "
                "FROM articles ORDER BY wiki, title"
            )
        ).all()
        references = connection.execute(
            text(
                "SELECT a.wiki, a.title, r.position, r.text, r.content_hash, r.urls, r.archive_url, r.doi, "
                "r.pmid, r.isbn, r.cited_title, r.date, r.added_revision_id, r.added_at IS NOT NULL "
                "FROM article_references r JOIN articles a ON a.id = r.article_id "
                "ORDER BY a.wiki, a.title, r.position"
            )
        ).all()
        quarantine = connection.execute(
            text(
                "SELECT a.wiki, a.title, q.revision_id, q.reason, q.page "
                "FROM quarantined_revisions q JOIN articles a ON a.id = q.article_id ORDER BY a.wiki, a.title"
            )
        ).all()
        history = connection.execute(
            text(
                "SELECT a.title, h.position, h.text, h.added_revision_id, h.last_seen_revision_id, "
                "h.removed_revision_id FROM reference_history h JOIN articles a ON a.id = h.article_id "
                "ORDER BY a.title, h.position, h.text"
            )
        ).all()
    return {
        "articles": [tuple(row) for row in articles],
        "references": [tuple(row) for row in references],
        "quarantine": [tuple(row) for row in quarantine],
        "history": [tuple(row) for row in history],
    }


def outcome(result: PageWriteResult) -> tuple:
    """A write's result without the article id."""
    return (
        result.title,
        result.status,
        result.references_added,
        result.references_removed,
        result.references_kept,
        result.reason,
        result.quarantine_cleared,
    )
