"""Training-recipe bench: fine-tuned vs base on articles never trained on, over seeds, with paired bootstrap CIs.

Protocol (docs/training.md):
- data: every shared page (``pages/`` and ``bulk.tar.gz``, about 1,000 articles) through the scraper's own
  extraction; evaluation articles are the bulk articles of ``bench.corpus_split.is_eval_article`` (about 280),
  training articles are ``pages/`` plus the rest of the bulk; 10% of the training articles (by a second hash)
  are kept apart as validation data, used only to choose the WiSE-FT mixing weight.
- metrics: article text -> each single reference NDCG@10 (``similar_references``) and reference -> article
  accuracy@1 among all evaluated articles (``articles_for_reference``), scored with the recipe's article text.
- every configuration trains with each seed; each run is compared with the base model on the same article text
  and on titles by a paired bootstrap over the evaluated articles; the summary gives mean ± std over seeds.

    python bench/train_bench.py --configs reference,cmnrl --seeds 1,2,3 --out bench/results/full.json
    python bench/train_bench.py --max-samples 1536 --seeds 1 --out bench/results/proxy.json   # proxy runs

Results are written after every run, so an interrupted bench keeps what it measured.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus_split import is_eval_article
from wikiref.models.article_text import TITLE_ONLY, ArticleTextRecipe
from wikiref.models.base import BASE_MODEL_ID, resolve_model_path
from wikiref.models.evaluate import REVERSE_METRIC, load_model, paired_bootstrap, score_articles
from wikiref.models.finetune import TrainingConfig, resolve_device, train, wise_ft
from wikiref.models.pairs import (
    DEFAULT_TOKEN_BUDGET,
    ArticleTexts,
    build_pairs,
    heldout_score,
    tokenizer_counter,
)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "wikipedia"
HEADLINE = ("ndcg@10", REVERSE_METRIC)
WISE_FT_WEIGHTS = (0.25, 0.5, 0.75, 1.0)

# Each configuration: TrainingConfig fields, plus the training target, the anchor's article text and WiSE-FT.
CMNRL = {"loss": "cached_mnrl", "batch_size": 64, "mini_batch_size": 32, "sampler": "no_duplicates"}


def product_recipe(name: str) -> dict[str, Any]:
    """A named recipe of `wikiref train` (wikiref.flows.settings.RECIPES on the TrainKnobs defaults) as bench knobs."""
    from wikiref.flows.settings import RECIPES, TrainKnobs

    knobs = TrainKnobs(**RECIPES[name])
    config = knobs.training_config().as_params()
    for per_run in ("seed", "save_steps", "max_steps", "logging_steps", "epochs"):
        config.pop(per_run)
    return {**config, "target": knobs.target, "article_text": knobs.article_text}


# The default recipe at the learning rate it had until 2026-12-04: every configuration measured before then.
DEFAULT_AT_5E_5 = {**product_recipe("default"), "learning_rate": 5e-5}
SYMMETRIC_2048_PAIRS = {**DEFAULT_AT_5E_5, "symmetric": True, "max_pairs": 2048}

CONFIGS: dict[str, dict[str, Any]] = {
    # What `wikiref train` runs with its defaults, and with --recipe reference.
    "default": product_recipe("default"),
    "reference-recipe": product_recipe("reference"),
    "reference": {"target": "chunk"},
    "previous-default": {"sampler": "no_duplicates", "target": "chunk"},
    "cmnrl": {**CMNRL, "target": "reference"},
    "cmnrl-chunks": {**CMNRL, "target": "chunk"},
    "cmnrl-symmetric": {**CMNRL, "target": "reference", "symmetric": True},
    "cmnrl-no-shared-source": {**CMNRL, "target": "reference", "sampler": "no_shared_source"},
    "cmnrl-lr1e-4": {**CMNRL, "target": "reference", "learning_rate": 1e-4},
    "cmnrl-lead40": {**CMNRL, "target": "reference", "article_text": "title+lead40"},
    "cmnrl-lead160": {**CMNRL, "target": "reference", "article_text": "title+lead160"},
    # The default until symmetric-4096 was measured (labelled `default` in default-vs-reference.json), and the
    # two steps from it to today's default.
    "one-way-2048-pairs": {**DEFAULT_AT_5E_5, "symmetric": False, "max_pairs": 2048},
    "default-symmetric": SYMMETRIC_2048_PAIRS,
    "default-symmetric-4096-pairs": {**DEFAULT_AT_5E_5, "symmetric": True, "max_pairs": 4096},
    # Levers measured against default-symmetric (2,048 pairs, so that 3 seeds of each fit in half an hour).
    "default-symmetric-no-shared-source": {**SYMMETRIC_2048_PAIRS, "sampler": "no_shared_source"},
    "default-symmetric-chunks": {**SYMMETRIC_2048_PAIRS, "target": "chunk"},
    # Levers measured against today's default (docs/training.md): one mined negative per pair
    # (wikiref.models.hard_negatives), chunks as training targets, every pair instead of 4,096, and two epochs.
    "default-hard-negatives": {**product_recipe("default"), "hard_negatives": True},
    "default-chunks": {**product_recipe("default"), "target": "chunk"},
    "default-all-pairs": {**product_recipe("default"), "max_pairs": 0},
    "default-all-pairs-2-epochs": {**product_recipe("default"), "max_pairs": 0, "epochs": 2.0},
    # Twice the default's training on the CPU: 8,192 pairs of the shuffled epoch instead of 4,096 (128 steps),
    # paired with default-lr1e-4.json's seeds.
    "default-8192-pairs": {**product_recipe("default"), "max_pairs": 8192},
    # The learning rate, chosen on validation articles (docs/training.md): 1e-4 is today's default; 5e-5 was
    # (its run is labelled `default` in default-lr5e-5.json).
    "default-lr1e-4": {**product_recipe("default"), "learning_rate": 1e-4},
    "default-lr5e-5": DEFAULT_AT_5E_5,
    "cmnrl-nss-sym-lead40": {
        **CMNRL,
        "target": "reference",
        "sampler": "no_shared_source",
        "symmetric": True,
        "article_text": "title+lead40",
    },
}


def load_articles(root: Path, cache: Path | None) -> tuple[list[ArticleTexts], set[str], float]:
    """Every shared page as (title, references, lead), and which titles came from the bulk archive."""
    started = time.perf_counter()
    if cache is not None and cache.exists():
        with gzip.open(cache, "rt", encoding="utf-8") as handle:
            rows = json.load(handle)
    else:
        from wikiref.flows.mediawiki import extract
        from wikiref.flows.mediawiki.saved import iter_saved_pages

        extract_lead = getattr(extract, "extract_lead", None)
        rows = []
        for page in iter_saved_pages(root, include_bulk=True):
            references = [r.text for r in extract.extract_references(page.html)]
            lead = extract_lead(page.html) if extract_lead else None
            rows.append([page.title, references, lead, page.format == "bulk"])
        if cache is not None:
            with gzip.open(cache, "wt", encoding="utf-8") as handle:
                json.dump(rows, handle, ensure_ascii=False)
    articles = [
        ArticleTexts(i + 1, title, tuple(refs), lead) for i, (title, refs, lead, _) in enumerate(rows)
    ]
    bulk = {title for title, _, _, from_bulk in rows if from_bulk}
    return articles, bulk, time.perf_counter() - started


def summarise(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 5),
        "std": round(statistics.stdev(values), 5) if len(values) > 1 else 0.0,
        "min": round(min(values), 5),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=SHARED, help="saved-pages folder (MANIFEST.tsv, bulk.tar.gz)"
    )
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}"
    )
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated training seeds")
    parser.add_argument(
        "--max-samples", type=int, default=None, help="proxy runs: stop after ~N training pairs"
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument(
        "--wise-ft", action="store_true", help="also score each run mixed with the base (WiSE-FT)"
    )
    parser.add_argument(
        "--precision", default="fp32", help="fp32 or bf16 (CPU autocast), where a configuration sets none"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help="proxy runs: score only N evaluation articles (by title hash)",
    )
    parser.add_argument("--bootstrap-samples", type=int, default=2000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/wikiref-bench-articles.json.gz"))
    parser.add_argument("--out", type=Path, required=True, help="JSON results, rewritten after every run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    articles, bulk, load_seconds = load_articles(args.data, args.cache)
    has_leads = any(a.lead for a in articles)
    device = resolve_device(args.device)
    base = resolve_model_path(BASE_MODEL_ID)
    count_tokens = tokenizer_counter(base)
    configs = {name: CONFIGS[name] for name in args.configs.split(",")}
    seeds = [int(seed) for seed in args.seeds.split(",")]

    def split_for(article_text: ArticleTextRecipe, target: str):
        split = build_pairs(
            articles,
            count_tokens=count_tokens,
            token_budget=DEFAULT_TOKEN_BUDGET,
            eval_fraction=0.5,  # unused: the shared bulk split decides
            recipe=article_text,
            target=target,
            validation_fraction=args.validation_fraction,
            is_heldout=lambda title: is_eval_article(title, from_bulk=title in bulk),
        )
        if args.eval_limit:
            kept = sorted(split.heldout_articles, key=lambda a: heldout_score(a.title))[: args.eval_limit]
            split.heldout_articles[:] = sorted(kept, key=lambda a: a.title)
        return split

    base_model = load_model(base, device=device)
    base_scores: dict[str, Any] = {}

    def base_on(recipe: ArticleTextRecipe, split):
        if recipe.name not in base_scores:
            base_scores[recipe.name] = score_articles(
                base_model, split.heldout_articles, recipe, with_chunks=False
            )
        return base_scores[recipe.name]

    report: dict[str, Any] = {
        "protocol": "train: pages/ + bulk not in bench.corpus_split; evaluate: the bulk's evaluation articles",
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "precision": args.precision,
        "max_samples": args.max_samples,
        "eval_limit": args.eval_limit,
        "epochs": args.epochs,
        "seeds": seeds,
        "leads_extracted": has_leads,
        "extract_seconds": round(load_seconds, 1),
        "base": {},
        "runs": [],
        "summary": {},
    }

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")

    # Each configuration's article text, split and base scores, once (configurations with the same article text
    # and target share a split).
    splits: dict[tuple[str, str], Any] = {}
    prepared = []
    for label, knobs in configs.items():
        knobs = dict(knobs)
        recipe = ArticleTextRecipe.from_name(knobs.pop("article_text", "title"))
        if recipe.lead_words and not has_leads:
            print(
                f"skipping {label}: no leads extracted (wikiref.flows.mediawiki.extract.extract_lead missing)"
            )
            continue
        target = knobs.pop("target")
        if (recipe.name, target) not in splits:
            splits[recipe.name, target] = split_for(recipe, target)
        split = splits[recipe.name, target]
        base_same = base_on(recipe, split)
        base_titles = base_on(TITLE_ONLY, split)
        report["data"] = {k: v for k, v in split.counts.items() if k != "train_pairs"}
        report["base"][recipe.name] = base_same.metrics()
        report["base"]["title"] = base_titles.metrics()
        prepared.append((label, knobs, recipe, split, base_same, base_titles))

    with tempfile.TemporaryDirectory(prefix="train-bench-") as scratch:
        # Seed by seed, every configuration: a bench stopped part way has the same seeds of each.
        for seed in seeds:
            for label, knobs, recipe, split, base_same, base_titles in prepared:
                config = TrainingConfig(
                    **{"precision": args.precision, "epochs": args.epochs, **knobs},
                    seed=seed,
                    save_steps=10**9,
                )
                if args.max_samples:
                    config = replace(config, max_steps=max(1, args.max_samples // config.batch_size))
                folder = Path(scratch) / f"{label}-{seed}"
                result = train(
                    base_model=base,
                    pairs=split.train,
                    output_dir=folder / "model",
                    checkpoint_dir=folder / "checkpoints",
                    config=config,
                    device=device,
                )
                model = load_model(str(result.artifact_path), device=device)
                variants = {label: model}
                validation: dict[str, dict[str, float]] = {}
                if args.wise_ft:
                    best_weight, best = 1.0, -1.0
                    trained_state = {k: v.clone() for k, v in model.state_dict().items()}
                    for weight in WISE_FT_WEIGHTS:
                        model.load_state_dict(trained_state)
                        wise_ft(model, base, weight)
                        score = score_articles(model, split.validation_articles, recipe, with_chunks=False)
                        metrics = validation[str(weight)] = score.metrics()
                        if metrics["ndcg@10"] > best:
                            best_weight, best = weight, metrics["ndcg@10"]
                    model.load_state_dict(trained_state)
                    mixed = load_model(str(result.artifact_path), device=device)
                    wise_ft(mixed, base, best_weight)
                    variants[f"{label}+wise-ft"] = mixed
                for name, variant in variants.items():
                    scores = score_articles(variant, split.heldout_articles, recipe, with_chunks=False)
                    vs_same = paired_bootstrap(scores, base_same, samples=args.bootstrap_samples, seed=seed)
                    vs_titles = paired_bootstrap(
                        scores, base_titles, samples=args.bootstrap_samples, seed=seed
                    )
                    run = {
                        "config": name,
                        "seed": seed,
                        "article_text": recipe.name,
                        "params": result.params,
                        "train_pairs": result.train_pairs,
                        "steps": result.steps,
                        "train_seconds": round(result.seconds, 1),
                        "samples_per_second": round(result.samples_per_second, 2),
                        "metrics": scores.metrics(),
                        "vs_base_same_text": {m: d.as_dict() for m, d in vs_same.items()},
                        "vs_base_titles": {m: d.as_dict() for m, d in vs_titles.items()},
                    }
                    if name.endswith("+wise-ft"):
                        run["wise_ft_weight"] = best_weight
                    if validation:
                        # Validation articles (never evaluated on), by WiSE-FT weight; 1.0 is the trained model.
                        run["validation_by_wise_ft_weight"] = validation
                    report["runs"].append(run)
                    print(
                        f"{name} seed {seed}: {result.steps} steps, {result.samples_per_second:.1f} samples/s; "
                        + ", ".join(
                            f"{m} {scores.metrics()[m]:.4f} ({vs_same[m].value:+.4f} "
                            f"[{vs_same[m].low:+.4f}, {vs_same[m].high:+.4f}])"
                            for m in HEADLINE
                        ),
                        flush=True,
                    )
                    runs = [r for r in report["runs"] if r["config"] == name]
                    report["summary"][name] = {
                        "seeds": len(runs),
                        "article_text": recipe.name,
                        "samples_per_second": summarise([r["samples_per_second"] for r in runs]),
                        **{
                            f"{m} vs base ({which})": summarise([r[key][m]["delta"] for r in runs])
                            for m in HEADLINE
                            for which, key in (
                                ("same text", "vs_base_same_text"),
                                ("titles", "vs_base_titles"),
                            )
                        },
                    }
                    write()
    write()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
