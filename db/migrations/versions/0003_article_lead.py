"""article lead and short description, the article-text recipe of each model version, SQL functions that
serve title + lead

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 04:30:00

Design notes (why, not what):

* ``articles.lead`` stays NULL until the next scrape or refresh extracts it; no row is lost or rewritten here. A
  revision check alone would never re-fetch an article whose revision did not change, so the rows that exist now
  get ``lead_extracted = false`` (new rows: true) and ``wikiref.db.articles.stored_revisions`` leaves them out: the next
  scrape fetches each of them once, whatever its revision, and fills the lead.
* ``model_versions.article_text`` names the ``wikiref.models.article_text.ArticleTextRecipe`` a version was trained with
  and is embedded and served with. Every version that exists now was trained on titles: ``title``.
* The article embeddings stay in ``title_embeddings`` (one row per version and article; the name predates leads).
  Its ``title`` column is the label of what was encoded: the title for a ``title`` version, the title plus an
  md5 of the lead otherwise (``wikiref.db.embeddings``), so a lead edit re-embeds the article for versions that read the
  lead and for no other; the SQL functions below need no change to serve title + lead.
* ``similar_articles`` and ``articles_for_reference`` return the lead as a last column (their result type
  changes, so they are dropped and created; arguments unchanged). ``search_text`` also matches the article's
  title and lead (GIN index ``ix_articles_text_fts``): a reference's lexical score is its own text's rank plus
  its article's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ARTICLE_DOCUMENT = "to_tsvector('english', title || ' ' || coalesce(lead, ''))"

FUNCTIONS = r"""
DROP FUNCTION wikiref.similar_articles(text, integer, text);
DROP FUNCTION wikiref.articles_for_reference(bigint, integer, text);

COMMENT ON FUNCTION wikiref.similar_references(text, integer, text) IS
    'The k references (of any article) most similar to an article''s text (title, and lead when the version '
    'was trained with it).';

CREATE FUNCTION wikiref.similar_articles(title text, k integer DEFAULT 10, model_version text DEFAULT NULL)
RETURNS TABLE (article_id bigint, article_title text, similarity double precision, article_lead text)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    article bigint;
BEGIN
    PERFORM wikiref.check_k(k);
    version := wikiref.resolve_version(model_version);
    article := wikiref.find_article(title);
    PERFORM wikiref.set_ef_search(version, k);
    RETURN QUERY
        SELECT n.id, a.title, 1 - n.distance, a.lead
          FROM wikiref.nearest(wikiref.title_embedding(article, version), k, version, 'articles', article) n
          JOIN public.articles a ON a.id = n.id
         ORDER BY n.distance, n.id;
END
$$;
COMMENT ON FUNCTION wikiref.similar_articles(text, integer, text) IS
    'The k other articles whose text (title, and lead when the version was trained with it) is most similar '
    'to this one''s, with their leads.';

CREATE FUNCTION wikiref.articles_for_reference(reference_id bigint, k integer DEFAULT 10,
                                               model_version text DEFAULT NULL)
RETURNS TABLE (article_id bigint, article_title text, similarity double precision, is_own_article boolean,
               article_lead text)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    own bigint;
    query vector;
BEGIN
    PERFORM wikiref.check_k(k);
    version := wikiref.resolve_version(model_version);
    SELECT r.article_id INTO own FROM public.article_references r WHERE r.id = articles_for_reference.reference_id;
    IF own IS NULL THEN
        RAISE EXCEPTION 'unknown reference id: %', articles_for_reference.reference_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT e.embedding INTO query FROM public.reference_embeddings e
     WHERE e.model_version_id = version AND e.reference_id = articles_for_reference.reference_id;
    IF query IS NULL THEN
        RAISE EXCEPTION 'reference % has no embedding in model version %', articles_for_reference.reference_id,
            (SELECT mv.name FROM public.model_versions mv WHERE mv.id = version)
            USING ERRCODE = 'no_data_found', HINT = 'run `wikiref embed` for that version';
    END IF;
    PERFORM wikiref.set_ef_search(version, k);
    RETURN QUERY
        SELECT n.id, a.title, 1 - n.distance, n.id = own, a.lead
          FROM wikiref.nearest(query, k, version, 'articles') n
          JOIN public.articles a ON a.id = n.id
         ORDER BY n.distance, n.id;
END
$$;
COMMENT ON FUNCTION wikiref.articles_for_reference(bigint, integer, text) IS
    'The k articles a reference most likely belongs to (reference embedding vs article embeddings: title, and '
    'lead when the version was trained with it), with their leads.';

CREATE OR REPLACE FUNCTION wikiref.search_text(query text, query_embedding vector DEFAULT NULL, k integer DEFAULT 10,
                                    model_version text DEFAULT NULL, candidates integer DEFAULT 100,
                                    rrf_k integer DEFAULT 60)
