"""Hubness: similar_references corrects each reference's cosine by how close it sits to the articles in general

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 20:00:00

A reference close to many articles (a generic source: "Official website", a national statistics office, a news
site's front page) ranks high for each article it resembles and belongs to only one of them. ``similar_references``
now ranks by ``cos(article, reference) - w * hubness(reference)`` before that cosine is z-normalised and fused
with the words: cross-domain similarity local scaling (CSLS; Conneau et al. 2018, "Word translation without
parallel data"), whose own weight is 0.5. ``hubness(reference)`` is the mean cosine of the reference to its 10
nearest articles of the version (``wikiref.reference_hubness``, through the version's HNSW index of articles),
kept in ``reference_hubness`` beside the embedding it was computed from (its ``content_hash``): ``wikiref embed``
computes it for each reference embedded since (``wikiref.refresh_hubness``), and for every reference of the
version again once the version's articles have grown or shrunk by more than a tenth since the last full pass
(``embedding_states.hubness_articles``), as the BM25 statistics drift. A reference with none yet counts as the
candidates' mean. The weight ``w`` is a fusion weight of the version (``similar_references.hubness``), chosen by a
training run on its validation articles; the default (every new version, the base version) is the bench's
choice for the base model on the 69 validation articles: words 0.2, hubness 0.75. On the bench's 282
evaluation articles that gives the base model NDCG@10 +0.026 [95% CI +0.016, +0.037] over the words alone
(bench/results/hubness-probe.json, docs/training.md). Existing versions keep their weights with hubness 0, but
for a base version still on the old default (words 0.3), which takes the new one.

Frozen: the function's text is restated as 0018 left it (a migration does not import another); downgrade
restores it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_DEFAULT = (
    '{"similar_references": {"words": 0.3}, "articles_for_reference": {"words": 0.3, "vote": 2.0}, '
    '"similar_articles": {"words": 0.0}, "search_text": {"words": 0.3}}'
)
NEW_DEFAULT = (
    '{"similar_references": {"words": 0.2, "hubness": 0.75}, "articles_for_reference": {"words": 0.3, "vote": 2.0}, '
    '"similar_articles": {"words": 0.0}, "search_text": {"words": 0.3}}'
)

# As 0018 left it.
SIMILAR_REFERENCES_0018 = r"""CREATE OR REPLACE FUNCTION wikiref.similar_references(title text, k integer DEFAULT 10, model_version text DEFAULT NULL,
                                           fusion boolean DEFAULT true, candidates integer DEFAULT 100)
RETURNS TABLE (reference_id bigint, article_title text, reference_text text, similarity double precision,
               score double precision, words double precision, names_article boolean)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100 SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    version integer;
    article bigint;
    query vector;
    lexemes tsvector;
    phrase tsquery;
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
            SELECT n.id, a.title, r.text, 1 - n.distance, NULL::double precision, NULL::double precision,
                   NULL::boolean
              FROM wikiref.nearest(query, k, version, 'references') n
              JOIN public.article_references r ON r.id = n.id
              JOIN public.articles a ON a.id = r.article_id
             ORDER BY n.distance, n.id;
        RETURN;
    END IF;
    SELECT wikiref.article_words(a.title, a.lead), wikiref.title_phrase(a.title) INTO lexemes, phrase
      FROM public.articles a WHERE a.id = article;
    weight := wikiref.fusion_weight(version, 'similar_references', 'words');
    PERFORM wikiref.set_ef_search(version, candidates);
    RETURN QUERY
        WITH pool AS (
            SELECT n.id FROM wikiref.nearest(query, candidates, version, 'references') n
            UNION
            SELECT b.id FROM wikiref.bm25_candidates('references', lexemes, candidates) b
        ), signals AS (
            SELECT p.id, 1 - (e.embedding <=> query) AS similarity, coalesce(w.score, 0) AS words,
                   coalesce((SELECT r.lexemes @@ phrase FROM public.article_references r WHERE r.id = p.id), false)
                   AS names_article
              FROM pool p
              JOIN public.reference_embeddings e ON e.model_version_id = version AND e.reference_id = p.id
              LEFT JOIN wikiref.bm25_scores('references', lexemes, ARRAY(SELECT p2.id FROM pool p2)) w
                ON w.id = p.id
        ), fused AS (
            SELECT s.id, s.similarity, s.words, s.names_article,
                   wikiref.z(s.similarity, avg(s.similarity) OVER (), stddev_pop(s.similarity) OVER ())
                   + weight * wikiref.z(s.words, avg(s.words) OVER (), stddev_pop(s.words) OVER ())
                   + CASE WHEN s.names_article THEN wikiref.names_article_weight() ELSE 0 END AS score
              FROM signals s
        )
        SELECT f.id, a.title, r.text, f.similarity, f.score, f.words, f.names_article
          FROM fused f
          JOIN public.article_references r ON r.id = f.id
          JOIN public.articles a ON a.id = r.article_id
         ORDER BY f.score DESC, f.id
         LIMIT k;
