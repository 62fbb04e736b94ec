"""The ef_search a version falls back to becomes 200, the settings' default, instead of 100

Revision ID: 0013
Revises: 0012 (0011 until the merge)
Create Date: 2026-12-05 19:20:00

Issue 26 ("each default once"): ``WIKIREF_HNSW_EF_SEARCH`` defaults to 200 (docs/scaling.md: recall@10 at 1M
references 0.61 / 0.71 / 0.82 at ef_search 100 / 200 / 400), but ``embedding_states.ef_search`` defaulted to 100
and ``wikiref.set_ef_search`` fell back to 100 for a version with no recorded value. Both now fall back to 200.
The embed run always records the setting's value, so a version it embedded keeps its ef_search; only a version
without a recorded value (or a row written without one) changes. The functions' ``SET hnsw.ef_search = 100``
clauses stay as they are: set_ef_search overrides that value before every index scan.

This migration is frozen: it restates ``wikiref.db.schema.DEFAULT_EF_SEARCH`` (200) rather than importing it,
so that it keeps doing what it did when the code's value changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0006's function, its fallback ef_search left to fill in.
SET_EF_SEARCH = r"""
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
    ef := least(greatest(coalesce(ef, FALLBACK), k), 1000);
    -- Local to the transaction, and the callers' SET clauses scope it further to the function call.
    PERFORM set_config('hnsw.ef_search', ef::text, true);
    RETURN ef;
END
$$;
"""


def _fall_back_to(ef_search: int) -> None:
    op.alter_column("embedding_states", "ef_search", server_default=sa.text(str(ef_search)))
    op.execute(SET_EF_SEARCH.replace("FALLBACK", str(ef_search)))


def upgrade() -> None:
    _fall_back_to(200)


def downgrade() -> None:
    _fall_back_to(100)
