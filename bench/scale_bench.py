"""Scale bench: a dump of N real (recombined) references loaded, paired, embedded, indexed and queried.

Each stage a user runs is its own subprocess, so its peak RSS is its own (``os.wait4``):

1. ``generate``: bench/scale_dump.py writes an Enterprise NDJSON dump of N references (real reference items);
2. ``load``: ``wikiref scrape --dump-path`` (pages/s, references/s);
3. ``pairs``: the training-pair preparation of ``wikiref train`` (wikiref.flows.steps.training.load_pairs);
4. ``embed``: ``wikiref embed`` of the base model, end to end (read pending pages, encode, COPY, HNSW build);

then, in this process (``queries``): table and index sizes; p50/p95 of each SQL function; recall@10 of
``similar_references`` against an exact scan of the same version's embeddings; the HNSW build of the references
index alone, for ``vector`` and ``halfvec`` storage, with the configured parallel maintenance workers
(``functions``: the same without those two builds); and (``exact``) the functions' own statement through the
index at each ``--ef-search`` against the same statement as an exact scan; and (``fusion``) the lexical index's
size and GIN build time, p50/p95 of each function fused and with ``fusion => false``, and recall@10 of the fused
``similar_references`` against an exact fused computation (bench/fusion_sql_bench.py's, no index used).

    python bench/scale_bench.py --references 100000 --out docs/bench/scale-100k.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
PYTHON = sys.executable

from bench.fusion_sql_bench import sampled_queries
from bench.machine import cpu_model

PAIRS_SCRIPT = """
import json, sys
from wikiref.flows.settings import get_settings
from wikiref.flows.database import prepare_database
from wikiref.flows.steps.training import TrainRequest, load_pairs
settings = get_settings()
split = load_pairs(prepare_database(settings)[1], TrainRequest.from_settings(settings))
print(json.dumps(split.counts))
"""


def run_stage(name: str, command: list[str], env: dict[str, str]) -> dict:
    """Run one stage as a subprocess; its wall time, peak RSS (of it and the children it waited for), output."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    if process.returncode:
        raise SystemExit(f"stage {name} failed ({process.returncode}):\n{output[-3000:]}")
    peak = usage.ru_maxrss / 1024  # kB on Linux
    print(f"[{name}] {seconds:8.1f} s, peak RSS {peak:7.1f} MiB", flush=True)
    return {"seconds": seconds, "peak_rss_mib": peak, "output_tail": output[-600:]}


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
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


def as_array(vector) -> np.ndarray:
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


# Scores this close to the 10th best count as ties. The generated corpus repeats each real reference about 4 times
# (26,736 texts recombined), and copies of one text encode to vectors equal up to batch padding in reduced
# precision: which copy an index returns is arbitrary, so recall by id alone understates the index.
TIE = 1e-3


@dataclass(frozen=True)
class ExactTop:
    ids: set[int]  # the exact top k
    tied: set[int]  # every id scoring within TIE of the k-th best
    k: int


def exact_top(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int = 10) -> list[ExactTop]:
    top = []
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ vectors.T
        best = np.argpartition(-scores, k, axis=1)[:, :k]
        for row, chosen in zip(scores, best, strict=True):
            kth = row[chosen].min()
            top.append(ExactTop({int(ids[j]) for j in chosen}, {int(i) for i in ids[row >= kth - TIE]}, k))
    return top


def recall(found: list[list[int]], exact: list[ExactTop]) -> dict[str, float]:
    """Recall@k by id, and by score (a result as good as the exact k-th, within TIE, is a hit)."""
    return {
        "by_id": float(np.mean([len(set(f) & e.ids) / e.k for f, e in zip(found, exact, strict=True)])),
        "by_score": float(
            np.mean([min(e.k, len(set(f) & e.tied)) / e.k for f, e in zip(found, exact, strict=True)])
        ),
    }


