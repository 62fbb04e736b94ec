"""``wikiref mirror serve DIR``: a MediaWiki-compatible API over a folder of saved pages, for offline scraping."""

from __future__ import annotations

from pathlib import Path

import typer

from wikiref.flows.mirror import FAULT_KINDS

app = typer.Typer(help="Serve saved Wikipedia pages as a MediaWiki API (offline source for tests and demos).")


@app.command()
def serve(
    folder: Path = typer.Argument(
        ..., help="Folder of saved pages with a MANIFEST.tsv (e.g. ../shared/data/wikipedia)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8800, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    bulk: bool = typer.Option(False, "--bulk", help="Also serve the pages of bulk.tar.gz."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0, help="Delay added to every response."),
    fault_rate: float = typer.Option(0.0, "--fault-rate", min=0, max=1, help="Share of requests that fail."),
    faults: str = typer.Option(
        "429,503,reset,truncate", "--faults", help=f"Fault kinds to inject, from: {','.join(FAULT_KINDS)}."
    ),
    retry_after: int = typer.Option(
        1, "--retry-after", min=0, help="Retry-After seconds sent with 429 and maxlag."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the fault draws (repeatable runs)."),
) -> None:
    """Serve FOLDER at http://HOST:PORT/w/api.php until Ctrl-C.

    Scrape it with: wikiref scrape --api-url http://HOST:PORT/w/api.php --list-page "Wikipedia:Saved pages"
    """
    from wikiref.flows.mirror.server import Faults, MirrorError, serve_mirror

    kinds = tuple(kind.strip() for kind in faults.split(",") if kind.strip())
    fault_config = Faults(rate=fault_rate, kinds=kinds, retry_after=retry_after, seed=seed)
    if not (folder / "MANIFEST.tsv").is_file():
        raise MirrorError(f"{folder} has no MANIFEST.tsv: not a folder of saved Wikipedia pages")
    serve_mirror(
        folder, host=host, port=port, faults=fault_config, latency=latency_ms / 1000, include_bulk=bulk
    )
