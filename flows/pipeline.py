"""The main job: scrape, train (evaluate, promote if better), embed, then answer one similarity query.

Each step is the area's own flow, run here as a sub-flow, so the UI shows one pipeline run with the scrape,
train and embed runs (and their artifacts) nested under it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from sqlalchemy import text
from sqlalchemy.orm import Session

from wikiref.db import search
from wikiref.flows import markdown
from wikiref.flows.database import prepare_database
from wikiref.flows.embed import embed_texts
from wikiref.flows.scrape import scrape_wikipedia
from wikiref.flows.settings import get_settings
from wikiref.flows.task_runners import task_runner_from_settings, with_task_runner
from wikiref.flows.train import train_model

# A first run should end in minutes on a laptop CPU: 12 steps of the default batch of 64 see 768 (article text,
# reference) pairs, enough to exercise evaluation, the gate and the registry (the gate may well keep the base
# model serving). The train-weekly deployment (and `wikiref run train`) trains the default recipe.
QUICK_MAX_STEPS = 12


@task(retries=2, retry_delay_seconds=[2, 10])
def pick_query_title(preferred: list[str]) -> str:
    """The first of ``preferred`` stored with references, else the article with the most references."""
    _, engine = prepare_database()
    with engine.connect() as connection:
        for title in preferred:
            found = connection.execute(
                text(
                    "SELECT a.title FROM articles a JOIN article_references r ON r.article_id = a.id "
                    "WHERE a.title = :title OR :title = ANY(a.redirects) LIMIT 1"
                ),
                {"title": title},
            ).scalar_one_or_none()
            if found:
                return found
        busiest = connection.execute(
            text(
                "SELECT a.title FROM articles a JOIN article_references r ON r.article_id = a.id "
                "GROUP BY a.id, a.title ORDER BY count(*) DESC, a.title LIMIT 1"
            )
        ).scalar_one_or_none()
    if busiest is None:
        raise RuntimeError("no article with references was stored: nothing to query")
    return busiest


@task(retries=2, retry_delay_seconds=[2, 10])
def query_similar_references(title: str, k: int, model_version: str | None = None) -> dict[str, Any]:
    """``wikiref.similar_references``: the SQL as a user would paste it into psql, and its rows."""
    _, engine = prepare_database()
    with Session(engine) as session:
        result = search.run(
            session=session, function="similar_references", title=title, k=k, model_version=model_version
        )
    return {"sql": result.as_sql(), "rows": [dict(zip(result.columns, row)) for row in result.rows]}


@flow(name="pipeline")
def pipeline(
    titles: list[str] | None = None,
    mirror_dir: Path | None = None,
    dump_path: Path | None = None,
    limit: int | None = None,
    max_steps: int | None = QUICK_MAX_STEPS,
    query_title: str | None = None,
    k: int = 5,
    task_runner: Literal["default", "dask"] | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Scrape, train (promote if better), embed, then print a similarity query and its result.

    Args:
        titles: Articles to scrape. Empty: the configured titles (WIKIREF_PIPELINE_TITLES, 30
            well-referenced articles) from the live wiki, or every page of the mirror folder or dump.
        mirror_dir: A folder of saved Wikipedia pages (e.g. ../shared/data/wikipedia) to scrape through a
            local mirror server instead of the live wiki.
        dump_path: A Wikimedia Enterprise HTML dump (NDJSON, optionally .tar.gz) to load instead of the
            live wiki.
        limit: Scrape at most this many articles.
        max_steps: Training steps; the default keeps a first run to minutes on a CPU. Empty: the
            training settings decide (WIKIREF_TRAIN_MAX_PAIRS, WIKIREF_TRAIN_EPOCHS).
        query_title: The article whose most similar references are printed at the end. Empty: the first
            given title that has references, else the article with the most references.
        k: How many similar references to print.
        task_runner: Where the fan-out tasks of the sub-flows run: default or dask. Empty:
            WIKIREF_TASK_RUNNER.
        dask_address: Scheduler address of an existing Dask cluster (implies dask). Empty:
            WIKIREF_DASK_ADDRESS.
    """
    settings = get_settings()
    if mirror_dir and dump_path:
        raise ValueError("give a mirror folder or a dump, not both")
    if titles is None and mirror_dir is None and dump_path is None:
        titles = list(settings.pipeline_titles)
    runner = task_runner_from_settings(settings, kind=task_runner, dask_address=dask_address)

    # The corpus "pipeline" records what was asked for; the mirror's own list of pages is no source to record.
    corpus = "pipeline" if titles or dump_path else None
    scraped = with_task_runner(scrape_wikipedia, runner)(
        titles=titles, mirror_dir=mirror_dir, dump_path=dump_path, limit=limit, corpus=corpus
    )
    trained = train_model(max_steps=max_steps)
    embedded = with_task_runner(embed_texts, runner)()

    title = query_title or pick_query_title(titles or [])
    query = query_similar_references(title, k)
    create_table_artifact(
        key="pipeline-similar-references",
        table=query["rows"],
        description=f"{markdown.code_block(query['sql'], 'sql')}\n"
        f"The {len(query['rows'])} references most similar to *{markdown.escape(title)}*.",
    )
    logger = get_run_logger()
    logger.info(
        "%s\n%s", query["sql"], "\n".join(" | ".join(str(v) for v in row.values()) for row in query["rows"])
    )
    return {"scrape": scraped, "train": trained, "embed": embedded, "query": query}
