"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 13:48:17.388383
"""

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    # Home of the SQL functions users call (later migrations); tables stay in public.
    op.execute("CREATE SCHEMA IF NOT EXISTS wikiref")
    op.create_table(
        "articles",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("wiki", sa.Text(), nullable=False, comment="Host of the wiki, e.g. en.wikipedia.org"),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("page_id", sa.BigInteger(), nullable=True),
        sa.Column("revision_id", sa.BigInteger(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column(
            "redirects",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
            comment="Titles that redirect here",
        ),
        sa.Column("fetched_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_articles")),
        sa.UniqueConstraint("wiki", "title", name=op.f("uq_articles_wiki_title")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("base_model", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="candidate", nullable=False),
        sa.Column(
            "params", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("dataset_fingerprint", sa.Text(), nullable=True),
        sa.Column(
            "dataset_counts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "metrics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
            comment="{'base': {...}, 'finetuned': {...}}",
        ),
        sa.Column(
            "loss_log",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
        sa.Column("artifact_path", sa.Text(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('candidate', 'active', 'superseded', 'retired')",
            name=op.f("ck_model_versions_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", name=op.f("uq_model_versions_name")),
    )
    op.create_index(
        "uq_model_versions_one_active",
        "model_versions",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "article_references",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("article_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, comment="0-based order on the page"),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False, comment="sha256 hex of text"),
        sa.Column("urls", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("archive_url", sa.Text(), nullable=True),
        sa.Column("doi", sa.Text(), nullable=True),
        sa.Column("pmid", sa.Text(), nullable=True),
        sa.Column("isbn", sa.Text(), nullable=True),
        sa.Column("cited_title", sa.Text(), nullable=True),
        sa.Column("date", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_article_references_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_article_references")),
        sa.UniqueConstraint(
            "article_id",
            "position",
            deferrable=True,
            initially="DEFERRED",
            name=op.f("uq_article_references_article_id_position"),
        ),
    )
    op.create_index(
        op.f("ix_article_references_content_hash"), "article_references", ["content_hash"], unique=False
    )
    op.create_table(
        "title_embeddings",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False, comment="the title that was encoded"),
        sa.Column("embedding", pgvector.sqlalchemy.vector.VECTOR(dim=384), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_title_embeddings_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_title_embeddings_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_version_id", "article_id", name=op.f("pk_title_embeddings")),
    )
    op.create_table(
        "reference_embeddings",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("reference_id", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False, comment="hash of the text that was encoded"),
        sa.Column("embedding", pgvector.sqlalchemy.vector.VECTOR(dim=384), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_reference_embeddings_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reference_id"],
            ["article_references.id"],
            name=op.f("fk_reference_embeddings_reference_id_article_references"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_version_id", "reference_id", name=op.f("pk_reference_embeddings")),
    )


def downgrade() -> None:
    op.drop_table("reference_embeddings")
    op.drop_table("title_embeddings")
    op.drop_index(op.f("ix_article_references_content_hash"), table_name="article_references")
    op.drop_table("article_references")
    op.drop_index(
        "uq_model_versions_one_active",
        table_name="model_versions",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_table("model_versions")
    op.drop_table("articles")
    op.execute("DROP SCHEMA IF EXISTS wikiref CASCADE")
