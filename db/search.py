"""Python side of the SQL interface (schema ``wikiref``, migrations 0002 and 0008): the statements the CLI runs and
prints, and the BM25 scores the fused functions use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pgvector.sqlalchemy import Vector
from psycopg import sql
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from wikiref.db.errors import DatabaseError
from wikiref.db.schema import EMBEDDING_DIM, MAX_EF_SEARCH

MAX_K = MAX_EF_SEARCH
"""The most rows one call returns (hnsw.ef_search tops out at 1000; the SQL functions refuse more too)."""
MAX_QUERY_CHARS = 4000
"""The longest search text: a long reference fits; tens of thousands of words exhaust Postgres's stack."""

# SQLSTATEs the functions raise for a caller's mistake (unknown title or version, bad k, no embeddings yet).
USER_ERROR_STATES = {"P0002", "22023", "55000", "21000"}

STATEMENTS = {
    "similar_references": "SELECT * FROM wikiref.similar_references(:title, :k, :model_version, fusion => :fusion)",
    "similar_articles": "SELECT * FROM wikiref.similar_articles(:title, :k, :model_version, fusion => :fusion)",
    "articles_for_reference": (
        "SELECT * FROM wikiref.articles_for_reference(:reference_id, :k, :model_version, fusion => :fusion)"
    ),
    "search_vector": "SELECT * FROM wikiref.search_vector(:query, :k, :model_version)",
    "search_text": (
        "SELECT * FROM wikiref.search_text(:query, :query_embedding, :k, :model_version, fusion => :fusion)"
    ),
}
"""The statement of each function; those that fuse signals take ``fusion`` (default true: fused)."""
_VECTOR_PARAMS = {"search_vector": "query", "search_text": "query_embedding"}


class QueryError(DatabaseError):
    """A SQL function refused the call (unknown title, k <= 0, ...): its message and hint, one line."""


@dataclass(frozen=True)
class QueryResult:
    statement: str
    params: dict[str, Any]
    columns: list[str]
    rows: list[tuple]

    def as_sql(self, *, full_vectors: bool = False) -> str:
        """The statement with its parameters as literals, ready to paste into psql."""
        rendered = self.statement
        for name, value in sorted(self.params.items(), key=lambda item: -len(item[0])):
            if isinstance(value, (list, np.ndarray)):
                values = [float(x) for x in value]
                shown = values if full_vectors else values[:3]
                body = ",".join(f"{x:.6g}" for x in shown) + (
                    "" if full_vectors else f",… {len(values) - 3} more"
                )
                literal = f"'[{body}]'::vector"
            else:
                literal = sql.Literal(value).as_string()
            rendered = rendered.replace(f":{name}", literal)
        return rendered + ";"


def _one_line(exc: DBAPIError) -> str:
    diag = getattr(exc.orig, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc.orig)).strip().splitlines()[0]
    hint = getattr(diag, "message_hint", None)
    return f"{message} ({hint})" if hint else message


def check_arguments(*, k: object = None, query: object = None, title: object = None) -> None:
    """The SQL functions' own argument checks, with their messages, made before anything costly (loading the
    model to encode a query takes seconds), plus those the database would turn into an obscure error (an integer
    overflow picks no function; a huge query text exhausts the stack)."""
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise QueryError(f"k must be a positive number of results, got {str(k)[:40]}")
        if k > MAX_K:
            raise QueryError(f"k must be at most {MAX_K}, got {str(k)[:40]}")
    if isinstance(query, str) and not query.strip():
        raise QueryError("the search text is empty")
    if isinstance(query, str) and len(query) > MAX_QUERY_CHARS:
        raise QueryError(
            f"the search text has {len(query):,} characters; at most {MAX_QUERY_CHARS:,} are searched: "
            "shorten it to its most telling part"
        )
    if isinstance(title, str) and not title.replace("_", " ").strip():
        raise QueryError("an article title is required")
    if isinstance(title, str) and len(title.encode("utf-8", errors="replace")) > 255:
        raise QueryError(f"no article is titled {title[:60]!r}…: titles have at most 255 bytes")


