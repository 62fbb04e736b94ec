"""Print the markdown tables of docs/training.md from the raw JSON of bench/fusion_bench.py runs.

python bench/fusion_tables.py bench/results/fusion.json

One row per version and scorer: NDCG@10 and accuracy@1 through the SQL functions on the evaluation articles,
each delta with its 95% paired bootstrap CI (against the same version's embeddings alone, the base model with
the same scorer, and the base model on titles), and the weights chosen on the validation articles.
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    # Reports from before migration 0019 hold no hubness weight.
    hubness = f", hubness {forward['hubness']:g}" if "hubness" in forward else ""
    return f"words {forward['words']:g}{hubness} / words {reverse['words']:g}, vote {reverse['vote']:g}"


def seeds_table(report: dict) -> None:
    """The trained seeds together: mean ± standard deviation of each metric and delta over the seeds."""
    seeds = {name: entry for name, entry in report["versions"].items() if name.startswith("default-seed")}
    if not seeds:
        return
    print(f"\n{len(seeds)} seeds ({', '.join(seeds)}), mean ± sd:\n")
    print(
        row(
            "scorer",
            "metric",
            "value",
            *(f"Δ {label}" for label in COMPARISONS),
            "seeds with Δ CI above 0 vs base",
        )
    )
    print(row(*["---"] * 7))
    for scorer in next(iter(seeds.values()))["metrics"]:
        for metric, name in METRICS:
            values = [entry["metrics"][scorer][metric] for entry in seeds.values()]
            cells: list[object] = [scorer, name, spread(values)]
            for label in COMPARISONS:
                found = [entry["deltas"][scorer].get(label, {}).get(metric) for entry in seeds.values()]
                cells.append(spread([d["delta"] for d in found], signed=True) if all(found) else "-")
            versus_base = [
                entry["deltas"][scorer].get("vs base, same scorer", {}).get(metric)
                for entry in seeds.values()
            ]
            cells.append(sum(d["ci_low"] > 0 for d in versus_base if d) if all(versus_base) else "-")
            print(row(*cells))


def spread(values: list[float], *, signed: bool = False) -> str:
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{'+' if signed else ''}.4f} ± {deviation:.4f}"


def search_text_table(report: dict) -> None:
    rows = {
        name: entry["search_text"] for name, entry in report["versions"].items() if "search_text" in entry
    }
    if not rows:
        return
    print("\n`search_text(title, title's embedding)`, NDCG@10 against the article's own references:\n")
    print(
        row(
            "version",
            "words weight",
            "embeddings alone",
            "words alone",
            "fused",
            "Δ fused vs embeddings alone",
        )
    )
    print(row(*["---"] * 6))
    for name, entry in rows.items():
        ndcg = entry["ndcg@10"]
        fused = entry["deltas vs embeddings alone"]["fused"]
        print(
            row(
                name,
                f"{entry['weights']['words']:g}",
                f"{ndcg['embeddings alone']:.4f}",
                f"{ndcg['words alone']:.4f}",
                f"{ndcg['fused']:.4f}",
                delta(fused),
            )
        )


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
        seeds_table(report)
        search_text_table(report)


if __name__ == "__main__":
    main()
