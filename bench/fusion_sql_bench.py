"""Fusion, SQL side (issue 25): latency of the fused SQL functions beside the embeddings alone, recall@10 of the
fused top 10 against an exact fused computation, and the lexical index's size and rebuild time.

Loads the shared pages (``pages/``, 303 articles; ``--bulk`` adds the ~700 of ``bulk.tar.gz``) into an embedded
server under ``--data-dir`` (reused on a second run), embeds them with the base model, then measures in one
backend (no parallel workers). "Exact fused": the same z-score fusion over candidates taken without any index
(every reference's cosine; BM25 over every row matching any query word), so it shows what the HNSW index and the
rarest-words bound of the words' candidates lose.

    python bench/fusion_sql_bench.py --queries 100 --out bench/results/fusion-sql-303.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_WIKIPEDIA = REPO_ROOT.parent / "shared" / "data" / "wikipedia"


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "n": len(ordered),
    }


def timed(connection, statement: str, params_list: list[tuple]) -> tuple[dict, list[list]]:
    seconds, results = [], []
    for params in params_list:
        start = time.perf_counter()
        rows = connection.execute(statement, params).fetchall()
        seconds.append(time.perf_counter() - start)
        results.append(rows)
    return percentiles(seconds), results


def prepare(include_bulk: bool) -> str:
    """A database holding the pages, embedded with the base model and serving; its URL."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from wikiref.db import registry
    from wikiref.flows.database import prepare_database
    from wikiref.flows.settings import get_settings
    from wikiref.flows.steps import embedding
    from wikiref.flows.steps.records import saved_page_batches
    from wikiref.flows.steps.scraping import write_records
    from wikiref.models.article_text import TITLE_ONLY
    from wikiref.models.base import BASE_MODEL_ID

    settings = get_settings()
    url, engine = prepare_database(settings)
    with Session(engine) as session:
        articles = session.scalar(text("SELECT count(*) FROM articles"))
    timings = {}
    if not articles:
        start = time.perf_counter()
        for records in saved_page_batches(SHARED_WIKIPEDIA, include_bulk=include_bulk):
            write_records(engine, records, bulk=True)
        timings["load_seconds"] = time.perf_counter() - start
    with Session(engine) as session:
        registry.ensure_base_version(
            session=session, name="base", base_model=BASE_MODEL_ID, article_text=TITLE_ONLY.name
        )
    request = embedding.EmbedRequest.from_settings(
        settings, embedding.resolve_version(engine, "base", settings)
    )
    start = time.perf_counter()
    outcome = embedding.embed_pending(engine, request)
    timings["embed_seconds"] = time.perf_counter() - start
    print(f"prepared {url}: {outcome.counts_line()} {timings}", flush=True)
    return url


EXACT_REFERENCES = """
WITH query AS (
    SELECT t.embedding AS vector, wikiref.article_words(a.title, a.lead) AS lexemes,
           wikiref.title_phrase(a.title) AS phrase
      FROM articles a JOIN title_embeddings t ON t.article_id = a.id AND t.model_version_id = %(v)s
     WHERE a.title = %(title)s
), by_cosine AS (
    SELECT e.reference_id AS id FROM reference_embeddings e, query q
     WHERE e.model_version_id = %(v)s ORDER BY e.embedding <=> q.vector LIMIT %(depth)s
), by_words AS (
    SELECT b.id FROM query q, wikiref.bm25_scores('references', q.lexemes, ARRAY(
        SELECT r.id FROM article_references r, query q2
         WHERE r.lexemes @@ wikiref.lexeme_query(tsvector_to_array(q2.lexemes)))) b
     WHERE b.score > 0 ORDER BY b.score DESC, b.id LIMIT %(depth)s
), pool AS (SELECT id FROM by_cosine UNION SELECT id FROM by_words),
signals AS (
    SELECT p.id, 1 - (e.embedding <=> q.vector) AS similarity, coalesce(w.score, 0) AS words,
           coalesce(r.lexemes @@ q.phrase, false) AS names_article, h.hubness
      FROM pool p CROSS JOIN query q
      JOIN article_references r ON r.id = p.id
      JOIN reference_embeddings e ON e.model_version_id = %(v)s AND e.reference_id = p.id
      LEFT JOIN reference_hubness h
        ON h.model_version_id = %(v)s AND h.reference_id = p.id AND h.content_hash = e.content_hash
      LEFT JOIN wikiref.bm25_scores('references', q.lexemes, ARRAY(SELECT id FROM pool)) w ON w.id = p.id
), corrected AS (
    -- The stored hubness, as the function reads it (its own 10 nearest articles came through the HNSW index).
    SELECT s.*, s.similarity - %(h)s * coalesce(s.hubness, avg(s.hubness) OVER (), 0) AS embedding FROM signals s
)
SELECT s.id FROM corrected s
 ORDER BY wikiref.z(s.embedding, avg(s.embedding) OVER (), stddev_pop(s.embedding) OVER ())
        + %(w)s * wikiref.z(s.words, avg(s.words) OVER (), stddev_pop(s.words) OVER ())
        + CASE WHEN s.names_article THEN wikiref.names_article_weight() ELSE 0 END DESC, s.id
 LIMIT 10
"""


