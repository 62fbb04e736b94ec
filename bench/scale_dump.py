"""Write a Wikimedia Enterprise-format NDJSON dump of N articles recombined from the real shared pages.

Every reference item is real: the ``<li id="cite_note-...">`` markup of a reference in ``pages/`` or
``bulk.tar.gz`` of ``../shared/data/wikipedia``, copied as it is (so the extractor sees real citation HTML:
COinS, external links, DOIs). Each generated article gets a unique title (a real title plus a number), a
reference count drawn from the real articles' counts, and that many references drawn from the real pool.
The output loads through the normal path: ``wikiref scrape --dump-path <file>``.

    python bench/scale_dump.py --references 100000 --out /tmp/scale-100k.ndjson.gz

An item drawn again gets an access date of its own ("Retrieved 3 March 2011."), as citations of one source in
different articles do: without it the recombined corpus would repeat each real text many times over, and
pgvector's HNSW stores identical vectors as one element, so the index would hold a fraction of the rows.

The generated pages hold only their reference list (no article prose), so extraction costs less per page than
on a real dump: the load rates this dump gives are an upper bound of a real dump's (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

from selectolax.lexbor import LexborHTMLParser

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from wikiref.flows.mediawiki.saved import iter_saved_pages

SHARED_WIKIPEDIA = REPO_ROOT.parent / "shared" / "data" / "wikipedia"
WIKI = "en.wikipedia.org"


@dataclass(frozen=True)
class ReferencePool:
    titles: list[str]
    items: list[str]
    """Outer HTML of every reference-list item of the real pages."""
    counts: list[int]
    """References per real article (those with at least one)."""


def reference_pool(root: Path = SHARED_WIKIPEDIA, *, include_bulk: bool = True) -> ReferencePool:
    titles, items, counts = [], [], []
    for page in iter_saved_pages(root, include_bulk=include_bulk):
        found = [
            node.html
            for node in LexborHTMLParser(page.html).css("li[id]")
            if (node.attributes.get("id") or "").startswith("cite_note-")
        ]
        titles.append(page.title)
        if found:
            items.extend(found)
            counts.append(len(found))
    return ReferencePool(titles=titles, items=items, counts=counts)


def sample_items(pool: ReferencePool, distinct: int, *, seed: int = 13) -> ReferencePool:
    """The pool with only ``distinct`` of its items (a seeded sample), so that a small dump repeats each item
    as often as a large one does from the whole pool (docs/scaling.md: recall at 100k with 1M's copies)."""
    return replace(pool, items=random.Random(seed).sample(pool.items, distinct))


MONTHS = "January February March April May June July August September October November December".split()


def access_date(copy: int) -> str:
    """A distinct date for each copy of one item (28 days x 12 months x 40 years)."""
    day, rest = copy % 28 + 1, copy // 28
    return f"{day} {MONTHS[rest % 12]} {1986 + rest // 12 % 40}"


def with_access_date(markup: str, item, copy: int) -> str:
    """The item's markup with an access date at the end of its text (the span the extractor reads, if any)."""
    suffix = f" Retrieved {access_date(copy)}."
    span = item.css_first(".reference-text, .mw-reference-text")
    if span is not None:
        text = span.html
        closing = text.rindex("</")
        return markup.replace(text, text[:closing] + suffix + text[closing:], 1)
    closing = markup.rindex("</li>")
    return markup[:closing] + suffix + markup[closing:]


def generated_records(pool: ReferencePool, *, references: int, seed: int = 13) -> Iterator[dict]:
    """Enterprise article records until ``references`` reference items were written (the last may overshoot)."""
    rng = random.Random(seed)
    uses = [0] * len(pool.items)
    written = 0
    number = 0
    while written < references:
        number += 1
        title = f"{rng.choice(pool.titles)} (scale {number})"
        count = min(rng.choice(pool.counts), references - written)
        notes = []
        for position in range(count):
            # Real item markup; its id renumbered so that ids are unique within the generated page.
            drawn = rng.randrange(len(pool.items))
            tree = LexborHTMLParser(pool.items[drawn])
            item = tree.css_first("li[id]")
            item.attrs["id"] = f"cite_note-{position + 1}"
            markup = item.html
            if uses[drawn]:
                markup = with_access_date(markup, item, uses[drawn])
            uses[drawn] += 1
            notes.append(markup)
        html = (
            f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
            f'<ol class="references">{"".join(notes)}</ol></body></html>'
        )
        written += count
        yield {
            "name": title,
            "identifier": 90_000_000 + number,
            "version": {"identifier": 1_000_000_000 + number},
            "url": f"https://{WIKI}/wiki/{quote(title.replace(' ', '_'))}",
            "namespace": {"identifier": 0},
            "in_language": {"identifier": "en"},
            "article_body": {"html": html},
        }


def write_dump(path: Path, pool: ReferencePool, *, references: int, seed: int = 13) -> dict[str, int]:
    """Write the dump (gzipped when ``path`` ends in .gz); returns its article and reference counts."""
    opener = gzip.open if path.suffix == ".gz" else open
    articles = total = 0
    with opener(path, "wt", encoding="utf-8") as out:
        for record in generated_records(pool, references=references, seed=seed):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            articles += 1
            total += record["article_body"]["html"].count('id="cite_note-')
    return {"articles": articles, "references": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, required=True, help="reference items to generate")
    parser.add_argument("--out", type=Path, required=True, help=".ndjson or .ndjson.gz")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--shared", type=Path, default=SHARED_WIKIPEDIA)
    parser.add_argument(
        "--distinct",
        type=int,
        help="draw from only this many real items (a seeded sample): as many copies of each at a smaller N as the "
        "whole pool gives at a larger one",
    )
    args = parser.parse_args()
    pool = reference_pool(args.shared)
    if args.distinct:
        pool = sample_items(pool, args.distinct, seed=args.seed)
    print(f"pool: {len(pool.titles)} titles, {len(pool.items)} real reference items", file=sys.stderr)
    print(json.dumps(write_dump(args.out, pool, references=args.references, seed=args.seed)))


if __name__ == "__main__":
    main()
