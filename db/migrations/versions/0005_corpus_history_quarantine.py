"""corpus definitions, reference history, quarantined revisions, article status

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02 04:15:00

Design notes (why, not what):

* History lives beside the current rows, not in them. A removed reference moves (same id, same fields) to
  ``reference_history`` and its embeddings to ``reference_history_embeddings``; ``article_references`` keeps
  only what the current revisions cite. So every existing reader (the similarity functions, the embed run's
  pending query, the training-pair reader) serves current references without a filter of its own, and the
  HNSW indexes hold no dead rows. Embeddings of history rows stay until a retention setting or an explicit
  prune deletes them.
* ``article_references.added_at`` / ``added_revision_id`` say when and in which revision a reference first
  appeared; existing rows get their article's ``fetched_at`` and ``revision_id``.
* A revision that fails the sanity checks is kept whole (JSON) in ``quarantined_revisions``, one pending
  revision per article, until a later good revision clears it or a user accepts it.
* ``wikiref.reference_changes(since, title)`` answers "what changed since a date".
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCE_KINDS = ("titles", "category", "list_page", "top", "dump")
ARTICLE_STATUSES = ("current", "deleted", "redirect")

FUNCTIONS = r"""
CREATE FUNCTION wikiref.reference_changes(since timestamptz, title text DEFAULT NULL)
RETURNS TABLE (article text, change text, revision_id bigint, changed_at timestamptz, reference_id bigint,
               reference text)
LANGUAGE sql STABLE AS $$
    SELECT a.title, 'added', r.added_revision_id, r.added_at, r.id, r.text
      FROM public.article_references r JOIN public.articles a ON a.id = r.article_id
     WHERE r.added_at >= since AND (reference_changes.title IS NULL OR a.title = reference_changes.title)
    UNION ALL
    SELECT a.title, 'added', h.added_revision_id, h.added_at, h.id, h.text
      FROM public.reference_history h JOIN public.articles a ON a.id = h.article_id
     WHERE h.added_at >= since AND (reference_changes.title IS NULL OR a.title = reference_changes.title)
    UNION ALL
    SELECT a.title, 'removed', h.removed_revision_id, h.removed_at, h.id, h.text
      FROM public.reference_history h JOIN public.articles a ON a.id = h.article_id
     WHERE h.removed_at >= since AND (reference_changes.title IS NULL OR a.title = reference_changes.title)
    ORDER BY 1, 4, 2, 5
$$;
COMMENT ON FUNCTION wikiref.reference_changes(timestamptz, text) IS
    'References added or removed since a time, per article, with the revision of the change.';
"""


def _reference_columns() -> list[sa.Column]:
    return [
        sa.Column("position", sa.Integer(), nullable=False, comment="0-based order on the page when removed"),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("urls", ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("archive_url", sa.Text()),
        sa.Column("doi", sa.Text()),
        sa.Column("pmid", sa.Text()),
        sa.Column("isbn", sa.Text()),
        sa.Column("cited_title", sa.Text()),
        sa.Column("date", sa.Text()),
    ]


def upgrade() -> None:
    op.create_table(
        "corpora",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True)),
        sa.Column("last_counts", JSONB(), server_default=sa.text("'{}'"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corpora")),
        sa.UniqueConstraint("name", name=op.f("uq_corpora_name")),
    )
    op.create_table(
        "corpus_sources",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("corpus_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("spec", JSONB(), nullable=False, comment="the source's parameters, e.g. {name, depth}"),
        sa.Column("spec_hash", sa.Text(), nullable=False, comment="sha256 of the spec as sorted-key JSON"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(f"kind IN {SOURCE_KINDS}", name=op.f("ck_corpus_sources_kind")),
        sa.ForeignKeyConstraint(
            ["corpus_id"],
            ["corpora.id"],
            name=op.f("fk_corpus_sources_corpus_id_corpora"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corpus_sources")),
        # A hash, not the spec itself: a long titles list exceeds what a btree index entry can hold.
        sa.UniqueConstraint(
            "corpus_id", "kind", "spec_hash", name=op.f("uq_corpus_sources_corpus_id_kind_spec_hash")
        ),
    )

    op.add_column(
        "articles",
        sa.Column(
            "status", sa.Text(), server_default="current", nullable=False, comment=str(ARTICLE_STATUSES)
        ),
    )
    op.add_column("articles", sa.Column("status_changed_at", sa.DateTime(timezone=True)))
    op.add_column("articles", sa.Column("redirect_target", sa.Text(), comment="set when status = 'redirect'"))
    op.create_check_constraint(op.f("ck_articles_status"), "articles", f"status IN {ARTICLE_STATUSES}")

    op.add_column(
        "article_references",
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )
    op.add_column("article_references", sa.Column("added_revision_id", sa.BigInteger()))
    op.execute(
        "UPDATE article_references r SET added_at = a.fetched_at, added_revision_id = a.revision_id "
        "FROM articles a WHERE a.id = r.article_id"
    )

    op.create_table(
        "reference_history",
        sa.Column("id", sa.BigInteger(), nullable=False, comment="the id the reference had while current"),
        sa.Column("article_id", sa.BigInteger(), nullable=False),
        *_reference_columns(),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_revision_id", sa.BigInteger()),
        sa.Column("last_seen_revision_id", sa.BigInteger(), comment="the last revision that cited it"),
        sa.Column("removed_revision_id", sa.BigInteger(), comment="the first revision without it"),
        sa.Column("removed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_reference_history_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_history")),
    )
    op.create_index(op.f("ix_reference_history_article_id"), "reference_history", ["article_id"])
    op.create_index(op.f("ix_reference_history_removed_at"), "reference_history", ["removed_at"])
    op.create_table(
        "reference_history_embeddings",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("reference_id", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("embedding", Vector(384), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_reference_history_embeddings_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reference_id"],
            ["reference_history.id"],
            name=op.f("fk_reference_history_embeddings_reference_id_reference_history"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "model_version_id", "reference_id", name=op.f("pk_reference_history_embeddings")
        ),
    )

    op.create_table(
        "quarantined_revisions",
        sa.Column("article_id", sa.BigInteger(), nullable=False),
        sa.Column("revision_id", sa.BigInteger()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("page", JSONB(), nullable=False, comment="the revision as it would be written"),
        sa.Column(
            "quarantined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_quarantined_revisions_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("article_id", name=op.f("pk_quarantined_revisions")),
    )
    op.execute(FUNCTIONS)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS wikiref.reference_changes(timestamptz, text)")
    op.drop_table("quarantined_revisions")
    op.drop_table("reference_history_embeddings")
    op.drop_table("reference_history")
    op.drop_column("article_references", "added_revision_id")
    op.drop_column("article_references", "added_at")
    op.drop_constraint(op.f("ck_articles_status"), "articles", type_="check")
    op.drop_column("articles", "redirect_target")
    op.drop_column("articles", "status_changed_at")
    op.drop_column("articles", "status")
    op.drop_table("corpus_sources")
    op.drop_table("corpora")