def lexical_index_report(connection, *, rebuild_indexes: bool = False) -> dict:
    """The lexical index's sizes and the time to rebuild its statistics from scratch; with ``rebuild_indexes``,
    also each GIN index dropped and built again (its build time alone, as a first load into an empty table
    would not show it)."""
    result: dict = {}
    connection.execute("DELETE FROM lexical_statistics")  # so that the refresh rebuilds both corpora
    start = time.perf_counter()
    connection.execute("SELECT * FROM wikiref.refresh_lexical_statistics()")
    result["statistics_rebuild_seconds"] = round(time.perf_counter() - start, 3)
    if rebuild_indexes:
        builds = {}
        for index in ("ix_article_references_lexemes", "ix_articles_lexemes"):
            definition = connection.execute("SELECT pg_get_indexdef(%s::regclass)", (index,)).fetchone()[0]
            connection.execute(f"DROP INDEX {index}")
            start = time.perf_counter()
            connection.execute(definition)
            builds[index] = round(time.perf_counter() - start, 3)
        result["gin_build_seconds"] = builds
    size = "SELECT pg_total_relation_size(%s) / 1048576.0"
    column = "SELECT sum(pg_column_size(lexemes)) / 1048576.0 FROM {}"
    result["lexical_index_mib"] = {
        "ix_article_references_lexemes": float(
            connection.execute(size, ("ix_article_references_lexemes",)).fetchone()[0]
        ),
        "ix_articles_lexemes": float(connection.execute(size, ("ix_articles_lexemes",)).fetchone()[0]),
        "lexeme_documents": float(connection.execute(size, ("lexeme_documents",)).fetchone()[0]),
        "article_references.lexemes": float(
            connection.execute(column.format("article_references")).fetchone()[0]
        ),
        "articles.lexemes": float(connection.execute(column.format("articles")).fetchone()[0]),
    }
    result["lexemes"] = connection.execute(
        "SELECT corpus, count(*) FROM lexeme_documents GROUP BY corpus ORDER BY corpus"
    ).fetchall()
    return result


def fused_latency(connection, titles: list[str], references: list[int]) -> tuple[dict, dict[str, list[list]]]:
    """p50/p95 of each function fused and with ``fusion => false``, one call at a time; and the rows
    ``similar_references`` served for each title, by label."""
    latency, served = {}, {}
    for fusion in (True, False):
        label = "fused" if fusion else "embeddings_alone"
        latency[f"similar_references_{label}"], served[label] = timed(
            connection,
            "SELECT reference_id FROM wikiref.similar_references(%s, 10, fusion => %s)",
            [(t, fusion) for t in titles],
        )
        latency[f"similar_articles_{label}"], _ = timed(
            connection,
            "SELECT article_id FROM wikiref.similar_articles(%s, 10, fusion => %s)",
            [(t, fusion) for t in titles],
        )
        latency[f"articles_for_reference_{label}"], _ = timed(
            connection,
            "SELECT article_id FROM wikiref.articles_for_reference(%s, 10, fusion => %s)",
            [(r, fusion) for r in references],
        )
    latency["search_text_words_alone"], _ = timed(
        connection,
        "SELECT reference_id FROM wikiref.search_text(%s, NULL, 10)",
        [(t,) for t in titles],
    )
    return latency, served


def fused_recall(connection, version: int, titles: list[str], served: list[list], depth: int = 100) -> dict:
    """Recall@10 of the served fused top 10 against the exact fused computation (``EXACT_REFERENCES``), and how
    long one exact computation took."""
    weight, hubness = connection.execute(
        "SELECT wikiref.fusion_weight(%s, 'similar_references', 'words'), "
        "wikiref.fusion_weight(%s, 'similar_references', 'hubness')",
        (version, version),
    ).fetchone()
    recalls, seconds = [], []
    with connection.transaction():
        connection.execute("SET LOCAL enable_indexscan = off")  # exact cosine order: no HNSW
        for title, rows in zip(titles, served, strict=True):
            start = time.perf_counter()
            exact = connection.execute(
                EXACT_REFERENCES, {"v": version, "title": title, "depth": depth, "w": weight, "h": hubness}
            ).fetchall()
            seconds.append(time.perf_counter() - start)
            recalls.append(len({r[0] for r in rows} & {r[0] for r in exact}) / max(1, len(exact)))
    return {
        "recall_at_10": round(statistics.mean(recalls), 4),
        "queries": len(recalls),
        "exact": percentiles(seconds),
    }


