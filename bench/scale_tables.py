"""Print the markdown tables of docs/scaling.md from the raw JSON of bench/scale_bench.py runs.

python bench/scale_tables.py docs/bench/scale-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def recall_cell(value: float | dict[str, float]) -> str:
    """Recall by id and by score (ties within the bench's TIE count); runs before the split give by id only."""
    if isinstance(value, dict):
        return f"{value['by_id']:.3f} / {value['by_score']:.3f}"
    return f"{value:.3f} / -"


def main(paths: list[Path]) -> None:
    runs = sorted((json.loads(path.read_text()) for path in paths), key=lambda run: run["references"])
    sizes = [f"{run['references']:,} refs" for run in runs]
    print(row("stage", *sizes))
    print(row("---", *["---"] * len(runs)))

    def stage(run: dict, name: str, key: str, fmt: str) -> str:
        value = run["stages"].get(name, {}).get(key)
        return format(value, fmt) if value is not None else "not run"

    print(row("articles (pages)", *[f"{run['articles']:,}" for run in runs]))
    print(row("load: pages/s", *[stage(run, "load", "pages_per_s", ".1f") for run in runs]))
    print(row("load: references/s", *[stage(run, "load", "references_per_s", ".0f") for run in runs]))
    print(row("embed end to end: texts/s", *[stage(run, "embed", "texts_per_s", ".1f") for run in runs]))
    for name in ("load", "pairs", "embed"):
        print(row(f"{name}: seconds", *[stage(run, name, "seconds", ".0f") for run in runs]))
    for name in ("generate", "load", "pairs", "embed"):
        print(row(f"{name}: peak RSS MiB", *[stage(run, name, "peak_rss_mib", ".0f") for run in runs]))
    print(row("machine load average (1 min)", *[f"{run['machine']['load_average'][0]:.1f}" for run in runs]))
    print()
    for run in runs:
        if "fusion" in run:
            print_fusion(run)

    queried = [run for run in runs if "queries" in run]
    if not queried:
        return
    print(row("query side", *[f"{run['references']:,} refs" for run in queried]))
    print(row("---", *["---"] * len(queried)))
    for function in queried[0]["queries"]["latency"]:
        print(
            row(
                f"`{function}` p50 / p95 ms",
                *[
                    f"{run['queries']['latency'][function]['p50_ms']:.1f} / "
                    f"{run['queries']['latency'][function]['p95_ms']:.1f}"
                    for run in queried
                ],
            )
        )
    print(
        row(
            "`similar_references` recall@10 vs exact (by id / by score)",
            *[recall_cell(run["queries"]["recall_at_10"]["similar_references"]) for run in queried],
        )
    )

    def builds(run: dict) -> str:
        # A `functions` run measures the version's own index and rebuilds nothing.
        seconds = run["queries"].get("hnsw_build_seconds")
        if not seconds:
            return "not run"
        return (
            f"{seconds['vector']:.0f} / {seconds['halfvec']:.0f} "
            f"({run['queries']['hnsw_parallel_workers']} parallel workers)"
        )

    print(row("HNSW build of the references index, s (vector / halfvec)", *[builds(run) for run in queried]))
    for run in queried:
        sizes = run["queries"]["sizes_mib"]
        print()
        print(f"Sizes at {run['references']:,} references (MiB):")
        print()
        print(row("relation", "MiB"))
        print(row("---", "---"))
        for name, value in sizes.items():
            shown = (
                f"{value['table_mib']:.1f} table, {value['total_mib']:.1f} with indexes"
                if isinstance(value, dict)
                else f"{value:.1f}"
            )
            print(row(f"`{name}`", shown))
        storage = run["queries"].get("storage", {})
        if storage:
            print()
            print(
                f"Storage at {run['references']:,} references (nearest 10 references to a title, 1 backend):"
            )
            print()
            print(row("storage, ef_search", "p50 ms", "p95 ms", "recall@10 vs exact (by id / by score)"))
            print(row("---", "---", "---", "---"))
            for name, value in storage.items():
                print(
                    row(
                        name,
                        f"{value['p50_ms']:.2f}",
                        f"{value['p95_ms']:.2f}",
                        recall_cell(value["recall_at_10"]),
                    )
                )
        exact = run.get("hnsw_vs_exact")
        if exact:
            print()
            print(
                f"HNSW against an exact scan at {run['references']:,} references (the SQL functions' statement, "
                f"{exact['queries']} title queries, 1 backend; exact p50 / p95 {exact['exact']['p50_ms']:.1f} / "
                f"{exact['exact']['p95_ms']:.1f} ms):"
            )
            print()
            print(
                row("ef_search", "p50 ms", "p95 ms", "exact p50 / HNSW p50", "recall@10 (by id / by score)")
            )
            print(row("---", "---", "---", "---", "---"))
            for ef, value in exact["hnsw"].items():
                print(
                    row(
                        ef,
                        f"{value['p50_ms']:.2f}",
                        f"{value['p95_ms']:.2f}",
                        f"{value['speedup_p50']:.1f}x",
                        recall_cell(value["recall_at_10"]),
                    )
                )


def print_fusion(run: dict) -> None:
    """The fused functions at one size (scale_bench.py's ``fusion`` stage)."""
    fusion = run["fusion"]
    latency = fusion["latency"]
    exact = fusion["similar_references_fused_vs_exact_fused"]
    server = fusion["server"]
    sessions = "".join(
        f", wikiref.{name} {server[name]}"
        for name in ("words_rows_per_candidate", "vote_references")
        if server.get(name)
    )
    print(
        f"Fused functions at {run['references']:,} references (1 backend, {latency['similar_references_fused']['n']} "
        f"calls each; ef_search {server['function_ef_search']}{sessions}, shared_buffers "
        f"{server['shared_buffers']}; load average {fusion['machine']['load_average'][0]:.1f}):"
    )
    print()
    print(row("function", "fused p50 / p95 ms", "embeddings alone p50 / p95 ms"))
    print(row("---", "---", "---"))
    for function in ("similar_references", "articles_for_reference", "similar_articles"):
        fused, alone = latency[f"{function}_fused"], latency[f"{function}_embeddings_alone"]
        print(
            row(
                f"`{function}`",
                f"{fused['p50_ms']:.1f} / {fused['p95_ms']:.1f}",
                f"{alone['p50_ms']:.1f} / {alone['p95_ms']:.1f}",
            )
        )
    words = latency["search_text_words_alone"]
    print(row("`search_text`, words alone", f"{words['p50_ms']:.1f} / {words['p95_ms']:.1f}", "-"))
    print()
    print(
        f"Recall@10 of the fused `similar_references` against the exact fused computation: {exact['recall_at_10']:.3f} "
        f"({exact['queries']} titles; one exact computation p50 {exact['exact']['p50_ms']:.0f} ms)."
    )
    vote = fusion.get("articles_for_reference_vs_exact_vote")
    if vote:
        nearest, exact_vote = vote["latency"]["nearest_references_vote"], vote["latency"]["exact_vote"]
        print(
            f"`articles_for_reference` with the vote of the {vote['vote_references']} nearest references against "
            f"the exact vote ({vote['queries']} references, side by side): the same top 1 "
            f"{vote['top_1_same_as_exact_vote']:.2f}, top 10 overlap {vote['top_10_overlap_with_exact_vote']:.2f}; "
            f"p50 / p95 {nearest['p50_ms']:.1f} / {nearest['p95_ms']:.1f} ms against "
            f"{exact_vote['p50_ms']:.1f} / {exact_vote['p95_ms']:.1f}."
        )
    sizes = fusion["lexical_index_mib"]
    builds = fusion.get("gin_build_seconds", {})
    print(
        "Lexical index: GIN "
        + " + ".join(
            f"{sizes[name]:.1f} MiB (`{name}`, built in {builds.get(name, float('nan')):.1f} s)"
            for name in ("ix_article_references_lexemes", "ix_articles_lexemes")
        )
        + f"; stored lexemes {sizes['article_references.lexemes']:.1f} + {sizes['articles.lexemes']:.1f} MiB; "
        f"statistics {sizes['lexeme_documents']:.1f} MiB ("
        + " + ".join(f"{count:,} {corpus}" for corpus, count in fusion["lexemes"])
        + f" lexemes), rebuilt from scratch in {fusion['statistics_rebuild_seconds']:.1f} s."
    )
    print()


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
