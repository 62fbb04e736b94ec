"""SQL functions refuse bad arguments in one line: rrf_k, unknown versions in full-text search, zero vectors,
a bad wikiref.ef_search, long inputs echoed in full

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-02 04:40:00

Issue 12, item 7. Helpers first, so that the functions users call change as little as possible:

* ``wikiref.shown(text)``: what an error message echoes of a caller's input (80 characters), used by
  ``find_article`` and ``resolve_version``: a 1 MB title no longer makes a 1 MB error.
* ``wikiref.set_ef_search`` reads ``wikiref.ef_search`` itself and names the setting when it is not a whole
  number from 1 to 1000 (before: ``invalid input syntax for type integer``).
* ``wikiref.check_query_vector``: 384 dimensions and not all zeros (cosine similarity to a zero vector is NaN),
  for ``search_vector`` and the query embedding of ``search_text``.
* ``search_text`` (body changed only where needed): ``rrf_k`` must be 0 or more (-1 divided by zero, NULL scored
  every row 0); a named ``model_version`` is resolved even without a query embedding (an unknown or retired
  version raised only with one); the search text is capped at 4,000 characters (``wikiref.db.search.MAX_QUERY_CHARS``).

Arguments and result columns are unchanged: ``CREATE OR REPLACE`` throughout; downgrade restores the previous
definitions and drops the two new helpers.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = r"""
CREATE FUNCTION wikiref.shown(value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN length(value) > 80 THEN left(value, 79) || '…' ELSE value END
$$;
COMMENT ON FUNCTION wikiref.shown(text) IS
    'A caller''s input as an error message echoes it: at most 80 characters.';

CREATE FUNCTION wikiref.check_query_vector(query vector, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF query IS NULL OR vector_dims(query) <> 384 THEN
        RAISE EXCEPTION 'the % must have 384 dimensions, got %', what, coalesce(vector_dims(query)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF vector_norm(query) = 0 THEN
        -- Cosine distance to a zero vector is NaN: every similarity would be NaN, in no order.
        RAISE EXCEPTION 'the % is all zeros: it has no direction to compare', what
            USING ERRCODE = 'invalid_parameter_value', HINT = 'encode a text with the model version''s encoder';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION wikiref.find_article(title text) RETURNS bigint
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
        RAISE EXCEPTION 'unknown article title: %', wikiref.shown(title)
            USING ERRCODE = 'no_data_found', HINT = 'titles are as on the wiki; list them with: SELECT title FROM articles';
    END IF;
    IF cardinality(ids) > 1 THEN
        RAISE EXCEPTION 'article title % is ambiguous (% articles match)', wikiref.shown(title), cardinality(ids)
            USING ERRCODE = 'cardinality_violation';
    END IF;
    RETURN ids[1];
END
$$;

CREATE OR REPLACE FUNCTION wikiref.resolve_version(model_version text DEFAULT NULL) RETURNS integer
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
        RAISE EXCEPTION 'unknown model version: %', wikiref.shown(model_version)
            USING ERRCODE = 'no_data_found', HINT = 'list versions with `wikiref models list`';
    END IF;
    IF found_status = 'retired' THEN
        RAISE EXCEPTION 'model version % is retired: its embeddings are gone', wikiref.shown(model_version)
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN found_id;
END
$$;

CREATE OR REPLACE FUNCTION wikiref.set_ef_search(version integer, k integer) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    raw text := nullif(btrim(current_setting('wikiref.ef_search', true)), '');
    ef integer;
BEGIN
    IF raw IS NOT NULL THEN
        -- Checked here rather than cast blindly: a bad value must name the setting, not just "integer".
        IF raw !~ '^[0-9]{1,9}$' OR raw::integer NOT BETWEEN 1 AND 1000 THEN
            RAISE EXCEPTION 'wikiref.ef_search must be a whole number from 1 to 1000, got %', wikiref.shown(raw)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'SET wikiref.ef_search = 200 (more: better recall, slower), or RESET wikiref.ef_search';
        END IF;
        ef := raw::integer;
    ELSE
        SELECT s.ef_search INTO ef FROM public.embedding_states s WHERE s.model_version_id = version;
    END IF;
    ef := least(greatest(coalesce(ef, 100), k), 1000);
    -- Local to the transaction, and the callers' SET clauses scope it further to the function call.
    PERFORM set_config('hnsw.ef_search', ef::text, true);
    RETURN ef;
END
$$;

CREATE OR REPLACE FUNCTION wikiref.search_vector(query vector, k integer DEFAULT 10, model_version text DEFAULT NULL)
RETURNS TABLE (reference_id bigint, article_id bigint, article_title text, reference_text text,
               similarity double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
BEGIN
    PERFORM wikiref.check_k(k);
    PERFORM wikiref.check_query_vector(query, 'query vector');
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
    IF rrf_k IS NULL OR rrf_k < 0 THEN
        RAISE EXCEPTION 'rrf_k must be 0 or more (60 is usual), got %', coalesce(rrf_k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'the search text is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(query) > 4000 THEN
        -- websearch_to_tsquery nests one level per word: tens of thousands of words exhaust the stack.
        RAISE EXCEPTION 'the search text has % characters; at most 4000 are searched', length(query)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'shorten it to its most telling part';
    END IF;
    depth := greatest(coalesce(candidates, 100), k);
    tsq := websearch_to_tsquery('english', query);
    IF query_embedding IS NOT NULL THEN
        PERFORM wikiref.check_query_vector(query_embedding, 'query embedding');
    END IF;
    -- A named version is checked even for a full-text-only call: an unknown or retired one must not answer.
    IF query_embedding IS NOT NULL OR model_version IS NOT NULL THEN
        version := wikiref.resolve_version(model_version);
    END IF;
    IF query_embedding IS NOT NULL THEN
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
"""

PREVIOUS_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION wikiref.find_article(title text) RETURNS bigint
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

CREATE OR REPLACE FUNCTION wikiref.resolve_version(model_version text DEFAULT NULL) RETURNS integer
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

CREATE OR REPLACE FUNCTION wikiref.set_ef_search(version integer, k integer) RETURNS integer
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

CREATE OR REPLACE FUNCTION wikiref.search_vector(query vector, k integer DEFAULT 10, model_version text DEFAULT NULL)
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

DROP FUNCTION wikiref.check_query_vector(vector, text);
DROP FUNCTION wikiref.shown(text);
"""


def upgrade() -> None:
    op.execute(FUNCTIONS)


def downgrade() -> None:
    op.execute(PREVIOUS_FUNCTIONS)