END
$$;

"""

_CHANGES = [
    (
        "               score double precision, words double precision, names_article boolean)",
        "               score double precision, words double precision, names_article boolean,\n"
        "               hubness double precision)",
    ),
    (
        "    weight double precision;\n",
        "    weight double precision;\n    hubness_weight double precision;\n",
    ),
    (
        "                   NULL::boolean\n",
        "                   NULL::boolean, NULL::double precision\n",
    ),
    (
        "    weight := wikiref.fusion_weight(version, 'similar_references', 'words');\n",
        "    weight := wikiref.fusion_weight(version, 'similar_references', 'words');\n"
        "    hubness_weight := wikiref.fusion_weight(version, 'similar_references', 'hubness');\n",
    ),
    (
        "                   AS names_article\n              FROM pool p\n"
        "              JOIN public.reference_embeddings e ON e.model_version_id = version AND e.reference_id = p.id\n",
        "                   AS names_article, h.hubness\n              FROM pool p\n"
        "              JOIN public.reference_embeddings e ON e.model_version_id = version AND e.reference_id = p.id\n"
        "              LEFT JOIN public.reference_hubness h\n"
        "                ON h.model_version_id = version AND h.reference_id = p.id AND h.content_hash = e.content_hash\n",
    ),
    (
        "        ), fused AS (\n            SELECT s.id, s.similarity, s.words, s.names_article,\n"
        "                   wikiref.z(s.similarity, avg(s.similarity) OVER (), stddev_pop(s.similarity) OVER ())\n",
        "        ), corrected AS (\n"
        "            -- A reference with no hubness yet (embedded since the last refresh) counts as the candidates' mean.\n"
        "            SELECT s.*, s.similarity - hubness_weight * coalesce(s.hubness, avg(s.hubness) OVER (), 0) AS embedding\n"
        "              FROM signals s\n"
        "        ), fused AS (\n            SELECT s.id, s.similarity, s.words, s.names_article, s.hubness,\n"
        "                   wikiref.z(s.embedding, avg(s.embedding) OVER (), stddev_pop(s.embedding) OVER ())\n",
    ),
    (
        "              FROM signals s\n        )\n        SELECT f.id, a.title, r.text, f.similarity, f.score, f.words, f.names_article\n",
        "              FROM corrected s\n        )\n"
        "        SELECT f.id, a.title, r.text, f.similarity, f.score, f.words, f.names_article, f.hubness\n",
    ),
]

HUBNESS = r"""
CREATE FUNCTION wikiref.reference_hubness(embedding vector, version integer) RETURNS double precision
LANGUAGE sql STABLE
-- Ten live articles even where the index holds deleted ones.
SET hnsw.iterative_scan = 'relaxed_order'
AS $$
    SELECT avg(1 - n.distance) FROM wikiref.nearest(embedding, 10, version, 'articles') n
$$;
COMMENT ON FUNCTION wikiref.reference_hubness(vector, integer) IS
    'How close an embedding sits to the articles in general: its mean cosine to its 10 nearest articles of the '
    'version (through the version''s HNSW index of articles); similar_references subtracts it, weighted.';

CREATE FUNCTION wikiref.refresh_hubness(version integer, max_drift double precision DEFAULT 0.1)
RETURNS TABLE (computed bigint, articles bigint, full_pass boolean)
LANGUAGE plpgsql AS $$
DECLARE
    last bigint;
