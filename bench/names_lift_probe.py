"""How much a reference that names the article lifts its ``similar_references`` score: through the SQL function.

Migration 0018 adds ``wikiref.names_article_weight()`` (1.0) to the fused score of a reference holding the
article's title as a phrase. The 69 validation articles of the bench split hold too few named titles to choose it,
so this probe chooses it on the split's *training* articles, with the base model, which never trained on them (a
design set: no version's weights are chosen there), and reports the evaluation articles beside it. On two
databases built as bench/fusion_bench.py builds its own (the same split, ``wikiref embed``'s steps), for each
lift (``names_article_weight`` replaced in a transaction that is rolled back) and each words weight, NDCG@10 of
``similar_references(title, 10, 'base')`` per article against its own references. Each lift is taken at the
words weight the training articles choose for it (ties to the smaller); on both corpora a paired bootstrap over the
articles compares it with no lift and with the served lift, 1.0.

    python bench/names_lift_probe.py --out bench/results/names-lift-probe.json   # ~10 min on 2 cores
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fusion_bench import (
    base_database,
    corpus_of,
    ndcg_with_replaced,
    probe_split,
    scratch_server,
    set_weights,
)
from bench.machine import cpu_model
from wikiref.models.evaluate import paired_bootstrap
from wikiref.models.fusion import WORDS

LIFTS = (0.0, 0.5, 1.0, 2.0)
WORDS_WEIGHTS = (0.2, 0.3, 0.4)
NAMES_ARTICLE_WEIGHT = """
CREATE OR REPLACE FUNCTION wikiref.names_article_weight() RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {lift}::double precision $$
"""


def main() -> int:
    args, recipe, corpora = probe_split(
        __doc__, "bench/results/names-lift-probe.json", "training", "evaluation"
    )
    report: dict[str, Any] = {
        "protocol": "similar_references NDCG@10 of the base model (title+lead160), per names lift and words "
        "weight; the training articles choose, evaluation reports",
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "load_before": os.getloadavg(),
        "grid": {},
    }
    scores: dict[str, dict[Any, Any]] = {}
    with scratch_server("names-lift") as server_url:
        for corpus, titles in corpora.items():
            engine, loaded = base_database(server_url, f"names_{corpus}", args.data, titles, recipe.name)
            queried, _, references = corpus_of(engine)
            with engine.connect() as connection:
                named = connection.execute(
                    text(
                        "SELECT count(DISTINCT a.id) FROM articles a JOIN article_references r "
                        "ON r.lexemes @@ wikiref.title_phrase(a.title)"
                    )
                ).scalar_one()
            scores[corpus] = {}
            report["grid"][corpus] = {"articles": loaded, "articles named by some reference": named}
            for lift in LIFTS:
                for weight in WORDS_WEIGHTS:
                    set_weights(engine, "base", {"similar_references": {WORDS: weight}})
                    fused = ndcg_with_replaced(
                        engine, NAMES_ARTICLE_WEIGHT.format(lift=lift), queried, references
                    )
                    scores[corpus][(lift, weight)] = fused
                    ndcg = fused.metrics()["ndcg@10"]
                    report["grid"][corpus][f"lift {lift:g}, words {weight}"] = round(ndcg, 5)
                    print(f"{corpus} lift {lift:g} words {weight}: {ndcg:.4f}", flush=True)
            engine.dispose()

    def chosen_weight(lift: float) -> float:
        # The best words weight on the training articles, ties to the smaller.
        return max(WORDS_WEIGHTS, key=lambda w: (scores["training"][(lift, w)].metrics()["ndcg@10"], -w))

    def training_ndcg(lift: float) -> float:
        return scores["training"][(lift, chosen_weight(lift))].metrics()["ndcg@10"]

    report["best lift on training"] = max(LIFTS, key=lambda lift: (training_ndcg(lift), -lift))
    report["lifts"] = {}
    for lift in LIFTS:
        weight = chosen_weight(lift)
        entry: dict[str, Any] = {"words weight chosen on training": weight}
        for corpus in corpora:
            fused = scores[corpus][(lift, weight)]
            entry[corpus] = {"ndcg@10": round(fused.metrics()["ndcg@10"], 5)}
            for name, other in (("vs no lift", 0.0), ("vs lift 1 (served)", 1.0)):
                baseline = scores[corpus][(other, chosen_weight(other))]
                delta = paired_bootstrap(fused, baseline, samples=args.bootstrap_samples)["ndcg@10"]
                entry[corpus][name] = delta.as_dict()
        report["lifts"][f"lift {lift:g}"] = entry
    report["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(
        json.dumps(
            {"best lift on training": report["best lift on training"], "lifts": report["lifts"]}, indent=2
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