def measure_queries(url: str, version: int, args, rebuild: bool = True) -> dict:
    """Sizes, p50/p95 of each SQL function and recall@10 of ``similar_references`` on the version's own index;
    with ``rebuild``, also the references index rebuilt as ``vector`` and as ``halfvec`` (two HNSW builds)."""
    import psycopg
    from pgvector.psycopg import register_vector

    from wikiref.db.embeddings import hnsw_index_name

    result: dict = {}
    with psycopg.connect(url, autocommit=True) as connection:
        register_vector(connection)
        connection.execute("SET max_parallel_workers_per_gather = 0")  # queries measured as one backend each
        sample_titles, sample_refs = sampled_queries(connection, args.queries)
        words = [t.split(" (scale")[0] for t in sample_titles]
        result["server"] = server_settings(connection, version)

        # Sizes.
        sizes = {}
        for relation in ("article_references", "reference_embeddings", "title_embeddings", "articles"):
            sizes[relation] = {
                "table_mib": connection.execute(
                    "SELECT pg_table_size(%s) / 1048576.0", (relation,)
                ).fetchone()[0],
                "total_mib": connection.execute(
                    "SELECT pg_total_relation_size(%s) / 1048576.0", (relation,)
                ).fetchone()[0],
            }
        for kind in ("references", "titles"):
            name = hnsw_index_name(version, kind)
            sizes[name] = connection.execute("SELECT pg_relation_size(%s) / 1048576.0", (name,)).fetchone()[0]
        result["sizes_mib"] = {
            k: (float(v) if not isinstance(v, dict) else {a: float(b) for a, b in v.items()})
            for k, v in sizes.items()
        }

        # Latency of each SQL function.
        latency = {}
        latency["similar_references"], found = timed(
            connection,
            "SELECT reference_id FROM wikiref.similar_references(%s, 10)",
            [(t,) for t in sample_titles],
        )
        latency["similar_articles"], _ = timed(
            connection,
            "SELECT article_id FROM wikiref.similar_articles(%s, 10)",
            [(t,) for t in sample_titles],
        )
        latency["articles_for_reference"], _ = timed(
            connection,
            "SELECT article_id FROM wikiref.articles_for_reference(%s, 10)",
            [(r,) for r in sample_refs],
        )
        title_vectors = {
            row[0]: as_array(row[1])
            for row in connection.execute(
                "SELECT a.title, t.embedding FROM title_embeddings t JOIN articles a ON a.id = t.article_id "
                "WHERE t.model_version_id = %s AND a.title = ANY(%s)",
                (version, sample_titles),
            )
        }
        queries = np.stack([title_vectors[t] for t in sample_titles])
        latency["search_vector"], _ = timed(
            connection, "SELECT reference_id FROM wikiref.search_vector(%s, 10)", [(q,) for q in queries]
        )
        latency["search_text"], _ = timed(
            connection,
            "SELECT reference_id FROM wikiref.search_text(%s, %s, 10)",
            [(w, q) for w, q in zip(words, queries)],
        )
        result["latency"] = latency

        # Recall@10 against the exact scan of the same version.
        ids, vectors = [], []
        with connection.cursor(name="all_vectors") as cursor:
            connection.autocommit = False
            cursor.itersize = 20_000
            cursor.execute(
                "SELECT reference_id, embedding FROM reference_embeddings WHERE model_version_id = %s",
                (version,),
            )
            for reference_id, embedding in cursor:
                ids.append(reference_id)
                vectors.append(as_array(embedding))
            connection.commit()
            connection.autocommit = True
        exact = exact_top(queries, np.asarray(ids), np.stack(vectors))
        del vectors
        result["recall_at_10"] = {
            "similar_references": recall([[r[0] for r in rows] for rows in found], exact)
        }
        if not rebuild:
            return result

        # halfvec beside vector: the same index parameters, on the embeddings cast to half precision.
        halfvec_index = f"ix_reference_embeddings_hnsw_v{version}_halfvec"
        connection.execute(f"DROP INDEX IF EXISTS {halfvec_index}")
        connection.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        connection.execute(f"SET max_parallel_maintenance_workers = {args.parallel_workers}")
        builds = {}
        name = hnsw_index_name(version, "references")
        definition = connection.execute("SELECT pg_get_indexdef(%s::regclass)", (name,)).fetchone()[0]
        connection.execute(f"DROP INDEX {name}")
        start = time.perf_counter()
        connection.execute(definition)
        builds["vector"] = time.perf_counter() - start
        start = time.perf_counter()
        connection.execute(
            f"CREATE INDEX {halfvec_index} ON reference_embeddings USING hnsw "
            f"((embedding::halfvec(384)) halfvec_cosine_ops) WITH (m = {args.hnsw_m}, "
            f"ef_construction = {args.hnsw_ef_construction}) WHERE model_version_id = {version}"
        )
        builds["halfvec"] = time.perf_counter() - start
        result["hnsw_build_seconds"] = builds
        result["hnsw_parallel_workers"] = args.parallel_workers
        sizes_half = connection.execute(
            "SELECT pg_relation_size(%s) / 1048576.0", (halfvec_index,)
        ).fetchone()[0]
        result["sizes_mib"][halfvec_index] = float(sizes_half)
        storage = {}
        for label, expression, cast in (
            ("vector", "embedding", "vector(384)"),
            ("halfvec", "embedding::halfvec(384)", "halfvec(384)"),
        ):
            for ef in args.ef_search:
                connection.execute(f"SET hnsw.ef_search = {ef}")
                stats, rows = timed(
                    connection,
                    f"SELECT reference_id FROM reference_embeddings WHERE model_version_id = {version} "
                    f"ORDER BY {expression} <=> %s::{cast} LIMIT 10",
                    [(q,) for q in queries],
                )
                storage[f"{label}_ef{ef}"] = {
                    **stats,
                    "recall_at_10": recall([[r[0] for r in x] for x in rows], exact),
                }
        result["storage"] = storage
        connection.execute(f"DROP INDEX {halfvec_index}")
    return result


