"""Embedding benchmarks, each measured side by side in one run and printed against its target.

1. copy:   binary COPY (wikiref.db.embeddings.write_embeddings) vs row-by-row INSERTs, vectors/s; target >= 10x.
2. encode: each of the project's encoder backends (torch, onnx, openvino: those installed, or --backends) vs
           plain fp32 SentenceTransformer.encode on the same reference texts of the shared pages, in interleaved
           rounds (best of --rounds), texts/s and held-out NDCG@10 (titles as queries, all references of the
           chosen articles as the corpus); target >= 3x on CPU, losing <= 0.005 NDCG@10. With the base model
           every article is held out (it was never trained on them); pass --model to bench a fine-tuned version.

    python bench/embed_bench.py                          # both, on the CPU, embedded Postgres in a temp dir
    python bench/embed_bench.py --parts encode --device cuda --out cuda.json
    python bench/embed_bench.py --parts encode --articles 15 --backends onnx,openvino --rounds 3
    python bench/embed_bench.py --parts encode --dump-texts texts.json   # texts for a machine without the pages

HNSW against exact search is measured on embeddings of real reference texts by bench/scale_bench.py (stages
``queries`` and ``exact``), at 100k and 1M references.

The machine this was written on has 2 busy cores: every number depends on the hardware and its load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
SHARED_WIKIPEDIA = REPO_ROOT.parent / "shared" / "data" / "wikipedia"

COPY_TARGET = 10.0
ENCODE_SPEED_TARGET, ENCODE_NDCG_LOSS = 3.0, 0.005


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


# --- database ------------------------------------------------------------------------------------------------


def bench_database(database_url: str | None, workdir: Path) -> str:
    """A fresh, migrated database: on --database-url's server, or on an embedded server in ``workdir``."""
    import psycopg
    from sqlalchemy.engine import make_url

    from wikiref.db import migrate
    from wikiref.db.engine import libpq_url
    from wikiref.db.server import ensure_embedded_server

    admin = (
        libpq_url(database_url)
        if database_url
        else ensure_embedded_server(workdir / "pgdata", database="postgres")
    )
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS wikiref_bench WITH (FORCE)")
        connection.execute("CREATE DATABASE wikiref_bench")
    url = make_url(admin).set(database="wikiref_bench").render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


def seed_rows(engine, count: int) -> list[int]:
    """``count`` references (of 1,000 articles) for embeddings to point at; returns their ids."""
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO articles (wiki, title) SELECT 'bench', 'Article ' || i FROM generate_series(1, 1000) i"
            )
        )
        connection.execute(
            text(
                "INSERT INTO article_references (article_id, position, text, content_hash) "
                "SELECT a.id, s.i / 1000, 'reference ' || s.i, md5(s.i::text) FROM generate_series(0, :n - 1) s(i) "
                "JOIN articles a ON a.title = 'Article ' || (s.i % 1000 + 1)"
            ),
            {"n": count},
        )
        return list(connection.execute(text("SELECT id FROM article_references ORDER BY id")).scalars())


def add_version(engine, name: str) -> int:
    from sqlalchemy import text

    with engine.begin() as connection:
        return connection.execute(
            text(
                "INSERT INTO model_versions (name, base_model, status, activated_at) "
                "VALUES (:name, 'synthetic', 'superseded', now()) RETURNING id"
            ),
            {"name": name},
        ).scalar_one()


def bench_copy(engine, reference_ids: list[int], copy_rows: int, insert_rows: int) -> dict:
    from sqlalchemy.orm import Session

    from wikiref.db import embeddings

    rng = np.random.default_rng(1)
    copy_version, insert_version = add_version(engine, "bench-copy"), add_version(engine, "bench-insert")
    vectors = unit(rng.normal(size=(copy_rows, 384)))
    keys = reference_ids[:copy_rows]
    start = time.perf_counter()
    with Session(engine) as session:
        for offset in range(0, copy_rows, 5000):
            embeddings.write_embeddings(
                session=session,
                version_id=copy_version,
                kind="references",
                keys=keys[offset : offset + 5000],
                labels=["h"] * len(keys[offset : offset + 5000]),
                vectors=vectors[offset : offset + 5000],
            )
            session.commit()
    copy_rate = copy_rows / (time.perf_counter() - start)

    # The baseline: one INSERT statement per vector (text format, as an ORM would send it), one transaction.
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        start = time.perf_counter()
        for key, vector in zip(reference_ids[:insert_rows], vectors[:insert_rows]):
            cursor.execute(
                "INSERT INTO reference_embeddings (model_version_id, reference_id, content_hash, embedding) "
                "VALUES (%s, %s, %s, %s::vector) ON CONFLICT (model_version_id, reference_id) DO UPDATE "
                "SET content_hash = EXCLUDED.content_hash, embedding = EXCLUDED.embedding",
                (insert_version, key, "h", "[" + ",".join(f"{x:.8g}" for x in vector) + "]"),
            )
        raw.commit()
        insert_rate = insert_rows / (time.perf_counter() - start)
    finally:
        raw.close()
    ratio = copy_rate / insert_rate
    print(f"\n[copy] {copy_rows:,} vectors by binary COPY, {insert_rows:,} by row-by-row INSERT")
    print(f"  COPY     {copy_rate:10,.0f} vectors/s")
    print(f"  INSERT   {insert_rate:10,.0f} vectors/s")
    print(f"  ratio    {ratio:10.1f}x   target >= {COPY_TARGET:.0f}x   {verdict(ratio >= COPY_TARGET)}")
    return {
        "copy_vectors_per_s": copy_rate,
        "insert_vectors_per_s": insert_rate,
        "ratio": ratio,
        "copy_rows": copy_rows,
        "insert_rows": insert_rows,
        "pass": ratio >= COPY_TARGET,
    }