def vote_agreement(connection, references: list[int]) -> dict | None:
    """Where the session lets only the nearest references vote (``wikiref.vote_references``, docs/sql.md): how
    often the fused ``articles_for_reference`` top 1 is the exact vote's, and the overlap of their top 10s. None
    when the setting is unset (the vote is exact)."""
    setting = connection.execute("SELECT current_setting('wikiref.vote_references', true)").fetchone()[0]
    if not (setting or "").strip():
        return None
    statement = "SELECT article_id FROM wikiref.articles_for_reference(%s, 10)"
    # The second pass is the one reported: the first reads into the cache what the exact fusion's scans left out.
    for _ in range(2):
        same_top, overlap, seconds = [], [], {"nearest_references_vote": [], "exact_vote": []}
        for reference_id in references:
            start = time.perf_counter()
            served = [row[0] for row in connection.execute(statement, (reference_id,))]
            seconds["nearest_references_vote"].append(time.perf_counter() - start)
            with connection.transaction(force_rollback=True):
                # '' is unset: RESET would return to the PGOPTIONS value.
                connection.execute("SET LOCAL wikiref.vote_references = ''")
                start = time.perf_counter()
                exact = [row[0] for row in connection.execute(statement, (reference_id,))]
                seconds["exact_vote"].append(time.perf_counter() - start)
            same_top.append(served[:1] == exact[:1])
            overlap.append(len(set(served) & set(exact)) / max(1, len(exact)))
    return {
        "vote_references": int(setting),
        "top_1_same_as_exact_vote": round(statistics.mean(same_top), 4),
        "top_10_overlap_with_exact_vote": round(statistics.mean(overlap), 4),
        "queries": len(references),
        # Side by side, one call of each per reference in turn (the exact one inside its own transaction).
        "latency": {name: percentiles(values) for name, values in seconds.items()},
    }


def sampled_queries(connection, count: int) -> tuple[list[str], list[int]]:
    """``count`` titles, then ``count`` reference ids, sampled with seed 7: every bench of the SQL functions asks
    the same queries of the same corpus."""
    rng = random.Random(7)
    titles = [row[0] for row in connection.execute("SELECT title FROM articles ORDER BY id")]
    references = [row[0] for row in connection.execute("SELECT id FROM article_references ORDER BY id")]
    return rng.sample(titles, min(count, len(titles))), rng.sample(references, min(count, len(references)))


def measure(url: str, queries: int) -> dict:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET max_parallel_workers_per_gather = 0")
        version = connection.execute("SELECT wikiref.serving_version_id()").fetchone()[0]
        counts = connection.execute(
            "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM article_references)"
        ).fetchone()
        result: dict = {"corpus": {"articles": counts[0], "references": counts[1]}}
        sample_titles, sample_refs = sampled_queries(connection, queries)
        result.update(lexical_index_report(connection))
        result["latency"], served = fused_latency(connection, sample_titles, sample_refs)
        result["similar_references_fused_recall_at_10_vs_exact_fused"] = fused_recall(
            connection, version, sample_titles, served["fused"]
        )["recall_at_10"]
        agreement = vote_agreement(connection, sample_refs)
        if agreement is not None:
            result["articles_for_reference_vs_exact_vote"] = agreement
        result["sanity_quality"] = sanity_quality(connection, sample_titles, sample_refs)
    return result


def sanity_quality(connection, titles: list[str], references: list[int]) -> dict:
    """NDCG@10 of an article's own references (similar_references) and acc@1 of a reference's own article
    (articles_for_reference), fused and embeddings alone, on the sampled articles of the whole corpus: a sanity
    check of the served functions, not the evaluation (no held-out split, no intervals; bench of issue 25)."""
    quality = {}
    for fusion in (False, True):
        label = "fused" if fusion else "embeddings_alone"
        gains = []
        for title in titles:
            rows = connection.execute(
                "SELECT article_title FROM wikiref.similar_references(%s, 10, fusion => %s)", (title, fusion)
            ).fetchall()
            own = connection.execute(
                "SELECT count(*) FROM article_references r JOIN articles a ON a.id = r.article_id "
                "WHERE a.title = %s",
                (title,),
            ).fetchone()[0]
            dcg = sum(1 / math.log2(i + 2) for i, row in enumerate(rows) if row[0] == title)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(10, own)))
            gains.append(dcg / ideal if ideal else 0.0)
        hits = [
            connection.execute(
                "SELECT is_own_article FROM wikiref.articles_for_reference(%s, 1, fusion => %s)", (r, fusion)
            ).fetchone()[0]
            for r in references
        ]
        quality[label] = {
            "similar_references_ndcg@10": round(statistics.mean(gains), 4),
            "articles_for_reference_acc@1": round(sum(hits) / len(hits), 4),
        }
    return quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/tmp/wikiref-fusion-bench", help="WIKIREF_DATA_DIR (reused)")
    parser.add_argument("--bulk", action="store_true", help="also load the pages of bulk.tar.gz")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ["WIKIREF_DATA_DIR"] = args.data_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO_ROOT))
    url = prepare(args.bulk)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        **measure(url, args.queries),
    }
    result["machine"]["load_average_after"] = os.getloadavg()
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
