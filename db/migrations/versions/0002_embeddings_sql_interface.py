"""embedding state, full-text index and the SQL interface in schema wikiref

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 14:05:00

Design notes (why, not what):

* Completeness. A model version serves by default only once ``embedding_states.completed_at`` is set. The
  embed run sets it in one transaction that first proves nothing is pending (every reference and title has an
  embedding of the current text) and that the version's HNSW indexes exist. So a version being embedded is never
  served half-done, and the switch from one version to the next is the single commit of that row (or of the
  activation, if the new version was embedded before it was activated). ``completed_at`` is deliberately *not*
  cleared when a scrape adds rows: new rows are missing from every version alike until the next embed run, and
  clearing it would make the default flap back to an older model after every scrape.
* Serving version = among versions that are 'active' or 'superseded' (i.e. were activated and not retired) and
  complete, the active one, else the most recently activated. The previous version therefore keeps answering
  while a newly activated one is still being embedded, and stays queryable by name until it is retired.
* Indexes. One partial HNSW index per model version and table (``WHERE model_version_id = <id>``), created by
  ``wikiref.db.embeddings.build_indexes`` after the bulk load. Chosen over LIST partitioning per version because the
  tables of 0001 (and the registry's plain ``DELETE`` on retire) stay as they are, and a version's index is
  created and dropped independently. The price: the planner only uses a partial index when the query names the
  version as a constant, so the functions below run their nearest-neighbour query as dynamic SQL with the
  version id inlined as a literal (``wikiref.nearest_query``), never as a parameter of a cached generic plan.
* ``hnsw.ef_search``: each function has a ``SET`` clause so whatever it sets stays local to the call; the value
  is, by priority, the session's ``wikiref.ef_search``, the version's ``embedding_states.ef_search`` (written by
  the embed run from settings), 100; raised to at least k. ``hnsw.iterative_scan = relaxed_order`` lets the
  filtered queries (an article excluding itself) keep scanning until k rows pass the filter; results are
  re-sorted by exact distance afterwards, as pgvector advises for relaxed order.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = r"""
CREATE FUNCTION wikiref.serving_version() RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT mv.id
      FROM public.model_versions mv
      JOIN public.embedding_states s ON s.model_version_id = mv.id
     WHERE s.completed_at IS NOT NULL
       AND mv.status IN ('active', 'superseded')
     ORDER BY (mv.status = 'active') DESC, mv.activated_at DESC NULLS LAST, mv.id DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION wikiref.serving_version() IS
    'The model version queries use by default: the active one if its embeddings are complete, '
    'else the most recently activated complete one; NULL if none.';

