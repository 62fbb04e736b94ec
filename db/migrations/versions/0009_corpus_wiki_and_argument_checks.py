"""Corpora belong to a wiki; reference_changes checks its arguments

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 16:20:00

Issue 27, items 9 and 13.

* ``corpora.wiki``: the wiki a corpus was defined on (``en.wikipedia.org``). A refresh touches only the
  corpora of the wiki it reaches; before, it applied every corpus to whatever wiki was configured and reported
  another wiki's titles as missing. Existing corpora get their wiki where the database knows it: the one wiki
  of the stored articles their ``titles`` sources name, else the one wiki of all stored articles. A corpus
  left NULL (a database holding several wikis and a corpus without stored titles) is claimed by the first
  refresh that reaches a wiki.
* ``reference_changes(since, title)``: ``since`` NULL answered nothing, silently (``added_at >= NULL``); it is
  now the one-line error the other functions give for a missing argument. A ``title`` goes through
  ``wikiref.find_article`` like every other function's: an unknown title is an error, not an empty answer, and
  a redirect or a case variant finds its article. Arguments and result columns are unchanged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFERENCE_CHANGES = r"""
CREATE OR REPLACE FUNCTION wikiref.reference_changes(since timestamptz, title text DEFAULT NULL)
RETURNS TABLE (article text, change text, revision_id bigint, changed_at timestamptz, reference_id bigint,
               reference text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    wanted bigint;
BEGIN
    IF since IS NULL THEN
        RAISE EXCEPTION 'since must be a time, got NULL' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'e.g. now() - interval ''7 days''';
    END IF;
    IF title IS NOT NULL THEN
        wanted := wikiref.find_article(title);
    END IF;
    RETURN QUERY
        SELECT a.title, 'added'::text, r.added_revision_id, r.added_at, r.id, r.text
          FROM public.article_references r JOIN public.articles a ON a.id = r.article_id
         WHERE r.added_at >= since AND (wanted IS NULL OR a.id = wanted)
        UNION ALL
        SELECT a.title, 'added'::text, h.added_revision_id, h.added_at, h.id, h.text
          FROM public.reference_history h JOIN public.articles a ON a.id = h.article_id
         WHERE h.added_at >= since AND (wanted IS NULL OR a.id = wanted)
        UNION ALL
        SELECT a.title, 'removed'::text, h.removed_revision_id, h.removed_at, h.id, h.text
          FROM public.reference_history h JOIN public.articles a ON a.id = h.article_id
         WHERE h.removed_at >= since AND (wanted IS NULL OR a.id = wanted)
        ORDER BY 1, 4, 2, 5;
END
$$;
COMMENT ON FUNCTION wikiref.reference_changes(timestamptz, text) IS
    'References added or removed since a time, per article, with the revision of the change.';
"""

REFERENCE_CHANGES_0005 = r"""
CREATE OR REPLACE FUNCTION wikiref.reference_changes(since timestamptz, title text DEFAULT NULL)
RETURNS TABLE (article text, change text, revision_id bigint, changed_at timestamptz, reference_id bigint,
               reference text)
LANGUAGE sql STABLE AS $$
    SELECT a.title, 'added', r.added_revision_id, r.added_at, r.id, r.text
      FROM public.article_references r JOIN public.articles a ON a.id = r.article_id
     WHERE r.added_at >= since AND (reference_changes.title IS NULL OR a.title = reference_changes.title)
    UNION ALL
    SELECT a.title, 'added', h.added_revision_id, h.added_at, h.id, h.text
      FROM public.reference_history h JOIN public.articles a ON a.id = h.article_id
     WHERE h.added_at >= since AND (reference_changes.title IS NULL OR a.title = reference_changes.title)
    UNION ALL
    SELECT a.title, 'removed', h.removed_revision_id, h.removed_at, h.id, h.text
      FROM public.reference_history h JOIN public.articles a ON a.id = h.article_id
     WHERE h.removed_at >= since AND (reference_changes.title IS NULL OR a.title = reference_changes.title)
    ORDER BY 1, 4, 2, 5
$$;
COMMENT ON FUNCTION wikiref.reference_changes(timestamptz, text) IS
    'References added or removed since a time, per article, with the revision of the change.';
"""

# The one wiki of the stored articles a corpus's titles name; then, for the rest, the one wiki of all articles.
CORPUS_WIKI_FROM_TITLES = """
UPDATE corpora c SET wiki = known.wiki
  FROM (SELECT s.corpus_id, min(a.wiki) AS wiki
          FROM corpus_sources s
         CROSS JOIN LATERAL jsonb_array_elements_text(s.spec -> 'titles') AS t(title)
          JOIN articles a ON a.title = t.title
         WHERE s.kind = 'titles'
         GROUP BY s.corpus_id
        HAVING count(DISTINCT a.wiki) = 1) AS known
 WHERE known.corpus_id = c.id
"""
CORPUS_WIKI_FROM_ARTICLES = """
UPDATE corpora SET wiki = (SELECT min(wiki) FROM articles HAVING count(DISTINCT wiki) = 1)
 WHERE wiki IS NULL
"""


def upgrade() -> None:
    op.add_column(
        "corpora",
        sa.Column("wiki", sa.Text(), comment="the wiki the corpus was defined on; NULL: the next refresh's"),
    )
    op.execute(CORPUS_WIKI_FROM_TITLES)
    op.execute(CORPUS_WIKI_FROM_ARTICLES)
    op.execute(REFERENCE_CHANGES)


def downgrade() -> None:
    op.execute(REFERENCE_CHANGES_0005)
    op.drop_column("corpora", "wiki")
