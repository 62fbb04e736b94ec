"""articles_for_reference: a session may let only the query's nearest references vote (large corpora)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 02:00:00

The vote of ``articles_for_reference`` is each candidate article's best cosine to the query reference over all its
other stored references: at 1M references (docs/scaling.md) that reads ~13,000 references and their embeddings per
call, p95 89 ms against issue 25's 50 ms. ``SET wikiref.vote_references = 700`` lets only the query's 700 nearest
references (one HNSW search, which the function already runs for its candidates) vote: an article that holds one of
them votes with its best, exactly; any other candidate article's best is below the last one's cosine, and that
cosine (the bound) is its vote. Unset (the default), the vote is exact, as before, and the answers are the same as
0014's (tests/db/test_fusion.py); set, answers may change where the bound stands in for an article's vote
(measured in docs/scaling.md). Training, evaluation and the promotion gate score the exact vote.

The new setting and 0014's ``wikiref.words_rows_per_candidate`` are read by one check,
``wikiref.integer_setting``, with the same messages.

Frozen: the function's text is restated here (a migration does not import another); 0014's returns on downgrade.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0014's function, with what 0015 changes left to fill in: the declarations, the depth of the references' HNSW
# search, and the candidate pool and its vote.
ARTICLES_FOR_REFERENCE = r"""
CREATE OR REPLACE FUNCTION wikiref.articles_for_reference(reference_id bigint, k integer DEFAULT 10,
                                               model_version text DEFAULT NULL, fusion boolean DEFAULT true,
                                               candidates integer DEFAULT 100)
RETURNS TABLE (article_id bigint, article_title text, similarity double precision, is_own_article boolean,
               article_lead text, score double precision, words double precision, vote double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    own bigint;
    query vector;
    lexemes tsvector;
    words_weight double precision;
DECLARATIONS
BEGIN
    PERFORM wikiref.check_k(k);
    PERFORM wikiref.check_fusion(fusion);
    PERFORM wikiref.check_candidates(candidates);
    version := wikiref.resolve_version(model_version);
    SELECT r.article_id, r.lexemes INTO own, lexemes
      FROM public.article_references r WHERE r.id = articles_for_reference.reference_id;
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
    IF NOT fusion THEN
        PERFORM wikiref.set_ef_search(version, k);
        RETURN QUERY
            SELECT n.id, a.title, 1 - n.distance, n.id = own, a.lead,
                   NULL::double precision, NULL::double precision, NULL::double precision
              FROM wikiref.nearest(query, k, version, 'articles') n
              JOIN public.articles a ON a.id = n.id
             ORDER BY n.distance, n.id;
        RETURN;
    END IF;
    words_weight := wikiref.fusion_weight(version, 'articles_for_reference', 'words');
    vote_weight := wikiref.fusion_weight(version, 'articles_for_reference', 'vote');
SEARCH_DEPTH
    RETURN QUERY
        WITH POOL_AND_VOTES
        ), signals AS (
            SELECT p.id, 1 - (t.embedding <=> query) AS similarity, coalesce(w.score, 0) AS words, v.vote
              FROM pool p
              JOIN public.title_embeddings t ON t.model_version_id = version AND t.article_id = p.id
              LEFT JOIN votes v ON v.id = p.id
              LEFT JOIN wikiref.bm25_scores('articles', lexemes, ARRAY(SELECT p2.id FROM pool p2)) w ON w.id = p.id
        ), fused AS (
            SELECT s.id, s.similarity, s.words, s.vote,
                   wikiref.z(s.similarity, avg(s.similarity) OVER (), stddev_pop(s.similarity) OVER ())
                   + words_weight * wikiref.z(s.words, avg(s.words) OVER (), stddev_pop(s.words) OVER ())
                   + vote_weight * wikiref.z(s.vote, avg(s.vote) OVER (), stddev_pop(s.vote) OVER ()) AS score
              FROM signals s
        )
        SELECT f.id, a.title, f.similarity, f.id = own, a.lead, f.score, f.words, f.vote
          FROM fused f
          JOIN public.articles a ON a.id = f.id
         ORDER BY f.score DESC, f.id
         LIMIT k;