def run(*, session: Session, function: str, **params: Any) -> QueryResult:
    """Call one of the ``wikiref`` SQL functions by name and fetch its rows."""
    check_arguments(k=params.get("k"), query=params.get("query"), title=params.get("title"))
    if ":fusion" in STATEMENTS[function]:
        params.setdefault("fusion", True)
    statement = text(STATEMENTS[function])
    vector_param = _VECTOR_PARAMS.get(function)
    if vector_param:
        statement = statement.bindparams(bindparam(vector_param, type_=Vector(EMBEDDING_DIM)))
        if params.get(vector_param) is not None:
            params[vector_param] = np.asarray(params[vector_param], dtype=np.float32)
    try:
        result = session.execute(statement, params)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in USER_ERROR_STATES:
            session.rollback()
            raise QueryError(_one_line(exc)) from None
        raise
    return QueryResult(
        STATEMENTS[function], dict(params), list(result.keys()), [tuple(row) for row in result]
    )


def bm25_references(*, session: Session, query: str, reference_ids: Sequence[int]) -> dict[int, float]:
    """BM25 of ``query`` against each reference's text, as the fused SQL functions score their words
    (``wikiref.bm25_references``); 0 for a reference with no word in common, unknown ids left out."""
    rows = session.execute(
        text("SELECT reference_id, score FROM wikiref.bm25_references(:query, CAST(:ids AS bigint[]))"),
        {"query": query, "ids": list(reference_ids)},
    )
    return {int(reference_id): float(score) for reference_id, score in rows}


def bm25_articles(*, session: Session, query: str, article_ids: Sequence[int]) -> dict[int, float]:
    """BM25 of ``query`` against each article's title + lead (``wikiref.bm25_articles``), as ``bm25_references``."""
    rows = session.execute(
        text("SELECT article_id, score FROM wikiref.bm25_articles(:query, CAST(:ids AS bigint[]))"),
        {"query": query, "ids": list(article_ids)},
    )
    return {int(article_id): float(score) for article_id, score in rows}


# One row per query, in the queries' order: its scores against the ids, in the ids' order (0 for an id the
# function leaves out). The function name is one of two constants, never a caller's text.
_BM25_MATRIX = """
SELECT ARRAY(
         SELECT coalesce(b.score, 0)
           FROM unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS i(id, position)
           LEFT JOIN BM25_FUNCTION(q.query, CAST(:ids AS bigint[])) AS b(id, score) ON b.id = i.id
          ORDER BY i.position)
  FROM unnest(CAST(:queries AS text[])) WITH ORDINALITY AS q(query, position)
 ORDER BY q.position
"""
_BM25_MATRIX_STATEMENTS = {
    target: text(_BM25_MATRIX.replace("BM25_FUNCTION", f"wikiref.bm25_{target}"))
    for target in ("references", "articles")
}
# One row per article, in the articles' order: the words of the article as similar_references matches them.
_ARTICLE_WORDS_MATRIX = text("""
SELECT ARRAY(
         SELECT coalesce(b.score, 0)
           FROM unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS i(id, position)
           LEFT JOIN wikiref.bm25_scores('references', wikiref.article_words(a.title, a.lead), CAST(:ids AS bigint[]))
                     AS b ON b.id = i.id
          ORDER BY i.position)
  FROM unnest(CAST(:articles AS bigint[])) WITH ORDINALITY AS q(id, position)
  JOIN articles a ON a.id = q.id
 ORDER BY q.position
""")
# One row per article, in the articles' order: the lift similar_references gives each reference naming the article.
_NAMES_ARTICLE_MATRIX = text("""
SELECT ARRAY(
         SELECT CASE WHEN r.lexemes @@ wikiref.title_phrase(a.title) THEN wikiref.names_article_weight() ELSE 0 END
           FROM unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS i(id, position)
           LEFT JOIN article_references r ON r.id = i.id
          ORDER BY i.position)
  FROM unnest(CAST(:articles AS bigint[])) WITH ORDINALITY AS q(id, position)
  JOIN articles a ON a.id = q.id
 ORDER BY q.position
""")


def _matrix(
    session: Session, statement, parameters: dict, shape: tuple[int, int], rows_per_fetch: int
) -> np.ndarray:
    matrix = np.zeros(shape)
    rows = session.execute(statement, parameters, execution_options={"yield_per": rows_per_fetch})
    row = -1
    for row, (scores,) in enumerate(rows):
        matrix[row] = scores
    if row + 1 != shape[0]:
        raise ValueError(f"{shape[0] - row - 1} of the {shape[0]} queries are not in the database")
    return matrix


