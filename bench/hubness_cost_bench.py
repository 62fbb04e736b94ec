"""What keeping each reference's hubness costs the embed stage (migration 0019), projected to 1M references.

``wikiref.refresh_hubness`` computes a reference's hubness with one search of the version's HNSW index of articles
(10 nearest). Its cost per reference depends on the articles' index, not on how many references there are, so
this bench builds the articles of the 1M-reference scale run (38,083, docs/scaling.md) and a sample of references,
times a full pass over the sample and an incremental pass after 1% of them changed, and projects the full pass to
the 1M run's 1,038,035 references against that run's embed stage (2,848 s, docs/scaling.md). The vectors are
synthetic: unit vectors around 500 random centres (real embeddings cluster more, which makes an HNSW search no
slower), written with ``wikiref embed``'s index settings (m 16, ef_construction 64). Beside it, p50/p95 of the
fused ``similar_references(title, 10)`` on the same database with 0019's function and with 0018's (no hubness),
side by side in one run: what the hubness join costs a call.

    python bench/hubness_cost_bench.py --out bench/results/hubness-cost.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fusion_bench import create_database, scratch_server
from bench.machine import cpu_model
from wikiref.db import embeddings
from wikiref.db.engine import libpq_url, make_engine

MIGRATION_0019 = importlib.import_module("wikiref.db.migrations.versions.0019_hubness_of_each_reference")
SCALE_RUN_REFERENCES = 1_038_035
SCALE_RUN_EMBED_SECONDS = 2_848.0
CENTRES = 500


def unit_vectors(count: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    vectors = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal(
        (count, centres.shape[1])
    )
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def copy_rows(url: str, statement: str, rows) -> None:
    with psycopg.connect(url) as connection, connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def call_times(session: Session, titles: list[str], version: str) -> dict[str, list[float]]:
    """Milliseconds of each fused ``similar_references(title, 10)`` call with 0019's function and with 0018's,
    alternating, after one warm-up pass of each."""
    functions = {"0019 (hubness)": "similar_references", "0018": "similar_references_0018"}
    statements = {
        name: text(f"SELECT count(*) FROM wikiref.{function}(:t, 10, :v)")
        for name, function in functions.items()
    }
    for title in titles:
        for statement in statements.values():
            session.execute(statement, {"t": title, "v": version})
    times: dict[str, list[float]] = {name: [] for name in functions}
    for turn, title in enumerate(titles):
        for name in list(functions)[:: 1 if turn % 2 else -1]:
            started = time.perf_counter()
            session.execute(statements[name], {"t": title, "v": version}).scalar_one()
            times[name].append(1000 * (time.perf_counter() - started))
    return times


def vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in vector) + "]"


def measure(session: Session, version: int, name: str, titles: list[str]) -> dict:
    """A full hubness pass over the version's references, an incremental one after 1% changed, and the calls of
    0019's ``similar_references`` against 0018's on the same database, alternating."""
    references = session.scalar(
        text("SELECT count(*) FROM reference_embeddings WHERE model_version_id = :v"), {"v": version}
    )
    # A full pass, as for a new version.
    session.execute(
        text("UPDATE embedding_states SET hubness_articles = NULL WHERE model_version_id = :v"),
        {"v": version},
    )
    session.commit()
    started = time.perf_counter()
    assert embeddings.refresh_hubness(session=session, version_id=version) == references
    full = time.perf_counter() - started
    changed = references // 100
    session.execute(
        text(
            "UPDATE reference_hubness SET content_hash = 'changed' WHERE model_version_id = :v AND reference_id IN "
            "(SELECT reference_id FROM reference_hubness WHERE model_version_id = :v ORDER BY reference_id LIMIT :n)"
        ),
        {"v": version, "n": changed},
    )
    session.commit()
    started = time.perf_counter()
    assert embeddings.refresh_hubness(session=session, version_id=version) == changed
    incremental = time.perf_counter() - started
    # 0018's function beside 0019's under another name, in a transaction rolled back after; the calls alternate
    # between the two, which one first by turns, so that neither has the warmer cache.
    session.execute(
        text(
            MIGRATION_0019.SIMILAR_REFERENCES_0018.replace(
                "FUNCTION wikiref.similar_references(", "FUNCTION wikiref.similar_references_0018("
            )
        )
    )
    latency = call_times(session, titles, name)
    session.rollback()
    per_reference_ms = 1000 * full / references
    projected = per_reference_ms * SCALE_RUN_REFERENCES / 1000
    return {
        "references": references,
        "similar_references_ms": {
            label: {
                "p50": round(float(np.percentile(times, 50)), 2),
                "p95": round(float(np.percentile(times, 95)), 2),
            }
            for label, times in latency.items()
        },
        "full_pass_seconds": round(full, 1),
        "per_reference_ms": round(per_reference_ms, 3),
        "incremental_pass": {"changed": changed, "seconds": round(incremental, 2)},
        "projected_full_pass_at_1m_seconds": round(projected),
        "scale_run_embed_seconds": SCALE_RUN_EMBED_SECONDS,
        "projected_embed_stage_ratio": round(
            (SCALE_RUN_EMBED_SECONDS + projected) / SCALE_RUN_EMBED_SECONDS, 3
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=38_083)
    parser.add_argument("--references", type=int, default=20_000)
    parser.add_argument(
        "--queries", type=int, default=200, help="similar_references calls timed per function"
    )
    parser.add_argument(
        "--database-url",
        help="measure this database's serving version instead of a synthetic corpus (a full hubness pass is run)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/hubness-cost.json"))
    args = parser.parse_args()
    report = {
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "load_before": os.getloadavg(),
        "articles": args.articles,
        "references": args.references,
    }
    if args.database_url:
        engine = make_engine(args.database_url)
        with Session(engine) as session:
            version, name = session.execute(
                text("SELECT id, name FROM model_versions WHERE id = wikiref.serving_version_id()")
            ).one()
            report["articles"] = session.scalar(text("SELECT count(*) FROM articles"))
            titles = list(
                session.scalars(
                    text("SELECT title FROM articles ORDER BY md5(title) LIMIT :n"), {"n": args.queries}
                )
            )
            report.update(measure(session, version, name, titles))
        engine.dispose()
    else:
        synthetic(args, report)
    report["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


def synthetic(args: argparse.Namespace, report: dict) -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, 384))
    with scratch_server("hubness-cost") as server_url:
        url = create_database(server_url, "hubness_cost")
        raw = libpq_url(url)
        engine = make_engine(url)
        try:
            with Session(engine) as session:
                version = session.scalar(
                    text(
                        "INSERT INTO model_versions (name, base_model, status, activated_at) "
                        "VALUES ('synthetic', 'm', 'active', now()) RETURNING id"
                    )
                )
                session.execute(
                    text("INSERT INTO embedding_states (model_version_id, completed_at) VALUES (:v, now())"),
                    {"v": version},
                )
                session.commit()
            copy_rows(
                raw,
                "COPY articles (id, wiki, title) FROM STDIN",
                ((i + 1, "w", f"Article {i}") for i in range(args.articles)),
            )
            copy_rows(
                raw,
                "COPY title_embeddings (model_version_id, article_id, title, embedding) FROM STDIN",
                (
                    (version, i + 1, f"Article {i}", vector_text(v))
                    for i, v in enumerate(unit_vectors(args.articles, centres, rng))
                ),
            )
            copy_rows(
                raw,
                "COPY article_references (id, article_id, position, text, content_hash) FROM STDIN",
                (
                    (j + 1, j % args.articles + 1, j, f"Reference {j}", f"h{j}")
                    for j in range(args.references)
                ),
            )
            copy_rows(
                raw,
                "COPY reference_embeddings (model_version_id, reference_id, content_hash, embedding) FROM STDIN",
                (
                    (version, j + 1, f"h{j}", vector_text(v))
                    for j, v in enumerate(unit_vectors(args.references, centres, rng))
                ),
            )
            with Session(engine) as session:
                started = time.perf_counter()
                embeddings.build_indexes(session=session, version_id=version, m=16, ef_construction=64)
                session.commit()
                report["index_build_seconds"] = round(time.perf_counter() - started, 1)
                session.execute(text("ANALYZE"))
                session.commit()
                titles = [f"Article {i}" for i in rng.choice(args.articles, args.queries, replace=False)]
                report.update(measure(session, version, "synthetic", titles))
        finally:
            engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
