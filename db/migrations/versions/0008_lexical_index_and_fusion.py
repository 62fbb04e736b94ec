"""A lexical index (BM25) beside the embeddings, and SQL functions that fuse the two (and, for
articles_for_reference, the vote of each article's own references) with weights stored per model version

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 16:00:00

Issue 25. Design notes (why, not what; docs/sql.md has the measurements):

* The words of a reference (its text) and of an article (title + lead) are stored as generated ``tsvector``
  columns (``lexemes``, english configuration) with GIN indexes. A generated column changes with its row and
  with nothing else: a changed reference re-parses only itself, a removed one leaves with its row, and no
  embedding is touched. They replace the two expression indexes of 0002 and 0003 (same words, stored once).
* Postgres' ``ts_rank`` has no inverse document frequency, so BM25 (k1 1.2, b 0.75) is computed in SQL over a
  call's candidate rows from each row's lexemes (term frequency = positions of the lexeme; length = distinct
  lexemes, ``length(tsvector)``, so that only the query's lexemes of a row are ever unnested) and two small tables: ``lexeme_documents`` (documents per lexeme, per corpus) and
  ``lexical_statistics`` (documents and average length per corpus). Those statistics drift slowly as the corpus
  grows, so they are rebuilt (``wikiref.refresh_lexical_statistics``, from ``ts_stat``) only when the rows
  changed since the last rebuild exceed a share of the corpus (10% by default); scrapes only append a count to
  ``lexical_changes`` (statement triggers: an insert, no row that concurrent writers would queue on). A lexeme
  the statistics do not know yet (new since the rebuild) is counted live, capped, through the GIN index.
* Candidates never come from a scan of the corpus: the words' candidates are the rows matching the query's
  rarest lexemes (by stored document frequency, as many as keep the matched rows under a cap), scored by BM25
  over all query lexemes; the embeddings' from the version's HNSW index (``wikiref.nearest``, unchanged); the
  vote's from the nearest stored references, grouped by article.
* ``fusion_weights`` is a column of ``model_versions`` (jsonb, a default for every version): the weights belong
  to the version that was measured with them. The functions read them through ``wikiref.fusion_weight``.
* The four fused functions gain arguments (``fusion``, ``candidates``) and result columns (``score``, ``words``,
  ``vote``), so they are dropped and created; ``fusion => false`` runs exactly the statement of before.
  ``search_text`` drops reciprocal rank fusion (and its ``rrf_k``) for the same z-score fusion as the others.
  Versions are resolved through ``wikiref.resolve_version`` only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every version's weights until its training run measures its own. The embeddings' weight is always 1: these are
# relative to it. similar_references and articles_for_reference: the weights bench/fusion_bench.py chose for the
# base model (title+lead160) on the validation articles of the shared split, on the grid words {0, 0.1, 0.2, 0.3,
# 0.5} x vote {0, 0.5, 1, 1.5, 2} (bench/results/fusion-base.json, docs/training.md#fusion-measured); vote 2.0 is
# the grid's top. similar_articles and search_text are not measured by any bench yet: the contract's values.
DEFAULT_FUSION_WEIGHTS = (
    '{"similar_references": {"words": 0.3}, "articles_for_reference": {"words": 0.3, "vote": 2.0}, '
    '"similar_articles": {"words": 0.0}, "search_text": {"words": 0.3}}'
)
REFERENCE_LEXEMES = "to_tsvector('english', text)"
ARTICLE_LEXEMES = "to_tsvector('english', title || ' ' || coalesce(lead, ''))"

FUNCTIONS = r"""
DROP FUNCTION wikiref.similar_references(text, integer, text);
DROP FUNCTION wikiref.similar_articles(text, integer, text);
DROP FUNCTION wikiref.articles_for_reference(bigint, integer, text);
DROP FUNCTION wikiref.search_text(text, vector, integer, text, integer, integer);

