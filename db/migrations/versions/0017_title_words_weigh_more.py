"""The words of an article as a query: its title's lexemes weigh three times its lead's

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 05:00:00

``similar_references`` (and ``similar_articles``) matched an article's title + lead as one bag of words, so that
a reference naming the article's subject ("Asafa Powell") counted no more than one sharing a word of its lead
("sprinter", "2008"). ``wikiref.article_words(title, lead)`` is the article's words with the title's lexemes
labelled A, and BM25 (``wikiref.bm25_scores``, ``wikiref.bm25_candidates``) counts a query lexeme labelled A three
times (``wikiref.query_term_weight``): its idf times 3. The 3 was chosen among 1, 2, 3 and 5 on the validation
articles of the bench split (bench/title_weight_probe.py, the base model, through ``similar_references``); on the
evaluation articles it gave NDCG@10 +0.0115 [95% CI +0.0019, +0.0219] over counting every lexeme once, and the fused
function +0.0271 [+0.0133, +0.0406] over the embeddings alone (bench/results/title-weight-probe.json). A query
without labels (a reference's text, ``search_text``'s, ``bm25_references``') scores as before.

Frozen: the functions' texts are restated here (a migration does not import another), each as 0016 left it and
changed in place; downgrade restores them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As 0008 and 0016 left them.
BM25_SCORES_0008 = r"""
CREATE OR REPLACE FUNCTION wikiref.bm25_scores(corpus text, query tsvector, ids bigint[])
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
"""

BM25_CANDIDATES_0016 = r"""
CREATE OR REPLACE FUNCTION wikiref.bm25_candidates(corpus text, query tsvector, depth integer, exclude bigint DEFAULT NULL)
RETURNS TABLE (id bigint, score double precision)
LANGUAGE plpgsql STABLE ROWS 100
SET enable_seqscan = off
AS $$
DECLARE
    -- Rows matched before scoring, at most, by each of the two searches: an OR of common words would otherwise
    -- match much of the corpus.
    cap integer := greatest(wikiref.words_rows_per_candidate() * depth, 1000);
    total double precision;
    average double precision;
    rare text[];
    paired text[];
    pairs tsquery;
    lexemes text[];
    idfs double precision[];
BEGIN
    SELECT s.documents, s.average_length INTO total, average
      FROM public.lexical_statistics s WHERE s.corpus = bm25_candidates.corpus;
    total := coalesce(total, 0);
    average := coalesce(nullif(average, 0), 1);
    -- The rarest lexemes, as many as keep the rows they match under the cap (the rarest one always): the rows
    -- that only common words match score lowest anyway, since a common word's idf is small. And for the rows that
    -- match several words, none of them the rarest: up to 8 of the rarest lexemes, as many as keep the postings
    -- the index reads for them under 20 x the cap. Each lexeme's idf as wikiref.bm25_scores computes it.
    SELECT array_agg(t.lexeme ORDER BY t.documents, t.lexeme) FILTER (WHERE t.running <= cap OR t.position = 1),
           array_agg(t.lexeme ORDER BY t.documents, t.lexeme) FILTER (WHERE t.running <= 20 * cap AND t.position <= 8),
           array_agg(t.lexeme ORDER BY t.lexeme),
           array_agg(ln(1 + (total - t.documents + 0.5) / (t.documents::double precision + 0.5)) ORDER BY t.lexeme)
      INTO rare, paired, lexemes, idfs
      FROM (SELECT q.lexeme, q.documents,
                   sum(q.documents) OVER (ORDER BY q.documents, q.lexeme) AS running,
                   row_number() OVER (ORDER BY q.documents, q.lexeme) AS position
              FROM wikiref.query_terms(corpus, query) q WHERE q.documents > 0) t;
    IF rare IS NULL THEN
        RETURN;
    END IF;
    IF cardinality(paired) >= 2 THEN
        -- (a & b) | (a & c) | (b & c) ...: the rows matching any two of them.
        SELECT string_agg(wikiref.lexeme_query(ARRAY[a.lexeme])::text || ' & '
                          || wikiref.lexeme_query(ARRAY[b.lexeme])::text, ' | ')::tsquery INTO pairs
          FROM unnest(paired) WITH ORDINALITY a(lexeme, i)
          JOIN unnest(paired) WITH ORDINALITY b(lexeme, j) ON a.i < b.j;
    END IF;
    -- BM25 as wikiref.bm25_scores computes it, of the rows as the searches read them: one heap read per row, not a
    -- second one by id (at 1M references: p95 13 ms instead of 19 for ~1,500 rows).
    RETURN QUERY EXECUTE format(
        'WITH matched AS ('
        '    SELECT DISTINCT ON (m.id) m.id, m.lexemes FROM ('
        '        (SELECT x.id, x.lexemes FROM public.%1$I x'
        '          WHERE x.lexemes @@ $1 AND x.id IS DISTINCT FROM $2 LIMIT $3)'
        '        UNION ALL'
        '        (SELECT x.id, x.lexemes FROM public.%1$I x'
        '          WHERE x.lexemes @@ $4 AND x.id IS DISTINCT FROM $2 LIMIT $5)'
        '    ) m ORDER BY m.id'
        ') '
        'SELECT m.id, s.score FROM matched m, LATERAL ('
        '    SELECT sum($7[array_position($6, v.lexeme)] * u.tf * 2.2'
        '               / (u.tf + 1.2 * (0.25 + 0.75 * length(m.lexemes) / $8)))::double precision AS score'
        '      FROM unnest(ts_filter(setweight(m.lexemes, %2$L, $6), %3$L)) v,'
        '           LATERAL (SELECT greatest(cardinality(v.positions), 1) AS tf) u'
        ') s '
        'WHERE s.score > 0 ORDER BY s.score DESC, m.id LIMIT $9',
        wikiref.lexical_table(corpus), 'A', '{a}')
        USING wikiref.lexeme_query(rare), exclude, cap, coalesce(pairs, ''::tsquery),
              CASE WHEN pairs IS NULL THEN 0 ELSE cap END, lexemes, idfs, average, depth;