# --- encoding ------------------------------------------------------------------------------------------------


def corpus_from_pages(articles: int) -> dict:
    """Titles and reference texts of ``articles`` shared pages with 5+ references (stable choice by md5)."""
    from wikiref.flows.mediawiki.extract import extract_references
    from wikiref.flows.mediawiki.saved import iter_saved_pages

    pages = []
    for page in iter_saved_pages(SHARED_WIKIPEDIA):
        references = [reference.text for reference in extract_references(page.html) if reference.text.strip()]
        if len(references) >= 5:
            pages.append((hashlib.md5(page.title.encode()).hexdigest(), page.title, references))
    pages.sort()
    chosen = pages[:articles]
    return {"titles": [title for _, title, _ in chosen], "references": [refs for _, _, refs in chosen]}


def ndcg_at_10(query_vectors: np.ndarray, corpus_vectors: np.ndarray, owner: np.ndarray) -> float:
    scores = query_vectors @ corpus_vectors.T
    total = 0.0
    discounts = 1 / np.log2(np.arange(2, 12))
    for query, row in enumerate(scores):
        top = np.argsort(-row)[:10]
        gains = (owner[top] == query).astype(float)
        ideal = discounts[: min(10, int((owner == query).sum()))].sum()
        total += float((gains * discounts[: len(top)]).sum() / ideal)
    return total / len(scores)


def installed_backends(device: str) -> list[str]:
    from wikiref.models.encode import fast_backend_available, openvino_available

    names = ["torch"]
    if fast_backend_available():
        names.append("onnx")
    if device == "cpu" and openvino_available():
        names.append("openvino")
    return names


