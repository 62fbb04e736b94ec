"""The lexical index's refresh also empties the GIN indexes' pending lists, so the words' candidates never scan them

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 19:30:00

Issue 25, latency. Measured on the 303 shared pages (bench/fusion_sql_bench.py; docs/sql.md, the lexical index):
the fused ``similar_references`` answered in p50 / p95 96 / 216 ms right after a load, and in 14 / 25 ms on the
same pages once autovacuum had run; the cause is GIN's fast update. A GIN index (``fastupdate`` on, Postgres'
default) puts new entries in an unsorted pending list, up to ``gin_pending_list_limit`` (4 MB), and every search
reads the whole list until a vacuum or an overflowing insert merges it into the index. The words' candidates of
``similar_references`` search an article's rarest lexemes, so each call paid for the list: writing half the
references again left 240 pending pages and made the call 4x slower (20 -> 81 ms p50); merging them took 0.08 s and
gave the 20 ms back.

``refresh_lexical_statistics``, which every scrape or load write and every completed embed run already calls, now
merges both indexes' pending lists (``gin_clean_pending_list``) before it looks at the drift, under the same
advisory lock. Fast update stays on: inserting 7k references cost 0.3-0.4 s with it (merge included) and 0.8-0.9 s
with ``fastupdate = off``: one merge per write batch costs every scrape less than entry-by-entry inserts. A writer
that does not call the refresh leaves its entries to autovacuum, as before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFRESH = r"""
CREATE OR REPLACE FUNCTION wikiref.refresh_lexical_statistics(max_drift double precision DEFAULT 0.1)
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
    -- Every search of a GIN index reads its whole pending list: merge what the writes since the last call
    -- left there (migration 0012).
    PERFORM gin_clean_pending_list('public.ix_article_references_lexemes'::regclass);
    PERFORM gin_clean_pending_list('public.ix_articles_lexemes'::regclass);
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
"""

# 0008's definition, restored on downgrade (frozen copy: a migration must not import another).
PREVIOUS_REFRESH = r"""
CREATE OR REPLACE FUNCTION wikiref.refresh_lexical_statistics(max_drift double precision DEFAULT 0.1)
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
"""

COMMENT = r"""
COMMENT ON FUNCTION wikiref.refresh_lexical_statistics(double precision) IS
    'Merge the lexical GIN indexes'' pending entries, and rebuild the BM25 statistics (documents per lexeme, '
    'corpus size and average length) of each corpus whose rows changed since the last rebuild by more than '
    'max_drift of its size; scrape and embed call it.';
"""

PREVIOUS_COMMENT = r"""
COMMENT ON FUNCTION wikiref.refresh_lexical_statistics(double precision) IS
    'Rebuild the BM25 statistics (documents per lexeme, corpus size and average length) of each corpus whose '
    'rows changed since the last rebuild by more than max_drift of its size; scrape and embed call it.';
"""


def upgrade() -> None:
    op.execute(REFRESH)
    op.execute(COMMENT)
    # What earlier writes left pending is merged now, not at the next write.
    op.execute("SELECT gin_clean_pending_list('public.ix_article_references_lexemes'::regclass)")
    op.execute("SELECT gin_clean_pending_list('public.ix_articles_lexemes'::regclass)")


def downgrade() -> None:
    op.execute(PREVIOUS_REFRESH)
    op.execute(PREVIOUS_COMMENT)
