"""Output a script can read (issue 27, item 7): piped tables never wrap nor cut a value, and every command that
prints a table or a record takes ``--json`` (one document on stdout, the keys of docs/operations.md)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import SHARED_WIKIPEDIA, register_base_version
from wikiref.db.articles import upsert_page
from wikiref.db.engine import make_engine
from wikiref.db.page_records import PageRecord, ReferenceRecord
from wikiref.flows.cli import output
from wikiref.flows.cli.run_commands import print_result

WIKI = "en.wikipedia.org"
LONG_TITLE = "Koryak Okrug (a federal subject of Russia until its merger into Kamchatka Krai in 2007)"
LONG_VERSION = "ft-2026-12-05T16-04-17-with-a-name-longer-than-any-column-rich-would-give-it"
LONG_CORPUS = "far-eastern-administrative-divisions-of-the-russian-federation-and-their-histories"


def whole_on_one_line(stdout: str, value: str) -> bool:
    return any(value in line for line in stdout.splitlines())


def test_piped_tables_keep_values_whole_and_listings_speak_json(run_cli, database_url: str) -> None:
    # COLUMNS=80: the width rich assumes for output that is not a terminal.
    env = {"WIKIREF_DATABASE_URL": database_url, "COLUMNS": "80"}
    engine = make_engine(database_url)
    good = tuple(
        ReferenceRecord(text=f"Author {i} (2001). A history of Kamchatka. Press.") for i in range(10)
    )
    with Session(engine) as session:
        register_base_version(session, name=LONG_VERSION)
        session.commit()
        upsert_page(
            session=session, page=PageRecord(wiki=WIKI, title=LONG_TITLE, revision_id=1, references=good)
        )
        upsert_page(
            session=session, page=PageRecord(wiki=WIKI, title=LONG_TITLE, revision_id=2, references=good[:2])
        )
    engine.dispose()
    assert run_cli("corpus", "add", LONG_CORPUS, LONG_TITLE, env=env).returncode == 0

    listed = run_cli("models", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert whole_on_one_line(listed.stdout, LONG_VERSION), listed.stdout
    # ... and no line padded to the unlimited width either
    assert max(len(line) for line in listed.stdout.splitlines()) < 400, listed.stdout
    quarantined = run_cli("corpus", "quarantine", env=env)
    assert whole_on_one_line(quarantined.stdout, LONG_TITLE), quarantined.stdout
    assert whole_on_one_line(run_cli("corpus", "list", env=env).stdout, LONG_CORPUS)

    versions = json.loads(run_cli("models", "list", "--json", env=env).stdout)
    assert list(versions) == ["versions"] and [v["name"] for v in versions["versions"]] == [LONG_VERSION]
    assert list(versions["versions"][0]) == [
        "id",
        "name",
        "status",
        "status_reason",
        "base_model",
        "gate_metric",
        "gate_value",
        "train_pairs",
        "created_at",
        "activated_at",
        "artifact_path",
    ]
    datetime.fromisoformat(versions["versions"][0]["created_at"])
    version = json.loads(run_cli("models", "show", LONG_VERSION, "--json", env=env).stdout)
    assert version["name"] == LONG_VERSION and version["status"] == "active"
    assert {"dataset_fingerprint", "dataset_counts", "params", "metrics", "loss_log"} <= set(version)

    pending = json.loads(run_cli("corpus", "quarantine", "--json", env=env).stdout)["quarantined"]
    assert [(p["title"], p["stored_revision_id"], p["revision_id"]) for p in pending] == [(LONG_TITLE, 1, 2)]
    assert (pending[0]["references_stored"], pending[0]["references_pending"]) == (10, 2)
    assert pending[0]["reason"] == "reference list shrank from 10 to 2 (more than the 50% allowed)"

    corpora = json.loads(run_cli("corpus", "list", "--json", env=env).stdout)["corpora"]
    # corpus add records the corpus under the wiki of WIKIREF_API_URL (issue 27, item 9)
    assert [(c["name"], c["wiki"], c["sources"], c["refreshed_at"]) for c in corpora] == [
        (LONG_CORPUS, WIKI, [{"kind": "titles", "spec": {"titles": [LONG_TITLE]}}], None)
    ]
    shown = json.loads(run_cli("corpus", "show", LONG_CORPUS, "--json", env=env).stdout)
    assert shown == corpora[0]

    status = json.loads(run_cli("db", "status", "--json", env=env).stdout)
    assert list(status) == ["database", "revision", "head", "tables"]
    assert status["revision"] == status["head"] and status["tables"]["model_versions"] == 1
    assert "***" in status["database"] or "@" not in status["database"]


def test_scrape_json_is_the_summary_and_nothing_else(run_cli, database_url: str) -> None:
    env = {"WIKIREF_DATABASE_URL": database_url}
    result = run_cli("scrape", "--mirror", str(SHARED_WIKIPEDIA), "--limit", "3", "--json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert list(summary) == [
        "wiki",
        "counts",
        "missing",
        "invalid",
        "not_articles",
        "failed",
        "skipped_records",
        "quarantined",
        "older",
        "retry_reasons",
        "seconds",
    ]
    assert summary["counts"]["titles_requested"] == 3 and summary["counts"]["articles_new"] == 3
    assert summary["counts"]["references_added"] > 0
    assert "\r" not in result.stderr  # no progress frames: stderr is not a terminal
    engine = make_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM articles")).scalar_one() == 3
    engine.dispose()


def test_a_flow_result_prints_as_json(capsys) -> None:
    print_result({"version": "ft-1", "at": datetime(2026, 12, 5, 16, 0), "counts": (1, 2)}, as_json=True)
    assert json.loads(capsys.readouterr().out) == {
        "version": "ft-1",
        "at": "2026-12-05T16:00:00",
        "counts": [1, 2],
    }


def test_piped_output_has_no_width_and_no_progress_frames() -> None:
    # Under pytest stdout and stderr are not terminals, as in a pipe or a log file.
    assert output.console.width == output.UNLIMITED_WIDTH and output.errors.width == output.UNLIMITED_WIDTH
    assert output.progress().disable
    assert output.records(["a", "b"], [(1, "x")]) == [{"a": 1, "b": "x"}]


def test_embed_json_reports_what_it_encoded(run_cli, database_url: str, onnx_cache_dir) -> None:
    env = {"WIKIREF_DATABASE_URL": database_url, "WIKIREF_EMBED_CACHE_DIR": str(onnx_cache_dir)}
    engine = make_engine(database_url)
    references = tuple(
        ReferenceRecord(text=f"Author {i} (2001). A history of Kamchatka. Press.") for i in range(3)
    )
    with Session(engine) as session:
        register_base_version(session)
        session.commit()
        upsert_page(
            session=session,
            page=PageRecord(wiki=WIKI, title="Kamchatka", revision_id=1, references=references),
        )
    engine.dispose()
    result = run_cli("embed", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "model_version": "base",
        "backend": json.loads(result.stdout)["backend"],
        "complete": True,
        "encoded": {"titles": 1, "references": 3},
        "embeddings": {"titles": 1, "references": 3},
    }
    assert "\r" not in result.stderr
