"""Would ``articles_for_reference`` gain from a lift for the article a reference names? Measured through SQL.

Migration 0018 lifts, in ``similar_references``, a reference that names the article (holds
``wikiref.title_phrase(title)``). The other direction, "which article does this reference belong to", has no such
lift: this probe measures what one would give. On two databases built as bench/fusion_bench.py builds its own (the
same split, ``wikiref embed``'s steps, the base model), up to 5 references of each article (evenly spaced, as the
fusion bench queries them) each call ``articles_for_reference(id, 1000, 'base')``, which returns every candidate
of its pool with each signal's raw value; whether the query reference names each candidate is read beside it, and
``wikiref.models.fusion`` re-fuses the candidates for every grid point, words x vote x lift (the lift added to the
fused score as it is, as in ``similar_references``). Per lift, the training articles (653, which the base model
never trained on: a design set) choose the words and vote weights by accuracy@1 (ties to the smaller), and the
lift is chosen there too; the 282 evaluation articles are reported beside, each lift against no lift, paired by
article. The pool is the function's own: a named article outside it is not added.

    python bench/reference_names_probe.py --out bench/results/reference-names-probe.json   # ~15 min on 2 cores
"""

from __future__ import annotations

import itertools
import json
import os
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
    probe_split,
    scratch_server,
)
from bench.machine import cpu_model
from wikiref.models.evaluate import REVERSE_METRIC, ArticleScores, paired_bootstrap
from wikiref.models.fusion import VOTE, VOTE_GRID, WORDS, WORDS_GRID, fuse

LIFTS = (0.0, 0.5, 1.0, 2.0)
CANDIDATES = """
SELECT f.article_id, f.similarity, f.words, f.vote,
       coalesce(q.lexemes @@ wikiref.title_phrase(f.article_title), false) AS named
  FROM wikiref.articles_for_reference(:id, 1000, 'base') f
 CROSS JOIN (SELECT r.lexemes FROM article_references r WHERE r.id = :id) q
"""

Query = tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, int, int]


def queries_of(engine) -> tuple[list[int], list[Query]]:
    """The evaluated articles, and per queried reference: candidate ids, raw signals, named flags, its article."""
    articles, owner, _ = corpus_of(engine, 5)
    queries: list[Query] = []
    with engine.connect() as connection:
        for reference_id, article_id in owner.items():
            rows = connection.execute(text(CANDIDATES), {"id": reference_id}).all()
            signals = {
                "embedding": np.array([r[1] for r in rows], dtype=float),
                WORDS: np.array([r[2] for r in rows], dtype=float),
                VOTE: np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=float),
            }
            ids = np.array([r[0] for r in rows])
            named = np.array([r[4] for r in rows], dtype=float)
            queries.append((ids, signals, named, article_id, reference_id))
    return [a for a, _ in articles], queries


def accuracy(
    article_ids: list[int], queries: list[Query], words: float, vote: float, lift: float
) -> ArticleScores:
    """accuracy@1 per article of the re-fused candidates (ties by id, as the SQL orders them)."""
    index = {a: i for i, a in enumerate(article_ids)}
    correct = np.zeros(len(article_ids))
    asked = np.zeros(len(article_ids))
    for ids, signals, named, article_id, _ in queries:
        fused = fuse(signals, {WORDS: words, VOTE: vote}) + lift * named
        top = ids[np.lexsort((ids, -fused))][0]
        asked[index[article_id]] += 1
        correct[index[article_id]] += float(top == article_id)
    rows = asked > 0
    return ArticleScores(
        article_ids=tuple(np.array(article_ids)[rows].tolist()),
        per_article={},
        correct=correct[rows],
        references=asked[rows],
    )


def main() -> int:
    args, recipe, corpora = probe_split(
        __doc__, "bench/results/reference-names-probe.json", "training", "evaluation"
    )
    report: dict[str, Any] = {
        "protocol": "articles_for_reference accuracy@1 of the base model (title+lead160), re-fused per words x "
        "vote x lift for the candidate the query reference names; the training articles choose, evaluation "
        "reports",
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "load_before": os.getloadavg(),
        "corpora": {},
    }
    measured: dict[str, tuple[list[int], list[Query]]] = {}
    with scratch_server("reference-names") as server_url:
        for corpus, titles in corpora.items():
            engine, loaded = base_database(
                server_url, f"reference_names_{corpus}", args.data, titles, recipe.name
            )
            measured[corpus] = queries_of(engine)
            engine.dispose()
            queries = measured[corpus][1]
            report["corpora"][corpus] = {
                "articles": loaded,
                "queried references": len(queries),
                "naming a candidate": sum(int(q[2].any()) for q in queries),
                "naming their own article": sum(int(q[2][q[0] == q[3]].any()) for q in queries),
            }
            print(corpus, json.dumps(report["corpora"][corpus]), flush=True)

    grid = list(itertools.product(WORDS_GRID, VOTE_GRID))

    def choose(lift: float) -> tuple[float, float, float]:
        # The training articles' best words and vote weights for this lift, ties to the smaller weights.
        scored = [
            (accuracy(*measured["training"], w, v, lift).metrics()[REVERSE_METRIC], w, v) for w, v in grid
        ]
        top = max(s[0] for s in scored)
        return min((s for s in scored if s[0] == top), key=lambda s: (s[1] + s[2], s[1]))

    chosen = {lift: choose(lift) for lift in LIFTS}
    report["best lift on training"] = max(LIFTS, key=lambda lift: (chosen[lift][0], -lift))
    report["lifts"] = {}
    for lift in LIFTS:
        _, words, vote = chosen[lift]
        entry: dict[str, Any] = {"weights chosen on training": {WORDS: words, VOTE: vote}}
        for corpus in corpora:
            scores = accuracy(*measured[corpus], words, vote, lift)
            _, base_words, base_vote = chosen[0.0]
            no_lift = accuracy(*measured[corpus], base_words, base_vote, 0.0)
            entry[corpus] = {
                REVERSE_METRIC: round(scores.metrics()[REVERSE_METRIC], 5),
                "vs no lift": paired_bootstrap(scores, no_lift, samples=args.bootstrap_samples)[
                    REVERSE_METRIC
                ].as_dict(),
            }
        report["lifts"][f"lift {lift:g}"] = entry
        print(f"lift {lift:g}: {json.dumps(entry)}", flush=True)
    report["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps({"best lift on training": report["best lift on training"]}))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
