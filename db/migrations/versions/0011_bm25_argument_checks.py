"""bm25_references and bm25_articles refuse NULL arguments in one line, as every other function does

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 17:40:00

Issue 27, item 13: a NULL query or a NULL id array answered no rows (or zeros) silently. They become plpgsql
functions that check their arguments first and then run 0008's statement unchanged. An empty array stays an
empty answer, and a text with no words scores 0 against every id: both are honest answers, not mistakes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKED = r"""
CREATE OR REPLACE FUNCTION wikiref.bm25_references(query text, reference_ids bigint[])
RETURNS TABLE (reference_id bigint, score real)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF query IS NULL THEN
        RAISE EXCEPTION 'query must be a text, got NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF reference_ids IS NULL THEN
        RAISE EXCEPTION 'reference_ids must be an array of reference ids, got NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ARRAY[1, 2, 3]';
    END IF;
    RETURN QUERY
    SELECT i.id, coalesce(b.score, 0)::real
      FROM (SELECT DISTINCT unnest(reference_ids) AS id) i
      JOIN public.article_references r ON r.id = i.id
      LEFT JOIN wikiref.bm25_scores('references', to_tsvector('english', query), reference_ids) b ON b.id = i.id;
END
$$;

CREATE OR REPLACE FUNCTION wikiref.bm25_articles(query text, article_ids bigint[])
RETURNS TABLE (article_id bigint, score real)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF query IS NULL THEN
        RAISE EXCEPTION 'query must be a text, got NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF article_ids IS NULL THEN
        RAISE EXCEPTION 'article_ids must be an array of article ids, got NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ARRAY[1, 2, 3]';
    END IF;
    RETURN QUERY
    SELECT i.id, coalesce(b.score, 0)::real
      FROM (SELECT DISTINCT unnest(article_ids) AS id) i
      JOIN public.articles a ON a.id = i.id
      LEFT JOIN wikiref.bm25_scores('articles', to_tsvector('english', query), article_ids) b ON b.id = i.id;
END
$$;
"""

# 0008's definitions, restored on downgrade (frozen copy: a migration must not import another).
UNCHECKED = r"""
CREATE OR REPLACE FUNCTION wikiref.bm25_references(query text, reference_ids bigint[])
RETURNS TABLE (reference_id bigint, score real)
LANGUAGE sql STABLE AS $$
    SELECT i.id, coalesce(b.score, 0)::real
      FROM (SELECT DISTINCT unnest(reference_ids) AS id) i
      JOIN public.article_references r ON r.id = i.id
      LEFT JOIN wikiref.bm25_scores('references', to_tsvector('english', query), reference_ids) b ON b.id = i.id
$$;
CREATE OR REPLACE FUNCTION wikiref.bm25_articles(query text, article_ids bigint[])
RETURNS TABLE (article_id bigint, score real)
LANGUAGE sql STABLE AS $$
    SELECT i.id, coalesce(b.score, 0)::real
      FROM (SELECT DISTINCT unnest(article_ids) AS id) i
      JOIN public.articles a ON a.id = i.id
      LEFT JOIN wikiref.bm25_scores('articles', to_tsvector('english', query), article_ids) b ON b.id = i.id
$$;
"""

COMMENTS = r"""
COMMENT ON FUNCTION wikiref.bm25_references(text, bigint[]) IS
    'BM25 of a text against the given references'' texts, as the fused functions score their words (0: no '
    'word in common).';
COMMENT ON FUNCTION wikiref.bm25_articles(text, bigint[]) IS
    'BM25 of a text against the given articles'' title + lead, as the fused functions score their words.';
"""


def upgrade() -> None:
    op.execute(CHECKED)
    op.execute(COMMENTS)


def downgrade() -> None:
    op.execute(UNCHECKED)
    op.execute(COMMENTS)
