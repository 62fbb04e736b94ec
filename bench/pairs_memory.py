"""Peak RSS of training-pair preparation (``wikiref.models.pairs.build_pairs``) as the corpus grows.

Feeds ``build_pairs`` from a generator of synthetic articles made of real text: every reference text, title and
lead comes from the pages of ``../shared/data/wikipedia`` (pages/ and bulk.tar.gz, extracted with the scraper's
own ``extract_page``), recombined as ``bench/scale_dump.py`` does: a unique title (a real title plus a number),
that title's real lead, a reference count drawn from the real articles' counts and that many real references.
Pairs are built with the real model tokenizer and the default knobs (article text title+lead160, single
references as targets, 20% held out, floor 50).

Each (code, size) runs in its own subprocess; its peak RSS is the child's ``ru_maxrss`` from ``os.wait4``. The
"before" column runs the same child against another checkout of the code (``--before-root``, e.g. an exported
earlier commit), so both sides see the same articles.

    git archive <commit> | tar -x -C /tmp/pairs-before
    python bench/pairs_memory.py --sizes 100000,1000000 --before-root /tmp/pairs-before \
        --out bench/results/pairs-memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_WIKIPEDIA = REPO_ROOT.parent / "shared" / "data" / "wikipedia"
DEFAULT_POOL = Path("/tmp/wikiref-pairs-memory-pool.json")


def build_pool(root: Path, path: Path) -> None:
    """Titles, leads and reference texts of the real pages, as the scraper extracts them, into ``path``."""
    sys.path.insert(0, str(REPO_ROOT))
    from wikiref.flows.mediawiki.extract import extract_page
    from wikiref.flows.mediawiki.saved import iter_saved_pages

    articles = []
    for page in iter_saved_pages(root, include_bulk=True):
        extracted = extract_page(page.html)
        references = [reference.text for reference in extracted.references if reference.text.strip()]
        articles.append({"title": page.title, "lead": extracted.lead, "references": references})
    path.write_text(json.dumps(articles, ensure_ascii=False))


def synthetic_articles(pool_path: Path, *, references: int, seed: int):
    """ArticleTexts until ``references`` reference texts were produced (the last article may be cut short)."""
    from wikiref.models.pairs import ArticleTexts

    pool = json.loads(pool_path.read_text())
    texts = [text for article in pool for text in article["references"]]
    counts = [len(article["references"]) for article in pool if article["references"]]
    rng = random.Random(seed)
    written = number = 0
    while written < references:
        number += 1
        source = rng.choice(pool)
        count = min(rng.choice(counts), references - written)
        yield ArticleTexts(
            number,
            f"{source['title']} (scale {number})",
            tuple(rng.choice(texts) for _ in range(count)),
            source["lead"],
        )
        written += count


def child(args: argparse.Namespace) -> None:
    """One measurement: build the pairs of ``args.references`` synthetic references, print a JSON summary."""
    import inspect

    from wikiref.models.article_text import DEFAULT_RECIPE
    from wikiref.models.base import BASE_MODEL_ID, resolve_model_path
    from wikiref.models.pairs import build_pairs, tokenizer_counter

    count = tokenizer_counter(resolve_model_path(BASE_MODEL_ID))
    count(["warm the tokenizer up"])
    options = {}
    if "max_heldout_articles" in inspect.signature(build_pairs).parameters:
        options["max_heldout_articles"] = args.max_heldout_articles
    started = time.perf_counter()
    split = build_pairs(
        synthetic_articles(args.pool, references=args.references, seed=args.seed),
        count_tokens=count,
        token_budget=86,
        eval_fraction=0.2,
        min_heldout_articles=50,
        recipe=DEFAULT_RECIPE,
        target="reference",
        **options,
    )
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": round(seconds, 1),
                "counts": split.counts,
                "fingerprint": split.fingerprint,
                "heldout_fingerprint": split.heldout_fingerprint,
                "train_pairs": len(split.train),
                # The Arrow file the training pairs are streamed to (absent before the change: a list).
                "train_file_mib": round(split.train.path.stat().st_size / 2**20, 1)
                if hasattr(split.train, "path")
                else None,
                "options": options,
            }
        )
    )


def measure(code_root: Path, references: int, args: argparse.Namespace) -> dict:
    """Run one child against ``code_root`` and return its summary with its peak RSS (MiB) and wall time."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--references",
        str(references),
        "--seed",
        str(args.seed),
        "--pool",
        str(args.pool),
        "--max-heldout-articles",
        str(args.max_heldout_articles),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=code_root, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child for {references} references under {code_root} failed ({status})")
    summary = json.loads(output.strip().splitlines()[-1])
    return {**summary, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "wall_seconds": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="Reference counts, comma-separated.")
    parser.add_argument("--before-root", type=Path, help="A checkout of the code before the change.")
    parser.add_argument("--after-root", type=Path, default=REPO_ROOT, help="The code under test (this one).")
    parser.add_argument("--sides", default="before,after", help="Which of before,after to measure.")
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL, help="Cache of the extracted real pages.")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-heldout-articles", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "pairs-memory.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--references", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not args.pool.exists():
        print(f"extracting the real pages of {SHARED_WIKIPEDIA} into {args.pool} ...", flush=True)
        build_pool(SHARED_WIKIPEDIA, args.pool)
    sizes = [int(size) for size in args.sizes.split(",")]
    roots = {"after": args.after_root, "before": args.before_root}
    sides = {side: roots[side] for side in args.sides.split(",") if roots[side] is not None}
    # Runs of an earlier invocation (another side or size) are kept unless measured again.
    earlier = json.loads(args.out.read_text()).get("runs", {}) if args.out.exists() else {}
    report: dict = {"runs": {side: dict(earlier.get(side, {})) for side in {*earlier, *sides}}}
    for side, root in sides.items():
        for size in sizes:
            print(f"{side}: {size:,} references ...", flush=True)
            result = measure(root, size, args)
            result["load_average_1min"] = round(os.getloadavg()[0], 1)
            report["runs"][side][str(size)] = result
            print(f"  peak RSS {result['peak_rss_mib']} MiB, {result['wall_seconds']} s", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    for side, runs in report["runs"].items():
        rss = {size: run["peak_rss_mib"] for size, run in runs.items()}
        ordered = sorted(rss, key=int)
        line = ", ".join(f"{int(size):,}: {rss[size]} MiB" for size in ordered)
        ratio = ""
        if len(ordered) > 1:
            ratio = f"; {int(ordered[-1]):,}/{int(ordered[0]):,} = {rss[ordered[-1]] / rss[ordered[0]]:.2f}x"
        print(f"{side}: {line}{ratio}")


if __name__ == "__main__":
    main()