def server_settings(connection, version: int) -> dict:
    """What the latency depends on beyond the index: the buffer cache, and the ef_search the functions use for
    k = 10, as they choose it (``wikiref.set_ef_search``: a session's ``wikiref.ef_search``, e.g. from PGOPTIONS,
    over the version's own); rolled back, so the session keeps its own ``hnsw.ef_search``."""
    with connection.transaction(force_rollback=True):
        ef_search = connection.execute("SELECT wikiref.set_ef_search(%s, 10)", (version,)).fetchone()[0]
    return {
        "shared_buffers": connection.execute("SHOW shared_buffers").fetchone()[0],
        "function_ef_search": ef_search,
        # The fused functions' session settings (unset: their defaults, docs/sql.md).
        **{
            name: connection.execute("SELECT current_setting(%s, true)", (f"wikiref.{name}",)).fetchone()[0]
            for name in ("words_rows_per_candidate", "vote_references")
        },
    }


def title_queries(connection, version: int, count: int) -> list[np.ndarray]:
    """The version's embeddings of ``count`` titles sampled with seed 7, in title order: the exact stage's queries."""
    titles = [row[0] for row in connection.execute("SELECT title FROM articles ORDER BY id")]
    sample = random.Random(7).sample(titles, min(count, len(titles)))
    return [
        as_array(row[0])
        for row in connection.execute(
            "SELECT t.embedding FROM title_embeddings t JOIN articles a ON a.id = t.article_id "
            "WHERE t.model_version_id = %s AND a.title = ANY(%s) ORDER BY a.title",
            (version, sample),
        )
    ]


def nearest_references(
    connection, version: int, queries: list[np.ndarray], settings: list[str]
) -> tuple[dict, list[list[tuple[int, float]]]]:
    """Each query through the SQL functions' own statement (wikiref.nearest_query), k = 10, one backend, under
    ``settings`` (``SET LOCAL ...``, rolled back after): p50/p95 and each query's (id, distance) rows."""
    statement = connection.execute(
        "SELECT wikiref.nearest_query('references', %s, false)", (version,)
    ).fetchone()[0]
    query = statement.replace("$1", "%(q)s").replace("$2", "%(k)s")
    seconds, results = [], []
    for setting in ["SET LOCAL max_parallel_workers_per_gather = 0", *settings]:
        connection.execute(setting)
    for vector in queries:
        start = time.perf_counter()
        results.append(connection.execute(query, {"q": vector, "k": 10}, prepare=False).fetchall())
        seconds.append(time.perf_counter() - start)
    connection.rollback()
    return percentiles(seconds), results


def register_base_version(engine) -> None:
    """The base model as the active version ``base``, as ``wikiref train`` registers it (wikiref.db.registry)."""
    from sqlalchemy.orm import Session

    from wikiref.db.registry import BASE_VERSION, ensure_base_version
    from wikiref.models.article_text import TITLE_ONLY
    from wikiref.models.base import BASE_MODEL_ID

    with Session(engine) as session:
        ensure_base_version(
            session=session, name=BASE_VERSION, base_model=BASE_MODEL_ID, article_text=TITLE_ONLY.name
        )


