"""Tables, as SQLAlchemy 2.0 typed models. Migrations in ``db/migrations`` create them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

EMBEDDING_DIM = 384
# Element type of a version's HNSW indexes (migration 0007): float4, or half precision on the same column.
STORAGES = ("vector", "halfvec")
# hnsw.ef_search of a version whose embed run recorded none: WIKIREF_HNSW_EF_SEARCH defaults to it, and migration
# 0013 made it the column default and wikiref.set_ef_search's fallback (docs/scaling.md measured 100 / 200 / 400).
DEFAULT_EF_SEARCH = 200
# pgvector's ceiling of hnsw.ef_search: no index scan returns more rows in order.
MAX_EF_SEARCH = 1000
# superseded: was active, still queryable by explicit version; retired: its embeddings are dropped.
MODEL_STATUSES = ("candidate", "active", "superseded", "retired")
# current: the wiki serves it; deleted: the wiki has no such page; redirect: the title now redirects elsewhere.
ARTICLE_STATUSES = ("current", "deleted", "redirect")
CORPUS_SOURCE_KINDS = ("titles", "category", "list_page", "top", "dump")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Article(Base):
    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("wiki", "title"),
        CheckConstraint(f"status IN {ARTICLE_STATUSES}", name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    wiki: Mapped[str] = mapped_column(Text, comment="Host of the wiki, e.g. en.wikipedia.org")
    title: Mapped[str] = mapped_column(Text)
    page_id: Mapped[int | None] = mapped_column(BigInteger)
    revision_id: Mapped[int | None] = mapped_column(BigInteger)
    url: Mapped[str | None] = mapped_column(Text)
    redirects: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'"), comment="Titles that redirect here"
    )
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # --- lead (migration 0003) ---
    lead: Mapped[str | None] = mapped_column(Text, comment="Paragraphs before the first heading, clean text")
    short_description: Mapped[str | None] = mapped_column(Text, comment="The wiki's short description")
    lead_extracted: Mapped[bool] = mapped_column(
        Boolean,
        server_default=sa.true(),
        comment="false: stored before leads were extracted; the next scrape re-fetches it whatever its revision",
    )
    status: Mapped[str] = mapped_column(Text, server_default="current", comment=str(ARTICLE_STATUSES))
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    redirect_target: Mapped[str | None] = mapped_column(Text, comment="set when status = 'redirect'")
    # --- fusion (migration 0008): the words BM25 matches; deferred: no ORM load needs them ---
    lexemes: Mapped[Any] = mapped_column(
        TSVECTOR,
        sa.Computed("to_tsvector('english', title || ' ' || coalesce(lead, ''))", persisted=True),
        deferred=True,
        comment="the words BM25 matches (english configuration)",
    )


class ArticleReference(Base):
    """One item of an article's reference lists, as clean text with the fields parsed out of it."""

    __tablename__ = "article_references"
    __table_args__ = (
        UniqueConstraint("article_id", "position", deferrable=True, initially="DEFERRED"),
        Index(None, "content_hash"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, comment="0-based order on the page")
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(Text, comment="sha256 hex of text")
    urls: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=sa.text("'{}'"))
    archive_url: Mapped[str | None] = mapped_column(Text)
    doi: Mapped[str | None] = mapped_column(Text)
    pmid: Mapped[str | None] = mapped_column(Text)
    isbn: Mapped[str | None] = mapped_column(Text)
    cited_title: Mapped[str | None] = mapped_column(Text)
    date: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    added_revision_id: Mapped[int | None] = mapped_column(BigInteger)
    lexemes: Mapped[Any] = mapped_column(
        TSVECTOR,
        sa.Computed("to_tsvector('english', text)", persisted=True),
        deferred=True,
        comment="the words BM25 matches (english configuration)",
    )


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(f"status IN {MODEL_STATUSES}", name="status"),
        # At most one active version: switching is one transaction that retires/demotes the old one.
        Index(
            "uq_model_versions_one_active", "status", unique=True, postgresql_where=text("status = 'active'")
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    base_model: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="candidate")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    dataset_fingerprint: Mapped[str | None] = mapped_column(Text)
    dataset_counts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    metrics: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'"), comment="{'base': {...}, 'finetuned': {...}}"
    )
    loss_log: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'"))
    artifact_path: Mapped[str | None] = mapped_column(Text)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # 'title' (wikiref.models.article_text.TITLE_ONLY, which db/ may not import): what migration 0003 gave the
    # versions trained before leads were stored. Every version written since names its recipe.
    article_text: Mapped[str] = mapped_column(
        Text,
        server_default="title",
        comment="ArticleTextRecipe name the version was trained, is embedded and served with",
    )
    # The default (every version's weights until it has measured ones) lives in migration 0008 only.
    fusion_weights: Mapped[dict[str, dict[str, float]]] = mapped_column(
        JSONB,
        server_default=sa.FetchedValue(),
        comment="per SQL function, each signal's weight relative to the embeddings' in the fused score",
    )


class ReferenceEmbedding(Base):
    __tablename__ = "reference_embeddings"

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    reference_id: Mapped[int] = mapped_column(
        ForeignKey("article_references.id", ondelete="CASCADE"), primary_key=True
    )
    content_hash: Mapped[str] = mapped_column(Text, comment="hash of the text that was encoded")
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIM))


class TitleEmbedding(Base):
    __tablename__ = "title_embeddings"

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    title: Mapped[str] = mapped_column(Text, comment="the title that was encoded")
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIM))


# --- embed (migration 0002): embedding completeness per model version, full-text index ----------------------
# The per-version partial HNSW indexes are created at run time by wikiref.db.embeddings.build_indexes, so they are not
# declared here (see migrations/env.py, which keeps autogenerate from proposing to drop them).