BEGIN
    SELECT count(*) INTO articles FROM public.title_embeddings t WHERE t.model_version_id = version;
    SELECT s.hubness_articles INTO last FROM public.embedding_states s WHERE s.model_version_id = version;
    -- Every reference's hubness moves as the articles change; recompute them all only past the drift.
    full_pass := last IS NULL OR abs(articles - last) > max_drift * greatest(last, 1);
    INSERT INTO public.reference_hubness AS h (model_version_id, reference_id, content_hash, hubness)
    SELECT e.model_version_id, e.reference_id, e.content_hash, wikiref.reference_hubness(e.embedding, version)
      FROM public.reference_embeddings e
      LEFT JOIN public.reference_hubness o
        ON o.model_version_id = e.model_version_id AND o.reference_id = e.reference_id
     WHERE e.model_version_id = version
       AND (full_pass OR o.reference_id IS NULL OR o.content_hash <> e.content_hash)
    ON CONFLICT (model_version_id, reference_id) DO UPDATE
       SET content_hash = EXCLUDED.content_hash, hubness = EXCLUDED.hubness;
    GET DIAGNOSTICS computed = ROW_COUNT;
    IF full_pass THEN
        UPDATE public.embedding_states s SET hubness_articles = articles WHERE s.model_version_id = version;
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION wikiref.refresh_hubness(integer, double precision) IS
    'Compute the hubness of each reference of a version embedded since (or changed), and of every one once the '
    'version''s articles changed by more than max_drift since the last full pass; wikiref embed calls it.';
"""

COMMENT = r"""
COMMENT ON FUNCTION wikiref.similar_references(text, integer, text, boolean, integer) IS
    'The k references (of any article) closest to an article: its embedding (title, and lead when the version '
    'was trained with it), corrected for each reference''s hubness (its closeness to the articles in general), '
    'fused with the BM25 of its title + lead against each reference''s text, and lifted when the reference names '
    'the article (names_article); fusion => false: the embeddings alone.';
"""
COMMENT_0018 = r"""
COMMENT ON FUNCTION wikiref.similar_references(text, integer, text, boolean, integer) IS
    'The k references (of any article) closest to an article: its embedding (title, and lead when the version '
    'was trained with it) fused with the BM25 of its title + lead against each reference''s text, and lifted '
    'when the reference names the article (names_article); fusion => false: the embeddings alone.';
"""
DROP = "DROP FUNCTION wikiref.similar_references(text, integer, text, boolean, integer)"


def _changed(function: str) -> str:
    for old, new in _CHANGES:
        if function.count(old) != 1:
            raise ValueError(f"0019: expected one {old.strip()!r} in the function to change")
        function = function.replace(old, new)
    return function


def upgrade() -> None:
    op.add_column(
        "embedding_states",
        sa.Column(
            "hubness_articles",
            sa.Integer(),
            comment="articles the version had embedded when every reference's hubness was last computed (0019)",
        ),
    )
    op.create_table(
        "reference_hubness",
        sa.Column("model_version_id", sa.Integer(), primary_key=True),
        sa.Column("reference_id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "content_hash",
            sa.Text(),
            nullable=False,
            comment="content_hash of the embedding it was computed from",
        ),
        sa.Column(
            "hubness",
            sa.Float(),
            nullable=False,
            comment="mean cosine of the reference to its 10 nearest articles in the version",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id", "reference_id"],
            ["reference_embeddings.model_version_id", "reference_embeddings.reference_id"],
            ondelete="CASCADE",
        ),
    )
    op.execute(HUBNESS)
    # A new column changes the return type, which CREATE OR REPLACE cannot.
    op.execute(DROP)
    op.execute(_changed(SIMILAR_REFERENCES_0018))
    op.execute(COMMENT)
    op.execute(f"ALTER TABLE model_versions ALTER COLUMN fusion_weights SET DEFAULT '{NEW_DEFAULT}'::jsonb")
    op.execute(
        "UPDATE model_versions SET fusion_weights = jsonb_set(fusion_weights, '{similar_references}', "
        "CASE WHEN (name = 'base' OR name LIKE 'base:%') "
        "AND fusion_weights -> 'similar_references' = '{\"words\": 0.3}'::jsonb "
        'THEN \'{"words": 0.2, "hubness": 0.75}\'::jsonb '
        "ELSE (fusion_weights -> 'similar_references') || '{\"hubness\": 0.0}'::jsonb END)"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE model_versions SET fusion_weights = jsonb_set(fusion_weights, '{similar_references}', "
        "(fusion_weights -> 'similar_references') - 'hubness')"
    )
    op.execute(f"ALTER TABLE model_versions ALTER COLUMN fusion_weights SET DEFAULT '{OLD_DEFAULT}'::jsonb")
    op.execute(DROP)
    op.execute(SIMILAR_REFERENCES_0018)
    op.execute(COMMENT_0018)
    op.execute("DROP FUNCTION wikiref.refresh_hubness(integer, double precision)")
    op.execute("DROP FUNCTION wikiref.reference_hubness(vector, integer)")
    op.drop_table("reference_hubness")
    op.drop_column("embedding_states", "hubness_articles")
