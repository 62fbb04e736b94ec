"""The flows end to end under ``prefect_test_harness``: the pipeline on a slice of the shared pages (scraped
through the mirror over real HTTP, a few real training steps, embedded), each of its scrape, train and embed
sub-flow runs with its artifacts read through the Prefect API, and the SQL functions answering afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SHARED_WIKIPEDIA, TEMPLATE_DATABASE, create_database, drop_database
from tests.flows.flow_runs import SLICE, Run, artifacts_of, child_flow_runs, rows, run_flow, scalar, table_of
from wikiref.flows.embed import embed_texts
from wikiref.flows.pipeline import pipeline

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def flow_database(
    server_url: str, template_url: str, onnx_cache_dir, tmp_path_factory
) -> Iterator[dict[str, Any]]:
    url = create_database(server_url, template=TEMPLATE_DATABASE)
    yield {
        "database_url": url,
        "data_dir": tmp_path_factory.mktemp("flow-data"),
        "onnx_cache_dir": onnx_cache_dir,
    }
    drop_database(server_url, url)


@pytest.fixture(scope="module")
def pipeline_run(flow_database) -> Run:
    return run_flow(
        pipeline,
        **flow_database,
        mirror_dir=SHARED_WIKIPEDIA,
        titles=SLICE,
        max_steps=3,
        query_title="Duck",
        k=5,
    )


@pytest.fixture(scope="module")
def sub_runs(pipeline_run: Run) -> dict[str, Any]:
    """The pipeline's sub-flow runs by flow name."""
    return {run.flow_name: run for run in child_flow_runs(pipeline_run.id)}


def test_pipeline_runs_scrape_train_embed_as_sub_flows(sub_runs: dict[str, Any]) -> None:
    assert set(sub_runs) == {"scrape-wikipedia", "train_model", "embed_texts"}
    ordered = sorted(sub_runs.values(), key=lambda run: run.start_time)
    assert [run.flow_name for run in ordered] == ["scrape-wikipedia", "train_model", "embed_texts"]
    assert all(run.state.is_completed() for run in ordered)


def test_scrape_stores_the_slice_and_publishes_its_summary(
    pipeline_run: Run, sub_runs, flow_database
) -> None:
    url = flow_database["database_url"]
    assert scalar(url, "SELECT count(*) FROM articles") == len(SLICE)
    references = scalar(url, "SELECT count(*) FROM article_references")
    assert references > 500
    assert pipeline_run.result["scrape"]["references added"] == references
    artifacts = artifacts_of(sub_runs["scrape-wikipedia"].id)
    assert {"scrape-summary", "scrape-counts"} <= set(artifacts), sorted(artifacts)
    counts = {row["what"]: row["count"] for row in table_of(artifacts["scrape-counts"])}
    assert counts["articles new"] == len(SLICE) and counts["references added"] == references


def serving_version(trained: dict) -> str:
    """The fine-tuned version if the gate promoted it, else the base model's version."""
    return trained["version"] if trained["promoted"] else "base"


def test_train_registers_a_version_gates_it_and_publishes_loss_and_metrics(
    pipeline_run: Run, sub_runs, flow_database
) -> None:
    trained = pipeline_run.result["train"]
    gate = trained["deltas"]["vs_base"]["ndcg@10"]
    assert trained["promoted"] is (gate["ci_low"] > 0)
    active = rows(flow_database["database_url"], "SELECT name FROM model_versions WHERE status = 'active'")
    assert active == [(serving_version(trained),)]
    artifacts = artifacts_of(sub_runs["train_model"].id)
    expected = {"training-loss", "training-loss-plot", "training-metrics", "training-progress"}
    assert expected <= set(artifacts), sorted(artifacts)
    metrics = {row["metric"]: row for row in table_of(artifacts["training-metrics"])}
    assert {"ndcg@10", "mrr@10"} <= set(metrics)
    assert metrics["ndcg@10"]["fine-tuned"] == round(trained["metrics"]["finetuned"]["ndcg@10"], 4)
    assert [row["step"] for row in table_of(artifacts["training-loss"])] == [1, 2, 3]


def test_embed_encodes_every_row_and_publishes_counts(pipeline_run: Run, sub_runs, flow_database) -> None:
    url = flow_database["database_url"]
    references = scalar(url, "SELECT count(*) FROM article_references")
    assert scalar(url, "SELECT count(*) FROM reference_embeddings") == references
    assert scalar(url, "SELECT count(*) FROM title_embeddings") == len(SLICE)
    assert pipeline_run.result["embed"]["encoded"] == {"references": references, "titles": len(SLICE)}
    artifacts = artifacts_of(sub_runs["embed_texts"].id)
    counts = {row["kind"]: row["encoded this run"] for row in table_of(artifacts["embedding-counts"])}
    assert counts == {"references": references, "titles": len(SLICE)}


def test_pipeline_ends_with_a_similarity_query_and_the_sql_functions_answer(
    pipeline_run: Run, flow_database
) -> None:
    url = flow_database["database_url"]
    query = pipeline_run.result["query"]
    assert query["sql"] == "SELECT * FROM wikiref.similar_references('Duck', 5, NULL, fusion => true);"
    assert len(query["rows"]) == 5
    scores = [row["score"] for row in query["rows"]]
    assert scores == sorted(scores, reverse=True)
    artifact = artifacts_of(pipeline_run.id)["pipeline-similar-references"]
    assert [row["reference_id"] for row in table_of(artifact)] == [
        row["reference_id"] for row in query["rows"]
    ]
    # The SQL interface answers on its own, with the version the pipeline promoted.
    assert rows(url, "SELECT reference_id FROM wikiref.similar_references('Duck', 5)") == [
        (row["reference_id"],) for row in query["rows"]
    ]
    assert len(rows(url, "SELECT * FROM wikiref.similar_articles('Cat', 3)")) == 3
    (reference_id,) = (query["rows"][0]["reference_id"],)
    assert len(rows(url, "SELECT * FROM wikiref.articles_for_reference(:id, 3)", id=reference_id)) == 3


def test_embed_on_its_own_afterwards_encodes_nothing_new(pipeline_run: Run, flow_database) -> None:
    again = run_flow(embed_texts, **flow_database)
    assert again.result["encoded"] == {"references": 0, "titles": 0}
    assert again.result["model_version"] == serving_version(pipeline_run.result["train"])
    assert "embedding-counts" in artifacts_of(again.id)