END
$$;
"""

SIMILAR_REFERENCES_0008 = r"""
CREATE OR REPLACE FUNCTION wikiref.similar_references(title text, k integer DEFAULT 10, model_version text DEFAULT NULL,
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
"""

SIMILAR_ARTICLES_0008 = r"""
CREATE OR REPLACE FUNCTION wikiref.similar_articles(title text, k integer DEFAULT 10, model_version text DEFAULT NULL,
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
"""

WEIGHTS = r"""
CREATE FUNCTION wikiref.query_term_weight(weights text[]) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN 'A' = ANY (weights) THEN 3.0 ELSE 1.0 END
$$;
COMMENT ON FUNCTION wikiref.query_term_weight(text[]) IS
    'How many times BM25 counts a lexeme of its query, from the lexeme''s labels: 3 for one labelled A (an '
    'article''s title, wikiref.article_words), 1 for any other.';

CREATE FUNCTION wikiref.article_words(title text, lead text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- The lexemes of articles.lexemes, the title's also labelled A.
    SELECT setweight(to_tsvector('english', title), 'A') || to_tsvector('english', title || ' ' || coalesce(lead, ''))
$$;
COMMENT ON FUNCTION wikiref.article_words(text, text) IS
    'An article''s words as similar_references and similar_articles match them: its title and lead, the title''s '
    'lexemes labelled A, which BM25 counts three times (wikiref.query_term_weight).';
"""

_CHANGES = {
    "bm25_scores": [
        (
            "        '    SELECT t.lexeme, ln(1 + ($4 - t.documents + 0.5) / (t.documents::double precision + 0.5)) AS idf '\n"
            "        '      FROM wikiref.query_terms($1, $2) t'\n",
            "        -- A lexeme labelled A in the query (an article's title: wikiref.article_words) counts three times.\n"
            "        '    SELECT t.lexeme, wikiref.query_term_weight(q.weights) '\n"
            "        '           * ln(1 + ($4 - t.documents + 0.5) / (t.documents::double precision + 0.5)) AS idf '\n"
            "        '      FROM wikiref.query_terms($1, $2) t JOIN unnest($2) q ON q.lexeme = t.lexeme'\n",
        )
    ],
    "bm25_candidates": [
        (
            "           array_agg(ln(1 + (total - t.documents + 0.5) / (t.documents::double precision + 0.5)) ORDER BY t.lexeme)\n",
            "           array_agg(t.weight * ln(1 + (total - t.documents + 0.5) / (t.documents::double precision + 0.5))\n"
            "                     ORDER BY t.lexeme)\n",
        ),
        (
            "      FROM (SELECT q.lexeme, q.documents,\n",
            "      FROM (SELECT q.lexeme, q.documents, wikiref.query_term_weight(u.weights) AS weight,\n",
        ),
        (
            "              FROM wikiref.query_terms(corpus, query) q WHERE q.documents > 0) t;\n",
            "              FROM wikiref.query_terms(corpus, query) q JOIN unnest(query) u ON u.lexeme = q.lexeme\n"
            "             WHERE q.documents > 0) t;\n",
        ),
    ],
    "article_words": [
        (
            "    SELECT a.lexemes INTO lexemes FROM public.articles a WHERE a.id = article;\n",
            "    SELECT wikiref.article_words(a.title, a.lead) INTO lexemes FROM public.articles a WHERE a.id = article;\n",
        )
    ],
}


def _changed(function: str, changes: list[tuple[str, str]]) -> str:
    for old, new in changes:
        if function.count(old) != 1:
            raise ValueError(f"0017: expected one {old.strip()!r} in the function to change")
        function = function.replace(old, new)
    return function


FUNCTIONS_0016 = (BM25_SCORES_0008, BM25_CANDIDATES_0016, SIMILAR_REFERENCES_0008, SIMILAR_ARTICLES_0008)
FUNCTIONS = (
    _changed(BM25_SCORES_0008, _CHANGES["bm25_scores"]),
    _changed(BM25_CANDIDATES_0016, _CHANGES["bm25_candidates"]),
    _changed(SIMILAR_REFERENCES_0008, _CHANGES["article_words"]),
    _changed(SIMILAR_ARTICLES_0008, _CHANGES["article_words"]),
)


def upgrade() -> None:
    op.execute(WEIGHTS)
    for function in FUNCTIONS:
        op.execute(function)


def downgrade() -> None:
    for function in FUNCTIONS_0016:
        op.execute(function)
    op.execute("DROP FUNCTION wikiref.article_words(text, text)")
    op.execute("DROP FUNCTION wikiref.query_term_weight(text[])")
