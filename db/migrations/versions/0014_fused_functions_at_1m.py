"""articles_for_reference: the same vote, read without sorting the voters' embeddings; the words' candidate
bound becomes a session setting

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 23:40:00

Issue 25's 1M-reference bench (docs/scaling.md) measured the fused ``articles_for_reference`` at p95 102 ms
against a 50 ms target. About a quarter of it was the vote's aggregate: the planner grouped the candidate
articles' references (~16,000 rows at 1M) with their 384-dimension embeddings still in each row and sorted them
through a temporary file, and a third was one primary-key descent per voter. The vote is computed as before (the
best cosine between the query reference and each candidate article's other stored references); only the plan
changes: the cosines are materialised first (one small row each) and the voters' embeddings are read by one
ordered ``= ANY`` scan. The answers are the same (tests/db/test_fusion.py); ``fusion => false`` is untouched.

The same bench found the words' candidates (``wikiref.bm25_candidates``: the rows matching the query's rarest
lexemes, at most ``max(10 x depth, 1000)``) holding 0.61 of the exact BM25 top 10 at 1M references, which cost the
fused ``similar_references`` its recall against exact fusion (0.85; with the exact cosine in place of HNSW: the
same). 30 rows per candidate found 0.94 at about twice the words' time. The bound stays 10 by default and a session
may raise it: ``SET wikiref.words_rows_per_candidate = 30`` (docs/scaling.md).

Frozen: the function's text is restated here (a migration does not import another); 0008's vote returns on
downgrade.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0008's function, its vote left to fill in.
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
    vote_weight double precision;
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
    PERFORM wikiref.set_ef_search(version, candidates);
    RETURN QUERY
        WITH pool AS (
            SELECT n.id FROM wikiref.nearest(query, candidates, version, 'articles') n
            UNION
            SELECT b.id FROM wikiref.bm25_candidates('articles', lexemes, candidates) b
            UNION
            -- The articles of the nearest stored references; the query reference itself is no voter.
            SELECT r.article_id
              FROM wikiref.nearest(query, candidates, version, 'references') n
              JOIN public.article_references r ON r.id = n.id
             WHERE n.id <> articles_for_reference.reference_id
VOTES        ), signals AS (
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

VOTES = r"""
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

VOTES_0008 = r"""
        ), votes AS (
            -- One grouped join over the candidates' references (a subquery per article costs 10x as much).
            SELECT r.article_id AS id, max(1 - (e.embedding <=> query)) AS vote
              FROM public.article_references r
              JOIN public.reference_embeddings e ON e.model_version_id = version AND e.reference_id = r.id
             WHERE r.article_id IN (SELECT p.id FROM pool p) AND r.id <> articles_for_reference.reference_id
             GROUP BY r.article_id
"""


WORDS_ROWS_PER_CANDIDATE = r"""
CREATE FUNCTION wikiref.words_rows_per_candidate() RETURNS integer
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
COMMENT ON FUNCTION wikiref.words_rows_per_candidate() IS
    'Rows the words'' candidate search may match per candidate asked for (the session''s '
    'wikiref.words_rows_per_candidate, 10 by default; at least 1000 rows in all): more finds BM25''s top rows '
    'that only common words match, at the cost of scoring more rows.';
"""

# 0008's function, its cap left to fill in.
BM25_CANDIDATES = r"""
CREATE OR REPLACE FUNCTION wikiref.bm25_candidates(corpus text, query tsvector, depth integer, exclude bigint DEFAULT NULL)
RETURNS TABLE (id bigint, score double precision)
LANGUAGE plpgsql STABLE ROWS 100
SET enable_seqscan = off
AS $$
DECLARE
    -- Rows matched before scoring, at most: an OR of common words would otherwise match much of the corpus.
CAP    rare text[];
    matched bigint[];
BEGIN
    -- The rarest lexemes, as many as keep the rows they match under the cap (the rarest one always): the rows
    -- that only common words match score lowest anyway, since a common word's idf is small.
    SELECT array_agg(t.lexeme ORDER BY t.documents, t.lexeme) INTO rare
      FROM (SELECT q.lexeme, q.documents,
                   sum(q.documents) OVER (ORDER BY q.documents, q.lexeme) AS running,
                   row_number() OVER (ORDER BY q.documents, q.lexeme) AS position
              FROM wikiref.query_terms(corpus, query) q WHERE q.documents > 0) t
     WHERE t.running <= cap OR t.position = 1;
    IF rare IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT array_agg(x.id) FROM (SELECT x.id FROM public.%I x WHERE x.lexemes @@ $1 '
                   'AND x.id IS DISTINCT FROM $2 LIMIT $3) x', wikiref.lexical_table(corpus))
        INTO matched USING wikiref.lexeme_query(rare), exclude, cap;
    RETURN QUERY
        SELECT b.id, b.score FROM wikiref.bm25_scores(corpus, query, matched) b
         WHERE b.score > 0
         ORDER BY b.score DESC, b.id
         LIMIT depth;
END
$$;
"""

CAP = "    cap integer := greatest(wikiref.words_rows_per_candidate() * depth, 1000);\n"
CAP_0008 = "    cap integer := greatest(10 * depth, 1000);\n"


def upgrade() -> None:
    op.execute(WORDS_ROWS_PER_CANDIDATE)
    op.execute(BM25_CANDIDATES.replace("CAP", CAP))
    op.execute(ARTICLES_FOR_REFERENCE.replace("VOTES", VOTES.strip("\n") + "\n"))


def downgrade() -> None:
    op.execute(ARTICLES_FOR_REFERENCE.replace("VOTES", VOTES_0008.strip("\n") + "\n"))
    op.execute(BM25_CANDIDATES.replace("CAP", CAP_0008))
    op.execute("DROP FUNCTION wikiref.words_rows_per_candidate()")
