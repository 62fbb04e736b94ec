"""halfvec index storage per model version

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:30:00

Design notes (why, not what):

* ``embedding_states.storage`` is ``vector`` (float4 HNSW index, as before) or ``halfvec``: the version's HNSW
  indexes are built on ``embedding::halfvec(384)`` with ``halfvec_cosine_ops``, half the bytes per vector in
  the index, which is the part that must stay in memory for fast queries. The table keeps its float4 column,
  so exact re-ranking, exports and a later rebuild as ``vector`` lose nothing; a per-version column type would
  need one table per version. The storage is fixed by the version's first embed run (its indexes are built
  with it); to change it, retire the version's embeddings and embed again.
* ``nearest_query`` is the one place that writes the nearest-neighbour SQL, so it alone learns the halfvec
  expression (the planner uses an expression index only when the ORDER BY names the same expression). It now
  reads the version's storage, hence STABLE instead of IMMUTABLE. No other function changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEAREST_QUERY_HALFVEC = r"""
CREATE OR REPLACE FUNCTION wikiref.nearest_query(target text, version integer, exclude_article boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    half boolean := coalesce(
        (SELECT s.storage = 'halfvec' FROM public.embedding_states s WHERE s.model_version_id = version), false);
    -- The same expression as the version's index (wikiref.db.embeddings.build_indexes), or the planner ignores it.
    distance text := CASE WHEN half THEN '(%1$s.embedding::halfvec(384) <=> $1::halfvec(384))'
                          ELSE '(%1$s.embedding <=> $1)' END;
BEGIN
    -- $1 = query vector, $2 = k, $3 = article id to leave out. The version is a literal so that the planner
    -- can match the version's partial HNSW index; the ORDER BY ... LIMIT sits directly on the index scan.
    IF target = 'references' THEN
        RETURN format(
            'SELECT e.reference_id AS id, %1$s::double precision AS distance '
            'FROM public.reference_embeddings e WHERE e.model_version_id = %2$L '
            'ORDER BY %1$s LIMIT $2', format(distance, 'e'), version);
    ELSIF target = 'articles' THEN
        RETURN format(
            'SELECT t.article_id AS id, %1$s::double precision AS distance '
            'FROM public.title_embeddings t WHERE t.model_version_id = %2$L%3$s '
            'ORDER BY %1$s LIMIT $2',
            format(distance, 't'), version, CASE WHEN exclude_article THEN ' AND t.article_id <> $3' ELSE '' END);
    END IF;
    RAISE EXCEPTION 'unknown target %: references or articles', target USING ERRCODE = 'invalid_parameter_value';
END
$$;
COMMENT ON FUNCTION wikiref.nearest_query(text, integer, boolean) IS
    'The nearest-neighbour SQL the search functions run through wikiref.nearest (PREPARE it and EXPLAIN EXECUTE '
    'under that function''s settings to see the HNSW index); halfvec versions compare in half precision.';
"""

NEAREST_QUERY_0002 = r"""
CREATE OR REPLACE FUNCTION wikiref.nearest_query(target text, version integer, exclude_article boolean DEFAULT false)
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
"""


def upgrade() -> None:
    op.add_column(
        "embedding_states",
        sa.Column(
            "storage",
            sa.Text(),
            server_default="vector",
            nullable=False,
            comment="vector or halfvec: the element type of the version's HNSW indexes",
        ),
    )
    op.create_check_constraint(
        op.f("ck_embedding_states_storage"), "embedding_states", "storage IN ('vector', 'halfvec')"
    )
    op.execute(NEAREST_QUERY_HALFVEC)


def downgrade() -> None:
    # A halfvec version's indexes would no longer match the queries: drop them; the next embed run rebuilds
    # them as vector indexes (the embeddings themselves are float4 and stay).
    op.execute(
        """
        DO $$
        DECLARE
            name text;
        BEGIN
            FOR name IN
                SELECT format('%I', i.indexname) FROM pg_indexes i
                  JOIN public.embedding_states s
                    ON i.indexname IN (format('ix_reference_embeddings_hnsw_v%s', s.model_version_id),
                                       format('ix_title_embeddings_hnsw_v%s', s.model_version_id))
                 WHERE s.storage = 'halfvec' AND i.schemaname = 'public'
            LOOP
                EXECUTE 'DROP INDEX public.' || name;
            END LOOP;
            UPDATE public.embedding_states SET completed_at = NULL WHERE storage = 'halfvec';
        END
        $$;
        """
    )
    op.execute(NEAREST_QUERY_0002)
    op.drop_constraint(op.f("ck_embedding_states_storage"), "embedding_states", type_="check")
    op.drop_column("embedding_states", "storage")
