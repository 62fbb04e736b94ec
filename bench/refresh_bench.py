"""Corpus refresh bench: requests and seconds to refresh N stored articles, unchanged and with a share changed.

Run from the repository root:  python bench/refresh_bench.py [--pages 1000] [--changed 0.1] [--out FILE]

1. Serves the shared pages (pages/ and bulk.tar.gz: about 1,000 articles) from the mirror, over real HTTP.
2. Scrapes the first N of them into a fresh embedded PostgreSQL, as one corpus of explicit titles.
3. Refreshes the unchanged corpus: every stored article's revision is re-checked, 50 titles per query, so
   the cost should be about N/50 requests (plus one siteinfo call).
4. Edits a share of the pages on the mirror (their last reference removed: a new revision) and refreshes
   again: N/50 + the changed pages' fetches.
Prints both as a table and writes the raw numbers as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from selectolax.lexbor import LexborHTMLParser
from sqlalchemy import text
from sqlalchemy.orm import Session

from wikiref.db import migrate
from wikiref.db.corpora import SourceSpec, add_sources
from wikiref.db.engine import make_engine
from wikiref.db.revision_checks import RevisionChecks
from wikiref.db.server import ensure_embedded_server, stop_embedded_server
from wikiref.flows.mediawiki.client import ClientConfig
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.mirror.server import MirrorApp, MirrorData, serving
from wikiref.flows.steps.scrape_sequence import ScrapeRequest, ScrapeSteps, run_refresh

SHARED = REPO_ROOT.parent / "shared" / "data" / "wikipedia"


def without_last_reference(html: str) -> str:
    parser = LexborHTMLParser(html)
    items = parser.css('li[id^="cite_note"]')
    if items:
        items[-1].decompose()
    return parser.html


def refresh(engine, config: ClientConfig):
    request = ScrapeRequest(
        sources=TitleSources(), client=config, wiki=None, batch_size=50, checks=RevisionChecks(), refresh=True
    )
    return run_refresh(request, ScrapeSteps.in_process(engine))


def measure(engine, app: MirrorApp, config: ClientConfig) -> dict[str, float]:
    before = len(app.requests)
    started = time.perf_counter()
    summary = refresh(engine, config)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "requests": len(app.requests) - before,
        "articles_checked": summary.stored_checked,
        "articles_updated": summary.scrape.counts.articles_updated,
        "articles_quarantined": summary.scrape.counts.articles_quarantined,
        "articles_unchanged": summary.scrape.articles_unchanged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--changed", type=float, default=0.1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    data = MirrorData.from_folder(SHARED, include_bulk=True)
    titles = sorted(data.pages)[: args.pages]
    pgdata = Path(tempfile.mkdtemp(prefix="wikiref-refresh-bench-")) / "pgdata"
    url = ensure_embedded_server(pgdata, database="bench")
    migrate.upgrade(url)
    engine = make_engine(url)
    app = MirrorApp(data)
    try:
        with serving(app) as api_url:
            config = ClientConfig(
                api_url=api_url,
                user_agent="wikiref-bench/0.1 (bench@example.org)",
                requests_per_second=1000.0,
                concurrency=10,
            )
            with Session(engine) as session:
                add_sources(
                    session=session,
                    corpus="bench",
                    wiki="en.wikipedia.org",
                    sources=[SourceSpec("titles", {"titles": titles})],
                )
            started = time.perf_counter()
            initial = refresh(engine, config)
            load_seconds = time.perf_counter() - started
            with engine.connect() as connection:
                stored = connection.execute(text("SELECT count(*) FROM articles")).scalar_one()
            print(
                f"initial scrape: {stored} articles in {load_seconds:.1f} s ({initial.scrape.stats.requests} requests)"
            )

            unchanged = measure(engine, app, config)
            changed_titles = random.Random(11).sample(titles, round(len(titles) * args.changed))
            for title in changed_titles:
                data.edit_page(title, without_last_reference(data.pages[title].html))
            changed = measure(engine, app, config)
    finally:
        engine.dispose()
        stop_embedded_server(pgdata)

    result = {
        "articles": stored,
        "changed_pages": len(changed_titles),
        "expected_unchanged_requests": 1 + math.ceil(stored / 50),
        "unchanged": unchanged,
        "changed": changed,
        "initial_scrape_seconds": round(load_seconds, 1),
    }
    print(f"{'refresh':<28}{'requests':>10}{'seconds':>10}{'updated':>10}{'quarantined':>13}")
    for name, row in (("unchanged", unchanged), (f"{args.changed:.0%} changed", changed)):
        print(
            f"{name + f' ({stored} articles)':<28}{row['requests']:>10}{row['seconds']:>10}"
            f"{row['articles_updated']:>10}{row['articles_quarantined']:>13}"
        )
    print(f"expected for unchanged: 1 siteinfo + ceil({stored}/50) = {result['expected_unchanged_requests']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