-- The fused statements join the candidates (a few hundred rows) to the tables: estimated at 1000 rows (the
-- default for a set-returning function), the nearest neighbours made the planner hash whole tables.
ALTER FUNCTION wikiref.nearest(vector, integer, integer, text, bigint) ROWS 100;

CREATE FUNCTION wikiref.lexeme_query(lexemes text[]) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- lexeme1 | lexeme2 | ...: lexemes as stored (already normalised), quoted so that none is parsed again.
    SELECT string_agg('''' || replace(replace(l, '\', '\\'), '''', '''''') || '''', ' | ')::tsquery
      FROM unnest(lexemes) l
$$;

CREATE FUNCTION wikiref.lexical_table(corpus text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF corpus = 'references' THEN RETURN 'article_references'; END IF;
    IF corpus = 'articles' THEN RETURN 'articles'; END IF;
    RAISE EXCEPTION 'unknown corpus %: references or articles', corpus USING ERRCODE = 'invalid_parameter_value';
END
$$;

CREATE FUNCTION wikiref.log_lexical_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO changed FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO changed FROM old_rows;
    ELSE
        SELECT count(*) INTO changed FROM old_rows o JOIN new_rows n ON n.id = o.id
         WHERE n.lexemes IS DISTINCT FROM o.lexemes;
    END IF;
    IF changed > 0 THEN
        INSERT INTO public.lexical_changes (corpus, documents) VALUES (TG_ARGV[0], changed);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER lexical_changes_insert AFTER INSERT ON public.article_references
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION wikiref.log_lexical_changes('references');
CREATE TRIGGER lexical_changes_update AFTER UPDATE ON public.article_references
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wikiref.log_lexical_changes('references');
CREATE TRIGGER lexical_changes_delete AFTER DELETE ON public.article_references
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION wikiref.log_lexical_changes('references');
CREATE TRIGGER lexical_changes_insert AFTER INSERT ON public.articles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION wikiref.log_lexical_changes('articles');
CREATE TRIGGER lexical_changes_update AFTER UPDATE ON public.articles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wikiref.log_lexical_changes('articles');
CREATE TRIGGER lexical_changes_delete AFTER DELETE ON public.articles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION wikiref.log_lexical_changes('articles');

CREATE FUNCTION wikiref.refresh_lexical_statistics(max_drift double precision DEFAULT 0.1)
RETURNS TABLE (corpus text, documents bigint, changed bigint, rebuilt boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    name text;
    last_change bigint;
    known bigint;
BEGIN
    IF max_drift IS NULL OR max_drift < 0 THEN
        RAISE EXCEPTION 'max_drift must be 0 or more (a share of the corpus, 0.1 is usual), got %',
            coalesce(max_drift::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One rebuild at a time ("lexical" in ASCII); writers are not blocked, their changes are logged.
    PERFORM pg_advisory_xact_lock(1818588259);
    FOREACH name IN ARRAY ARRAY['references', 'articles'] LOOP
        SELECT max(l.id), coalesce(sum(l.documents), 0) INTO last_change, changed
          FROM public.lexical_changes l WHERE l.corpus = name;
        SELECT s.documents INTO known FROM public.lexical_statistics s WHERE s.corpus = name;
        corpus := name;
        rebuilt := known IS NULL OR changed > max_drift * known;
        IF rebuilt THEN
            DELETE FROM public.lexeme_documents d WHERE d.corpus = name;
            EXECUTE format(
                'INSERT INTO public.lexeme_documents (corpus, lexeme, documents) '
                'SELECT %L, s.word, s.ndoc FROM ts_stat(%L) s', name,
                format('SELECT lexemes FROM public.%I', wikiref.lexical_table(name)));
            EXECUTE format(
                'INSERT INTO public.lexical_statistics (corpus, documents, average_length, refreshed_at) '
                'SELECT %L, count(*), coalesce(avg(length(lexemes)), 0), now() FROM public.%I '
                'ON CONFLICT (corpus) DO UPDATE SET documents = excluded.documents, '
                'average_length = excluded.average_length, refreshed_at = excluded.refreshed_at',
                name, wikiref.lexical_table(name));
            DELETE FROM public.lexical_changes l WHERE l.corpus = name AND l.id <= last_change;
        END IF;
        SELECT s.documents INTO documents FROM public.lexical_statistics s WHERE s.corpus = name;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION wikiref.refresh_lexical_statistics(double precision) IS
    'Rebuild the BM25 statistics (documents per lexeme, corpus size and average length) of each corpus whose '
    'rows changed since the last rebuild by more than max_drift of its size; scrape and embed call it.';

CREATE FUNCTION wikiref.query_terms(corpus text, query tsvector)
RETURNS TABLE (lexeme text, documents bigint)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
AS $$
BEGIN
    -- Documents per lexeme of the query, from the statistics; a lexeme new since their last rebuild is
    -- counted live through the GIN index, at most 1000 rows (a new word is rare, or the rebuild is near).
    RETURN QUERY EXECUTE format(
        'SELECT q.lexeme, coalesce(d.documents::bigint, '
        '       (SELECT count(*) FROM (SELECT 1 FROM public.%I x '
        '                               WHERE x.lexemes @@ wikiref.lexeme_query(ARRAY[q.lexeme]) LIMIT 1000) m)) '
        '  FROM unnest(tsvector_to_array($1)) q(lexeme) '
        '  LEFT JOIN public.lexeme_documents d ON d.corpus = $2 AND d.lexeme = q.lexeme',
        wikiref.lexical_table(corpus)) USING query, corpus;
END
$$;

CREATE FUNCTION wikiref.bm25_scores(corpus text, query tsvector, ids bigint[])
RETURNS TABLE (id bigint, score double precision)
LANGUAGE plpgsql STABLE ROWS 200 AS $$
DECLARE
    total double precision;
    average double precision;
BEGIN
    SELECT s.documents, s.average_length INTO total, average
      FROM public.lexical_statistics s WHERE s.corpus = bm25_scores.corpus;
    total := coalesce(total, 0);
    average := coalesce(nullif(average, 0), 1);
    -- BM25 with k1 = 1.2, b = 0.75 and the idf that stays positive: ln(1 + (N - df + 0.5) / (df + 0.5)).
    RETURN QUERY EXECUTE format(
        'WITH terms AS ('
        '    SELECT t.lexeme, ln(1 + ($4 - t.documents + 0.5) / (t.documents::double precision + 0.5)) AS idf '
        '      FROM wikiref.query_terms($1, $2) t'
        '), docs AS ('
        -- Only the query's lexemes are unnested (marked A, then kept), so a row costs its matches, not its words.
        '    SELECT x.id, length(x.lexemes) AS length, ts_filter(setweight(x.lexemes, %L, $6), %L) AS hits '
        '      FROM public.%I x WHERE x.id = ANY ($3)'
        '), matches AS ('
        '    SELECT d.id, sum(t.idf * u.tf * 2.2 / (u.tf + 1.2 * (0.25 + 0.75 * d.length / $5))) AS score '
        '      FROM docs d '
        '     CROSS JOIN LATERAL (SELECT v.lexeme, greatest(cardinality(v.positions), 1) AS tf FROM unnest(d.hits) v) u '
        '      JOIN terms t ON t.lexeme = u.lexeme '
        '     GROUP BY d.id'
        ') '
        'SELECT d.id, coalesce(m.score, 0)::double precision FROM docs d LEFT JOIN matches m ON m.id = d.id',
        'A', '{a}', wikiref.lexical_table(corpus)) USING corpus, query, ids, total, average, tsvector_to_array(query);
END
$$;

-- enable_seqscan = off, for this call only: given the query's words as constants, the planner prices a scan of
-- the table that stops at the cap below the GIN index, yet the rows matching rare words are spread through the
-- table (measured: 90 ms instead of 3 ms on 14k references). The candidates always come from the index.
CREATE FUNCTION wikiref.bm25_candidates(corpus text, query tsvector, depth integer, exclude bigint DEFAULT NULL)
RETURNS TABLE (id bigint, score double precision)
LANGUAGE plpgsql STABLE ROWS 100
SET enable_seqscan = off
AS $$
DECLARE
    -- Rows matched before scoring, at most: an OR of common words would otherwise match much of the corpus.
    cap integer := greatest(10 * depth, 1000);
    rare text[];
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

CREATE FUNCTION wikiref.bm25_references(query text, reference_ids bigint[])
RETURNS TABLE (reference_id bigint, score real)
LANGUAGE sql STABLE AS $$
    SELECT i.id, coalesce(b.score, 0)::real
      FROM (SELECT DISTINCT unnest(reference_ids) AS id) i
      JOIN public.article_references r ON r.id = i.id
      LEFT JOIN wikiref.bm25_scores('references', to_tsvector('english', query), reference_ids) b ON b.id = i.id
$$;
COMMENT ON FUNCTION wikiref.bm25_references(text, bigint[]) IS
    'BM25 of a text against the given references'' texts, as the fused functions score their words (0: no '
    'word in common).';

CREATE FUNCTION wikiref.bm25_articles(query text, article_ids bigint[])
RETURNS TABLE (article_id bigint, score real)
LANGUAGE sql STABLE AS $$
    SELECT i.id, coalesce(b.score, 0)::real
      FROM (SELECT DISTINCT unnest(article_ids) AS id) i
      JOIN public.articles a ON a.id = i.id
      LEFT JOIN wikiref.bm25_scores('articles', to_tsvector('english', query), article_ids) b ON b.id = i.id
$$;
COMMENT ON FUNCTION wikiref.bm25_articles(text, bigint[]) IS
    'BM25 of a text against the given articles'' title + lead, as the fused functions score their words.';

CREATE FUNCTION wikiref.check_candidates(candidates integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF candidates IS NULL OR candidates <= 0 OR candidates > 1000 THEN
        RAISE EXCEPTION 'candidates must be a number of rows per signal from 1 to 1000 (100 is usual), got %',
            coalesce(candidates::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE FUNCTION wikiref.check_fusion(fusion boolean) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF fusion IS NULL THEN
        RAISE EXCEPTION 'fusion must be true (fused signals) or false (the embeddings alone), got NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE FUNCTION wikiref.fusion_weight(version integer, function_name text, signal text) RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT coalesce((mv.fusion_weights -> function_name ->> signal)::double precision, 0)
      FROM public.model_versions mv WHERE mv.id = version
$$;
COMMENT ON FUNCTION wikiref.fusion_weight(integer, text, text) IS
    'The weight of a signal (words, vote) relative to the embeddings in a function''s fused score, as stored '
    'with the model version (model_versions.fusion_weights).';

CREATE FUNCTION wikiref.z(value double precision, mean double precision, deviation double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- A signal that does not vary over the candidates (or is missing for a row) contributes 0.
    SELECT CASE WHEN value IS NULL OR deviation IS NULL OR deviation < 1e-12 THEN 0
                ELSE (value - mean) / deviation END
$$;

CREATE FUNCTION wikiref.similar_references(title text, k integer DEFAULT 10, model_version text DEFAULT NULL,
                                           fusion boolean DEFAULT true, candidates integer DEFAULT 100)
RETURNS TABLE (reference_id bigint, article_title text, reference_text text, similarity double precision,
               score double precision, words double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    article bigint;
    query vector;
    lexemes tsvector;
    weight double precision;
BEGIN
    PERFORM wikiref.check_k(k);
    PERFORM wikiref.check_fusion(fusion);
    PERFORM wikiref.check_candidates(candidates);
    version := wikiref.resolve_version(model_version);
    article := wikiref.find_article(title);
    query := wikiref.title_embedding(article, version);
    IF NOT fusion THEN
        PERFORM wikiref.set_ef_search(version, k);
        RETURN QUERY
            SELECT n.id, a.title, r.text, 1 - n.distance, NULL::double precision, NULL::double precision
              FROM wikiref.nearest(query, k, version, 'references') n
              JOIN public.article_references r ON r.id = n.id
              JOIN public.articles a ON a.id = r.article_id
             ORDER BY n.distance, n.id;
        RETURN;
    END IF;
    SELECT a.lexemes INTO lexemes FROM public.articles a WHERE a.id = article;
    weight := wikiref.fusion_weight(version, 'similar_references', 'words');
    PERFORM wikiref.set_ef_search(version, candidates);
    RETURN QUERY
        WITH pool AS (
            SELECT n.id FROM wikiref.nearest(query, candidates, version, 'references') n
            UNION
            SELECT b.id FROM wikiref.bm25_candidates('references', lexemes, candidates) b
        ), signals AS (
            SELECT p.id, 1 - (e.embedding <=> query) AS similarity, coalesce(w.score, 0) AS words
              FROM pool p
              JOIN public.reference_embeddings e ON e.model_version_id = version AND e.reference_id = p.id
              LEFT JOIN wikiref.bm25_scores('references', lexemes, ARRAY(SELECT p2.id FROM pool p2)) w
                ON w.id = p.id
        ), fused AS (
            SELECT s.id, s.similarity, s.words,
                   wikiref.z(s.similarity, avg(s.similarity) OVER (), stddev_pop(s.similarity) OVER ())
                   + weight * wikiref.z(s.words, avg(s.words) OVER (), stddev_pop(s.words) OVER ()) AS score
              FROM signals s
        )
        SELECT f.id, a.title, r.text, f.similarity, f.score, f.words
          FROM fused f
          JOIN public.article_references r ON r.id = f.id
          JOIN public.articles a ON a.id = r.article_id
         ORDER BY f.score DESC, f.id
         LIMIT k;
END
$$;
COMMENT ON FUNCTION wikiref.similar_references(text, integer, text, boolean, integer) IS
    'The k references (of any article) closest to an article: its embedding (title, and lead when the version '
    'was trained with it) fused with the BM25 of its title + lead against each reference''s text; '
    'fusion => false: the embeddings alone.';

CREATE FUNCTION wikiref.similar_articles(title text, k integer DEFAULT 10, model_version text DEFAULT NULL,
                                         fusion boolean DEFAULT true, candidates integer DEFAULT 100)
RETURNS TABLE (article_id bigint, article_title text, similarity double precision, article_lead text,
               score double precision, words double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    article bigint;
    query vector;
    lexemes tsvector;
    weight double precision;
BEGIN
    PERFORM wikiref.check_k(k);
    PERFORM wikiref.check_fusion(fusion);
    PERFORM wikiref.check_candidates(candidates);
    version := wikiref.resolve_version(model_version);
    article := wikiref.find_article(title);
    query := wikiref.title_embedding(article, version);
    IF NOT fusion THEN
        PERFORM wikiref.set_ef_search(version, k);
        RETURN QUERY
            SELECT n.id, a.title, 1 - n.distance, a.lead, NULL::double precision, NULL::double precision
              FROM wikiref.nearest(query, k, version, 'articles', article) n
              JOIN public.articles a ON a.id = n.id
             ORDER BY n.distance, n.id;
        RETURN;
    END IF;
    SELECT a.lexemes INTO lexemes FROM public.articles a WHERE a.id = article;
    weight := wikiref.fusion_weight(version, 'similar_articles', 'words');
    PERFORM wikiref.set_ef_search(version, candidates);
    RETURN QUERY
        WITH pool AS (
            SELECT n.id FROM wikiref.nearest(query, candidates, version, 'articles', article) n
            UNION
            SELECT b.id FROM wikiref.bm25_candidates('articles', lexemes, candidates, article) b
        ), signals AS (
            SELECT p.id, 1 - (t.embedding <=> query) AS similarity, coalesce(w.score, 0) AS words
              FROM pool p
              JOIN public.title_embeddings t ON t.model_version_id = version AND t.article_id = p.id
              LEFT JOIN wikiref.bm25_scores('articles', lexemes, ARRAY(SELECT p2.id FROM pool p2)) w ON w.id = p.id
        ), fused AS (
            SELECT s.id, s.similarity, s.words,
                   wikiref.z(s.similarity, avg(s.similarity) OVER (), stddev_pop(s.similarity) OVER ())
                   + weight * wikiref.z(s.words, avg(s.words) OVER (), stddev_pop(s.words) OVER ()) AS score
              FROM signals s
        )
        SELECT f.id, a.title, f.similarity, a.lead, f.score, f.words
          FROM fused f
          JOIN public.articles a ON a.id = f.id
         ORDER BY f.score DESC, f.id
         LIMIT k;
END
$$;
COMMENT ON FUNCTION wikiref.similar_articles(text, integer, text, boolean, integer) IS
    'The k other articles closest to this one: their embeddings (title, and lead when the version was trained '
    'with it) fused with the BM25 of its title + lead against theirs; fusion => false: the embeddings alone.';

CREATE FUNCTION wikiref.articles_for_reference(reference_id bigint, k integer DEFAULT 10,
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
        ), votes AS (
            -- One grouped join over the candidates' references (a subquery per article costs 10x as much).
            SELECT r.article_id AS id, max(1 - (e.embedding <=> query)) AS vote
              FROM public.article_references r
              JOIN public.reference_embeddings e ON e.model_version_id = version AND e.reference_id = r.id
             WHERE r.article_id IN (SELECT p.id FROM pool p) AND r.id <> articles_for_reference.reference_id
             GROUP BY r.article_id
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
COMMENT ON FUNCTION wikiref.articles_for_reference(bigint, integer, text, boolean, integer) IS
    'The k articles a reference most likely belongs to: the article embeddings, the BM25 of the reference''s '
    'text against each title + lead, and the vote of each article''s other references (the best cosine), '
    'fused; fusion => false: the article embeddings alone.';

CREATE FUNCTION wikiref.search_text(query text, query_embedding vector DEFAULT NULL, k integer DEFAULT 10,
                                    model_version text DEFAULT NULL, candidates integer DEFAULT 100,
                                    fusion boolean DEFAULT true)
RETURNS TABLE (reference_id bigint, article_title text, reference_text text, score double precision,
               similarity double precision, words double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    lexemes tsvector;
    weight double precision := 1;
BEGIN
    PERFORM wikiref.check_k(k);
    PERFORM wikiref.check_fusion(fusion);
    PERFORM wikiref.check_candidates(candidates);
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'the search text is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(query) > 4000 THEN
        RAISE EXCEPTION 'the search text has % characters; at most 4000 are searched', length(query)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'shorten it to its most telling part';
    END IF;
    IF query_embedding IS NOT NULL THEN
        PERFORM wikiref.check_query_vector(query_embedding, 'query embedding');
    ELSIF NOT fusion THEN
        RAISE EXCEPTION 'fusion => false ranks by the embeddings alone: pass a query_embedding'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A named version is checked even for a words-only call: an unknown or retired one must not answer.
    IF query_embedding IS NOT NULL OR model_version IS NOT NULL THEN
        version := wikiref.resolve_version(model_version);
    END IF;
    IF NOT fusion THEN
        PERFORM wikiref.set_ef_search(version, k);
        RETURN QUERY
            SELECT n.id, a.title, r.text, NULL::double precision, 1 - n.distance, NULL::double precision
              FROM wikiref.nearest(query_embedding, k, version, 'references') n
              JOIN public.article_references r ON r.id = n.id
              JOIN public.articles a ON a.id = r.article_id
             ORDER BY n.distance, n.id;
        RETURN;
    END IF;
    lexemes := to_tsvector('english', query);
    IF query_embedding IS NOT NULL THEN
        -- Without an embedding the words rank alone (weight 1); with one, by the version's weight.
        weight := wikiref.fusion_weight(version, 'search_text', 'words');
        PERFORM wikiref.set_ef_search(version, candidates);
    END IF;
    RETURN QUERY
        WITH pool AS (
            SELECT n.id FROM wikiref.nearest(query_embedding, candidates, version, 'references') n
            UNION
            SELECT b.id FROM wikiref.bm25_candidates('references', lexemes, candidates) b
        ), signals AS (
            SELECT p.id, 1 - (e.embedding <=> query_embedding) AS similarity, coalesce(w.score, 0) AS words
              FROM pool p
              LEFT JOIN public.reference_embeddings e ON e.model_version_id = version AND e.reference_id = p.id
              LEFT JOIN wikiref.bm25_scores('references', lexemes, ARRAY(SELECT p2.id FROM pool p2)) w
                ON w.id = p.id
             WHERE query_embedding IS NULL OR e.reference_id IS NOT NULL
        ), fused AS (
            SELECT s.id, s.similarity, s.words,
                   wikiref.z(s.similarity, avg(s.similarity) OVER (), stddev_pop(s.similarity) OVER ())
                   + weight * wikiref.z(s.words, avg(s.words) OVER (), stddev_pop(s.words) OVER ()) AS score
              FROM signals s
        )
        SELECT f.id, a.title, r.text, f.score, f.similarity, f.words
          FROM fused f
          JOIN public.article_references r ON r.id = f.id
          JOIN public.articles a ON a.id = r.article_id
         ORDER BY f.score DESC, f.id
         LIMIT k;
END
$$;
COMMENT ON FUNCTION wikiref.search_text(text, vector, integer, text, integer, boolean) IS
    'Free-text search over references: the BM25 of the text against each reference''s text fused with the '
    'cosine to query_embedding (when given; without it the words rank alone); fusion => false: the embedding '
    'alone.';
"""

DROP_FUNCTIONS = """
DROP FUNCTION wikiref.search_text(text, vector, integer, text, integer, boolean);
DROP FUNCTION wikiref.articles_for_reference(bigint, integer, text, boolean, integer);
DROP FUNCTION wikiref.similar_articles(text, integer, text, boolean, integer);
DROP FUNCTION wikiref.similar_references(text, integer, text, boolean, integer);
DROP FUNCTION wikiref.z(double precision, double precision, double precision);
DROP FUNCTION wikiref.fusion_weight(integer, text, text);
DROP FUNCTION wikiref.check_fusion(boolean);
DROP FUNCTION wikiref.check_candidates(integer);
DROP FUNCTION wikiref.bm25_articles(text, bigint[]);
DROP FUNCTION wikiref.bm25_references(text, bigint[]);
DROP FUNCTION wikiref.bm25_candidates(text, tsvector, integer, bigint);
DROP FUNCTION wikiref.bm25_scores(text, tsvector, bigint[]);
DROP FUNCTION wikiref.query_terms(text, tsvector);
DROP FUNCTION wikiref.refresh_lexical_statistics(double precision);
DROP TRIGGER lexical_changes_insert ON public.article_references;
DROP TRIGGER lexical_changes_update ON public.article_references;
DROP TRIGGER lexical_changes_delete ON public.article_references;
DROP TRIGGER lexical_changes_insert ON public.articles;
DROP TRIGGER lexical_changes_update ON public.articles;
DROP TRIGGER lexical_changes_delete ON public.articles;
DROP FUNCTION wikiref.log_lexical_changes();
DROP FUNCTION wikiref.lexical_table(text);
DROP FUNCTION wikiref.lexeme_query(text[]);
ALTER FUNCTION wikiref.nearest(vector, integer, integer, text, bigint) ROWS 1000;
"""

# The definitions this migration replaces: similar_references of 0002 (comment of 0003), similar_articles and
# articles_for_reference of 0003, search_text of 0006.
PREVIOUS_FUNCTIONS = r"""
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
COMMENT ON FUNCTION wikiref.similar_references(text, integer, text) IS
    'The k references (of any article) most similar to an article''s text (title, and lead when the version '
    'was trained with it).';
COMMENT ON FUNCTION wikiref.similar_articles(text, integer, text) IS
    'The k other articles whose text (title, and lead when the version was trained with it) is most similar '
    'to this one''s, with their leads.';
COMMENT ON FUNCTION wikiref.articles_for_reference(bigint, integer, text) IS
    'The k articles a reference most likely belongs to (reference embedding vs article embeddings: title, and '
    'lead when the version was trained with it), with their leads.';
COMMENT ON FUNCTION wikiref.search_text(text, vector, integer, text, integer, integer) IS
    'Free-text search over references: full-text candidates (the reference''s text, its article''s title and '
    'lead) fused with the nearest references to query_embedding (when given) by reciprocal rank fusion.';
"""


def upgrade() -> None:
    op.add_column(
        "model_versions",
        sa.Column(
            "fusion_weights",
            JSONB(),
            server_default=sa.text(f"'{DEFAULT_FUSION_WEIGHTS}'::jsonb"),
            nullable=False,
            comment="per SQL function, each signal's weight relative to the embeddings' in the fused score",
        ),
    )
    for table, expression in (("article_references", REFERENCE_LEXEMES), ("articles", ARTICLE_LEXEMES)):
        op.add_column(
            table,
            sa.Column(
                "lexemes",
                TSVECTOR(),
                sa.Computed(expression, persisted=True),
                comment="the words BM25 matches (english configuration)",
            ),
        )
        op.create_index(f"ix_{table}_lexemes", table, ["lexemes"], postgresql_using="gin")
    op.drop_index("ix_article_references_text_fts", table_name="article_references")
    op.drop_index("ix_articles_text_fts", table_name="articles")
    corpus = sa.CheckConstraint("corpus IN ('references', 'articles')", name="corpus")
    op.create_table(
        "lexical_statistics",
        sa.Column("corpus", sa.Text(), primary_key=True, comment="references or articles"),
        sa.Column("documents", sa.BigInteger(), nullable=False),
        sa.Column("average_length", sa.Float(), nullable=False, comment="distinct lexemes per document"),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        corpus,
    )
    op.create_table(
        "lexeme_documents",
        sa.Column("corpus", sa.Text(), primary_key=True),
        sa.Column("lexeme", sa.Text(), primary_key=True),
        sa.Column("documents", sa.Integer(), nullable=False, comment="documents holding the lexeme"),
    )
    op.create_table(
        "lexical_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("corpus", sa.Text(), nullable=False),
        sa.Column("documents", sa.BigInteger(), nullable=False, comment="rows whose lexemes changed"),
        sa.Column("logged_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.execute(FUNCTIONS)
    op.execute("SELECT * FROM wikiref.refresh_lexical_statistics()")


def downgrade() -> None:
    op.execute(DROP_FUNCTIONS)
    op.drop_table("lexical_changes")
    op.drop_table("lexeme_documents")
    op.drop_table("lexical_statistics")
    op.drop_column("articles", "lexemes")
    op.drop_column("article_references", "lexemes")
    op.create_index(
        "ix_article_references_text_fts",
        "article_references",
        [sa.text(REFERENCE_LEXEMES)],
        postgresql_using="gin",
    )
    op.create_index("ix_articles_text_fts", "articles", [sa.text(ARTICLE_LEXEMES)], postgresql_using="gin")
    op.execute(PREVIOUS_FUNCTIONS)
    op.drop_column("model_versions", "fusion_weights")
