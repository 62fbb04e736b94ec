"""Fine-tuning bench: base vs fine-tuned held-out metrics, reference recipe vs wikiref's default, samples/s.

Loads every shared page (pages/ and bulk.tar.gz, about 1,000 articles) with the scraper's own extraction,
builds the pairs once, evaluates the base model once, then trains one full epoch with each configuration on
the same pairs and evaluates it on the same held-out articles. Prints every number side by side with the
targets and pass/fail, and writes them as JSON with --out.

The pages go straight from the saved files through ``extract_references`` into the pair builder: that is what
the database would hand back (``db.corpus`` returns the extracted texts in page order), without needing a
PostgreSQL server on the machine that runs the bench (a GPU box, say).

    python bench/train_bench.py --device cpu --out train-bench.json           # the full bench
    python bench/train_bench.py --limit-articles 120 --max-steps 20            # a quick development run

On a machine without the shared folder, export the extracted articles here and read them there
(docs/benchmarks.md shows the whole GPU run):

    python bench/train_bench.py --export-articles articles.json.gz
    python bench/train_bench.py --articles articles.json.gz --device cuda --out train-bench-cuda.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.base import BASE_MODEL_ID, resolve_model_path
from models.evaluate import METRICS, REVERSE_METRIC, evaluate, load_model
from models.finetune import RECOMMENDED, REFERENCE_RECIPE, TrainingConfig, resolve_device, train
from models.pairs import (
    DEFAULT_EVAL_FRACTION,
    DEFAULT_TOKEN_BUDGET,
    ArticleTexts,
    build_pairs,
    tokenizer_counter,
)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "wikipedia"
GATE = "ndcg@10"


def load_articles(root: Path, limit: int | None, saved: Path | None) -> tuple[list[ArticleTexts], float]:
    """Extract every saved page, or read the (title, references) of an earlier --export-articles."""
    started = time.perf_counter()
    if saved is not None:
        with gzip.open(saved, "rt", encoding="utf-8") as handle:
            rows = json.load(handle)
        articles = [ArticleTexts(i + 1, title, tuple(texts)) for i, (title, texts) in enumerate(rows[:limit])]
        return articles, time.perf_counter() - started
    from flows.mediawiki.extract import extract_references
    from flows.mediawiki.saved import iter_saved_pages

    articles = []
    for page in iter_saved_pages(root, include_bulk=True):
        articles.append(
            ArticleTexts(len(articles) + 1, page.title, tuple(r.text for r in extract_references(page.html)))
        )
        if limit and len(articles) >= limit:
            break
    return articles, time.perf_counter() - started


def print_progress(label: str):
    def report(step: int, total: int, logs: dict[str, float]) -> None:
        if logs:
            print(f"  {label}: step {step}/{total} loss {logs['loss']:.4f}", flush=True)

    return report


def describe(config: TrainingConfig) -> str:
    loss = "cached MNRL" if config.loss == "cached_mnrl" else "MNRL"
    return f"batch {config.batch_size}, {config.sampler} sampler, {loss}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=SHARED, help="saved-pages folder (MANIFEST.tsv, bulk.tar.gz)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda[:N], mps or auto")
    parser.add_argument(
        "--limit-articles", type=int, default=None, help="only the first N articles (dev runs)"
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop each training after N steps (dev runs)"
    )
    parser.add_argument("--eval-fraction", type=float, default=DEFAULT_EVAL_FRACTION)
    parser.add_argument("--token-budget", type=int, default=DEFAULT_TOKEN_BUDGET)
    parser.add_argument("--base-model", default=BASE_MODEL_ID, help="hub id or folder of the base model")
    parser.add_argument("--out", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--export-articles",
        type=Path,
        default=None,
        help="write the extracted (title, references) as .json.gz and stop: input for --articles elsewhere",
    )
    parser.add_argument(
        "--articles",
        type=Path,
        default=None,
        help="read (title, references) from an --export-articles file instead of extracting the pages "
        "(for a machine without the extraction dependencies or the shared folder)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    articles, load_seconds = load_articles(args.data, args.limit_articles, args.articles)
    if args.export_articles:
        with gzip.open(args.export_articles, "wt", encoding="utf-8") as handle:
            json.dump([[a.title, list(a.references)] for a in articles], handle, ensure_ascii=False)
        print(f"wrote {len(articles)} articles to {args.export_articles}")
        return 0
    device = resolve_device(args.device)
    base = resolve_model_path(args.base_model)
    split = build_pairs(
        articles,
        count_tokens=tokenizer_counter(base),
        token_budget=args.token_budget,
        eval_fraction=args.eval_fraction,
    )
    print(
        f"data: {len(articles)} articles, {split.counts['references']} references extracted in {load_seconds:.1f} s; "
        f"{split.counts['train_pairs']} training pairs from {split.counts['train_articles']} articles, "
        f"{split.counts['heldout_pairs']} held-out pairs / {split.counts['heldout_references']} references from "
        f"{split.counts['heldout_articles']} articles; mean chunk {split.counts['mean_chunk_tokens']} tokens",
        flush=True,
    )

    started = time.perf_counter()
    base_metrics = evaluate(load_model(base, device=device), split)
    print(f"base model evaluated in {time.perf_counter() - started:.1f} s", flush=True)

    configs = {"reference recipe": REFERENCE_RECIPE, "wikiref default": RECOMMENDED}
    runs = {}
    with tempfile.TemporaryDirectory(prefix="train-bench-") as scratch:
        for label, config in configs.items():
            if args.max_steps:
                config = replace(config, max_steps=args.max_steps)
            folder = Path(scratch) / label.replace(" ", "-")
            result = train(
                base_model=base,
                pairs=split.train,
                output_dir=folder / "model",
                checkpoint_dir=folder / "checkpoints",
                config=replace(config, save_steps=10**9),
                device=device,
                on_progress=print_progress(label),
            )
            metrics = evaluate(load_model(str(result.artifact_path), device=device), split)
            runs[label] = {
                "config": describe(config),
                "params": result.params,
                "steps": result.steps,
                "train_seconds": round(result.seconds, 1),
                "samples_per_second": round(result.samples_per_second, 2),
                "final_loss": result.loss_log[-1]["loss"] if result.loss_log else None,
                "metrics": metrics,
            }
            print(
                f"{label} ({describe(config)}): {result.steps} steps in {result.seconds:.0f} s, "
                f"{result.samples_per_second:.1f} samples/s on {result.device} ({result.precision})",
                flush=True,
            )

    reference, default = runs["reference recipe"], runs["wikiref default"]
    header = f"{'metric':<20}{'base':>10}{'reference':>12}{'default':>10}{'default-ref':>13}"
    print("\nheld-out metrics (" + f"{split.counts['heldout_articles']} articles)")
    print(header)
    for metric in METRICS:
        r, d = reference["metrics"][metric], default["metrics"][metric]
        print(f"{metric:<20}{base_metrics[metric]:>10.4f}{r:>12.4f}{d:>10.4f}{d - r:>+13.4f}")
    print(
        f"{'samples/s':<20}{'':>10}{reference['samples_per_second']:>12.1f}{default['samples_per_second']:>10.1f}"
    )

    checks = []
    for metric in (GATE, REVERSE_METRIC):
        checks.append(
            (
                f"fine-tuned (default) beats base on {metric}",
                default["metrics"][metric] > base_metrics[metric],
                f"{default['metrics'][metric]:.4f} vs {base_metrics[metric]:.4f}",
            )
        )
    for metric in (GATE, REVERSE_METRIC):
        checks.append(
            (
                f"default beats reference recipe on {metric}",
                default["metrics"][metric] > reference["metrics"][metric],
                f"{default['metrics'][metric]:.4f} vs {reference['metrics'][metric]:.4f}",
            )
        )
    print()
    for name, passed, detail in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")

    if args.out:
        import torch

        report = {
            "device": device,
            "device_name": torch.cuda.get_device_name(0)
            if device.startswith("cuda")
            else platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "full_epoch": args.max_steps is None,
            "limit_articles": args.limit_articles,
            "data": split.counts,
            "fingerprint": split.fingerprint,
            "extract_seconds": round(load_seconds, 1),
            "base": base_metrics,
            "runs": runs,
            "checks": [
                {"check": name, "passed": passed, "detail": detail} for name, passed, detail in checks
            ],
        }
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 0 if all(passed for _, passed, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