class EmbeddingState(Base):
    """Whether a model version's embeddings are complete, hence servable by default (see migration 0002)."""

    __tablename__ = "embedding_states"
    __table_args__ = (
        CheckConstraint(f"ef_search BETWEEN 1 AND {MAX_EF_SEARCH}", name="ef_search"),
        CheckConstraint(f"storage IN {STORAGES}", name="storage"),
    )

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    hnsw_m: Mapped[int | None] = mapped_column(Integer, comment="m of the version's HNSW indexes")
    hnsw_ef_construction: Mapped[int | None] = mapped_column(Integer)
    ef_search: Mapped[int] = mapped_column(
        Integer,
        server_default=text(str(DEFAULT_EF_SEARCH)),
        comment="hnsw.ef_search the SQL functions use for this version",
    )
    storage: Mapped[str] = mapped_column(
        Text,
        server_default="vector",
        comment="vector or halfvec: the element type of the version's HNSW indexes",
    )
    references_embedded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    titles_embedded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        comment="set once every row had an embedding and the indexes existed; NULL: not servable yet",
    )
    hubness_articles: Mapped[int | None] = mapped_column(
        Integer,
        comment="articles the version had embedded when every reference's hubness was last computed (0019)",
    )


class ReferenceHubness(Base):
    """How close a reference sits to the articles in general: similar_references' hubness correction (0019)."""

    __tablename__ = "reference_hubness"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["model_version_id", "reference_id"],
            ["reference_embeddings.model_version_id", "reference_embeddings.reference_id"],
            ondelete="CASCADE",
        ),
    )

    model_version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    content_hash: Mapped[str] = mapped_column(
        Text, comment="content_hash of the embedding it was computed from"
    )
    hubness: Mapped[float] = mapped_column(
        sa.Float, comment="mean cosine of the reference to its 10 nearest articles in the version"
    )


# --- fusion (migration 0008): the lexical index and the BM25 statistics ------------------------------------
Index("ix_article_references_lexemes", ArticleReference.lexemes, postgresql_using="gin")
Index("ix_articles_lexemes", Article.lexemes, postgresql_using="gin")


class LexicalStatistics(Base):
    """Size and average length of a corpus (references or articles) when its BM25 statistics were rebuilt."""

    __tablename__ = "lexical_statistics"
    __table_args__ = (CheckConstraint("corpus IN ('references', 'articles')", name="corpus"),)

    corpus: Mapped[str] = mapped_column(Text, primary_key=True, comment="references or articles")
    documents: Mapped[int] = mapped_column(BigInteger)
    average_length: Mapped[float] = mapped_column(sa.Float, comment="distinct lexemes per document")
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LexemeDocuments(Base):
    """How many documents of a corpus hold a lexeme (BM25's document frequency), as of the last rebuild."""

    __tablename__ = "lexeme_documents"

    corpus: Mapped[str] = mapped_column(Text, primary_key=True)
    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    documents: Mapped[int] = mapped_column(Integer, comment="documents holding the lexeme")


class LexicalChange(Base):
    """Rows whose lexemes a statement changed (logged by triggers): the drift since the last rebuild."""

    __tablename__ = "lexical_changes"

    id: Mapped[int] = mapped_column(BigInteger, sa.Identity(), primary_key=True)
    corpus: Mapped[str] = mapped_column(Text)
    documents: Mapped[int] = mapped_column(BigInteger, comment="rows whose lexemes changed")
    logged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- corpus (migration 0005): corpus definitions, reference history, quarantined revisions --------------------


class Corpus(Base):
    """A named set of title sources that ``scrape-daily`` keeps fresh."""

    __tablename__ = "corpora"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    wiki: Mapped[str | None] = mapped_column(
        Text, comment="the wiki the corpus was defined on; NULL: the next refresh's"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_counts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))


class CorpusSource(Base):
    __tablename__ = "corpus_sources"
    __table_args__ = (
        CheckConstraint(f"kind IN {CORPUS_SOURCE_KINDS}", name="kind"),
        UniqueConstraint("corpus_id", "kind", "spec_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB, comment="the source's parameters, e.g. {name, depth}")
    spec_hash: Mapped[str] = mapped_column(Text, comment="sha256 of the spec as sorted-key JSON")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReferenceHistory(Base):
    """A reference no current revision cites: its fields, when it came and went, and in which revisions."""

    __tablename__ = "reference_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, comment="the id it had while current")
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, comment="0-based order on the page when removed")
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(Text)
    urls: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=sa.text("'{}'"))
    archive_url: Mapped[str | None] = mapped_column(Text)
    doi: Mapped[str | None] = mapped_column(Text)
    pmid: Mapped[str | None] = mapped_column(Text)
    isbn: Mapped[str | None] = mapped_column(Text)
    cited_title: Mapped[str | None] = mapped_column(Text)
    date: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    added_revision_id: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_revision_id: Mapped[int | None] = mapped_column(
        BigInteger, comment="the last revision citing it"
    )
    removed_revision_id: Mapped[int | None] = mapped_column(
        BigInteger, comment="the first revision without it"
    )
    removed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class ReferenceHistoryEmbedding(Base):
    __tablename__ = "reference_history_embeddings"

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    reference_id: Mapped[int] = mapped_column(
        ForeignKey("reference_history.id", ondelete="CASCADE"), primary_key=True
    )
    content_hash: Mapped[str] = mapped_column(Text)
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIM))


class QuarantinedRevision(Base):
    """A revision that failed the sanity checks: kept whole, not applied, until cleared or accepted."""

    __tablename__ = "quarantined_revisions"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    revision_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    page: Mapped[dict[str, Any]] = mapped_column(JSONB, comment="the revision as it would be written")
    quarantined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
