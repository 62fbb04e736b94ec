"""Recall@10 of the HNSW index by source, on a scale-bench database: is a miss another copy of the same citation?

bench/scale_dump.py repeats each real reference item (with an access date of its own) to reach N references, so a
title's exact top 10 can be copies of one or two sources. This prints, for the same 200 title queries as
scale_bench.py, the distinct sources in the exact top 10 (a text with its "Retrieved ..." date removed), and
recall@10 of the SQL functions' statement by id and by source (an HNSW result counts when its source is among
the exact top 10's sources).

    WIKIREF_DATA_DIR=/tmp/wikiref-scale-1m/data-1000000 python bench/scale_recall_by_source.py --out out.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from scale_bench import nearest_references, title_queries

DATE = re.compile(r"\s*(Retrieved|Archived from the original on|accessed)\s+[^.]*\.", re.IGNORECASE)


def source(text: str) -> str:
    return DATE.sub("", text).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef-search", type=lambda v: [int(x) for x in v.split(",")], default=[100, 200, 400])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import psycopg
    from pgvector.psycopg import register_vector

    from wikiref.flows.database import prepare_database
    from wikiref.flows.settings import Settings

    url = prepare_database(Settings())[0].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        register_vector(connection)
        version = connection.execute("SELECT id FROM model_versions WHERE name = 'base'").fetchone()[0]
        queries = title_queries(connection, version, args.queries)

        def run(settings: list[str]) -> list[list[int]]:
            return [
                [row[0] for row in rows]
                for rows in nearest_references(connection, version, queries, settings)[1]
            ]

        exact = run(["SET LOCAL enable_indexscan = off"])
        found = {ef: run([f"SET LOCAL hnsw.ef_search = {ef}"]) for ef in args.ef_search}
        ids = list({i for rows in [exact, *found.values()] for result in rows for i in result})
        text = dict(connection.execute("SELECT id, text FROM article_references WHERE id = ANY(%s)", (ids,)))

    exact_sources = [{source(text[i]) for i in result} for result in exact]
    report: dict = {
        "queries": len(queries),
        "distinct_sources_in_exact_top10": float(np.mean([len(s) for s in exact_sources])),
    }
    for ef, rows in found.items():
        report[f"ef_search_{ef}"] = {
            "by_id": float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(rows, exact, strict=True)])),
            "by_source": float(
                np.mean(
                    [
                        sum(source(text[i]) in s for i in a) / 10
                        for a, s in zip(rows, exact_sources, strict=True)
                    ]
                )
            ),
        }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
