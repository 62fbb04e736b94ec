"""Where the fused ``similar_references`` loses recall against the exact fused computation, on a database that
``bench/scale_bench.py`` built (or any embedded one): the served top 10 against the exact fusion with each signal's
candidates exact or as served, and how much of BM25's exact top 10 the words' candidate search holds at each
``wikiref.words_rows_per_candidate``, with its time.

    PGOPTIONS="-c wikiref.ef_search=700" WIKIREF_DATA_DIR=/tmp/scale1m/data-1000000 \\
      python bench/fusion_recall_probe.py --titles 60 --out docs/bench/scale-1m-fusion-recall-probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.fusion_sql_bench import EXACT_REFERENCES, percentiles, sampled_queries

EXACT_BY_COSINE = """SELECT e.reference_id AS id FROM reference_embeddings e, query q
     WHERE e.model_version_id = %(v)s ORDER BY e.embedding <=> q.vector LIMIT %(depth)s"""
SERVED_BY_COSINE = "SELECT n.id FROM query q, wikiref.nearest(q.vector, %(depth)s, %(v)s, 'references') n"
EXACT_BY_WORDS = EXACT_REFERENCES[
    EXACT_REFERENCES.index("), by_words AS (") : EXACT_REFERENCES.index("), pool AS")
]
SERVED_BY_WORDS = """), by_words AS (
    SELECT b.id FROM query q, wikiref.bm25_candidates('references', q.lexemes, %(depth)s) b
"""
EXACT_WORDS_TOP_10 = """
SELECT b.id FROM wikiref.bm25_scores('references', %(lexemes)s::tsvector, ARRAY(
    SELECT r.id FROM article_references r
     WHERE r.lexemes @@ wikiref.lexeme_query(tsvector_to_array(%(lexemes)s::tsvector)))) b
 WHERE b.score > 0 ORDER BY b.score DESC, b.id LIMIT 10
"""


def fusion_statement(cosine: str, words: str) -> str:
    assert EXACT_BY_COSINE in EXACT_REFERENCES and EXACT_BY_WORDS in EXACT_REFERENCES
    return EXACT_REFERENCES.replace(EXACT_BY_COSINE, cosine).replace(EXACT_BY_WORDS, words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--titles", type=int, default=60, help="the first of the 200 titles scale_bench samples"
    )
    parser.add_argument("--rows-per-candidate", default="10,30,50,100")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import psycopg

    from wikiref.flows.database import prepare_database
    from wikiref.flows.settings import Settings

    url = prepare_database(Settings())[0].replace("postgresql+psycopg://", "postgresql://")
    report: dict = {"machine": {"load_average": os.getloadavg()}, "pgoptions": os.environ.get("PGOPTIONS")}
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET max_parallel_workers_per_gather = 0")
        version = connection.execute("SELECT wikiref.serving_version_id()").fetchone()[0]
        sample = sampled_queries(connection, 200)[0][: args.titles]  # scale_bench's first titles
        weight = connection.execute(
            "SELECT wikiref.fusion_weight(%s, 'similar_references', 'words')", (version,)
        ).fetchone()[0]
        served = [
            {
                row[0]
                for row in connection.execute(
                    "SELECT reference_id FROM wikiref.similar_references(%s, 10)", (t,)
                )
            }
            for t in sample
        ]
        variants = {
            "exact cosine, exact words": (fusion_statement(EXACT_BY_COSINE, EXACT_BY_WORDS), False),
            "exact cosine, served words": (fusion_statement(EXACT_BY_COSINE, SERVED_BY_WORDS), False),
            "served cosine (HNSW), exact words": (fusion_statement(SERVED_BY_COSINE, EXACT_BY_WORDS), True),
            "served cosine (HNSW), served words": (fusion_statement(SERVED_BY_COSINE, SERVED_BY_WORDS), True),
        }
        report["served_recall_at_10_against"] = {}
        for name, (statement, index_scans) in variants.items():
            recalls = []
            with connection.transaction():
                # The ef_search similar_references itself sets for its candidates (the session's, else the version's).
                connection.execute("SELECT wikiref.set_ef_search(%s, 100)", (version,))
                if not index_scans:
                    connection.execute("SET LOCAL enable_indexscan = off")  # exact cosine order: no HNSW
                for title, found in zip(sample, served, strict=True):
                    rows = connection.execute(
                        statement, {"v": version, "title": title, "depth": 100, "w": weight}
                    ).fetchall()
                    recalls.append(len(found & {row[0] for row in rows}) / max(1, len(rows)))
            report["served_recall_at_10_against"][name] = round(statistics.mean(recalls), 4)
            print(f"served recall@10 against {name}: {statistics.mean(recalls):.3f}", flush=True)

        lexemes = [
            connection.execute(
                "SELECT wikiref.article_words(title, lead)::text FROM articles WHERE title = %s", (t,)
            ).fetchone()[0]
            for t in sample
        ]
        exact = [
            {row[0] for row in connection.execute(EXACT_WORDS_TOP_10, {"lexemes": lexeme})}
            for lexeme in lexemes
        ]
        report["words_candidates"] = {}
        for rows_per_candidate in [int(x) for x in args.rows_per_candidate.split(",")]:
            with connection.transaction():
                connection.execute(f"SET LOCAL wikiref.words_rows_per_candidate = {rows_per_candidate}")
                statement = "SELECT id FROM wikiref.bm25_candidates('references', %s::tsvector, 100)"
                for lexeme in lexemes[:10]:  # the cache warmed as for every setting
                    connection.execute(statement, (lexeme,)).fetchall()
                seconds, held = [], []
                for lexeme, top in zip(lexemes, exact, strict=True):
                    start = time.perf_counter()
                    found = {row[0] for row in connection.execute(statement, (lexeme,))}
                    seconds.append(time.perf_counter() - start)
                    held.append(len(found & top) / max(1, len(top)))
            report["words_candidates"][rows_per_candidate] = {
                "exact_bm25_top_10_held": round(statistics.mean(held), 4),
                **percentiles(seconds),
            }
            print(
                f"rows per candidate {rows_per_candidate}: {report['words_candidates'][rows_per_candidate]}"
            )
        report["example_query_lexemes"] = lexemes[:3]
    report["machine"]["load_average_after"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
