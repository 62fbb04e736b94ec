"""``wikiref embed``, ``wikiref similar`` and ``wikiref search``."""

from __future__ import annotations

from typing import Annotated, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.orm import Session

from db import search as queries
from db.embeddings import get_version
from flows.database import prepare_database
from flows.errors import UserError
from flows.mediawiki.title_rules import shortened
from flows.settings import Settings, get_settings
from models.encode import encode_texts

console = Console()
T = TypeVar("T")


def setting_option(option: str, field: str, value: T | None) -> T | None:
    """``value`` checked against the constraints of the setting ``field`` it overrides; one line if it breaks them."""
    if value is None:
        return None
    info = Settings.model_fields[field]
    try:
        return TypeAdapter(Annotated[info.annotation, info]).validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise UserError(f"{option} {shortened(str(value))!r}: {reason} ({info.description})") from None


def embed(
    model_version: str | None = typer.Option(
        None,
        "--model-version",
        "-m",
        help="Name or id of the version to embed with (default: the active one).",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Texts per forward pass."),
    backend: str | None = typer.Option(None, "--backend", help="torch, onnx or auto (default: settings)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: settings)."),
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        help="At most this many rows of each kind (a partial run, not marked complete).",
    ),
) -> None:
    """Encode titles and references that lack an embedding of their current text, then index them."""
    # Every option is checked before a flow starts: a flow's failure would come with Prefect's tracebacks.
    backend = setting_option("--backend", "embed_backend", backend)
    device = setting_option("--device", "embed_device", device)
    _, engine = prepare_database()
    with Session(engine) as session:
        get_version(session=session, name_or_id=model_version)

    from flows.embed import embed_texts, progress_listener

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bars: dict[str, int] = {}

        def advance(kind: str, written: int, total: int) -> None:
            if kind not in bars:
                bars[kind] = progress.add_task(f"embedding {kind}", total=total)
            progress.update(bars[kind], completed=written, total=total)

        with progress_listener(advance):
            result = embed_texts(
                model_version=model_version,
                batch_size=batch_size,
                backend=backend,
                device=device,
                limit=limit,
            )
    table = Table(
        "kind", "encoded now", "embeddings of the version", title=f"model version {result['model_version']}"
    )
    for kind, count in result["encoded"].items():
        table.add_row(kind, f"{count:,}", f"{result['embeddings'][kind]:,}")
    console.print(table)
    state = (
        "complete: queries use it when it is the serving version"
        if result["complete"]
        else "partial (--limit)"
    )
    console.print(f"backend {result['backend']}; {state}")


def _print(result: queries.QueryResult, show_sql: bool, title: str) -> None:
    if show_sql:
        console.print(result.as_sql(), markup=False, highlight=False, soft_wrap=True)
    table = Table(*result.columns, title=title)
    for row in result.rows:
        table.add_row(
            *(
                "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
                for value in row
            )
        )
    console.print(table)


def similar(
    title: str = typer.Argument(..., help="Article title, as on the wiki."),
    k: int = typer.Option(10, "--k", "-k", help="Number of results (1-1000)."),
    articles: bool = typer.Option(
        False, "--articles", help="Similar articles instead of similar references."
    ),
    model_version: str | None = typer.Option(
        None, "--model-version", "-m", help="Version to query (default: the serving version)."
    ),
    sql: bool = typer.Option(False, "--sql", help="Also print the SQL that was run."),
) -> None:
    """The references (or, with --articles, the articles) most similar to an article's title, from SQL."""
    queries.check_arguments(k=k, title=title)
    _, engine = prepare_database()
    function = "similar_articles" if articles else "similar_references"
    with Session(engine) as session:
        result = queries.run(
            session=session, function=function, title=title, k=k, model_version=model_version
        )
    _print(result, sql, f"{function}({title!r})")


def search(
    text: str = typer.Argument(..., help="Free text, e.g. a reference or a few words."),
    k: int = typer.Option(10, "--k", "-k", help="Number of results (1-1000)."),
    model_version: str | None = typer.Option(
        None, "--model-version", "-m", help="Version to query (default: the serving version)."
    ),
    full_text_only: bool = typer.Option(
        False, "--full-text-only", help="Skip the model: full-text ranking alone."
    ),
    sql: bool = typer.Option(False, "--sql", help="Also print the SQL that was run."),
) -> None:
    """Search references: full-text matches fused with the nearest embeddings (reciprocal rank fusion)."""
    queries.check_arguments(k=k, query=text)
    from flows.embed import encoder_config, version_model_path

    settings = get_settings()
    _, engine = prepare_database(settings)
    with Session(engine) as session:
        embedding, version_name = None, model_version
        if not full_text_only:
            _, version_name, base_model, artifact_path = queries.query_version(
                session=session, model_version=model_version
            )
            path = version_model_path(artifact_path, base_model)
            embedding = encode_texts(encoder_config(settings, path), [text])[0]
        result = queries.run(
            session=session,
            function="search_text",
            query=text,
            query_embedding=embedding,
            k=k,
            model_version=version_name,
        )
    _print(result, sql, f"search_text({text!r})")