RETURNS TABLE (reference_id bigint, article_title text, reference_text text, score double precision,
               text_rank integer, vector_rank integer, similarity double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    tsq tsquery;
    depth integer;
BEGIN
    PERFORM wikiref.check_k(k);
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'the search text is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    depth := greatest(coalesce(candidates, 100), k);
    tsq := websearch_to_tsquery('english', query);
    IF query_embedding IS NOT NULL THEN
        IF vector_dims(query_embedding) <> 384 THEN
            RAISE EXCEPTION 'the query embedding must have 384 dimensions, got %', vector_dims(query_embedding)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        version := wikiref.resolve_version(model_version);
        PERFORM wikiref.set_ef_search(version, least(depth, 1000));
    END IF;
    -- Reciprocal rank fusion: score = sum over both lists of 1 / (rrf_k + rank). Ranks, not raw scores, are
    -- fused because ts_rank_cd and cosine similarity live on incomparable scales. The lexical list holds the
    -- references whose own text matches and those of articles whose title or lead matches; a reference scores
    -- its text's rank plus its article's, so the references that match themselves come first.
    RETURN QUERY
        WITH article_matches AS (
            SELECT a.id, ts_rank_cd(to_tsvector('english', a.title || ' ' || coalesce(a.lead, '')), tsq) AS rank
              FROM public.articles a
             WHERE to_tsvector('english', a.title || ' ' || coalesce(a.lead, '')) @@ tsq
        ), matches AS (
            SELECT r.id, ts_rank_cd(to_tsvector('english', r.text), tsq) AS rank
              FROM public.article_references r
             WHERE to_tsvector('english', r.text) @@ tsq
            UNION ALL
            SELECT r.id, m.rank
              FROM article_matches m JOIN public.article_references r ON r.article_id = m.id
        ), lexical AS (
            SELECT x.id, row_number() OVER (ORDER BY sum(x.rank) DESC, x.id)::integer AS rank
              FROM matches x
             GROUP BY x.id
             ORDER BY rank
             LIMIT depth
        ), semantic AS (
            SELECT n.id, n.distance, row_number() OVER (ORDER BY n.distance, n.id)::integer AS rank
              FROM wikiref.nearest(query_embedding, least(depth, 1000), version, 'references') n
             WHERE query_embedding IS NOT NULL
        ), fused AS (
            SELECT coalesce(l.id, s.id) AS id, l.rank AS text_rank, s.rank AS vector_rank,
                   coalesce(1.0 / (rrf_k + l.rank), 0) + coalesce(1.0 / (rrf_k + s.rank), 0) AS score,
                   1 - s.distance AS similarity
              FROM lexical l FULL JOIN semantic s ON s.id = l.id
        )
        SELECT f.id, a.title, r.text, f.score::double precision, f.text_rank, f.vector_rank, f.similarity
          FROM fused f
          JOIN public.article_references r ON r.id = f.id
          JOIN public.articles a ON a.id = r.article_id
         ORDER BY f.score DESC, f.id
         LIMIT k;
END
$$;
COMMENT ON FUNCTION wikiref.search_text(text, vector, integer, text, integer, integer) IS
    'Free-text search over references: full-text candidates (the reference''s text, its article''s title and '
    'lead) fused with the nearest references to query_embedding (when given) by reciprocal rank fusion.';
"""

PREVIOUS_FUNCTIONS = r"""
DROP FUNCTION wikiref.similar_articles(text, integer, text);
DROP FUNCTION wikiref.articles_for_reference(bigint, integer, text);
DROP FUNCTION wikiref.search_text(text, vector, integer, text, integer, integer);
COMMENT ON FUNCTION wikiref.similar_references(text, integer, text) IS
    'The k references (of any article) most similar to an article title.';

CREATE FUNCTION wikiref.similar_articles(title text, k integer DEFAULT 10, model_version text DEFAULT NULL)
RETURNS TABLE (article_id bigint, article_title text, similarity double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    article bigint;
BEGIN
    PERFORM wikiref.check_k(k);
    version := wikiref.resolve_version(model_version);
    article := wikiref.find_article(title);
    PERFORM wikiref.set_ef_search(version, k);
    RETURN QUERY
        SELECT n.id, a.title, 1 - n.distance
          FROM wikiref.nearest(wikiref.title_embedding(article, version), k, version, 'articles', article) n
          JOIN public.articles a ON a.id = n.id
         ORDER BY n.distance, n.id;
END
$$;
COMMENT ON FUNCTION wikiref.similar_articles(text, integer, text) IS
    'The k other articles whose titles are most similar to this one''s.';

CREATE FUNCTION wikiref.articles_for_reference(reference_id bigint, k integer DEFAULT 10,
                                               model_version text DEFAULT NULL)
RETURNS TABLE (article_id bigint, article_title text, similarity double precision, is_own_article boolean)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    own bigint;
    query vector;
BEGIN
    PERFORM wikiref.check_k(k);
    version := wikiref.resolve_version(model_version);
    SELECT r.article_id INTO own FROM public.article_references r WHERE r.id = articles_for_reference.reference_id;
    IF own IS NULL THEN
        RAISE EXCEPTION 'unknown reference id: %', articles_for_reference.reference_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT e.embedding INTO query FROM public.reference_embeddings e
     WHERE e.model_version_id = version AND e.reference_id = articles_for_reference.reference_id;
    IF query IS NULL THEN
        RAISE EXCEPTION 'reference % has no embedding in model version %', articles_for_reference.reference_id,
            (SELECT mv.name FROM public.model_versions mv WHERE mv.id = version)
            USING ERRCODE = 'no_data_found', HINT = 'run `wikiref embed` for that version';
    END IF;
    PERFORM wikiref.set_ef_search(version, k);
    RETURN QUERY
        SELECT n.id, a.title, 1 - n.distance, n.id = own
          FROM wikiref.nearest(query, k, version, 'articles') n
          JOIN public.articles a ON a.id = n.id
         ORDER BY n.distance, n.id;
END
$$;
COMMENT ON FUNCTION wikiref.articles_for_reference(bigint, integer, text) IS
    'The k articles a reference most likely belongs to (reference embedding vs title embeddings).';

CREATE FUNCTION wikiref.search_text(query text, query_embedding vector DEFAULT NULL, k integer DEFAULT 10,
                                    model_version text DEFAULT NULL, candidates integer DEFAULT 100,
                                    rrf_k integer DEFAULT 60)
RETURNS TABLE (reference_id bigint, article_title text, reference_text text, score double precision,
               text_rank integer, vector_rank integer, similarity double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    tsq tsquery;
    depth integer;
BEGIN
    PERFORM wikiref.check_k(k);
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'the search text is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    depth := greatest(coalesce(candidates, 100), k);
    tsq := websearch_to_tsquery('english', query);
    IF query_embedding IS NOT NULL THEN
        IF vector_dims(query_embedding) <> 384 THEN
            RAISE EXCEPTION 'the query embedding must have 384 dimensions, got %', vector_dims(query_embedding)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        version := wikiref.resolve_version(model_version);
        PERFORM wikiref.set_ef_search(version, least(depth, 1000));
    END IF;
    -- Reciprocal rank fusion: score = sum over both lists of 1 / (rrf_k + rank). Ranks, not raw scores, are
    -- fused because ts_rank_cd and cosine similarity live on incomparable scales.
    RETURN QUERY
        WITH lexical AS (
            SELECT r.id, row_number() OVER (ORDER BY ts_rank_cd(to_tsvector('english', r.text), tsq) DESC, r.id)::integer AS rank
              FROM public.article_references r
             WHERE to_tsvector('english', r.text) @@ tsq
             ORDER BY rank
             LIMIT depth
        ), semantic AS (
            SELECT n.id, n.distance, row_number() OVER (ORDER BY n.distance, n.id)::integer AS rank
              FROM wikiref.nearest(query_embedding, least(depth, 1000), version, 'references') n
             WHERE query_embedding IS NOT NULL
        ), fused AS (
            SELECT coalesce(l.id, s.id) AS id, l.rank AS text_rank, s.rank AS vector_rank,
                   coalesce(1.0 / (rrf_k + l.rank), 0) + coalesce(1.0 / (rrf_k + s.rank), 0) AS score,
                   1 - s.distance AS similarity
              FROM lexical l FULL JOIN semantic s ON s.id = l.id
        )
        SELECT f.id, a.title, r.text, f.score::double precision, f.text_rank, f.vector_rank, f.similarity
          FROM fused f
          JOIN public.article_references r ON r.id = f.id
          JOIN public.articles a ON a.id = r.article_id
         ORDER BY f.score DESC, f.id
         LIMIT k;
END
$$;
COMMENT ON FUNCTION wikiref.search_text(text, vector, integer, text, integer, integer) IS
    'Free-text search over references: full-text (tsvector) candidates fused with the nearest references to '
    'query_embedding (when given) by reciprocal rank fusion.';
"""


def upgrade() -> None:
    op.add_column(
        "articles",
        sa.Column(
            "lead", sa.Text(), nullable=True, comment="Paragraphs before the first heading, clean text"
        ),
    )
    op.add_column(
        "articles",
        sa.Column("short_description", sa.Text(), nullable=True, comment="The wiki's short description"),
    )
    # Existing rows: false (their lead was never extracted); rows written from now on: true.
    op.add_column(
        "articles",
        sa.Column(
            "lead_extracted",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
            comment="false: stored before leads were extracted; the next scrape re-fetches it whatever its revision",
        ),
    )
    op.alter_column("articles", "lead_extracted", server_default=sa.true())
    op.add_column(
        "model_versions",
        sa.Column(
            "article_text",
            sa.Text(),
            server_default="title",
            nullable=False,
            comment="ArticleTextRecipe name the version was trained, is embedded and served with",
        ),
    )
    op.create_index("ix_articles_text_fts", "articles", [sa.text(ARTICLE_DOCUMENT)], postgresql_using="gin")
    op.execute(FUNCTIONS)


def downgrade() -> None:
    op.execute(PREVIOUS_FUNCTIONS)
    op.drop_index("ix_articles_text_fts", table_name="articles")
    op.drop_column("model_versions", "article_text")
    op.drop_column("articles", "lead_extracted")
    op.drop_column("articles", "short_description")
    op.drop_column("articles", "lead")