END
$$;
"""

DECLARATIONS = """\
    vote_weight double precision;
    -- The session's wikiref.vote_references: NULL, every stored reference of a candidate article votes.
    voting integer := wikiref.vote_references();
"""
DECLARATIONS_0014 = "    vote_weight double precision;\n"

SEARCH_DEPTH = "    PERFORM wikiref.set_ef_search(version, greatest(candidates, coalesce(voting, 0)));\n"
SEARCH_DEPTH_0014 = "    PERFORM wikiref.set_ef_search(version, candidates);\n"

# Which of the nearest references bring their articles into the pool is unchanged: the first ``candidates`` of
# the search, the query reference itself (usually the first) left out.
POOL_AND_VOTES = r"""near AS MATERIALIZED (
            SELECT n.id, r.article_id, 1 - n.distance AS similarity,
                   row_number() OVER (ORDER BY n.distance, n.id) AS rank
              FROM wikiref.nearest(query, greatest(candidates, coalesce(voting, 0)), version, 'references') n
              JOIN public.article_references r ON r.id = n.id
        ), pool AS (
            SELECT n.id FROM wikiref.nearest(query, candidates, version, 'articles') n
            UNION
            SELECT b.id FROM wikiref.bm25_candidates('articles', lexemes, candidates) b
            UNION
            -- The articles of the nearest stored references; the query reference itself is no voter.
            SELECT n.article_id FROM near n
             WHERE n.rank <= candidates AND n.id <> articles_for_reference.reference_id
        ), voters AS MATERIALIZED (
            -- The exact vote: every other stored reference of each candidate article.
            SELECT r.id, r.article_id FROM public.article_references r
             WHERE voting IS NULL
               AND r.article_id IN (SELECT p.id FROM pool p) AND r.id <> articles_for_reference.reference_id
        ), similarities AS MATERIALIZED (
            -- Each voter's cosine computed once, where its embedding is read (0014).
            SELECT e.reference_id, 1 - (e.embedding <=> query) AS similarity
              FROM public.reference_embeddings e
             WHERE e.model_version_id = version
               AND e.reference_id = ANY (ARRAY(SELECT x.id FROM voters x ORDER BY x.id))
        ), nearest_voters AS (
            SELECT n.article_id, n.similarity FROM near n
             WHERE n.rank <= voting AND n.id <> articles_for_reference.reference_id
        ), votes AS (
            SELECT x.article_id AS id, max(s.similarity) AS vote
              FROM voters x JOIN similarities s ON s.reference_id = x.id
             GROUP BY x.article_id
            UNION ALL
            -- The nearest references' vote: an article that holds none of them gets the last one's cosine, the
            -- bound of its own best.
            SELECT p.id, coalesce(max(n.similarity), (SELECT min(b.similarity) FROM nearest_voters b))
              FROM pool p LEFT JOIN nearest_voters n ON n.article_id = p.id
             WHERE voting IS NOT NULL
             GROUP BY p.id
"""

POOL_AND_VOTES_0014 = r"""pool AS (
            SELECT n.id FROM wikiref.nearest(query, candidates, version, 'articles') n
            UNION
            SELECT b.id FROM wikiref.bm25_candidates('articles', lexemes, candidates) b
            UNION
            -- The articles of the nearest stored references; the query reference itself is no voter.
            SELECT r.article_id
              FROM wikiref.nearest(query, candidates, version, 'references') n
              JOIN public.article_references r ON r.id = n.id
             WHERE n.id <> articles_for_reference.reference_id
        ), voters AS MATERIALIZED (
            -- The query reference itself is no voter.
            SELECT r.id, r.article_id FROM public.article_references r
             WHERE r.article_id IN (SELECT p.id FROM pool p) AND r.id <> articles_for_reference.reference_id
        ), similarities AS MATERIALIZED (
            -- Each voter's cosine computed once, where its embedding is read: grouped with the embeddings in
            -- its rows, the vote sorted ~24 MB through a temporary file at 1M references. The ids in order, as
            -- one array, walk the primary key's leaves instead of descending it once per voter.
            SELECT e.reference_id, 1 - (e.embedding <=> query) AS similarity
              FROM public.reference_embeddings e
             WHERE e.model_version_id = version
               AND e.reference_id = ANY (ARRAY(SELECT x.id FROM voters x ORDER BY x.id))
        ), votes AS (
            SELECT x.article_id AS id, max(s.similarity) AS vote
              FROM voters x JOIN similarities s ON s.reference_id = x.id
             GROUP BY x.article_id
"""

# One check of a whole-number session setting for both of the fused functions' settings (0014 wrote the first
# out in full; wikiref.set_ef_search keeps its own, frozen in 0013).
SESSION_SETTINGS = r"""
CREATE FUNCTION wikiref.integer_setting(name text, low integer, high integer, hint text) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    raw text := nullif(btrim(current_setting(name, true)), '');
BEGIN
    IF raw IS NULL THEN
        RETURN NULL;
    END IF;
    IF raw !~ '^[0-9]{1,9}$' OR raw::integer NOT BETWEEN low AND high THEN
        RAISE EXCEPTION '% must be a whole number from % to %, got %', name, low, high, wikiref.shown(raw)
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    RETURN raw::integer;
END
$$;
COMMENT ON FUNCTION wikiref.integer_setting(text, integer, integer, text) IS
    'The session setting NAME as a whole number from LOW to HIGH, NULL when unset; any other value raises an '
    'error that names the setting, with HINT.';

CREATE FUNCTION wikiref.vote_references() RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT wikiref.integer_setting('wikiref.vote_references', 1, 1000,
        'SET wikiref.vote_references = 700 (fewer: faster, further from the exact vote), '
        'or RESET wikiref.vote_references for the exact vote')
$$;
COMMENT ON FUNCTION wikiref.vote_references() IS
    'How many of the query''s nearest references vote in articles_for_reference (the session''s '
    'wikiref.vote_references, 1 to 1000); NULL when unset: every other stored reference of each candidate article '
    'votes (exact).';

CREATE OR REPLACE FUNCTION wikiref.words_rows_per_candidate() RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce(wikiref.integer_setting('wikiref.words_rows_per_candidate', 1, 1000,
        'SET wikiref.words_rows_per_candidate = 30 (more: closer to exact BM25, slower), '
        'or RESET wikiref.words_rows_per_candidate'), 10)
$$;
"""

# 0014's, restored on downgrade.
WORDS_ROWS_PER_CANDIDATE_0014 = r"""
CREATE OR REPLACE FUNCTION wikiref.words_rows_per_candidate() RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    raw text := nullif(btrim(current_setting('wikiref.words_rows_per_candidate', true)), '');
BEGIN
    IF raw IS NULL THEN
        RETURN 10;
    END IF;
    IF raw !~ '^[0-9]{1,9}$' OR raw::integer NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'wikiref.words_rows_per_candidate must be a whole number from 1 to 1000, got %',
            wikiref.shown(raw)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SET wikiref.words_rows_per_candidate = 30 (more: closer to exact BM25, slower), '
                         'or RESET wikiref.words_rows_per_candidate';
    END IF;
    RETURN raw::integer;
END
$$;
"""


def _articles_for_reference(declarations: str, search_depth: str, pool_and_votes: str) -> str:
    return (
        ARTICLES_FOR_REFERENCE.replace("DECLARATIONS\n", declarations)
        .replace("SEARCH_DEPTH\n", search_depth)
        .replace("POOL_AND_VOTES\n", pool_and_votes.rstrip("\n") + "\n")
    )


def upgrade() -> None:
    op.execute(SESSION_SETTINGS)
    op.execute(_articles_for_reference(DECLARATIONS, SEARCH_DEPTH, POOL_AND_VOTES))


def downgrade() -> None:
    op.execute(_articles_for_reference(DECLARATIONS_0014, SEARCH_DEPTH_0014, POOL_AND_VOTES_0014))
    op.execute(WORDS_ROWS_PER_CANDIDATE_0014)
    op.execute("DROP FUNCTION wikiref.vote_references()")
    op.execute("DROP FUNCTION wikiref.integer_setting(text, integer, integer, text)")
