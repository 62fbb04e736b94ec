"""How many times an article's title words should count in its words' query: through ``similar_references``.

Migration 0017 labels an article's title lexemes A in its query (``wikiref.article_words``) and BM25 counts a
lexeme labelled A ``wikiref.query_term_weight`` times: 3. This probe chose that 3 on the validation articles and
reports the evaluation articles beside it: on bench/fusion_bench.py's two databases (the same split, the base
model, ``wikiref embed``'s steps), for each title multiplier (``query_term_weight`` replaced in a transaction that
is rolled back) and each words weight of the training grid, NDCG@10 of ``similar_references(title, 10)`` per
article against its own references; the embeddings alone (``fusion => false``) beside. On evaluation, a paired
bootstrap over the articles compares each multiplier at the words weight validation chose for it with the
embeddings alone and with multiplier 1 (every lexeme once, as before 0017).

    python bench/title_weight_probe.py --out bench/results/title-weight-probe.json   # ~4 min on 2 cores
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fusion_bench import (
    base_database,
    corpus_of,
    ndcg_with_replaced,
    per_article_ndcg,
    probe_split,
    scratch_server,
    set_weights,
)
from bench.machine import cpu_model
from wikiref.models.evaluate import paired_bootstrap
from wikiref.models.fusion import WORDS, WORDS_GRID

MULTIPLIERS = (1.0, 2.0, 3.0, 5.0)
QUERY_TERM_WEIGHT = """
CREATE OR REPLACE FUNCTION wikiref.query_term_weight(weights text[]) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT CASE WHEN 'A' = ANY (weights) THEN {m} ELSE 1.0 END $$
"""


def main() -> int:
    args, recipe, corpora = probe_split(
        __doc__, "bench/results/title-weight-probe.json", "validation", "evaluation"
    )
    report: dict[str, Any] = {
        "protocol": "similar_references NDCG@10 of the base model (title+lead160), per title multiplier and words "
        "weight; validation chooses, evaluation reports",
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "load_before": os.getloadavg(),
        "grid": {},
    }
    scores: dict[str, dict[str, Any]] = {}
    with scratch_server("title-weight") as server_url:
        for corpus, titles in corpora.items():
            engine, loaded = base_database(server_url, f"title_{corpus}", args.data, titles, recipe.name)
            queried, _, references = corpus_of(engine)
            with engine.connect() as connection:
                alone = per_article_ndcg(connection, queried, references, fusion=False)
            scores[corpus] = {"embeddings alone": alone}
            report["grid"][corpus] = {
                "articles": loaded,
                "embeddings alone": round(alone.metrics()["ndcg@10"], 5),
            }
            for multiplier in MULTIPLIERS:
                for weight in WORDS_GRID[1:]:
                    set_weights(engine, "base", {"similar_references": {WORDS: weight}})
                    fused = ndcg_with_replaced(
                        engine, QUERY_TERM_WEIGHT.format(m=multiplier), queried, references
                    )
                    scores[corpus][(multiplier, weight)] = fused
                    report["grid"][corpus][f"title x{multiplier:g}, words {weight}"] = round(
                        fused.metrics()["ndcg@10"], 5
                    )
                    print(f"{corpus} title x{multiplier:g} words {weight}: {fused.metrics()['ndcg@10']:.4f}")
            engine.dispose()

    def chosen_weight(multiplier: float) -> float:
        # The best words weight on validation, ties to the smaller (as training chooses).
        return max(
            WORDS_GRID[1:], key=lambda w: (scores["validation"][(multiplier, w)].metrics()["ndcg@10"], -w)
        )

    report["evaluation"] = {}
    for multiplier in MULTIPLIERS:
        weight = chosen_weight(multiplier)
        fused = scores["evaluation"][(multiplier, weight)]
        before = scores["evaluation"][(1.0, chosen_weight(1.0))]
        report["evaluation"][f"title x{multiplier:g}"] = {
            "words weight chosen on validation": weight,
            "validation ndcg@10": round(scores["validation"][(multiplier, weight)].metrics()["ndcg@10"], 5),
            "ndcg@10": round(fused.metrics()["ndcg@10"], 5),
            "vs embeddings alone": paired_bootstrap(
                fused, scores["evaluation"]["embeddings alone"], samples=args.bootstrap_samples
            )["ndcg@10"].as_dict(),
            "vs title x1": paired_bootstrap(fused, before, samples=args.bootstrap_samples)[
                "ndcg@10"
            ].as_dict(),
        }
    report["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report["evaluation"], indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
