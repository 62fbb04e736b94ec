"""Dump load bench: the batched writes (INSERT + COPY per batch) against the per-article ones, same dump.

Run from the repository root:  python bench/load_bench.py [--references 20000] [--rounds 1] [--out FILE]

1. Generates a dump of N real (recombined) references with bench/scale_dump.py (or takes ``--dump``).
2. Loads it with ``wikiref.flows.steps.loading.load_dump`` into a fresh, migrated database of one embedded
   PostgreSQL, once per write path (``bulk=False``: ``upsert_page`` per article, the loader before the
   batched writes; ``bulk=True``: ``upsert_pages``), alternating the two ``--rounds`` times so that a change
   in the machine's load hits both alike.
3. Prints pages/s and references/s of each path and the speed-up, with how the seconds split between
   extraction (``page_record``) and writing (``write_records``), and writes the numbers as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url

import wikiref.flows.steps.loading as loading
from wikiref.db import migrate
from wikiref.db.engine import make_engine
from wikiref.db.server import ensure_embedded_server, stop_embedded_server

PATHS = {"per-article": False, "batched": True}


class Timer:
    """Seconds spent inside a function, wrapped in place of it."""

    def __init__(self, function):
        self.function, self.seconds = function, 0.0

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def fresh_database(server_url: str, template: str) -> str:
    name = f"load_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def load_once(url: str, dump: Path, *, bulk: bool, batch_size: int) -> dict:
    engine = make_engine(url)
    extract, write = Timer(loading.page_record), Timer(loading.write_records)
    loading.page_record, loading.write_records = extract, write
    try:
        started = time.perf_counter()
        summary = loading.load_dump(engine, dump, batch_size=batch_size, bulk=bulk)
        seconds = time.perf_counter() - started
        with engine.connect() as connection:
            articles, references = connection.execute(
                text("SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM article_references)")
            ).one()
    finally:
        loading.page_record, loading.write_records = extract.function, write.function
        engine.dispose()
    counts = summary.counts
    return {
        "seconds": round(seconds, 2),
        "articles": articles,
        "references": references,
        "pages_per_s": round(articles / seconds, 1),
        "references_per_s": round(references / seconds, 1),
        "extract_seconds": round(extract.seconds, 2),
        "write_seconds": round(write.seconds, 2),
        "counts": {
            "new": counts.articles_new,
            "quarantined": counts.articles_quarantined,
            "references_added": counts.references_added,
        },
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, default=20000)
    parser.add_argument("--dump", type=Path, help="an existing dump instead of generating one")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wikiref-load-bench-"))
    dump = args.dump or workdir / f"dump-{args.references}.ndjson.gz"
    if args.dump is None:
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "bench" / "scale_dump.py"), "--references", str(args.references)]
            + ["--out", str(dump)],
            check=True,
        )
    pgdata = workdir / "pgdata"
    server_url = ensure_embedded_server(pgdata, database="postgres")
    template = "load_bench_template"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
    migrate.upgrade(make_url(server_url).set(database=template).render_as_string(hide_password=False))
    runs: dict[str, list[dict]] = {name: [] for name in PATHS}
    try:
        for round_ in range(args.rounds):
            for name, bulk in PATHS.items():
                run = load_once(
                    fresh_database(server_url, template), dump, bulk=bulk, batch_size=args.batch_size
                )
                runs[name].append(run)
                print(
                    f"round {round_ + 1} {name:<12} {run['articles']:,} pages, {run['references']:,} references "
                    f"in {run['seconds']:.1f} s: {run['pages_per_s']} pages/s, {run['references_per_s']} "
                    f"references/s (extract {run['extract_seconds']:.1f} s, write {run['write_seconds']:.1f} s, "
                    f"load average {run['load_average']:.1f})",
                    flush=True,
                )
    finally:
        stop_embedded_server(pgdata)

    medians = {
        name: statistics.median(run["seconds"] for run in path_runs) for name, path_runs in runs.items()
    }
    same = all(
        run["articles"] == runs["per-article"][0]["articles"]
        and run["references"] == runs["per-article"][0]["references"]
        and run["counts"] == runs["per-article"][0]["counts"]
        for path_runs in runs.values()
        for run in path_runs
    )
    speedup = medians["per-article"] / medians["batched"]
    articles, references = runs["batched"][0]["articles"], runs["batched"][0]["references"]
    print(f"\n{'path':<14}{'seconds':>10}{'pages/s':>10}{'refs/s':>10}")
    for name, seconds in medians.items():
        print(f"{name:<14}{seconds:>10.1f}{articles / seconds:>10.1f}{references / seconds:>10.1f}")
    print(f"speed-up (batched vs per-article, median seconds): {speedup:.2f}x; same rows and counts: {same}")
    result = {
        "dump": str(dump),
        "references_requested": args.references if args.dump is None else None,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "runs": runs,
        "median_seconds": medians,
        "speedup": round(speedup, 2),
        "same_rows_and_counts": same,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