CREATE FUNCTION wikiref.resolve_version(model_version text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found_id integer;
    found_status text;
BEGIN
    IF model_version IS NULL THEN
        found_id := wikiref.serving_version();
        IF found_id IS NULL THEN
            RAISE EXCEPTION 'no model version with complete embeddings to serve'
                USING ERRCODE = 'no_data_found',
                      HINT = 'run `wikiref embed` (after `wikiref train` or `wikiref models promote`)';
        END IF;
        RETURN found_id;
    END IF;
    SELECT mv.id, mv.status INTO found_id, found_status
      FROM public.model_versions mv WHERE mv.name = model_version;
    IF found_id IS NULL AND model_version ~ '^[0-9]{1,9}$' THEN
        SELECT mv.id, mv.status INTO found_id, found_status
          FROM public.model_versions mv WHERE mv.id = model_version::integer;
    END IF;
    IF found_id IS NULL THEN
        RAISE EXCEPTION 'unknown model version: %', model_version
            USING ERRCODE = 'no_data_found', HINT = 'list versions with `wikiref models list`';
    END IF;
    IF found_status = 'retired' THEN
        RAISE EXCEPTION 'model version % is retired: its embeddings are gone', model_version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN found_id;
END
$$;

CREATE FUNCTION wikiref.find_article(title text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    wanted text := btrim(replace(title, '_', ' '));
    ids bigint[];
BEGIN
    IF wanted IS NULL OR wanted = '' THEN
        RAISE EXCEPTION 'an article title is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Exact title first, then a redirect, then a case-insensitive match: the first rule that matches wins.
    SELECT array_agg(a.id ORDER BY a.id) INTO ids FROM public.articles a WHERE a.title = wanted;
    IF ids IS NULL THEN
        SELECT array_agg(a.id ORDER BY a.id) INTO ids FROM public.articles a WHERE wanted = ANY (a.redirects);
    END IF;
    IF ids IS NULL THEN
        SELECT array_agg(a.id ORDER BY a.id) INTO ids FROM public.articles a WHERE lower(a.title) = lower(wanted);
    END IF;
    IF ids IS NULL THEN
        RAISE EXCEPTION 'unknown article title: %', title
            USING ERRCODE = 'no_data_found', HINT = 'titles are as on the wiki; list them with: SELECT title FROM articles';
    END IF;
    IF cardinality(ids) > 1 THEN
        RAISE EXCEPTION 'article title % is ambiguous (% articles match)', title, cardinality(ids)
            USING ERRCODE = 'cardinality_violation';
    END IF;
    RETURN ids[1];
END
$$;

CREATE FUNCTION wikiref.check_k(k integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF k IS NULL OR k <= 0 THEN
        RAISE EXCEPTION 'k must be a positive number of results, got %', coalesce(k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF k > 1000 THEN
        -- hnsw.ef_search tops out at 1000; beyond it an index scan cannot return k rows in order.
        RAISE EXCEPTION 'k must be at most 1000, got %', k USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE FUNCTION wikiref.set_ef_search(version integer, k integer) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    ef integer := nullif(current_setting('wikiref.ef_search', true), '')::integer;
BEGIN
    IF ef IS NULL THEN
        SELECT s.ef_search INTO ef FROM public.embedding_states s WHERE s.model_version_id = version;
    END IF;
    ef := least(greatest(coalesce(ef, 100), k), 1000);
    -- Local to the transaction, and the callers' SET clauses scope it further to the function call.
    PERFORM set_config('hnsw.ef_search', ef::text, true);
    RETURN ef;
END
$$;

CREATE FUNCTION wikiref.nearest_query(target text, version integer, exclude_article boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    -- $1 = query vector, $2 = k, $3 = article id to leave out. The version is a literal so that the planner
    -- can match the version's partial HNSW index; the ORDER BY ... LIMIT sits directly on the index scan.
    IF target = 'references' THEN
        RETURN format(
            'SELECT e.reference_id AS id, (e.embedding <=> $1)::double precision AS distance '
            'FROM public.reference_embeddings e WHERE e.model_version_id = %L '
            'ORDER BY e.embedding <=> $1 LIMIT $2', version);
    ELSIF target = 'articles' THEN
        RETURN format(
            'SELECT t.article_id AS id, (t.embedding <=> $1)::double precision AS distance '
            'FROM public.title_embeddings t WHERE t.model_version_id = %L%s '
            'ORDER BY t.embedding <=> $1 LIMIT $2',
            version, CASE WHEN exclude_article THEN ' AND t.article_id <> $3' ELSE '' END);
    END IF;
    RAISE EXCEPTION 'unknown target %: references or articles', target USING ERRCODE = 'invalid_parameter_value';
END
$$;
COMMENT ON FUNCTION wikiref.nearest_query(text, integer, boolean) IS
    'The nearest-neighbour SQL the search functions run through wikiref.nearest (PREPARE it and EXPLAIN EXECUTE '
    'under that function''s settings to see the HNSW index).';

CREATE FUNCTION wikiref.title_embedding(article bigint, version integer) RETURNS vector
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found vector;
BEGIN
    SELECT t.embedding INTO found FROM public.title_embeddings t
     WHERE t.model_version_id = version AND t.article_id = article;
    IF found IS NULL THEN
        RAISE EXCEPTION 'article % has no embedding in model version %',
            (SELECT a.title FROM public.articles a WHERE a.id = article),
            (SELECT mv.name FROM public.model_versions mv WHERE mv.id = version)
            USING ERRCODE = 'no_data_found', HINT = 'run `wikiref embed` for that version';
    END IF;
    RETURN found;
END
$$;

CREATE FUNCTION wikiref.search_vector(query vector, k integer DEFAULT 10, model_version text DEFAULT NULL)
RETURNS TABLE (reference_id bigint, article_id bigint, article_title text, reference_text text,
               similarity double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
BEGIN
    PERFORM wikiref.check_k(k);
    IF query IS NULL OR vector_dims(query) <> 384 THEN
        RAISE EXCEPTION 'the query vector must have 384 dimensions, got %', coalesce(vector_dims(query)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    version := wikiref.resolve_version(model_version);
    PERFORM wikiref.set_ef_search(version, k);
    RETURN QUERY
        SELECT n.id, r.article_id, a.title, r.text, 1 - n.distance
          FROM wikiref.nearest(query, k, version, 'references') n
          JOIN public.article_references r ON r.id = n.id
          JOIN public.articles a ON a.id = r.article_id
         ORDER BY n.distance, n.id;
END
$$;
COMMENT ON FUNCTION wikiref.search_vector(vector, integer, text) IS
    'The k references nearest to a 384-d query vector of the same model version (cosine similarity).';

-- enable_sort = off, for this call only: on a small version (a few thousand rows) the planner prices "read all
-- of the version's rows and sort them" below the HNSW index scan. Taking the order from the index instead keeps
-- the functions' cost and behaviour the same at every size; the statement is a single scan, so nothing else
-- is affected. (enable_seqscan = off is not enough: the planner then sorts a bitmap scan of the primary key.)
CREATE FUNCTION wikiref.nearest(query vector, k integer, version integer, target text, exclude bigint DEFAULT NULL)
RETURNS TABLE (id bigint, distance double precision)
LANGUAGE plpgsql STABLE
SET enable_sort = off
AS $$
BEGIN
    IF query IS NULL THEN
        RETURN;  -- search_text without a query embedding: no semantic candidates
    END IF;
    RETURN QUERY EXECUTE wikiref.nearest_query(target, version, exclude IS NOT NULL) USING query, k, exclude;
END
$$;

CREATE FUNCTION wikiref.similar_references(title text, k integer DEFAULT 10, model_version text DEFAULT NULL)
RETURNS TABLE (reference_id bigint, article_title text, reference_text text, similarity double precision)
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
        SELECT n.id, a.title, r.text, 1 - n.distance
          FROM wikiref.nearest(wikiref.title_embedding(article, version), k, version, 'references') n
          JOIN public.article_references r ON r.id = n.id
          JOIN public.articles a ON a.id = r.article_id
         ORDER BY n.distance, n.id;
END
$$;
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

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS wikiref.search_text(text, vector, integer, text, integer, integer);
DROP FUNCTION IF EXISTS wikiref.articles_for_reference(bigint, integer, text);
DROP FUNCTION IF EXISTS wikiref.similar_articles(text, integer, text);
DROP FUNCTION IF EXISTS wikiref.similar_references(text, integer, text);
DROP FUNCTION IF EXISTS wikiref.search_vector(vector, integer, text);
DROP FUNCTION IF EXISTS wikiref.nearest(vector, integer, integer, text, bigint);
DROP FUNCTION IF EXISTS wikiref.title_embedding(bigint, integer);
DROP FUNCTION IF EXISTS wikiref.nearest_query(text, integer, boolean);
DROP FUNCTION IF EXISTS wikiref.set_ef_search(integer, integer);
DROP FUNCTION IF EXISTS wikiref.check_k(integer);
DROP FUNCTION IF EXISTS wikiref.find_article(text);
DROP FUNCTION IF EXISTS wikiref.resolve_version(text);
DROP FUNCTION IF EXISTS wikiref.serving_version();
"""


def upgrade() -> None:
    op.create_table(
        "embedding_states",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("hnsw_m", sa.Integer(), nullable=True, comment="m of the version's HNSW indexes"),
        sa.Column("hnsw_ef_construction", sa.Integer(), nullable=True),
        sa.Column(
            "ef_search",
            sa.Integer(),
            server_default=sa.text("100"),
            nullable=False,
            comment="hnsw.ef_search the SQL functions use for this version",
        ),
        sa.Column("references_embedded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("titles_embedded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "completed_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="set once every row had an embedding and the indexes existed; NULL: not servable yet",
        ),
        sa.CheckConstraint("ef_search BETWEEN 1 AND 1000", name=op.f("ck_embedding_states_ef_search")),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_embedding_states_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_version_id", name=op.f("pk_embedding_states")),
    )
    op.create_index(
        "ix_article_references_text_fts",
        "article_references",
        [sa.text("to_tsvector('english', text)")],
        postgresql_using="gin",
    )
    op.execute(FUNCTIONS)


def downgrade() -> None:
    op.execute(DROP_FUNCTIONS)
    op.drop_index("ix_article_references_text_fts", table_name="article_references")
    # The per-version HNSW indexes belong to the embeddings tables of 0001 and go with them.
    op.drop_table("embedding_states")
