"""wikiref.serving_version() returns the serving version's name; its id moves to wikiref.serving_version_id()

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 16:05:00

Issue 27, item 5: docs/sql.md said ``serving_version()`` returns the name, and a user asking "which model answers"
wants the name; the function returned the integer id. The id is what joins need (``resolve_version`` and
``wikiref.db.search.serving_version``), so it keeps its own function under a name that says so, with the same
body; ``serving_version()`` is then the name of that row. A function's result type cannot be changed in place,
so ``serving_version()`` is dropped and created again (nothing else depended on it once ``resolve_version``
calls the id function). Downgrade restores the integer function and 0006's ``resolve_version``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVING_VERSION_ID = r"""
CREATE FUNCTION wikiref.serving_version_id() RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT mv.id
      FROM public.model_versions mv
      JOIN public.embedding_states s ON s.model_version_id = mv.id
     WHERE s.completed_at IS NOT NULL
       AND mv.status IN ('active', 'superseded')
     ORDER BY (mv.status = 'active') DESC, mv.activated_at DESC NULLS LAST, mv.id DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION wikiref.serving_version_id() IS
    'The id of the model version queries use by default: the active one if its embeddings are complete, '
    'else the most recently activated complete one; NULL if none.';
"""

SERVING_VERSION_NAME = r"""
CREATE FUNCTION wikiref.serving_version() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT mv.name FROM public.model_versions mv WHERE mv.id = wikiref.serving_version_id()
$$;
COMMENT ON FUNCTION wikiref.serving_version() IS
    'The name of the model version queries use by default (its id: wikiref.serving_version_id()); NULL if none.';
"""

RESOLVE_VERSION = r"""
CREATE OR REPLACE FUNCTION wikiref.resolve_version(model_version text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found_id integer;
    found_status text;
BEGIN
    IF model_version IS NULL THEN
        found_id := wikiref.serving_version_id();
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
"""

SERVING_VERSION_0002 = r"""
CREATE FUNCTION wikiref.serving_version() RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT mv.id
      FROM public.model_versions mv
      JOIN public.embedding_states s ON s.model_version_id = mv.id
     WHERE s.completed_at IS NOT NULL
       AND mv.status IN ('active', 'superseded')
     ORDER BY (mv.status = 'active') DESC, mv.activated_at DESC NULLS LAST, mv.id DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION wikiref.serving_version() IS
    'The model version queries use by default: the active one if its embeddings are complete, '
    'else the most recently activated complete one; NULL if none.';
"""

RESOLVE_VERSION_0006 = r"""
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
"""


def upgrade() -> None:
    op.execute(SERVING_VERSION_ID)
    op.execute(RESOLVE_VERSION)
    op.execute("DROP FUNCTION wikiref.serving_version()")
    op.execute(SERVING_VERSION_NAME)


def downgrade() -> None:
    op.execute("DROP FUNCTION wikiref.serving_version()")
    op.execute(SERVING_VERSION_0002)
    op.execute(RESOLVE_VERSION_0006)
    op.execute("DROP FUNCTION wikiref.serving_version_id()")
