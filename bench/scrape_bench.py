"""Scrape bench: concurrent vs sequential fetching against the mirror with 100 ms latency, and extraction speed.

Run from the repository root:  python bench/scrape_bench.py [--pages 100] [--latency-ms 100]

1. Starts ``wikiref mirror serve`` on the shared pages in a separate process, with injected latency.
2. Fetches the same pages with concurrency 1 and with concurrency 10 (rate limit 120 req/s, not binding),
   in alternating pairs (3 by default), printing pages/s and the median speedup (target: >= 8x), and the
   most requests any 1-second window saw (must be <= the limit).
3. Fetches again with a binding limit (20 req/s at concurrency 10): the measured rate must stay <= 20.
4. Extracts references, lead and short description (``extract_page``, what the scraper runs) from every shared
   page (pages/ and bulk.tar.gz, read beforehand) and prints pages/s and references/s, next to the fetch rate, to
   show extraction is not the bottleneck. ``--extraction-only`` skips the fetch runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from wikiref.flows.mediawiki.client import ClientConfig, MediaWikiClient, RateLimiter
from wikiref.flows.mediawiki.extract import extract_page
from wikiref.flows.mediawiki.saved import iter_saved_pages, saved_titles

SHARED = REPO_ROOT.parent / "shared" / "data" / "wikipedia"
SPEEDUP_TARGET = 8.0


class RecordingLimiter(RateLimiter):
    """The client's limiter, noting when each request was let through."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.sent: list[float] = []

    async def acquire(self) -> None:
        await super().acquire()
        self.sent.append(time.monotonic())


def max_per_window(times: list[float], window: float = 1.0) -> int:
    times, best, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def start_mirror(latency_ms: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wikiref.flows.cli",
            "mirror",
            "serve",
            str(SHARED),
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api_url = f"http://127.0.0.1:{port}/w/api.php"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(api_url, params={"action": "query", "meta": "siteinfo", "format": "json"}, timeout=5)
            return process, api_url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the mirror did not start within 60 s")


async def fetch_all(config: ClientConfig, titles: list[str]) -> tuple[float, int, RecordingLimiter]:
    limiter = RecordingLimiter(config.requests_per_second)
    async with MediaWikiClient(config, limiter=limiter) as client:
        started = time.monotonic()
        pages = await asyncio.gather(*(client.fetch_page(title) for title in titles))
        elapsed = time.monotonic() - started
    assert all(page is not None for page in pages)
    return elapsed, sum(len(page.html) for page in pages), limiter


def fetch_bench(api_url: str, titles: list[str], *, concurrency: int, rate: float) -> tuple[float, int]:
    config = ClientConfig(
        api_url=api_url,
        user_agent="wikiref-bench/0.1 (https://example.org/wikiref; bench@example.org)",
        requests_per_second=rate,
        concurrency=concurrency,
        max_retries=3,
        request_timeout=60,
    )
    elapsed, _size, limiter = asyncio.run(fetch_all(config, titles))
    return len(titles) / elapsed, max_per_window(limiter.sent)


def extraction_bench() -> tuple[int, int, float]:
    pages = [page.html for page in iter_saved_pages(SHARED, include_bulk=True)]
    started = time.perf_counter()
    references = sum(len(extract_page(html).references) for html in pages)
    return len(pages), references, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=100, help="pages fetched in each fetch run")
    parser.add_argument(
        "--latency-ms", type=float, default=100.0, help="latency the mirror adds to each response"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="sequential/concurrent pairs; the median counts"
    )
    parser.add_argument("--extraction-only", action="store_true", help="only the extraction measurement")
    args = parser.parse_args()
    if args.extraction_only:
        n_pages, n_references, seconds = extraction_bench()
        print(
            f"extraction: {n_pages} pages, {n_references:,} references in {seconds:.2f} s = "
            f"{n_pages / seconds:.1f} pages/s (load average {os.getloadavg()[0]:.1f})"
        )
        return

    titles = saved_titles(SHARED)[: args.pages]
    process, api_url = start_mirror(args.latency_ms)
    try:
        fetch_bench(api_url, titles, concurrency=10, rate=1000)  # warm-up: connections, the parse cache
        # Alternating pairs, so that load from other processes on the machine hits both sides alike.
        pairs = []
        for _ in range(args.repeats):
            sequential_run, _ = fetch_bench(api_url, titles, concurrency=1, rate=120)
            concurrent_run, peak_run = fetch_bench(api_url, titles, concurrency=10, rate=120)
            pairs.append((concurrent_run / sequential_run, sequential_run, concurrent_run, peak_run))
        limited, limited_peak = fetch_bench(api_url, titles, concurrency=10, rate=20)
    finally:
        process.terminate()
        process.wait(10)
    n_pages, n_references, seconds = extraction_bench()

    speedup, sequential, concurrent, _ = statistics.median_low(pairs)
    concurrent_peak = max(peak for *_, peak in pairs)
    print(
        f"mirror latency {args.latency_ms:.0f} ms, {len(titles)} pages per run, {args.repeats} pairs, "
        f"CPU count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
    )
    print("speedups of each pair: " + ", ".join(f"{ratio:.2f}x" for ratio, *_ in pairs))
    print(f"sequential (concurrency 1, limit 120/s):  {sequential:7.2f} pages/s (median pair)")
    print(
        f"concurrent (concurrency 10, limit 120/s): {concurrent:7.2f} pages/s, peak {concurrent_peak} requests in 1 s"
    )
    print(
        f"speedup concurrent/sequential: {speedup:.2f}x (target >= {SPEEDUP_TARGET:.0f}x) "
        f"{'PASS' if speedup >= SPEEDUP_TARGET else 'FAIL'}"
    )
    print(
        f"rate limit 120/s holds: peak {concurrent_peak} <= 120 {'PASS' if concurrent_peak <= 120 else 'FAIL'}; "
        f"rate limit 20/s holds: {limited:.2f} pages/s, peak {limited_peak} <= 20 "
        f"{'PASS' if limited_peak <= 20 else 'FAIL'}"
    )
    print(
        f"extraction: {n_pages} pages, {n_references:,} references in {seconds:.2f} s = {n_pages / seconds:.1f} pages/s, "
        f"{n_references / seconds:,.0f} references/s ({n_pages / seconds / concurrent:.1f}x the concurrent fetch rate)"
    )


if __name__ == "__main__":
    main()
