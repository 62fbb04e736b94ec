"""docs/errors.md quotes the messages users get: each documented bad input runs here, and its one line must match
what the page quotes (``...`` in a quote stands for the part that varies). A message changed in the code without
the page, or on the page without the code, fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tests.conftest import REPO_ROOT
from wikiref.db.engine import make_engine

ERRORS_PAGE = REPO_ROOT / "docs" / "errors.md"
TOO_LONG_TITLE = "x" * 300

# (the arguments of `wikiref`, the extra settings, the quote on the page after "wikiref: error: ")
COMMANDS = [
    (["similar", "Dog", "-k", "0"], {}, "k must be a positive number of results, got 0"),
    (["similar", "Dog", "-k", "2000"], {}, "k must be at most 1000, got 2000"),
    (["similar", "Dog", "-k", "2147483648"], {}, "k must be at most 1000, got 2147483648"),
    (["search", ""], {}, "the search text is empty"),
    (["similar", " _ "], {}, "an article title is required"),
    (
        ["similar", "No Such Article"],
        {},
        "unknown article title: No Such Article (titles are as on the wiki; list them with: SELECT title FROM articles)",
    ),
    (["similar", TOO_LONG_TITLE], {}, "no article is titled 'xxx...'…: titles have at most 255 bytes"),
    (
        ["search", "x" * 4001, "--full-text-only"],
        {},
        "the search text has 4,001 characters; at most 4,000 are searched: shorten it to its most telling part",
    ),
    (
        ["search", "cats", "-m", "nope"],
        {},
        "unknown model version: nope (list versions with `wikiref models list`)",
    ),
    (
        ["embed", "--backend", "garbage"],
        {},
        "--backend 'garbage': Input should be 'auto', 'torch', 'onnx' or 'openvino' (...)",
    ),
    (["embed", "--model-version", "nope"], {}, "unknown model version 'nope': see `wikiref models list`"),
    (["db", "status"], {"WIKIREF_DATA_DIR": "/dev/null/wikiref"}, "invalid settings: WIKIREF_DATA_DIR: ..."),
    (
        ["scrape", TOO_LONG_TITLE],
        {},
        "title 'xxx...' (300 bytes): The requested page title is too long (more than 255 bytes).",
    ),
    (
        ["db", "status"],
        {"WIKIREF_PIPELINE_TITLES": "notjson"},
        'invalid settings: WIKIREF_PIPELINE_TITLES: not valid JSON (...); give a JSON list, e.g. ["A", "B"]',
    ),
    (
        ["db", "status"],
        {"WIKIREF_DASK_ADDRESS": "garbage"},
        "invalid settings: WIKIREF_DASK_ADDRESS: not a Dask scheduler address: 'garbage'; use [SCHEME://]HOST:PORT,"
        " e.g. tcp://10.0.0.5:8786 (schemes: tcp, tls, ws, wss, ucx)",
    ),
    (
        ["db", "status"],
        {"WIKIREF_TRAIN_LEARNING_RATE": "inf"},
        "invalid settings: WIKIREF_TRAIN_LEARNING_RATE: Input should be a finite number",
    ),
    (
        ["db", "status"],
        {"WIKIREF_TRAIN_DEVICE": "tpu"},
        "invalid settings: WIKIREF_TRAIN_DEVICE: unknown device 'tpu'; use one of: auto, cpu, cuda, cuda:N, mps",
    ),
    (
        ["db", "status"],
        {"WIKIREF_EMBED_CACHE_DIR": "/etc/passwd"},
        "invalid settings: WIKIREF_EMBED_CACHE_DIR: /etc/passwd is a file, not a folder",
    ),
]

# (a statement, the quote on the page of its error's first line)
STATEMENTS = [
    ("SELECT * FROM wikiref.similar_references('No Such Article')", "unknown article title: No Such Article"),
    ("SELECT * FROM wikiref.similar_references(:title, 0)", "k must be a positive number of results, got 0"),
    (
        "SELECT * FROM wikiref.similar_references(:title, NULL)",
        "k must be a positive number of results, got NULL",
    ),
    ("SELECT * FROM wikiref.similar_references(:title, 1001)", "k must be at most 1000, got 1001"),
    (
        "SELECT * FROM wikiref.similar_references(:title, candidates => 0)",
        "candidates must be a number of rows per signal from 1 to 1000 (100 is usual), got 0",
    ),
    (
        "SELECT * FROM wikiref.similar_references(:title, fusion => NULL)",
        "fusion must be true (fused signals) or false (the embeddings alone), got NULL",
    ),
    (
        "SELECT * FROM wikiref.search_text('cats', fusion => false)",
        "fusion => false ranks by the embeddings alone: pass a query_embedding",
    ),
    ("SELECT * FROM wikiref.search_text('cats', model_version => 'nope')", "unknown model version: nope"),
    (
        "SELECT * FROM wikiref.search_vector(array_fill(0, ARRAY[384])::vector)",
        "the query vector is all zeros: it has no direction to compare",
    ),
    (
        "SELECT * FROM wikiref.search_text(repeat('x', 4001))",
        "the search text has 4001 characters; at most 4000 are searched",
    ),
    ("SELECT * FROM wikiref.reference_changes(NULL)", "since must be a time, got NULL"),
    (
        "SET LOCAL wikiref.vote_references = 0; "
        "SELECT * FROM wikiref.articles_for_reference((SELECT min(id) FROM article_references))",
        "wikiref.vote_references must be a whole number from 1 to 1000, got 0",
    ),
    (
        "SET LOCAL wikiref.words_rows_per_candidate = 'many'; "
        "SELECT * FROM wikiref.similar_references((SELECT min(title) FROM articles))",
        "wikiref.words_rows_per_candidate must be a whole number from 1 to 1000, got many",
    ),
    ("SELECT * FROM wikiref.bm25_references(NULL, ARRAY[1])", "query must be a text, got NULL"),
    (
        "SELECT * FROM wikiref.bm25_references('cat', NULL)",
        "reference_ids must be an array of reference ids, got NULL",
    ),
]


def quoted(message: str) -> bool:
    """Whether the page quotes the message as code: `...`, or ``...`` (with spaces inside) when it holds backticks."""
    page = ERRORS_PAGE.read_text()
    return f"`` {message} ``" in page if "`" in message else f"`{message}`" in page


def matches(quote: str, line: str) -> bool:
    return re.fullmatch(".*?".join(map(re.escape, quote.split("..."))), line) is not None


@pytest.mark.parametrize(("args", "env", "quote"), COMMANDS, ids=lambda value: str(value)[:40])
def test_the_page_quotes_what_a_bad_command_prints(
    run_cli, embedded_database_url: str, onnx_cache_dir: Path, args: list[str], env: dict, quote: str
) -> None:
    assert quoted(quote), f"docs/errors.md does not quote {quote!r}"
    result = run_cli(
        *args,
        env={
            "WIKIREF_DATABASE_URL": embedded_database_url,
            "WIKIREF_EMBED_CACHE_DIR": str(onnx_cache_dir),
            **env,
        },
    )
    assert result.returncode == 2, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert matches(f"wikiref: error: {quote}", line), line


@pytest.mark.parametrize(("statement", "quote"), STATEMENTS, ids=[quote[:40] for _, quote in STATEMENTS])
def test_the_page_quotes_what_a_bad_sql_call_raises(
    embedded_database_url: str, statement: str, quote: str
) -> None:
    assert quoted(quote), f"docs/errors.md does not quote {quote!r}"
    engine = make_engine(embedded_database_url)
    try:
        with Session(engine) as session:
            title = session.scalar(text("SELECT min(title) FROM articles"))
            with pytest.raises(DBAPIError) as raised:
                session.execute(text(statement), {"title": title} if ":title" in statement else {})
    finally:
        engine.dispose()
    line = raised.value.orig.diag.message_primary
    assert matches(quote, line), line
