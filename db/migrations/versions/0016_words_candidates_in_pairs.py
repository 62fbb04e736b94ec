"""The words' candidates: also the rows that match two of the query's rarer lexemes together

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 02:20:00

``wikiref.bm25_candidates`` scored the rows matching the query's rarest lexemes, as many lexemes as keep those
rows under the cap. At 1M references (docs/scaling.md) that held 0.61 of BM25's exact top 10 for a title:
the top rows match two or three of the query's words together ("Joan" and "River", "girl", "fire" and "song"),
each too common to be among the rarest, while the rarest alone ("scale", in 444 references) brought rows that
score low. The search now also takes the rows that match at least two of the query's rarest lexemes (up to 8
of them, as many as keep their postings under 20 x the cap), one GIN search of an OR of pairs, at most the cap of
them, and scores both sets as it reads them (before, ``bm25_scores`` read each row a second time by its id): at
1M that holds 0.97 of the exact top 10 in less time than the rarest lexemes' search took alone, and the fused
``similar_references`` reaches 0.95 recall@10 against exact fusion (0.85 before). The scores are those of
``wikiref.bm25_scores`` (tests/db/test_fusion.py).

Frozen: the function's text is restated here (a migration does not import another); 0014's returns on downgrade.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BM25_CANDIDATES = r"""
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

BM25_CANDIDATES_0014 = r"""
CREATE OR REPLACE FUNCTION wikiref.bm25_candidates(corpus text, query tsvector, depth integer, exclude bigint DEFAULT NULL)
RETURNS TABLE (id bigint, score double precision)
LANGUAGE plpgsql STABLE ROWS 100
SET enable_seqscan = off
AS $$
DECLARE
    -- Rows matched before scoring, at most: an OR of common words would otherwise match much of the corpus.
    cap integer := greatest(wikiref.words_rows_per_candidate() * depth, 1000);
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
"""


def upgrade() -> None:
    op.execute(BM25_CANDIDATES)


def downgrade() -> None:
    op.execute(BM25_CANDIDATES_0014)
