"""Each flow end to end under ``prefect_test_harness``: scrape (through the mirror of the shared pages, over
real HTTP), train (a few real steps), embed, and the pipeline chaining them; their artifacts through the
Prefect API, and the SQL functions answering afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.embed import embed_texts
from flows.pipeline import pipeline
from flows.scrape import scrape_wikipedia
from flows.train import train_model
from tests.conftest import SHARED_WIKIPEDIA, TEMPLATE_DATABASE, create_database, drop_database
from tests.flows.flow_runs import SLICE, Run, artifacts_of, rows, run_flow, scalar, table_of

pytestmark = pytest.mark.usefixtures("prefect_harness")

FEW_STEPS = {"max_steps": 3, "batch_size": 8}


@pytest.fixture(scope="module")
def flow_database(server_url: str, template_url: str, tmp_path_factory) -> Iterator[dict]:
    """One database and data directory that scrape, train and embed build on in turn."""
    url = create_database(server_url, template=TEMPLATE_DATABASE)
    yield {"database_url": url, "data_dir": tmp_path_factory.mktemp("flow-data")}
    drop_database(server_url, url)


@pytest.fixture(scope="module")
def scraped(flow_database) -> Run:
    return run_flow(scrape_wikipedia, **flow_database, titles=SLICE, mirror_dir=SHARED_WIKIPEDIA)


@pytest.fixture(scope="module")
def trained(flow_database, scraped: Run) -> Run:
    return run_flow(train_model, **flow_database, **FEW_STEPS)


@pytest.fixture(scope="module")
def embedded(flow_database, trained: Run) -> Run:
    return run_flow(embed_texts, **flow_database)


def test_scrape_flow_stores_the_slice_and_publishes_its_summary(scraped: Run, flow_database) -> None:
    url = flow_database["database_url"]
    assert scalar(url, "SELECT count(*) FROM articles") == len(SLICE)
    assert scalar(url, "SELECT count(*) FROM article_references") > 500
    artifacts = artifacts_of(scraped.id)
    assert "scrape-summary" in artifacts, sorted(artifacts)


def test_train_flow_registers_a_version_and_publishes_loss_and_metrics(trained: Run, flow_database) -> None:
    url = flow_database["database_url"]
    assert trained.result["promoted"] is True  # the first version of a database becomes active
    active = rows(url, "SELECT name FROM model_versions WHERE status = 'active'")
    assert active == [(trained.result["version"],)]
    artifacts = artifacts_of(trained.id)
    assert {"training-loss", "training-metrics"} <= set(artifacts), sorted(artifacts)
    assert {row["metric"] for row in table_of(artifacts["training-metrics"])} >= {"ndcg@10", "mrr@10"}
    assert len(table_of(artifacts["training-loss"])) >= 1


def test_embed_flow_encodes_every_row_and_publishes_counts(embedded: Run, flow_database) -> None:
    url = flow_database["database_url"]
    references = scalar(url, "SELECT count(*) FROM article_references")
    assert scalar(url, "SELECT count(*) FROM reference_embeddings") == references
    assert scalar(url, "SELECT count(*) FROM title_embeddings") == len(SLICE)
    artifacts = artifacts_of(embedded.id)
    assert any(key.startswith("embed") for key in artifacts), sorted(artifacts)


def test_pipeline_runs_the_three_flows_and_the_sql_functions_answer(
    server_url: str, template_url: str, tmp_path: Path
) -> None:
    url = create_database(server_url, template=TEMPLATE_DATABASE)
    try:
        run = run_flow(
            pipeline,
            database_url=url,
            data_dir=tmp_path / "data",
            mirror_dir=SHARED_WIKIPEDIA,
            titles=SLICE[:10],
            max_steps=3,
            query_title="Duck",
            k=5,
        )
        query = run.result["query"]
        assert query["sql"] == "SELECT * FROM wikiref.similar_references('Duck', 5, NULL);"
        assert len(query["rows"]) == 5
        assert run.result["train"]["promoted"] is True
        artifacts = artifacts_of(run.id)
        assert {"scrape-summary", "training-loss", "training-metrics", "pipeline-similar-references"} <= set(artifacts)
        assert len(table_of(artifacts["pipeline-similar-references"])) == 5
        # The SQL interface answers on its own, with the version the pipeline promoted.
        assert len(rows(url, "SELECT * FROM wikiref.similar_references('Cat', 3)")) == 3
        assert len(rows(url, "SELECT * FROM wikiref.similar_articles('Cat', 3)")) == 3
    finally:
        drop_database(server_url, url)
