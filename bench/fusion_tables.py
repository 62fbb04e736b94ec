"""Print the markdown tables of docs/training.md from the raw JSON of bench/fusion_bench.py runs.

python bench/fusion_tables.py bench/results/fusion-base.json

One row per version and scorer: NDCG@10 and accuracy@1 through the SQL functions on the evaluation articles,
each delta with its 95% paired bootstrap CI (against the same version's embeddings alone, the base model with
the same scorer, and the base model on titles), and the weights chosen on the validation articles.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = (("ndcg@10", "NDCG@10"), ("ref_to_title_acc@1", "acc@1"))
COMPARISONS = ("vs embeddings alone", "vs base, same scorer", "vs base on titles")


def row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def delta(entry: dict | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['delta']:+.4f} [{entry['ci_low']:+.4f}, {entry['ci_high']:+.4f}]"


def weights_cell(weights: dict | None) -> str:
    if not weights:
        return "-"
    forward = weights["similar_references"]
    reverse = weights["articles_for_reference"]
    return f"words {forward['words']:g} / words {reverse['words']:g}, vote {reverse['vote']:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    header = ["version", "scorer", "weights (similar_references / articles_for_reference)"]
    for _, name in METRICS:
        header += [name, *(f"Δ {name} {label}" for label in COMPARISONS)]
    print(row(*header))
    print(row(*["---"] * len(header)))
    for path in args.results:
        report = json.loads(path.read_text(encoding="utf-8"))
        for version, entry in report["versions"].items():
            for scorer, metrics in entry.get("metrics", {}).items():
                cells: list[object] = [f"{version} (`{path.name}`)", scorer]
                cells.append(weights_cell(entry.get("weights", {}).get(scorer)))
                deltas = entry["deltas"][scorer]
                for metric, _ in METRICS:
                    cells.append(f"{metrics[metric]:.4f}")
                    cells += [delta(deltas.get(label, {}).get(metric)) for label in COMPARISONS]
                print(row(*cells))


if __name__ == "__main__":
    main()
