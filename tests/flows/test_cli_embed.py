"""`wikiref similar` and `wikiref search` in a subprocess, on the embedded slice of the shared pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from wikiref.db.engine import make_engine


@pytest.fixture
def cli_env(embedded_database_url: str, onnx_cache_dir: Path) -> dict[str, str]:
    return {"WIKIREF_DATABASE_URL": embedded_database_url, "WIKIREF_EMBED_CACHE_DIR": str(onnx_cache_dir)}


@pytest.fixture
def title(embedded_database_url: str) -> str:
    engine = make_engine(embedded_database_url)
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT title FROM articles WHERE title NOT LIKE '%''%' ORDER BY md5(title) LIMIT 1")
        ).scalar_one()
    engine.dispose()
    return found


def test_similar_prints_a_table_and_the_sql(run_cli, cli_env: dict[str, str], title: str) -> None:
    result = run_cli("similar", title, "-k", "4", "--sql", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert f"SELECT * FROM wikiref.similar_references('{title}', 4, NULL, fusion => true);" in result.stdout
    header = next(line for line in result.stdout.splitlines() if "reference_id" in line)
    assert all(column in header for column in ("similarity", "score", "words")), header
    assert result.stdout.count(title) >= 2  # the SQL, and at least one of its own references in the table

    alone = run_cli("similar", title, "-k", "4", "--embeddings-only", "--sql", env=cli_env)
    assert alone.returncode == 0, alone.stderr
    assert f"SELECT * FROM wikiref.similar_references('{title}', 4, NULL, fusion => false);" in alone.stdout

    articles = run_cli("similar", title, "--articles", "-k", "3", env=cli_env)
    assert articles.returncode == 0, articles.stderr
    assert "article_title" in articles.stdout


def test_search_encodes_the_text_and_fuses_words_and_embedding(run_cli, cli_env: dict[str, str]) -> None:
    result = run_cli("search", "Go programming language tutorial", "-k", "3", "--sql", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "SELECT * FROM wikiref.search_text('Go programming language tutorial', '[" in result.stdout
    assert "fusion => true);" in result.stdout
    header = next(line for line in result.stdout.splitlines() if "reference_id" in line)
    assert all(column in header for column in ("score", "similarity", "words")), header

    lexical = run_cli("search", "golang", "--full-text-only", "--sql", env=cli_env)
    assert lexical.returncode == 0, lexical.stderr
    assert "wikiref.search_text('golang', NULL, 10, NULL, fusion => true);" in lexical.stdout

    both = run_cli("search", "golang", "--full-text-only", "--embeddings-only", env=cli_env)
    assert both.returncode != 0 and "exclude each other" in both.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("similar", "No Such Article"), "wikiref: error: unknown article title: No Such Article"),
        (
            ("similar", "Microsoft", "-k", "0"),
            "wikiref: error: k must be a positive number of results, got 0",
        ),
        (("search", "cats", "-m", "nope"), "wikiref: error: unknown model version: nope"),
    ],
)
def test_mistakes_end_in_one_line(
    run_cli, cli_env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    result = run_cli(*args, env=cli_env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr


def test_query_json_has_every_column_the_function_returns(
    run_cli, cli_env: dict[str, str], title: str
) -> None:
    similar = run_cli("similar", title, "-k", "3", "--json", env=cli_env)
    assert similar.returncode == 0, similar.stderr
    document = json.loads(similar.stdout)
    assert document["sql"] == f"SELECT * FROM wikiref.similar_references('{title}', 3, NULL, fusion => true);"
    assert {"score", "words"} <= set(document["columns"])  # the fused score and the words' part come through
    assert len(document["rows"]) == 3
    assert all(list(row) == document["columns"] for row in document["rows"])
    assert {"reference_id", "similarity"} <= set(document["columns"])

    searched = run_cli("search", "Go programming language tutorial", "-k", "2", "--json", env=cli_env)
    assert searched.returncode == 0, searched.stderr
    found = json.loads(searched.stdout)
    assert {"score", "similarity", "words"} <= set(found["columns"])
    assert len(found["rows"]) == 2 and all(list(row) == found["columns"] for row in found["rows"])