def bm25_matrix(
    *, session: Session, target: str, queries: Sequence[str], ids: Sequence[int], rows_per_fetch: int = 64
) -> np.ndarray:
    """BM25 of every query against every id of ``target`` ('references' or 'articles'), as ``bm25_references`` and
    ``bm25_articles`` score one query, in one statement: rows are the queries, columns the ids, in their orders.

    Rows are fetched ``rows_per_fetch`` at a time, so that only the matrix itself is held in memory.
    """
    if target not in _BM25_MATRIX_STATEMENTS:
        raise ValueError(f"unknown BM25 target {target!r}: one of {', '.join(_BM25_MATRIX_STATEMENTS)}")
    parameters = {"queries": list(queries), "ids": list(ids)}
    return _matrix(
        session, _BM25_MATRIX_STATEMENTS[target], parameters, (len(queries), len(ids)), rows_per_fetch
    )


def article_words_matrix(
    *, session: Session, article_ids: Sequence[int], reference_ids: Sequence[int], rows_per_fetch: int = 64
) -> np.ndarray:
    """The ``words`` of ``similar_references`` between each stored article and each reference: BM25 of the
    article's title and lead (``wikiref.article_words``, the title's lexemes counted three times) against the
    reference's text. Rows the articles, columns the references, in their orders, as ``bm25_matrix``.
    """
    parameters = {"articles": list(article_ids), "ids": list(reference_ids)}
    shape = (len(article_ids), len(reference_ids))
    return _matrix(session, _ARTICLE_WORDS_MATRIX, parameters, shape, rows_per_fetch)


def names_article_matrix(
    *, session: Session, article_ids: Sequence[int], reference_ids: Sequence[int], rows_per_fetch: int = 64
) -> np.ndarray:
    """What ``similar_references`` adds to each reference's fused score for each stored article: the lift
    ``wikiref.names_article_weight()`` where the reference names the article (holds ``wikiref.title_phrase`` of
    its title), else 0. Rows the articles, columns the references, in their orders, as ``bm25_matrix``.
    """
    parameters = {"articles": list(article_ids), "ids": list(reference_ids)}
    shape = (len(article_ids), len(reference_ids))
    return _matrix(session, _NAMES_ARTICLE_MATRIX, parameters, shape, rows_per_fetch)


def serving_version(*, session: Session) -> tuple[int, str, str, str | None] | None:
    """(id, name, base_model, artifact_path) of the version queries use by default, or None."""
    row = session.execute(
        text(
            "SELECT id, name, base_model, artifact_path FROM model_versions WHERE id = wikiref.serving_version_id()"
        )
    ).first()
    return tuple(row) if row else None


def query_version(*, session: Session, model_version: str | None) -> tuple[int, str, str, str | None]:
    """The version a query will use: the named one, or the serving version; a QueryError if there is none."""
    try:
        version_id = session.execute(
            text("SELECT wikiref.resolve_version(:name)"), {"name": model_version}
        ).scalar_one()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in USER_ERROR_STATES:
            session.rollback()
            raise QueryError(_one_line(exc)) from None
        raise
    row = session.execute(
        text("SELECT id, name, base_model, artifact_path FROM model_versions WHERE id = :id"),
        {"id": version_id},
    ).one()
    return tuple(row)


def explain(*, session: Session, target: str, version_id: int, query: Sequence[float], k: int) -> str:
    """EXPLAIN of the nearest-neighbour statement the functions run (``wikiref.nearest_query``)."""
    inner = session.execute(
        text("SELECT wikiref.nearest_query(:target, :version, false)"),
        {"target": target, "version": version_id},
    ).scalar_one()
    # Under the settings wikiref.nearest runs with (its SET clauses), so the plan is the one the functions get.
    settings = session.scalar(
        text(
            "SELECT proconfig FROM pg_proc WHERE oid = 'wikiref.nearest(vector, integer, integer, text, bigint)'::regprocedure"
        )
    )
    for setting in settings or []:
        name, value = setting.split("=", 1)
        session.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})
    connection = session.connection().connection.driver_connection
    # A prepared statement with real parameters: the same shape the plpgsql EXECUTE ... USING plans.
    literal = "[" + ",".join(f"{float(x):.7g}" for x in query) + "]"
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("PREPARE wikiref_explain(vector, integer, bigint) AS ") + sql.SQL(inner))
        try:
            cursor.execute(
                sql.SQL("EXPLAIN EXECUTE wikiref_explain({}::vector, {}, NULL)").format(
                    sql.Literal(literal), sql.Literal(k)
                )
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE wikiref_explain")
    return plan
