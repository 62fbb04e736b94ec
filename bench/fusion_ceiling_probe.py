"""How far `similar_references`' two settings could move NDCG@10: its words weight and its names lift, per version.

The fusion bench chooses each version's words weight on the 69 validation articles (0 to 0.5 by 0.1) and serves
the names lift fixed at 1.0 (migration 0018). This probe asks what any other choice of the two could give, on a
finer grid (words 0 to 0.6 by 0.05; lift 0, 0.5, 1, 1.5, 2, 3):

- what the validation articles would choose on that grid, scored on the evaluation articles (a rule that could
  be served), against the served choice by a paired bootstrap over the evaluation articles;
- the best setting *in hindsight*: chosen on the evaluation articles themselves, per version and one setting for
  every seed. That is an upper bound on what choosing these two settings could give, never a served number.

On two databases built as bench/fusion_bench.py builds its own (the same split, ``wikiref embed``'s steps, the base
model, the base model on titles and each trained seed of ``fusion_bench.py train``): one ``similar_references(title,
1000, version)`` call per article returns every candidate of its pool with each signal, re-fused for each grid
point by wikiref.models.fusion (as the SQL fuses; a test holds them equal), NDCG@10 against the article's own
references.

    python bench/fusion_ceiling_probe.py --models /tmp/fusion-models --out bench/results/fusion-ceiling-probe.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fusion_bench import (
    base_database,
    corpus_of,
    ndcg_at_10,
    ndcg_scores,
    per_article_ndcg,
    probe_split,
    ranked_ids,
    register_and_embed,
    scratch_server,
    similar_references_pools,
    trained_seeds,
)
from bench.machine import cpu_model
from wikiref.models.article_text import TITLE_ONLY
from wikiref.models.evaluate import ArticleScores, paired_bootstrap
from wikiref.models.fusion import WORDS, WORDS_GRID

FINE_WORDS = tuple(round(0.05 * i, 2) for i in range(13))
LIFTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
SERVED_LIFT = 1.0
Setting = tuple[float, float]  # (words weight, names lift)


def grid_scores(engine, version: str) -> dict[Setting, ArticleScores]:
    """NDCG@10 per article of ``version`` for each (words weight, lift) of the fine grid."""
    articles, _, references = corpus_of(engine)
    with engine.connect() as connection:
        pools = similar_references_pools(connection, articles, references, version)
    article_ids = [a for a, _ in articles]
    return {
        (words, lift): ndcg_scores(
            article_ids,
            np.array(
                [
                    ndcg_at_10(list(ranked_ids(ids, signals, {WORDS: words}, lift * names)), own)
                    for ids, signals, own, names in pools
                ]
            ),
        )
        for words in FINE_WORDS
        for lift in LIFTS
    }


def best(scores: dict[Setting, ArticleScores], settings) -> Setting:
    # Ties to the smaller settings, as the bench's choice: a signal is added only where it measurably helps.
    return max(settings, key=lambda s: (round(scores[s].metrics()["ndcg@10"], 10), -s[0] - s[1], -s[0]))


def main() -> int:
    args, recipe, corpora = probe_split(
        __doc__, "bench/results/fusion-ceiling-probe.json", "validation", "evaluation", models=True
    )
    seeds = trained_seeds(args.models)
    if not seeds:
        raise SystemExit(f"no trained seeds in {args.models}: run `python bench/fusion_bench.py train` first")
    report: dict[str, Any] = {
        "protocol": "similar_references NDCG@10 per (words weight, names lift), re-fused from one call per article; "
        "validation chooses, and the evaluation articles' own best (in hindsight, never served) is the bound",
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "load_before": os.getloadavg(),
        "versions": {},
    }
    grids: dict[str, dict[str, dict[Setting, ArticleScores]]] = {}
    with scratch_server("fusion-ceiling") as server_url:
        engines = {}
        try:
            for corpus, titles in corpora.items():
                engines[corpus], loaded = base_database(
                    server_url, f"ceiling_{corpus}", args.data, titles, recipe.name
                )
                print(f"{corpus}: {loaded} articles", flush=True)
            register_and_embed(
                engines["evaluation"], "base-titles", None, TITLE_ONLY.name, references_from="base"
            )
            evaluation = engines["evaluation"]
            articles, _, references = corpus_of(evaluation)
            with evaluation.connect() as connection:
                titles_alone = per_article_ndcg(
                    connection, articles, references, fusion=False, version="base-titles"
                )
            report["base-titles, embeddings alone"] = round(titles_alone.metrics()["ndcg@10"], 5)
            for name, artifact in {"base": None, **seeds}.items():
                if artifact is not None:
                    for engine in engines.values():
                        register_and_embed(engine, name, artifact, recipe.name)
                grids[name] = {corpus: grid_scores(engine, name) for corpus, engine in engines.items()}
                print(f"{name}: pools scored", flush=True)
        finally:
            for engine in engines.values():
                engine.dispose()

    def ndcg(scores: ArticleScores) -> float:
        return round(scores.metrics()["ndcg@10"], 5)

    coarse = [(w, SERVED_LIFT) for w in WORDS_GRID]
    fine = list(grids["base"]["evaluation"])
    for name, grid in grids.items():
        validation, evaluation = grid["validation"], grid["evaluation"]
        served = best(validation, coarse)
        chosen = best(validation, fine)
        hindsight = best(evaluation, fine)
        report["versions"][name] = {
            "served (validation's choice, words by 0.1, lift 1)": {
                "words": served[0],
                "lift": served[1],
                "evaluation ndcg@10": ndcg(evaluation[served]),
            },
            "validation's choice on the fine grid": {
                "words": chosen[0],
                "lift": chosen[1],
                "validation ndcg@10": ndcg(validation[chosen]),
                "evaluation ndcg@10": ndcg(evaluation[chosen]),
                "vs served": paired_bootstrap(
                    evaluation[chosen], evaluation[served], samples=args.bootstrap_samples
                )["ndcg@10"].as_dict(),
            },
            "best in hindsight on evaluation": {
                "words": hindsight[0],
                "lift": hindsight[1],
                "evaluation ndcg@10": ndcg(evaluation[hindsight]),
            },
            "evaluation ndcg@10 per setting": {
                f"words {w:g}, lift {lift:g}": ndcg(evaluation[(w, lift)]) for w, lift in fine
            },
        }
    seed_names = list(seeds)
    shared = max(
        fine,
        key=lambda s: (
            statistics.fmean(grids[n]["evaluation"][s].metrics()["ndcg@10"] for n in seed_names),
            -s[0] - s[1],
        ),
    )
    needed = report["base-titles, embeddings alone"] + 0.13

    def seeds_mean(key: str) -> float:
        return round(
            statistics.fmean(report["versions"][n][key]["evaluation ndcg@10"] for n in seed_names), 5
        )

    report["seeds"] = {
        "names": seed_names,
        "needed (base-titles + 0.13)": round(needed, 5),
        "served": seeds_mean("served (validation's choice, words by 0.1, lift 1)"),
        "validation's choice on the fine grid": seeds_mean("validation's choice on the fine grid"),
        "best in hindsight per seed": seeds_mean("best in hindsight on evaluation"),
        "best in hindsight, one setting for every seed": {
            "words": shared[0],
            "lift": shared[1],
            "evaluation ndcg@10": round(
                statistics.fmean(grids[n]["evaluation"][shared].metrics()["ndcg@10"] for n in seed_names), 5
            ),
        },
    }
    report["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    summary = {
        name: {k: v for k, v in entry.items() if k != "evaluation ndcg@10 per setting"}
        for name, entry in report["versions"].items()
    }
    print(
        json.dumps(
            {
                "base-titles": report["base-titles, embeddings alone"],
                "versions": summary,
                "seeds": report["seeds"],
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
