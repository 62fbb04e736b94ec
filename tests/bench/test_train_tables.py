"""bench/train_tables.py prints what the raw JSON of bench/train_bench.py holds."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from tests.conftest import REPO_ROOT

RESULTS = [
    REPO_ROOT / "bench/results/proxy-512-lead160.json",
    REPO_ROOT / "bench/results/proxy-512-lead160-seeds23.json",
]


def test_the_summary_row_is_the_mean_of_the_seeds_in_the_json() -> None:
    printed = subprocess.run(
        [sys.executable, "bench/train_tables.py", *map(str, RESULTS)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    runs = [run for path in RESULTS for run in json.loads(path.read_text())["runs"]]
    lead160 = [run["vs_base_titles"]["ndcg@10"]["delta"] for run in runs if run["config"] == "cmnrl-lead160"]
    summary = next(line for line in printed.splitlines() if line.startswith("| cmnrl-lead160 | 3 |"))
    assert f"{statistics.fmean(lead160):+.4f} ± {statistics.stdev(lead160):.4f}" in summary
    assert f"{min(lead160):+.4f}" in summary
    assert printed.count("(`proxy-512-lead160") == len(runs)


def test_paired_rows_subtract_the_reference_of_the_same_seed_and_device() -> None:
    files = [
        REPO_ROOT / f"bench/results/{name}.json"
        for name in ("levers-cuda-h200", "levers-cpu-seed3", "default-lr1e-4")
    ]
    printed = subprocess.run(
        [
            sys.executable,
            "bench/train_tables.py",
            *map(str, files),
            "--paired-with",
            "default,default-lr1e-4",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    runs = {
        (report["device"], run["config"], run["seed"]): run
        for report in (json.loads(path.read_text()) for path in files)
        for run in report["runs"]
    }
    # Seed 1 has a default on both devices: the CUDA lever must be paired with the CUDA default.
    expected = [
        runs["cuda", "default-chunks", 1]["metrics"]["ndcg@10"]
        - runs["cuda", "default", 1]["metrics"]["ndcg@10"],
        runs["cpu", "default-chunks", 3]["metrics"]["ndcg@10"]
        - runs["cpu", "default-lr1e-4", 3]["metrics"]["ndcg@10"],
    ]
    line = next(
        line for line in printed.splitlines() if line.startswith("| default-chunks | 1 (cuda), 3 (cpu) |")
    )
    assert " / ".join(f"{diff:+.4f}" for diff in expected) in line
    assert not any(
        line.startswith("| default |") for line in printed.split("minus the reference")[-1].splitlines()
    )


def test_the_pairs_column_counts_the_pairs_trained_not_full_last_batches() -> None:
    printed = subprocess.run(
        [sys.executable, "bench/train_tables.py", str(REPO_ROOT / "bench/results/default-vs-reference.json")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # One epoch of 8,034 pairs in 1,005 steps of 8: the last batch holds 2 pairs.
    reference = [line for line in printed.splitlines() if line.startswith("| reference-recipe (")]
    assert len(reference) == 3 and all("| 8034 |" in line for line in reference)
    assert all("| 2048 |" in line for line in printed.splitlines() if line.startswith("| default ("))
