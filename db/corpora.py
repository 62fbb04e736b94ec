"""Corpus definitions: named sets of title sources (explicit titles, a category with depth, a list page, the
top-N of each day, a dump) that a refresh re-resolves. Removing a corpus keeps its articles."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from wikiref.db.errors import DatabaseError, shown
from wikiref.db.schema import CORPUS_SOURCE_KINDS, Corpus, CorpusSource


@dataclass(frozen=True)
class SourceSpec:
    """One source: its kind and parameters (``{"titles": [...]}``, ``{"name": ..., "depth": 2}``,
    ``{"name": ...}``, ``{"n": 100}``, ``{"path": ...}``)."""

    kind: str
    spec: dict[str, Any]

    def __post_init__(self) -> None:
        if self.kind not in CORPUS_SOURCE_KINDS:
            raise DatabaseError(f"unknown source kind {self.kind!r}; one of {', '.join(CORPUS_SOURCE_KINDS)}")

    @property
    def spec_hash(self) -> str:
        canonical = json.dumps(self.spec, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def describe(self) -> str:
        spec = self.spec
        if self.kind == "titles":
            titles = spec["titles"]
            return f"titles: {', '.join(titles[:5])}{' …' if len(titles) > 5 else ''} ({len(titles)})"
        if self.kind == "category":
            return f"category {spec['name']} (depth {spec.get('depth', 0)})"
        if self.kind == "list_page":
            return f"links of {spec['name']}"
        if self.kind == "top":
            return f"top {spec['n']} of each day"
        return f"dump {spec['path']}"


@dataclass(frozen=True)
class CorpusDefinition:
    name: str
    wiki: str | None
    """The wiki the corpus was defined on; None (corpora older than migration 0009): the next refresh's."""
    created_at: datetime
    refreshed_at: datetime | None
    last_counts: dict[str, Any]
    sources: list[SourceSpec] = field(default_factory=list)


def add_sources(*, session: Session, corpus: str, wiki: str, sources: Iterable[SourceSpec]) -> int:
    """Record ``sources`` under ``corpus`` of ``wiki`` (created if new); sources it has already are kept once.
    A corpus belongs to one wiki: adding to one of another wiki is an error. Commits; returns how many sources
    were new."""
    if not corpus.strip():
        raise DatabaseError("a corpus needs a name")
    corpus_id, corpus_wiki = session.execute(
        pg_insert(Corpus)
        .values(name=corpus, wiki=wiki)
        .on_conflict_do_update(index_elements=["name"], set_={"wiki": func.coalesce(Corpus.wiki, wiki)})
        .returning(Corpus.id, Corpus.wiki)
    ).one()
    if corpus_wiki != wiki:
        session.rollback()
        raise DatabaseError(
            f"corpus {shown(corpus)} belongs to {corpus_wiki}, not {wiki}: record these sources under another name"
        )
    added = 0
    for source in sources:
        added += len(
            session.execute(
                pg_insert(CorpusSource)
                .values(corpus_id=corpus_id, kind=source.kind, spec=source.spec, spec_hash=source.spec_hash)
                .on_conflict_do_nothing(index_elements=["corpus_id", "kind", "spec_hash"])
                .returning(CorpusSource.id)
            ).all()
        )
    session.commit()
    return added


def corpora(*, session: Session, names: Iterable[str] | None = None) -> list[CorpusDefinition]:
    """The corpus definitions (all, or those named; an unknown name is an error), by name."""
    query = select(Corpus).order_by(Corpus.name)
    wanted = list(names) if names is not None else None
    if wanted is not None:
        query = query.where(Corpus.name.in_(wanted))
    found = list(session.scalars(query))
    if wanted is not None:
        unknown = sorted(set(wanted) - {c.name for c in found})
        if unknown:
            raise DatabaseError(
                f"no corpus named {', '.join(map(shown, unknown))}; list them with: wikiref corpus list"
            )
    sources: dict[int, list[SourceSpec]] = {}
    for row in session.scalars(select(CorpusSource).order_by(CorpusSource.id)):
        sources.setdefault(row.corpus_id, []).append(SourceSpec(row.kind, row.spec))
    return [
        CorpusDefinition(
            c.name, c.wiki, c.created_at, c.refreshed_at, dict(c.last_counts), sources.get(c.id, [])
        )
        for c in found
    ]


def remove_corpus(*, session: Session, name: str) -> None:
    """Delete a corpus definition and its sources (its articles stay stored). Commits."""
    if not session.execute(delete(Corpus).where(Corpus.name == name)).rowcount:
        raise DatabaseError(f"no corpus named {shown(name)}; list them with: wikiref corpus list")
    session.commit()


def claim_corpora(*, session: Session, names: Iterable[str], wiki: str) -> None:
    """Give the corpora ``names`` that have no wiki yet (defined before migration 0009) the wiki ``wiki``.
    Commits."""
    session.execute(
        update(Corpus).where(Corpus.name.in_(list(names)), Corpus.wiki.is_(None)).values(wiki=wiki)
    )
    session.commit()


def record_refresh(*, session: Session, name: str, counts: dict[str, Any]) -> None:
    """Remember when ``name`` was last refreshed and what the refresh counted. Commits."""
    session.execute(
        update(Corpus).where(Corpus.name == name).values(refreshed_at=func.now(), last_counts=counts)
    )
    session.commit()