def bench_encode(
    corpus: dict,
    *,
    model_path: str,
    device: str,
    backends: list[str],
    batch_size: int,
    cache_dir: str,
    threads: int | None,
    rounds: int = 2,
) -> dict:
    """Plain fp32 SentenceTransformer.encode and each of ``backends`` on the same texts, in one process.

    Every round runs each encoder once over all texts, in alternating order (a machine whose load drifts
    favours no encoder); each one's rate is its best round. NDCG@10 and cosines come from its last round.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    from wikiref.models.encode import EncoderConfig, fastest_backend, load_encoder

    if threads:
        torch.set_num_threads(threads)

    texts = [text for references in corpus["references"] for text in references]
    owner = np.repeat(np.arange(len(corpus["titles"])), [len(refs) for refs in corpus["references"]])
    backends = list(dict.fromkeys(fastest_backend(device) if name == "auto" else name for name in backends))

    baseline = SentenceTransformer(model_path, device=device)
    baseline.eval()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def plain(batch: list[str]) -> np.ndarray:
        vectors = baseline.encode(
            batch, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        sync()
        return vectors

    runners, load_seconds = {"fp32": plain}, {}
    plain(texts[:64])  # warm-up (allocator, kernels)
    for name in backends:
        start = time.perf_counter()
        encoder = load_encoder(
            EncoderConfig(model_path, name, device=device, cache_dir=cache_dir, threads=threads)
        )
        encoder.encode(texts[:64], batch_size=batch_size)
        load_seconds[name] = time.perf_counter() - start
        runners[name] = lambda batch, encoder=encoder: encoder.encode(batch, batch_size=batch_size)

    rates: dict[str, list[float]] = {name: [] for name in runners}
    corpus_vectors: dict[str, np.ndarray] = {}
    for round_ in range(rounds):
        for name in list(runners) if round_ % 2 == 0 else list(reversed(runners)):
            start = time.perf_counter()
            corpus_vectors[name] = runners[name](texts)
            rates[name].append(len(texts) / (time.perf_counter() - start))
            print(f"  round {round_ + 1}/{rounds}  {name:9s} {rates[name][-1]:9.1f} texts/s", flush=True)

    base_ndcg = ndcg_at_10(runners["fp32"](corpus["titles"]), corpus_vectors["fp32"], owner)
    base_rate = max(rates["fp32"])
    print(
        f"\n[encode] {len(texts):,} reference texts of {len(corpus['titles'])} articles, device {device}, "
        f"batch {batch_size}, {torch.get_num_threads()} torch threads, best of {rounds} interleaved rounds, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"  {'encoder':22s} {'texts/s':>9s} {'vs fp32':>8s} {'NDCG@10':>8s} {'loss':>8s} {'cos min':>8s}")
    print(f"  {'fp32 (plain ST)':22s} {base_rate:9.1f} {1.0:7.2f}x {base_ndcg:8.4f}")
    speed_target = ENCODE_SPEED_TARGET if device == "cpu" else 1.0
    result: dict = {
        "device": device,
        "texts": len(texts),
        "articles": len(corpus["titles"]),
        "batch_size": batch_size,
        "rounds": rounds,
        "load_average": os.getloadavg()[0],
        "baseline_sentences_per_s": base_rate,
        "baseline_rates": rates["fp32"],
        "baseline_ndcg_at_10": base_ndcg,
        "backends": {},
    }
    for name in backends:
        rate = max(rates[name])
        ndcg = ndcg_at_10(runners[name](corpus["titles"]), corpus_vectors[name], owner)
        speedup, loss = rate / base_rate, base_ndcg - ndcg
        cosine = (corpus_vectors["fp32"] * corpus_vectors[name]).sum(axis=1)
        # The 3x target is for the CPU; elsewhere the encoder must at least not be slower than the baseline.
        ok = speedup >= speed_target and loss <= ENCODE_NDCG_LOSS
        print(
            f"  {'wikiref ' + name:22s} {rate:9.1f} {speedup:7.2f}x {ndcg:8.4f} {loss:+8.4f} {cosine.min():8.4f}"
            f"   target >= {speed_target:g}x, loss <= {ENCODE_NDCG_LOSS}: {verdict(ok)}"
            f"   (load/export {load_seconds[name]:.1f} s)"
        )
        result["backends"][name] = {
            "sentences_per_s": rate,
            "rates": rates[name],
            "speedup": speedup,
            "ndcg_at_10": ndcg,
            "ndcg_loss": loss,
            "cosine_min": float(cosine.min()),
            "cosine_mean": float(cosine.mean()),
            "load_seconds": load_seconds[name],
            "pass": ok,
        }
    result["auto"] = fastest_backend(device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="copy,encode", help="comma-separated: copy, encode")
    parser.add_argument(
        "--database-url", help="a server to create the database wikiref_bench on (default: embedded)"
    )
    parser.add_argument("--copy-rows", type=int, default=20_000)
    parser.add_argument("--insert-rows", type=int, default=2_000)
    parser.add_argument(
        "--articles", type=int, default=120, help="articles whose references the encode part uses"
    )
    parser.add_argument("--texts", type=Path, help="read the encode corpus from this JSON (see --dump-texts)")
    parser.add_argument("--dump-texts", type=Path, help="write the encode corpus to this JSON and stop")
    parser.add_argument("--model", help="model folder (default: the offline all-MiniLM-L6-v2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--backends",
        default="installed",
        help="comma-separated wikiref encoder backends to bench against fp32: auto, torch, onnx, openvino, "
        "or installed (every backend installed for the device)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved encode rounds; each encoder's best counts"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, help="CPU threads of both encoders (default: the runtimes' own)"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}

    if args.dump_texts:
        args.dump_texts.write_text(json.dumps(corpus_from_pages(args.articles), ensure_ascii=False))
        print(f"wrote the encode corpus of {args.articles} articles to {args.dump_texts}")
        return

    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
    }
    with tempfile.TemporaryDirectory(prefix="wikiref-bench-") as workdir:
        if "copy" in parts:
            from wikiref.db.engine import make_engine

            url = bench_database(args.database_url, Path(workdir))
            engine = make_engine(url)
            reference_ids = seed_rows(engine, args.copy_rows)
            results["copy"] = bench_copy(engine, reference_ids, args.copy_rows, args.insert_rows)
            engine.dispose()
            if not args.database_url:
                from wikiref.db.server import stop_embedded_server

                stop_embedded_server(Path(workdir) / "pgdata")
        if "encode" in parts:
            from wikiref.models.base import BASE_MODEL_ID, resolve_model_path

            corpus = json.loads(args.texts.read_text()) if args.texts else corpus_from_pages(args.articles)
            results["encode"] = bench_encode(
                corpus,
                model_path=args.model or resolve_model_path(BASE_MODEL_ID),
                device=args.device,
                backends=installed_backends(args.device)
                if args.backends == "installed"
                else [name.strip() for name in args.backends.split(",") if name.strip()],
                rounds=args.rounds,
                batch_size=args.batch_size,
                cache_dir=str(Path(workdir) / "onnx"),
                threads=args.threads,
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"\nresults written to {args.out}")


if __name__ == "__main__":
    main()