def measure_exact(url: str, version: int, args) -> dict:
    """The SQL functions' own nearest-neighbour statement through the HNSW index at each ef_search, and as an
    exact scan (index scans off), on the same title queries, one backend each: p50/p95, exact p50 / HNSW p50,
    and recall@10 against the exact scan's result."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(url) as connection:
        register_vector(connection)
        queries = title_queries(connection, version, args.queries)

        def run(settings: list[str]) -> tuple[dict, list[list[tuple[int, float]]]]:
            return nearest_references(connection, version, queries, settings)

        exact_stats, exact_rows = run(["SET LOCAL enable_indexscan = off"])
        result: dict = {"queries": len(queries), "exact": exact_stats, "hnsw": {}}
        result["server"] = server_settings(connection, version)
        print(
            f"[exact] {len(queries)} queries: p50 {exact_stats['p50_ms']:.1f} ms, p95 {exact_stats['p95_ms']:.1f} ms"
        )
        for ef in args.ef_search:
            stats, rows = run([f"SET LOCAL hnsw.ef_search = {int(ef)}"])
            by_id = np.mean(
                [
                    len({r[0] for r in a} & {r[0] for r in e}) / 10
                    for a, e in zip(rows, exact_rows, strict=True)
                ]
            )
            # Distance within TIE of the exact 10th: as good a result as the exact one (near-identical citations).
            by_score = np.mean(
                [sum(r[1] <= e[-1][1] + TIE for r in a) / 10 for a, e in zip(rows, exact_rows, strict=True)]
            )
            speedup = exact_stats["p50_ms"] / stats["p50_ms"]
            result["hnsw"][str(ef)] = {
                **stats,
                "speedup_p50": speedup,
                "recall_at_10": {"by_id": float(by_id), "by_score": float(by_score)},
            }
            print(
                f"  ef_search {ef:<4d} p50 {stats['p50_ms']:6.2f} ms  p95 {stats['p95_ms']:6.2f} ms  "
                f"exact/hnsw p50 {speedup:6.1f}x  recall@10 {by_id:.3f} by id, {by_score:.3f} by score"
            )
    return result


def measure_fusion(url: str, args) -> dict:
    """The fused functions at this scale (bench/fusion_sql_bench.py's measurements, one backend each): the lexical
    index's sizes, statistics rebuild and GIN builds; latency fused and embeddings alone; recall@10 of the fused
    ``similar_references`` against the exact fused computation on the first ``--exact-queries`` titles."""
    import psycopg

    from bench.fusion_sql_bench import fused_latency, fused_recall, lexical_index_report, vote_agreement

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET max_parallel_workers_per_gather = 0")
        connection.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        connection.execute(f"SET max_parallel_maintenance_workers = {args.parallel_workers}")
        version = connection.execute("SELECT id FROM model_versions WHERE name = 'base'").fetchone()[0]
        sample_titles, sample_refs = sampled_queries(connection, args.queries)
        result: dict = {"server": server_settings(connection, version)}
        start = time.perf_counter()
        result.update(lexical_index_report(connection, rebuild_indexes=True))
        print(f"[fusion] lexical index: {json.dumps(result)}", flush=True)
        # The first pass reads the rebuilt GIN indexes into the cache; the second is the one reported.
        fused_latency(connection, sample_titles, sample_refs)
        result["latency"], served = fused_latency(connection, sample_titles, sample_refs)
        print(f"[fusion] latency: {json.dumps(result['latency'])}", flush=True)
        exact_count = min(args.exact_queries, len(sample_titles))
        result["similar_references_fused_vs_exact_fused"] = fused_recall(
            connection, version, sample_titles[:exact_count], served["fused"][:exact_count]
        )
        agreement = vote_agreement(connection, sample_refs)
        if agreement is not None:
            result["articles_for_reference_vs_exact_vote"] = agreement
            print(f"[fusion] vote: {json.dumps(agreement)}", flush=True)
        result["seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, required=True)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wikiref-scale")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--stages",
        default="generate,load,pairs,embed,queries,exact",
        help="comma-separated; a run of later stages alone (on the same --workdir) adds them to an existing --out. "
        "'functions' is 'queries' without rebuilding the references index as vector and as halfvec; 'fusion' "
        "measures the fused functions and the lexical index",
    )
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--hnsw-ef-construction", type=int, default=128)
    parser.add_argument("--ef-search", type=lambda v: [int(x) for x in v.split(",")], default=[40, 100])
    parser.add_argument("--parallel-workers", type=int, default=2)
    parser.add_argument("--maintenance-work-mem", default="1GB")
    parser.add_argument(
        "--exact-queries",
        type=int,
        default=100,
        help="titles scored by the exact fused computation (fusion stage)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    stages = args.stages.split(",")

    from wikiref.flows.settings import Settings

    data = args.workdir / f"data-{args.references}"
    data.mkdir(parents=True, exist_ok=True)
    dump = args.workdir / f"scale-{args.references}.ndjson.gz"
    env = {
        **os.environ,
        "WIKIREF_DATA_DIR": str(data),
        "HF_HUB_OFFLINE": "1",
        "WIKIREF_EMBED_MAINTENANCE_WORK_MEM": args.maintenance_work_mem,
        "WIKIREF_EMBED_PARALLEL_MAINTENANCE_WORKERS": str(args.parallel_workers),
        "WIKIREF_HNSW_M": str(args.hnsw_m),
        "WIKIREF_HNSW_EF_CONSTRUCTION": str(args.hnsw_ef_construction),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # One ONNX export for every size: the export is a one-off cost, not a per-corpus one.
        "WIKIREF_EMBED_CACHE_DIR": str(args.workdir / "onnx-cache"),
    }
    wikiref = [PYTHON, "-m", "wikiref.flows.cli"]
    machine = {
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }
    report: dict = {"references_requested": args.references, "machine": machine, "stages": {}}
    if args.out and args.out.exists() and not {"generate", "load"} & set(stages):
        report = json.loads(args.out.read_text())
        report.setdefault("later_runs", []).append({"stages": stages, "machine": machine})

    def save() -> None:
        # After every stage, so that a run stopped part way keeps what it measured.
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")

    if "generate" in stages:
        stage = run_stage(
            "generate",
            [PYTHON, "bench/scale_dump.py", "--references", str(args.references), "--out", str(dump)],
            env,
        )
        stage["dump"] = json.loads(stage["output_tail"].strip().splitlines()[-1])
        report["stages"]["generate"] = stage
        save()
    if "load" in stages:
        subprocess.run([*wikiref, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=REPO_ROOT)
        stage = run_stage("load", [*wikiref, "scrape", "--dump-path", str(dump)], env)
        report["stages"]["load"] = stage
        save()
    import psycopg

    os.environ["WIKIREF_DATA_DIR"] = str(data)
    from wikiref.flows.database import prepare_database

    url, engine = prepare_database(Settings())
    url = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        articles, references = connection.execute(
            "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM article_references)"
        ).fetchone()
    report["articles"], report["references"] = articles, references
    if "load" in stages:
        seconds = report["stages"]["load"]["seconds"]
        report["stages"]["load"].update(pages_per_s=articles / seconds, references_per_s=references / seconds)
        print(
            f"  {articles:,} pages, {references:,} references: {articles / seconds:.1f} pages/s, "
            f"{references / seconds:.1f} references/s"
        )
    if "pairs" in stages:
        report["stages"]["pairs"] = run_stage("pairs", [PYTHON, "-c", PAIRS_SCRIPT], env)
        save()
    if "embed" in stages:
        register_base_version(engine)
        stage = run_stage("embed", [*wikiref, "embed"], env)
        texts = references + articles
        stage.update(texts=texts, texts_per_s=texts / stage["seconds"])
        print(f"  {texts:,} texts: {texts / stage['seconds']:.1f} texts/s end to end")
        report["stages"]["embed"] = stage
        save()
    if "queries" in stages or "functions" in stages:
        with psycopg.connect(url) as connection:
            version = connection.execute("SELECT id FROM model_versions WHERE name = 'base'").fetchone()[0]
        start = time.perf_counter()
        report["queries"] = measure_queries(url, version, args, rebuild="queries" in stages)
        report["queries"]["seconds"] = time.perf_counter() - start
        print(json.dumps(report["queries"], indent=1))
        save()
    if "exact" in stages:
        with psycopg.connect(url) as connection:
            version = connection.execute("SELECT id FROM model_versions WHERE name = 'base'").fetchone()[0]
        report["hnsw_vs_exact"] = measure_exact(url, version, args)
        save()
    if "fusion" in stages:
        report["fusion"] = measure_fusion(url, args)
        report["fusion"]["machine"] = {"load_average": os.getloadavg(), "cpu": cpu_model()}
    save()


if __name__ == "__main__":
    main()
