"""The Dask option: the scrape flow's fan-out tasks on a distributed.LocalCluster store the same rows as the
flow's own task runner."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import SHARED_WIKIPEDIA, TEMPLATE_DATABASE, create_database, drop_database
from tests.flows.flow_runs import SLICE, rows, run_flow
from wikiref.flows.scrape import scrape_wikipedia
from wikiref.flows.settings import Settings
from wikiref.flows.task_runners import task_runner_from_settings, with_task_runner

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

STORED = """
SELECT a.title, a.page_id, a.revision_id, r.position, r.text, r.content_hash, r.urls, r.doi, r.isbn
FROM articles a JOIN article_references r ON r.article_id = a.id
ORDER BY a.title, r.position
"""


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_scrape_on_a_dask_local_cluster_stores_the_same_rows(
    server_url: str, template_url: str, tmp_path: Path
) -> None:
    runner = task_runner_from_settings(Settings(task_runner="dask", dask_workers=2))
    # Batches of two pages: three fetch/extract/write chains to spread over the two workers.
    pages = {"titles": SLICE[:6], "mirror_dir": SHARED_WIKIPEDIA, "batch_size": 2}
    default_url = create_database(server_url, template=TEMPLATE_DATABASE)
    dask_url = create_database(server_url, template=TEMPLATE_DATABASE)
    try:
        run_flow(scrape_wikipedia, database_url=default_url, data_dir=tmp_path / "default", **pages)
        dask_logger = logging.getLogger("prefect.task_runner.dask")
        recorder = Recorder()
        dask_logger.addHandler(recorder)
        try:
            on_dask = run_flow(
                with_task_runner(scrape_wikipedia, runner),
                database_url=dask_url,
                data_dir=tmp_path / "dask",
                **pages,
            )
        finally:
            dask_logger.removeHandler(recorder)
        assert any("LocalCluster" in message for message in recorder.messages), recorder.messages
        expected = rows(default_url, STORED)
        assert len({row[0] for row in expected}) == 6
        assert rows(dask_url, STORED) == expected
        assert on_dask.result["articles new"] == 6
    finally:
        drop_database(server_url, default_url)
        drop_database(server_url, dask_url)
