"""Print the markdown tables of docs/training.md and the README from the raw JSON of bench/train_bench.py runs.

python bench/train_tables.py bench/results/default-vs-reference.json bench/results/default-symmetric-4096-pairs.json

One row per configuration and seed (metrics, deltas with their 95% CIs, training time), then one row per
configuration over its seeds (mean ± std of the deltas, and the worst seed). With ``--paired-with``, a last table
compares each configuration with a reference one trained with the same seed on the same device:

python bench/train_tables.py bench/results/levers-*.json bench/results/default-lr1e-4.json \
    --paired-with default,default-lr1e-4
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

METRICS = (("ndcg@10", "NDCG@10"), ("ref_to_title_acc@1", "acc@1"))


def pairs_trained(run: dict) -> int:
    """Pairs the run trained on: its steps' batches, the last batch of an epoch holding only what is left."""
    return min(
        run["steps"] * run["params"]["batch_size"], round(run["train_pairs"] * run["params"]["epochs"])
    )


def row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def delta(entry: dict) -> str:
    return f"{entry['delta']:+.4f} [{entry['ci_low']:+.4f}, {entry['ci_high']:+.4f}]"


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):+.4f} ± {spread:.4f}"


def paired(runs: list[tuple[str, dict, dict]], references: list[str]) -> None:
    """Each configuration against a reference run of the same seed and device: its score minus the reference's."""
    reference = {
        (report["device"], run["seed"]): run for _, report, run in runs if run["config"] in references
    }
    header = ["configuration", "seeds (device)"]
    for _, name in METRICS:
        header += [f"Δ {name} vs base on titles", "the reference's", f"{name} minus the reference's, by seed"]
    print(row(*header))
    print(row(*["---"] * len(header)))
    shown = [
        (report["device"], run)
        for _, report, run in runs
        if run["config"] not in references and (report["device"], run["seed"]) in reference
    ]
    for config in dict.fromkeys(run["config"] for _, run in shown):
        chosen = sorted(((d, r) for d, r in shown if r["config"] == config), key=lambda item: item[1]["seed"])
        mates = [reference[device, run["seed"]] for device, run in chosen]
        cells = [config, ", ".join(f"{run['seed']} ({device})" for device, run in chosen)]
        for metric, _ in METRICS:
            gains = [run["vs_base_titles"][metric]["delta"] for _, run in chosen]
            their = [mate["vs_base_titles"][metric]["delta"] for mate in mates]
            diffs = [
                run["metrics"][metric] - mate["metrics"][metric] for (_, run), mate in zip(chosen, mates)
            ]
            cells += [
                f"{statistics.fmean(gains):+.4f}",
                f"{statistics.fmean(their):+.4f}",
                " / ".join(f"{diff:+.4f}" for diff in diffs),
            ]
        print(row(*cells))


def main(paths: list[Path], paired_with: list[str] | None = None) -> None:
    reports = [(path, json.loads(path.read_text())) for path in paths]
    runs = [(path.name, report, run) for path, report in reports for run in report["runs"]]

    print(row("base model, article text", "NDCG@10", "acc@1", "evaluated articles"))
    print(row("---", "---", "---", "---"))
    shown = set()
    for _, report in reports:
        for text, metrics in report["base"].items():
            if text not in shown:
                shown.add(text)
                articles = report.get("eval_limit") or report["data"]["heldout_articles"]
                print(
                    row(text, f"{metrics['ndcg@10']:.4f}", f"{metrics['ref_to_title_acc@1']:.4f}", articles)
                )
    print()

    header = ["configuration (JSON)", "seed", "pairs", "minutes", "samples/s"]
    for _, name in METRICS:
        header += [name, f"Δ {name} vs base, same text [95% CI]", f"Δ {name} vs base on titles [95% CI]"]
    print(row(*header))
    print(row(*["---"] * len(header)))
    for file, _, run in runs:
        cells = [
            f"{run['config']} (`{file}`)",
            run["seed"],
            pairs_trained(run),
            f"{run['train_seconds'] / 60:.1f}",
            f"{run['samples_per_second']:.2f}",
        ]
        for metric, _ in METRICS:
            cells += [
                f"{run['metrics'][metric]:.4f}",
                delta(run["vs_base_same_text"][metric]),
                delta(run["vs_base_titles"][metric]),
            ]
        print(row(*cells))
    print()

    header = ["configuration", "seeds"]
    for _, name in METRICS:
        header += [f"Δ {name} vs base on titles", "worst seed", f"Δ {name} vs base, same text"]
    print(row(*header))
    print(row(*["---"] * len(header)))
    configs = dict.fromkeys(run["config"] for _, _, run in runs)
    for config in configs:
        chosen = [run for _, _, run in runs if run["config"] == config]
        cells = [config, len(chosen)]
        for metric, _ in METRICS:
            titles = [run["vs_base_titles"][metric]["delta"] for run in chosen]
            same = [run["vs_base_same_text"][metric]["delta"] for run in chosen]
            cells += [mean_std(titles), f"{min(titles):+.4f}", mean_std(same)]
        print(row(*cells))

    if paired_with:
        print()
        paired(runs, paired_with)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "results", nargs="+", type=Path, help="raw JSON files written by bench/train_bench.py"
    )
    parser.add_argument(
        "--paired-with",
        type=lambda names: names.split(","),
        help="reference configuration(s), comma-separated (one name per JSON that calls it differently)",
    )
    arguments = parser.parse_args()
    main(arguments.results, arguments.paired_with)
