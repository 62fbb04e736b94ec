"""``wikiref embed``, ``wikiref similar`` and ``wikiref search``."""

from __future__ import annotations

from typing import Annotated, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeRemainingColumn
from sqlalchemy.orm import Session

from wikiref.db import search as queries
from wikiref.flows.cli.output import JSON_OPTION, console, count, print_json, print_table, progress, records
from wikiref.flows.database import prepare_database
from wikiref.flows.errors import UserError
from wikiref.flows.mediawiki.title_rules import shortened
from wikiref.flows.settings import Settings, get_settings, setting_error_message
from wikiref.flows.steps import embedding
from wikiref.models.encode import encode_texts

T = TypeVar("T")


def setting_option(option: str, field: str, value: T | None) -> T | None:
    """``value`` checked against the constraints of the setting ``field`` it overrides; one line if it breaks them."""
    if value is None:
        return None
    info = Settings.model_fields[field]
    try:
        return TypeAdapter(Annotated[info.annotation, info]).validate_python(value)
    except ValidationError as exc:
        reason = setting_error_message(exc.errors()[0])
        raise UserError(f"{option} {shortened(str(value))!r}: {reason} ({info.description})") from None


def embed(
    model_version: str | None = typer.Option(
        None,
        "--model-version",
        "-m",
        help="Name or id of the version to embed with (default: the active one).",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Texts per forward pass."),
    backend: str | None = typer.Option(
        None, "--backend", help="torch, onnx, openvino or auto (default: settings)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: settings)."),
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        help="At most this many rows of each kind (a partial run, not marked complete).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Encode titles and references that lack an embedding of their current text, then index them."""
    # Options are checked before the database or the model is touched: one line, not an encoder's traceback.
    backend = setting_option("--backend", "embed_backend", backend)
    device = setting_option("--device", "embed_device", device)
    settings = get_settings()
    _, engine = prepare_database(settings)
    request = embedding.EmbedRequest.from_settings(
        settings,
        embedding.resolve_version(engine, model_version, settings),
        batch_size=batch_size,
        backend=backend,
        device=device,
        limit=limit,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with progress(*columns, transient=False) as bars_shown:
        bars: dict[str, TaskID] = {}

        def advance(kind: str, written: int, total: int) -> None:
            if kind not in bars:
                bars[kind] = bars_shown.add_task(f"embedding {kind}", total=total)
            bars_shown.update(bars[kind], completed=written, total=total)

        result = embedding.embed_pending(engine, request, on_written=advance)
    if as_json:
        print_json(
            {
                "model_version": result.model_version,
                "backend": result.backend,
                "complete": result.complete,
                "encoded": result.encoded,
                "embeddings": result.embeddings,
            }
        )
        return
    print_table(
        ("kind", "encoded now", "embeddings of the version"),
        [(kind, count(encoded), count(result.embeddings[kind])) for kind, encoded in result.encoded.items()],
        title=f"model version {result.model_version}",
    )
    state = (
        "complete: queries use it when it is the serving version" if result.complete else "partial (--limit)"
    )
    console.print(f"backend {result.backend}; {state}")


def _print(result: queries.QueryResult, show_sql: bool, title: str, as_json: bool) -> None:
    if as_json:
        # Every column the function returns, by its name: columns added to a function come through as they are.
        print_json(
            {"sql": result.as_sql(), "columns": result.columns, "rows": records(result.columns, result.rows)}
        )
        return
    if show_sql:
        console.print(result.as_sql(), markup=False, highlight=False, soft_wrap=True)
    print_table(result.columns, result.rows, title=title)


def similar(
    title: str = typer.Argument(..., help="Article title, as on the wiki."),
    k: int = typer.Option(10, "--k", "-k", help="Number of results (1-1000)."),
    articles: bool = typer.Option(
        False, "--articles", help="Similar articles instead of similar references."
    ),
    model_version: str | None = typer.Option(
        None, "--model-version", "-m", help="Version to query (default: the serving version)."
    ),
    embeddings_only: bool = typer.Option(
        False, "--embeddings-only", help="Rank by the embeddings alone (no words): fusion => false."
    ),
    sql: bool = typer.Option(False, "--sql", help="Also print the SQL that was run."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The references (or, with --articles, the articles) closest to an article, from SQL: the fused score
    (embeddings + words, weighted by the version) and each signal's part."""
    queries.check_arguments(k=k, title=title)
    _, engine = prepare_database()
    function = "similar_articles" if articles else "similar_references"
    with Session(engine) as session:
        result = queries.run(
            session=session,
            function=function,
            title=title,
            k=k,
            model_version=model_version,
            fusion=not embeddings_only,
        )
    _print(result, sql, f"{function}({title!r})", as_json)


def search(
    text: str = typer.Argument(..., help="Free text, e.g. a reference or a few words."),
    k: int = typer.Option(10, "--k", "-k", help="Number of results (1-1000)."),
    model_version: str | None = typer.Option(
        None, "--model-version", "-m", help="Version to query (default: the serving version)."
    ),
    full_text_only: bool = typer.Option(
        False, "--full-text-only", help="Skip the model: the words (BM25) alone."
    ),
    embeddings_only: bool = typer.Option(
        False, "--embeddings-only", help="Rank by the text's embedding alone (no words): fusion => false."
    ),
    sql: bool = typer.Option(False, "--sql", help="Also print the SQL that was run."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Search references: the text's embedding fused with its words (BM25), weighted by the version; each row
    shows the fused score and each signal's part."""
    if full_text_only and embeddings_only:
        raise UserError("--full-text-only and --embeddings-only exclude each other: choose one signal")
    queries.check_arguments(k=k, query=text)
    settings = get_settings()
    _, engine = prepare_database(settings)
    with Session(engine) as session:
        query_embedding, version_name = None, model_version
        if not full_text_only:
            _, version_name, base_model, artifact_path = queries.query_version(
                session=session, model_version=model_version
            )
            path = embedding.version_model_path(artifact_path, base_model)
            query_embedding = encode_texts(embedding.encoder_config(settings, path), [text])[0]
        result = queries.run(
            session=session,
            function="search_text",
            query=text,
            query_embedding=query_embedding,
            k=k,
            model_version=version_name,
            fusion=not embeddings_only,
        )
    _print(result, sql, f"search_text({text!r})", as_json)
