"""Whether a hubness correction of the embeddings lifts `similar_references`' NDCG@10, per version.

A reference that sits close to many articles (a generic source: "Official website", a national statistics
office, a news site's front page) ranks high for every article it resembles and belongs to only one of them.
Cross-domain similarity local scaling (CSLS; Conneau et al. 2018, "Word translation without parallel data")
corrects for that: ``2 cos(a, r) - hub(r) - hub(a)``, where ``hub(x)`` is the mean cosine of ``x`` to its ``k``
nearest neighbours on the other side. For one article ``a`` the last term is a constant, so its references rank by

    cos(a, r) - beta * hub(r)          hub(r): mean cosine of r to its 10 nearest articles (beta 0.5 is CSLS)

before the embedding signal is z-normalised and fused with the words as the SQL fuses it. ``hub(r)`` uses only
the stored embeddings of the corpus's articles (no citation link), so a function could serve it from a column.

On two databases built as bench/fusion_bench.py builds its own (the same split, ``wikiref embed``'s steps, the base
model and each trained seed of ``fusion_bench.py train``): one ``similar_references(title, 1000, version)`` call
per article gives its pool with each signal; each (beta, words weight) on a grid re-ranks it with the served
names lift. Validation chooses (beta, words), ties to the smaller; the evaluation articles score it against the
served choice (beta 0) by a paired bootstrap over the articles. The grid was beta 0 to 1 by 0.25 when it first ran;
1.25 and 1.5 were added after the base model's evaluation scores were seen (its best was at the old grid's top),
so the report holds both grids' choices and only the first is a rule written before the evaluation scores.

    python bench/hubness_probe.py --models /tmp/fusion-models --out bench/results/hubness-probe.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fusion_bench import (
    base_database,
    corpus_of,
    ndcg_at_10,
    ndcg_scores,
    probe_split,
    ranked_ids,
    register_and_embed,
    scratch_server,
    similar_references_pools,
    trained_seeds,
)
from bench.machine import cpu_model
from wikiref.models.evaluate import ArticleScores, paired_bootstrap
from wikiref.models.fusion import EMBEDDING, WORDS, WORDS_GRID

BETAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
FIRST_GRID_TOP = 1.0
NEIGHBOURS = 10
SERVED_LIFT = 1.0
Setting = tuple[float, float]  # (beta, words weight)


def vectors(connection, table: str, key: str, version: str) -> tuple[np.ndarray, np.ndarray]:
    rows = connection.execute(
        text(
            f"SELECT e.{key}, e.embedding::text FROM {table} e JOIN model_versions v ON v.id = e.model_version_id "
            f"WHERE v.name = :v ORDER BY e.{key}"
        ),
        {"v": version},
    ).all()
    ids = np.array([r[0] for r in rows])
    matrix = np.array([np.fromstring(r[1].strip("[]"), sep=",") for r in rows], dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return ids, matrix


def reference_hubness(connection, version: str) -> dict[int, float]:
    """hub(r): the mean cosine of each reference to its NEIGHBOURS nearest articles (title + lead embeddings)."""
    reference_ids, references = vectors(connection, "reference_embeddings", "reference_id", version)
    _, articles = vectors(connection, "title_embeddings", "article_id", version)
    cosines = references @ articles.T
    nearest = -np.sort(-cosines, axis=1)[:, :NEIGHBOURS]
    return dict(zip(reference_ids.tolist(), nearest.mean(axis=1).tolist(), strict=True))


def grid_scores(engine, version: str) -> dict[Setting, ArticleScores]:
    articles, _, references = corpus_of(engine)
    with engine.connect() as connection:
        pools = similar_references_pools(connection, articles, references, version)
        hub = reference_hubness(connection, version)
    article_ids = [a for a, _ in articles]
    scores = {}
    for beta in BETAS:
        corrected = [
            (
                ids,
                {**signals, EMBEDDING: signals[EMBEDDING] - beta * np.array([hub[i] for i in ids])},
                own,
                names,
            )
            for ids, signals, own, names in pools
        ]
        for words in WORDS_GRID:
            scores[(beta, words)] = ndcg_scores(
                article_ids,
                np.array(
                    [
                        ndcg_at_10(list(ranked_ids(ids, signals, {WORDS: words}, SERVED_LIFT * names)), own)
                        for ids, signals, own, names in corrected
                    ]
                ),
            )
    return scores


def best(scores: dict[Setting, ArticleScores], settings) -> Setting:
    return max(settings, key=lambda s: (round(scores[s].metrics()["ndcg@10"], 10), -s[0], -s[1]))


def ndcg(scores: ArticleScores) -> float:
    return round(scores.metrics()["ndcg@10"], 5)


def choice(
    grid: dict[str, dict[Setting, ArticleScores]], served: Setting, setting: Setting, samples: int
) -> dict[str, Any]:
    """A chosen setting's scores on both corpora, and its evaluation NDCG@10 against the served setting's."""
    validation, evaluation = grid["validation"], grid["evaluation"]
    return {
        "beta": setting[0],
        "words": setting[1],
        "validation ndcg@10": ndcg(validation[setting]),
        "evaluation ndcg@10": ndcg(evaluation[setting]),
        "vs served": paired_bootstrap(evaluation[setting], evaluation[served], samples=samples)[
            "ndcg@10"
        ].as_dict(),
    }


def main() -> int:
    args, recipe, corpora = probe_split(
        __doc__, "bench/results/hubness-probe.json", "validation", "evaluation", models=True
    )
    seeds = trained_seeds(args.models)
    report: dict[str, Any] = {
        "protocol": "similar_references NDCG@10 with the embedding signal cos - beta * hub(r) (hub: mean cosine "
        f"of r to its {NEIGHBOURS} nearest articles), re-fused from one call per article with the served names "
        "lift; validation chooses (beta, words), the evaluation articles score it against beta 0",
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "load_before": os.getloadavg(),
        "versions": {},
    }
    grids: dict[str, dict[str, dict[Setting, ArticleScores]]] = {}
    with scratch_server("hubness") as server_url:
        engines = {}
        try:
            for corpus, titles in corpora.items():
                engines[corpus], loaded = base_database(
                    server_url, f"hubness_{corpus}", args.data, titles, recipe.name
                )
                print(f"{corpus}: {loaded} articles", flush=True)
            for name, artifact in {"base": None, **seeds}.items():
                if artifact is not None:
                    for engine in engines.values():
                        register_and_embed(engine, name, artifact, recipe.name)
                grids[name] = {corpus: grid_scores(engine, name) for corpus, engine in engines.items()}
                print(f"{name}: pools scored", flush=True)
        finally:
            for engine in engines.values():
                engine.dispose()

    settings = list(grids["base"]["evaluation"])
    for name, grid in grids.items():
        validation, evaluation = grid["validation"], grid["evaluation"]
        served = best(validation, [s for s in settings if s[0] == 0.0])
        report["versions"][name] = {
            "served (beta 0, validation's words)": {
                "words": served[1],
                "evaluation ndcg@10": ndcg(evaluation[served]),
            },
            "validation's choice": choice(grid, served, best(validation, settings), args.bootstrap_samples),
            "validation's choice, beta 0-1 (the first grid)": choice(
                grid,
                served,
                best(validation, [s for s in settings if s[0] <= FIRST_GRID_TOP]),
                args.bootstrap_samples,
            ),
            "per beta, validation's words": {
                f"beta {beta:g}": {
                    "words": (pick := best(validation, [s for s in settings if s[0] == beta]))[1],
                    "validation ndcg@10": ndcg(validation[pick]),
                    "evaluation ndcg@10": ndcg(evaluation[pick]),
                }
                for beta in BETAS
            },
            "evaluation ndcg@10 per setting": {
                f"beta {b:g}, words {w:g}": ndcg(evaluation[(b, w)]) for b, w in settings
            },
        }
    seed_names = list(seeds)
    if seed_names:
        report["seeds"] = {
            key: round(
                statistics.fmean(report["versions"][n][key]["evaluation ndcg@10"] for n in seed_names), 5
            )
            for key in (
                "served (beta 0, validation's words)",
                "validation's choice",
                "validation's choice, beta 0-1 (the first grid)",
            )
        }
    report["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    summary = {
        name: {k: v for k, v in entry.items() if k != "evaluation ndcg@10 per setting"}
        for name, entry in report["versions"].items()
    }
    print(json.dumps({"versions": summary, "seeds": report.get("seeds")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
