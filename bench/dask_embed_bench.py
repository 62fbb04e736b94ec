"""Embedding on Dask: `wikiref run embed` with the flow's own task runner against a Dask LocalCluster.

Each mode embeds the same generated dump (bench/scale_dump.py, real reference texts) into a fresh database of its
own, as the base model, through the embed flow, so the only difference is where the encoding tasks run:

- ``default``: the flow's thread pool, one encoder in the flow's process using every core;
- ``dask:N``: ``--task-runner dask`` with ``WIKIREF_DASK_WORKERS=N`` worker processes, each encoder given
  cores / N threads (``WIKIREF_EMBED_THREADS``) so that the cores are not oversubscribed.

It prints texts/s end to end (flow start-up, reading, encoding, COPY, HNSW build) and the ratio to ``default``.

    python bench/dask_embed_bench.py --references 20000 --modes default,dask:1,dask:2 --out docs/bench/dask-embed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from scale_bench import PYTHON, run_stage

REGISTER_BASE = """
import sys
from sqlalchemy import text
sys.path.insert(0, "bench")
from wikiref.flows.settings import get_settings
from wikiref.flows.database import prepare_database
from scale_bench import register_base_version
_, engine = prepare_database(get_settings())
register_base_version(engine)
with engine.connect() as connection:
    print(connection.execute(text(
        "SELECT (SELECT count(*) FROM articles) + (SELECT count(*) FROM article_references)")).scalar_one())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, default=20_000)
    parser.add_argument(
        "--modes", default="default,dask:1,dask:2", help="default and/or dask:N, comma-separated"
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wikiref-dask-embed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    cpus = os.cpu_count() or 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    dump = args.workdir / f"scale-{args.references}.ndjson.gz"
    if not dump.exists():
        subprocess.run(
            [PYTHON, "bench/scale_dump.py", "--references", str(args.references), "--out", str(dump)],
            check=True,
            cwd=REPO_ROOT,
        )
    base_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "WIKIREF_EMBED_CACHE_DIR": str(args.workdir / "onnx-cache"),
    }
    report: dict = {
        "references_requested": args.references,
        "machine": {"cpus": cpus, "platform": platform.platform(), "load_average": os.getloadavg()},
        "modes": {},
    }
    wikiref = [PYTHON, "-m", "wikiref.flows.cli"]
    for mode in args.modes.split(","):
        data = args.workdir / f"data-{mode.replace(':', '-')}"
        subprocess.run(["rm", "-rf", str(data)], check=True)
        env = {**base_env, "WIKIREF_DATA_DIR": str(data)}
        command = [*wikiref, "run", "embed"]
        if mode.startswith("dask:"):
            workers = int(mode.split(":")[1])
            env |= {
                "WIKIREF_DASK_WORKERS": str(workers),
                "WIKIREF_EMBED_THREADS": str(max(1, cpus // workers)),
            }
            command += ["--task-runner", "dask"]
        elif mode != "default":
            raise SystemExit(f"unknown mode {mode!r}: default or dask:N")
        subprocess.run([*wikiref, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=REPO_ROOT)
        subprocess.run(
            [*wikiref, "scrape", "--dump-path", str(dump)],
            env=env,
            check=True,
            capture_output=True,
            cwd=REPO_ROOT,
        )
        texts = int(
            subprocess.run(
                [PYTHON, "-c", REGISTER_BASE],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO_ROOT,
            ).stdout.split()[-1]
        )
        stage = run_stage(f"embed {mode}", command, env)
        stage.update(
            texts=texts, texts_per_s=texts / stage["seconds"], threads=env.get("WIKIREF_EMBED_THREADS")
        )
        report["modes"][mode] = stage
        print(f"  {mode}: {texts:,} texts, {stage['texts_per_s']:.1f} texts/s end to end", flush=True)
        if args.out:
            args.out.write_text(json.dumps(report, indent=1) + "\n")
    default = report["modes"].get("default")
    if default:
        for mode, stage in report["modes"].items():
            stage["vs_default"] = stage["texts_per_s"] / default["texts_per_s"]
            print(f"{mode:>10}: {stage['texts_per_s']:7.1f} texts/s  {stage['vs_default']:.2f}x default")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
