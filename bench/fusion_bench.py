"""Fusion bench: the served SQL functions with embeddings alone, + words, + vote, + hubness and all, base vs tuned.

Protocol (docs/training.md): the corpus split of bench/train_bench.py (evaluation articles are the bulk articles
of ``bench.corpus_split.is_eval_article``, never trained on; 10% of the training articles are validation
articles). Stage ``train`` fine-tunes the default recipe of ``wikiref train`` on the training articles, one folder
per seed, outside the repository. Stage ``measure`` starts a fresh embedded server with two databases, one holding
the validation articles and one the evaluation articles (each corpus alone, as bench/train_bench.py scores them),
registers the base model (on the product's article text and on titles) and each trained seed as versions, embeds
them with ``wikiref embed``'s steps, and per version:

- chooses its weights on the validation database: one fused call per query with every candidate
  (``k`` = 1000), re-fused over the weight grid by wikiref.models.fusion (the same sums as the SQL);
- scores the evaluation database by calling the SQL functions with those weights stored on the version:
  ``similar_references(title, 10)`` NDCG@10 per article, ``articles_for_reference(id, 1)`` accuracy@1 over
  up to ``--references-per-article`` references of each article (5, as issue 25 measured; evenly spaced through
  the article), for the embeddings alone (``fusion => false``), + words, + vote, + hubness and all;
- ``search_text``: each article's title as free text (its embedding by the version's model passed in) ranks the
  references, NDCG@10 against the article's own; embeddings alone, words alone (no embedding) and fused with the
  words weight chosen on validation the same way;
- compares each scorer with the same version's embeddings alone and with the base model by a paired bootstrap
  over the evaluation articles (wikiref.models.evaluate.paired_bootstrap).

    python bench/fusion_bench.py train --seeds 1 --models /tmp/fusion-models
    python bench/fusion_bench.py measure --models /tmp/fusion-models --out bench/results/fusion.json
    python bench/fusion_bench.py measure --models /tmp/none --limit 20 --out /tmp/proxy.json   # a smoke run

Versions measured in separate runs (each run rebuilds the same databases, so the articles are the same) are joined
into one report, with every delta, by ``combine``:

    python bench/fusion_bench.py measure --models M --versions base,base-titles,default-seed1 --out /tmp/a.json
    python bench/fusion_bench.py measure --models M --versions default-seed2 --out /tmp/b.json
    python bench/fusion_bench.py combine --inputs /tmp/a.json /tmp/b.json --out bench/results/fusion.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus_split import is_eval_article
from bench.machine import cpu_model
from bench.train_bench import SHARED, load_articles, product_recipe
from wikiref.db import migrate, registry, search
from wikiref.db.bulk_writes import upsert_pages
from wikiref.db.engine import libpq_url, make_engine
from wikiref.db.server import ensure_embedded_server, stop_embedded_server
from wikiref.flows.settings import get_settings
from wikiref.flows.steps import embedding
from wikiref.flows.steps.records import saved_page_batches
from wikiref.models.article_text import TITLE_ONLY, ArticleTextRecipe
from wikiref.models.base import BASE_MODEL_ID, resolve_model_path
from wikiref.models.encode import EncoderConfig, TorchEncoder
from wikiref.models.evaluate import REVERSE_METRIC, ArticleScores, paired_bootstrap
from wikiref.models.finetune import TrainingConfig, resolve_device, train
from wikiref.models.fusion import (
    EMBEDDING,
    HUBNESS,
    HUBNESS_GRID,
    VOTE,
    VOTE_GRID,
    WORDS,
    WORDS_GRID,
    fuse,
)
from wikiref.models.pairs import (
    DEFAULT_TOKEN_BUDGET,
    ArticleTexts,
    Pair,
    PairSplit,
    build_pairs,
    heldout_score,
    tokenizer_counter,
)

VALIDATION_FRACTION = 0.1
HEADLINE = ("ndcg@10", REVERSE_METRIC)
# The scorers measured: which signals each adds to the embeddings (all: both, with the weights chosen for it).
SCORERS = {
    "embeddings alone": (),
    "+ words": (WORDS,),
    "+ vote": (VOTE,),
    "+ hubness": (HUBNESS,),
    "all": (WORDS, VOTE, HUBNESS),
}
_DISCOUNT = 1.0 / np.log2(np.arange(2, 12))


def split_articles(articles, bulk, *, recipe: ArticleTextRecipe, target: str, count_tokens):
    """Training pairs, validation and evaluation articles, as bench/train_bench.py splits them."""
    return build_pairs(
        articles,
        count_tokens=count_tokens,
        token_budget=DEFAULT_TOKEN_BUDGET,
        eval_fraction=0.5,  # unused: the shared bulk split decides
        recipe=recipe,
        target=target,
        validation_fraction=VALIDATION_FRACTION,
        is_heldout=lambda title: is_eval_article(title, from_bulk=title in bulk),
    )


def default_split(data: Path, cache: Path) -> tuple[list[ArticleTexts], ArticleTextRecipe, PairSplit]:
    """The bench's articles, the default recipe's article text, and the split of them that bench/train_bench.py
    makes for the default recipe (its target, the base model's tokenizer)."""
    articles, bulk, _ = load_articles(data, cache)
    knobs = product_recipe("default")
    recipe = ArticleTextRecipe.from_name(knobs["article_text"])
    count_tokens = tokenizer_counter(resolve_model_path(BASE_MODEL_ID))
    split = split_articles(articles, bulk, recipe=recipe, target=knobs["target"], count_tokens=count_tokens)
    return articles, recipe, split


def probe_split(
    doc: str, out: str, *corpora: str, models: bool = False
) -> tuple[argparse.Namespace, ArticleTextRecipe, dict[str, set[str]]]:
    """What each probe of the split starts with: its options parsed (the data, its cache, the bootstrap's samples,
    the report, and with ``models`` the folder of the trained seeds), the default recipe's article text, and the
    titles of each of ``corpora``: "training" (the articles trained on), "validation" or "evaluation"."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/wikiref-bench-articles.json.gz"))
    parser.add_argument("--bootstrap-samples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(out))
    if models:
        parser.add_argument(
            "--models",
            type=Path,
            default=Path("/tmp/fusion-models"),
            help="the seeds of `fusion_bench.py train`",
        )
    args = parser.parse_args()
    articles, recipe, split = default_split(args.data, args.cache)
    titles = {
        "validation": {a.title for a in split.validation_articles},
        "evaluation": {a.title for a in split.heldout_articles},
    }
    titles["training"] = {a.title for a in articles} - titles["validation"] - titles["evaluation"]
    return args, recipe, {corpus: titles[corpus] for corpus in corpora}


def sibling_pairs(pairs, seed: int) -> list[Pair]:
    """Issue 25's lever: references of the same training article as (anchor, positive) pairs beside the
    article -> reference pairs, so that training sees the reference-to-reference similarity the vote ranks by.

    Each article's references in a seeded random order, each paired with the next: about one pair per reference.
    """
    by_article: dict[int, list[Pair]] = {}
    for pair in pairs:
        by_article.setdefault(pair.article_id, []).append(pair)
    rng = random.Random(seed)
    siblings = []
    for article_id, own in by_article.items():
        texts = sorted({pair.chunk for pair in own})
        rng.shuffle(texts)
        siblings += [Pair(article_id, own[0].title, b, a) for a, b in itertools.pairwise(texts)]
    return siblings


def train_stage(args) -> int:
    articles, bulk, _ = load_articles(args.data, args.cache)
    knobs = product_recipe("default")
    if args.all_pairs:
        knobs["max_pairs"] = 0
    recipe = ArticleTextRecipe.from_name(knobs.pop("article_text"))
    target = knobs.pop("target")
    base = resolve_model_path(BASE_MODEL_ID)
    split = split_articles(articles, bulk, recipe=recipe, target=target, count_tokens=tokenizer_counter(base))
    device = resolve_device(args.device)
    for seed in (int(s) for s in args.seeds.split(",")):
        variant = ("-siblings" if args.siblings else "") + ("-all-pairs" if args.all_pairs else "")
        folder = args.models / f"default{variant}-seed{seed}"
        if (folder / "model").exists():
            print(f"{folder / 'model'} exists: seed {seed} already trained")
            continue
        pairs = split.train
        if args.siblings:
            pairs = [*split.train, *sibling_pairs(split.train, seed)]
            print(
                f"seed {seed}: {len(split.train)} article pairs + {len(pairs) - len(split.train)} sibling pairs"
            )
        result = train(
            base_model=base,
            pairs=pairs,
            output_dir=folder / "model",
            checkpoint_dir=folder / "checkpoints",
            config=TrainingConfig(**knobs, seed=seed, save_steps=10**9),
            device=device,
        )
        summary = {
            "seed": seed,
            "article_text": recipe.name,
            "params": result.params,
            "train_pairs": result.train_pairs,
            "steps": result.steps,
            "train_seconds": round(result.seconds, 1),
            "sibling_pairs": bool(args.siblings),
            "all_pairs": bool(args.all_pairs),
            "load_after": os.getloadavg(),
        }
        (folder / "training.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        print(
            f"seed {seed}: {result.steps} steps in {result.seconds:.0f} s -> {folder / 'model'}", flush=True
        )
    return 0


@contextlib.contextmanager
def scratch_server(prefix: str) -> Iterator[str]:
    """An embedded Postgres in a temporary folder for the length of the block: its URL; stopped and removed after."""
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as scratch:
        pgdata = Path(scratch) / "pgdata"
        server_url = ensure_embedded_server(pgdata, database="postgres")
        try:
            yield server_url
        finally:
            stop_embedded_server(pgdata)


def base_database(
    server_url: str, name: str, data: Path, titles: set[str], article_text: str
) -> tuple[Any, int]:
    """A new database ``name`` holding the saved pages of ``titles``, embedded by the base model as version
    ``base``: its engine, and how many articles it holds."""
    engine = make_engine(create_database(server_url, name))
    loaded = load_titles(engine, data, titles)
    register_and_embed(engine, "base", None, article_text)
    return engine, loaded


def create_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(libpq_url(server_url)).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


def load_titles(engine, root: Path, titles: set[str]) -> int:
    """Upsert the saved pages of ``titles`` through the scraper's extraction (as ``wikiref scrape`` stores them)."""
    with Session(engine) as session:
        return sum(
            len(upsert_pages(session=session, pages=records))
            for records in saved_page_batches(root, include_bulk=True, titles=titles)
        )


def register_and_embed(
    engine, name: str, artifact: str | None, article_text: str, *, references_from: str | None = None
) -> float:
    """A version ``name`` of the base model (``artifact`` None) or a trained folder, embedded; seconds taken.

    ``references_from``: a version of the same model whose reference embeddings are copied instead of encoded
    again (the base model on titles differs from the base model only in its article text).
    """
    with Session(engine) as session:
        registry.create_version(
            session=session,
            name=name,
            base_model=BASE_MODEL_ID,
            params={},
            dataset_fingerprint="fusion-bench",
            dataset_counts={},
            metrics={},
            loss_log=[],
            artifact_path=artifact,
            article_text=article_text,
        )
        if references_from is not None:
            session.execute(
                text(
                    "INSERT INTO reference_embeddings (model_version_id, reference_id, content_hash, embedding) "
                    "SELECT (SELECT id FROM model_versions WHERE name = :name), reference_id, content_hash, "
                    "embedding FROM reference_embeddings "
                    "WHERE model_version_id = (SELECT id FROM model_versions WHERE name = :source)"
                ),
                {"name": name, "source": references_from},
            )
        session.commit()
    started = time.perf_counter()
    settings = get_settings()
    # The product's embed settings (wikiref embed's defaults), on the torch backend the models were measured with.
    request = embedding.EmbedRequest.from_settings(
        settings, embedding.resolve_version(engine, name, settings), batch_size=64, backend="torch"
    )
    embedding.embed_pending(engine, request)
    return time.perf_counter() - started


def corpus_of(
    engine, references_per_article: int | None = None
) -> tuple[list[tuple[int, str]], dict[int, int], dict[int, list[int]]]:
    """(article id, title) with references, each reference's article, each article's references.

    ``references_per_article``: the queried references (``owner``) are at most that many of each article's,
    evenly spaced in the order stored (the article's order); each article's references stay complete.
    """
    with Session(engine) as session:
        rows = session.execute(
            text(
                "SELECT a.id, a.title, r.id FROM articles a JOIN article_references r ON r.article_id = a.id "
                "ORDER BY a.title, r.id"
            )
        ).all()
    articles: dict[int, str] = {}
    owner: dict[int, int] = {}
    references: dict[int, list[int]] = {}
    for article_id, title, reference_id in rows:
        articles[article_id] = title
        owner[reference_id] = article_id
        references.setdefault(article_id, []).append(reference_id)
    if references_per_article:
        owner = {
            reference_id: article_id
            for article_id, ids in references.items()
            for reference_id in ids[:: max(1, len(ids) // references_per_article)][:references_per_article]
        }
    return list(articles.items()), owner, references


def ndcg_at_10(found: list[int], own: set[int]) -> float:
    relevant = np.array([reference in own for reference in found[:10]], dtype=float)
    ideal = _DISCOUNT[: min(10, len(own))].sum()
    return float((relevant * _DISCOUNT[: len(relevant)]).sum() / ideal) if ideal else 0.0


def ndcg_scores(article_ids: list[int], ndcg: np.ndarray) -> ArticleScores:
    """Per-article NDCG@10 as the paired bootstrap takes it (no accuracy@1 measured)."""
    return ArticleScores(
        article_ids=tuple(article_ids),
        per_article={"ndcg@10": ndcg},
        correct=np.zeros(len(article_ids)),
        references=np.ones(len(article_ids)),
    )


def per_article_ndcg(
    connection,
    articles: list[tuple[int, str]],
    references: dict[int, list[int]],
    fusion: bool,
    version: str = "base",
) -> ArticleScores:
    """NDCG@10 of ``similar_references(title, 10, version)`` for each of ``articles`` against its ``references``."""
    ndcg = [
        ndcg_at_10(
            list(
                connection.execute(
                    text("SELECT reference_id FROM wikiref.similar_references(:t, 10, :v, fusion => :f)"),
                    {"t": title, "v": version, "f": fusion},
                ).scalars()
            ),
            set(references[article_id]),
        )
        for article_id, title in articles
    ]
    return ndcg_scores([a for a, _ in articles], np.array(ndcg))


def ndcg_with_replaced(
    engine, replacement: str, articles: list[tuple[int, str]], references: dict[int, list[int]]
) -> ArticleScores:
    """``per_article_ndcg`` of the base model fused, with a SQL function replaced (``CREATE OR REPLACE``) in a
    transaction rolled back after, so that the served function stays."""
    with engine.connect() as connection:
        connection.execute(text(replacement))
        scores = per_article_ndcg(connection, articles, references, fusion=True)
        connection.rollback()
    return scores


def set_weights(engine, version: str, weights: dict[str, dict[str, float]]) -> None:
    with Session(engine) as session:
        version_id = registry.get_version(session=session, name=version).id
        stored = registry.fusion_weights(session=session, version_id=version_id)
        registry.set_fusion_weights(session=session, version_id=version_id, weights={**stored, **weights})
        session.commit()


def title_vectors(engines: dict[str, Any], artifact: str | None) -> dict[str, dict[int, np.ndarray]]:
    """Per database, each article's title as free text embedded by the version's model (what ``wikiref search``
    passes), the model loaded once."""
    encoder = TorchEncoder(
        EncoderConfig(model_path=resolve_model_path(artifact or BASE_MODEL_ID), backend="torch")
    )
    vectors = {}
    for corpus, engine in engines.items():
        articles, _, _ = corpus_of(engine)
        encoded = encoder.encode([title for _, title in articles])
        vectors[corpus] = {article_id: v for (article_id, _), v in zip(articles, encoded, strict=True)}
    return vectors


def search_text(
    connection, title: str, vector: np.ndarray | None, *, k: int, version: str, fusion: bool
) -> list[dict[str, Any]]:
    """The rows of ``wikiref.search_text`` as ``wikiref search`` calls it (wikiref.db.search.run)."""
    found = search.run(
        session=Session(bind=connection),
        function="search_text",
        query=title,
        query_embedding=vector,
        k=k,
        model_version=version,
        fusion=fusion,
    )
    return [dict(zip(found.columns, row, strict=True)) for row in found.rows]


def candidate_pool(rows, signals: tuple[str, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows of (id, then one value per name in ``signals``) as the ids and each signal's values (NULL: NaN, as
    ``fuse`` reads a missing vote)."""
    return np.array([r[0] for r in rows]), {
        name: np.array([np.nan if r[i] is None else r[i] for r in rows], dtype=float)
        for i, name in enumerate(signals, start=1)
    }


def similar_references_pools(
    connection, articles: list[tuple[int, str]], references: dict[int, list[int]], version: str
) -> list[tuple[np.ndarray, dict[str, np.ndarray], set[int], np.ndarray]]:
    """Per article, its whole ``similar_references`` pool: the ids, each signal (hubness too), its own references,
    and which reference names the article (1.0 where one does), from one fused call with every candidate."""
    pools = []
    for article_id, title in articles:
        rows = connection.execute(
            text(
                "SELECT reference_id, similarity, words, hubness, names_article "
                "FROM wikiref.similar_references(:title, 1000, :v)"
            ),
            {"title": title, "v": version},
        ).all()
        ids, signals = candidate_pool([r[:4] for r in rows], (EMBEDDING, WORDS, HUBNESS))
        names = np.array([r[4] for r in rows], dtype=float)
        pools.append((ids, signals, set(references[article_id]), names))
    return pools


def ranked_ids(
    ids: np.ndarray, signals: dict[str, np.ndarray], weights: dict[str, float], lift: np.ndarray | None = None
) -> np.ndarray:
    """A pool's ids in the fused order the SQL gives (ties by id); ``lift``: similar_references' lift for a
    reference that names the article, added as it is."""
    fused = fuse(signals, weights)
    if lift is not None:
        fused = fused + lift
    return ids[np.lexsort((ids, -fused))]


def choose_weights(
    engine, version: str, vectors: dict[int, np.ndarray], per_article: int | None
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per scorer, the grid's best weights on the validation database, and every grid point's score.

    One fused call per query returns every candidate with each signal's raw value; wikiref.models.fusion.fuse
    re-ranks those candidates for each grid point (the z-scores are over the call's candidates, as in SQL).
    """
    articles, owner, references = corpus_of(engine, per_article)
    searched: list[tuple[np.ndarray, dict[str, np.ndarray], set[int]]] = []
    reverse: list[tuple[np.ndarray, dict[str, np.ndarray], int]] = []
    with engine.connect() as connection:
        lift = connection.execute(text("SELECT wikiref.names_article_weight()")).scalar_one()
        forward = similar_references_pools(connection, articles, references, version)
        for article_id, title in articles:
            rows = search_text(connection, title, vectors[article_id], k=1000, version=version, fusion=True)
            ids, signals = candidate_pool(
                [(r["reference_id"], r["similarity"], r["words"]) for r in rows], (EMBEDDING, WORDS)
            )
            searched.append((ids, signals, set(references[article_id])))
        for reference_id, article_id in owner.items():
            rows = connection.execute(
                text(
                    "SELECT article_id, similarity, words, vote "
                    "FROM wikiref.articles_for_reference(:id, 1000, :v)"
                ),
                {"id": reference_id, "v": version},
            ).all()
            ids, signals = candidate_pool(rows, (EMBEDDING, WORDS, VOTE))
            reverse.append((ids, signals, article_id))

    grid: dict[str, Any] = {"similar_references": [], "search_text": [], "articles_for_reference": []}
    for w, h in itertools.product(WORDS_GRID, HUBNESS_GRID):
        value = statistics.fmean(
            ndcg_at_10(list(ranked_ids(*q[:2], {WORDS: w, HUBNESS: h}, lift * q[3])), q[2]) for q in forward
        )
        grid["similar_references"].append({WORDS: w, HUBNESS: h, "ndcg@10": round(value, 5)})
    for w in WORDS_GRID:
        value = statistics.fmean(ndcg_at_10(list(ranked_ids(*q[:2], {WORDS: w})), q[2]) for q in searched)
        grid["search_text"].append({WORDS: w, "ndcg@10": round(value, 5)})
    for w, v in itertools.product(WORDS_GRID, VOTE_GRID):
        value = statistics.fmean(float(ranked_ids(*q[:2], {WORDS: w, VOTE: v})[0] == q[2]) for q in reverse)
        grid["articles_for_reference"].append({WORDS: w, VOTE: v, REVERSE_METRIC: round(value, 5)})

    def best(entries: list[dict[str, float]], metric: str, allowed: tuple[str, ...]) -> dict[str, float]:
        weighed = (WORDS, VOTE, HUBNESS)
        usable = [e for e in entries if all(e.get(s, 0.0) == 0.0 for s in weighed if s not in allowed)]
        top = max(e[metric] for e in usable)
        # Ties go to the smaller weights: a signal is added only where it measurably helps.
        chosen = min(
            (e for e in usable if e[metric] == top),
            key=lambda e: (sum(e.get(s, 0) for s in weighed), e[WORDS]),
        )
        return {s: chosen[s] for s in weighed if s in chosen}

    chosen = {
        scorer: {
            "similar_references": best(grid["similar_references"], "ndcg@10", signals),
            "articles_for_reference": best(grid["articles_for_reference"], REVERSE_METRIC, signals),
            "search_text": best(grid["search_text"], "ndcg@10", signals),
        }
        for scorer, signals in SCORERS.items()
        if signals
    }
    queries = {"articles": len(forward), "references": len(reverse)}
    return chosen, {"queries": queries, "grid": grid}


def score_served(
    engine, version: str, *, fusion: bool, per_article: int | None
) -> tuple[ArticleScores, float]:
    """NDCG@10 and accuracy@1 per evaluation article from the SQL functions as they serve now; seconds taken."""
    articles, owner, references = corpus_of(engine, per_article)
    index = {article_id: i for i, (article_id, _) in enumerate(articles)}
    ndcg = np.zeros(len(articles))
    correct = np.zeros(len(articles))
    queried = np.zeros(len(articles))
    started = time.perf_counter()
    with engine.connect() as connection:
        for article_id, title in articles:
            found = connection.execute(
                text("SELECT reference_id FROM wikiref.similar_references(:title, 10, :v, fusion => :f)"),
                {"title": title, "v": version, "f": fusion},
            ).scalars()
            ndcg[index[article_id]] = ndcg_at_10(list(found), set(references[article_id]))
        for reference_id, article_id in owner.items():
            top = connection.execute(
                text("SELECT article_id FROM wikiref.articles_for_reference(:id, 1, :v, fusion => :f)"),
                {"id": reference_id, "v": version, "f": fusion},
            ).scalar_one()
            correct[index[article_id]] += top == article_id
            queried[index[article_id]] += 1
    scores = ArticleScores(
        article_ids=tuple(article_id for article_id, _ in articles),
        per_article={"ndcg@10": ndcg},
        correct=correct,
        references=queried,
    )
    return scores, time.perf_counter() - started


def score_search_text(
    engine, version: str, vectors: dict[int, np.ndarray] | None, *, fusion: bool
) -> ArticleScores:
    """``search_text(title, title's embedding)`` NDCG@10 per article against its own references (``vectors``
    None: the words alone)."""
    articles, _, references = corpus_of(engine)
    ndcg = np.zeros(len(articles))
    with engine.connect() as connection:
        for i, (article_id, title) in enumerate(articles):
            vector = vectors[article_id] if vectors else None
            rows = search_text(connection, title, vector, k=10, version=version, fusion=fusion)
            ndcg[i] = ndcg_at_10([r["reference_id"] for r in rows], set(references[article_id]))
    return ArticleScores(
        article_ids=tuple(article_id for article_id, _ in articles),
        per_article={"ndcg@10": ndcg},
        correct=np.zeros(len(articles)),
        references=np.ones(len(articles)),
    )


def trained_seeds(models: Path) -> dict[str, str]:
    """The versions stage ``train`` left in ``models`` (default-seed1, ...): each one's model folder."""
    folders = sorted(models.glob("default-*seed*")) if models.exists() else []
    return {folder.name: str(folder / "model") for folder in folders if (folder / "model").exists()}


def measure_stage(args) -> int:
    _, recipe, split = default_split(args.data, args.cache)
    corpora = {
        "validation": {a.title for a in split.validation_articles},
        "evaluation": {a.title for a in split.heldout_articles},
    }
    if args.limit:
        # Proxy runs: the first N articles of each corpus by title hash (as train_bench.py's --eval-limit).
        corpora = {
            name: set(sorted(titles, key=heldout_score)[: args.limit]) for name, titles in corpora.items()
        }
    versions: dict[str, tuple[str | None, str]] = {
        "base": (None, recipe.name),
        "base-titles": (None, TITLE_ONLY.name),
    }
    versions.update({name: (artifact, recipe.name) for name, artifact in trained_seeds(args.models).items()})
    if args.versions:
        # base-titles copies base's reference embeddings: it needs base in the same run.
        wanted = set(args.versions.split(",")) | (
            {"base"} if "base-titles" in args.versions.split(",") else set()
        )
        versions = {name: value for name, value in versions.items() if name in wanted}
    report: dict[str, Any] = {
        "protocol": "validation and evaluation articles of bench/train_bench.py's split, each in a database of its "
        "own; weights chosen on validation, scored through the SQL functions on evaluation",
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "load_before": os.getloadavg(),
        "article_text": recipe.name,
        "references_per_article": args.references_per_article or "all",
        "corpora": {},
        "versions": {},
    }

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")

    with scratch_server("fusion-bench") as server_url:
        engines = {}
        try:
            for corpus, titles in corpora.items():
                engine = engines[corpus] = make_engine(create_database(server_url, f"fusion_{corpus}"))
                loaded = load_titles(engine, args.data, titles)
                _, owner, references = corpus_of(engine, args.references_per_article)
                stored = sum(len(ids) for ids in references.values())
                report["corpora"][corpus] = {"articles": loaded, "references": stored, "queried": len(owner)}
                print(f"{corpus}: {loaded} articles, {stored} references ({len(owner)} queried)", flush=True)
            scores: dict[str, dict[str, ArticleScores]] = {}
            for name, (artifact, article_text) in versions.items():
                entry: dict[str, Any] = {"article_text": article_text, "artifact": artifact}
                report["versions"][name] = entry
                entry["embed_seconds"] = {
                    corpus: round(
                        register_and_embed(
                            engine,
                            name,
                            artifact,
                            article_text,
                            references_from="base" if name == "base-titles" else None,
                        ),
                        1,
                    )
                    for corpus, engine in engines.items()
                }
                per_article = args.references_per_article
                searching = name != "base-titles"  # the same model as base: the same search_text answers
                vectors = title_vectors(engines, artifact) if searching else {}
                chosen, validation = (
                    choose_weights(engines["validation"], name, vectors["validation"], per_article)
                    if searching
                    else ({}, {})
                )
                entry["weights"], entry["validation"] = chosen, validation
                alone, seconds = score_served(
                    engines["evaluation"], name, fusion=False, per_article=per_article
                )
                scores[name] = {"embeddings alone": alone}
                entry["seconds"] = {"embeddings alone": round(seconds, 1)}
                for scorer, weights in chosen.items():
                    set_weights(engines["evaluation"], name, weights)
                    scores[name][scorer], seconds = score_served(
                        engines["evaluation"], name, fusion=True, per_article=per_article
                    )
                    entry["seconds"][scorer] = round(seconds, 1)
                if searching:
                    # The weights of "all" are stored last: search_text fuses with its chosen words weight.
                    evaluation, vectors_eval = engines["evaluation"], vectors["evaluation"]
                    searched = {
                        "embeddings alone": score_search_text(evaluation, name, vectors_eval, fusion=False),
                        "words alone": score_search_text(evaluation, name, None, fusion=True),
                        "fused": score_search_text(evaluation, name, vectors_eval, fusion=True),
                    }
                    entry["search_text"] = {
                        "weights": chosen["all"]["search_text"],
                        "ndcg@10": {label: round(s.metrics()["ndcg@10"], 5) for label, s in searched.items()},
                        "deltas vs embeddings alone": {
                            label: paired_bootstrap(
                                s, searched["embeddings alone"], samples=args.bootstrap_samples
                            )["ndcg@10"].as_dict()
                            for label, s in searched.items()
                            if label != "embeddings alone"
                        },
                    }
                    print(f"{name}: search_text {entry['search_text']['ndcg@10']}", flush=True)
                print(
                    f"{name}: "
                    + "; ".join(
                        f"{scorer} " + ", ".join(f"{m} {s.metrics()[m]:.4f}" for m in HEADLINE)
                        for scorer, s in scores[name].items()
                    ),
                    flush=True,
                )
                add_deltas(report, scores, args.bootstrap_samples)
                write()
        finally:
            for engine in engines.values():
                engine.dispose()
    report["load_after"] = os.getloadavg()
    write()
    print(f"wrote {args.out}")
    return 0


def combine_stage(args) -> int:
    """One report from measure runs of the same corpora (each version measured once), deltas over all of them."""
    report: dict[str, Any] = {"runs": [], "versions": {}}
    scores: dict[str, dict[str, ArticleScores]] = {}
    for path in args.inputs:
        run = json.loads(path.read_text(encoding="utf-8"))
        versions = run.pop("versions")
        report["runs"].append({**run, "file": path.name, "versions": sorted(versions)})
        for key in ("protocol", "article_text", "references_per_article", "corpora"):
            if report.setdefault(key, run[key]) != run[key]:
                raise SystemExit(f"{path}: {key} differs from the first run's: not the same measurement")
        for name, entry in versions.items():
            scores[name] = {
                scorer: ArticleScores(
                    article_ids=tuple(kept["article_ids"]),
                    per_article={"ndcg@10": np.array(kept["ndcg@10"])},
                    correct=np.array(kept["correct"]),
                    references=np.array(kept["references"]),
                )
                for scorer, kept in entry["per_article"].items()
            }
            report["versions"][name] = entry
    add_deltas(report, scores, args.bootstrap_samples)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {args.out}: " + ", ".join(report["versions"]))
    return 0


def add_deltas(report: dict[str, Any], scores: dict[str, dict[str, ArticleScores]], samples: int) -> None:
    """Each version's metrics, per-article scores and deltas with paired bootstrap CIs over the articles:
    against its own embeddings alone, the base model with the same scorer, and the base model on titles."""
    for name, by_scorer in scores.items():
        entry = report["versions"][name]
        entry["metrics"] = {scorer: s.metrics() for scorer, s in by_scorer.items()}
        entry["deltas"] = {}
        for scorer, s in by_scorer.items():
            others = {"vs embeddings alone": by_scorer["embeddings alone"]}
            if name != "base" and scorer in scores.get("base", {}):
                others["vs base, same scorer"] = scores["base"][scorer]
            if "base-titles" in scores:
                others["vs base on titles"] = scores["base-titles"]["embeddings alone"]
            entry["deltas"][scorer] = {
                label: {m: d.as_dict() for m, d in paired_bootstrap(s, other, samples=samples).items()}
                for label, other in others.items()
                if other is not s
            }
        entry["per_article"] = {
            scorer: {
                "article_ids": list(s.article_ids),
                "ndcg@10": [round(float(x), 5) for x in s.per_article["ndcg@10"]],
                "correct": s.correct.tolist(),
                "references": s.references.tolist(),
            }
            for scorer, s in by_scorer.items()
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("train", "measure", "combine"))
    parser.add_argument(
        "--data", type=Path, default=SHARED, help="saved-pages folder (MANIFEST.tsv, bulk.tar.gz)"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/wikiref-bench-articles.json.gz"))
    parser.add_argument("--models", type=Path, help="one folder per trained seed (outside the repo)")
    parser.add_argument(
        "--versions", help="measure: only these versions (comma-separated: base, base-titles, default-seedN)"
    )
    parser.add_argument("--inputs", type=Path, nargs="+", help="combine: the measure reports to join")
    parser.add_argument("--seeds", default="1", help="train: comma-separated seeds")
    parser.add_argument(
        "--siblings",
        action="store_true",
        help="train: add pairs of references of the same article (folders default-siblings-seedN)",
    )
    parser.add_argument(
        "--all-pairs",
        action="store_true",
        help="train: one epoch of every pair instead of the default's max_pairs (folders default-all-pairs-seedN; "
        "about 105 minutes a seed on a 2-core CPU)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bootstrap-samples", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=None, help="proxy runs: N articles of each corpus")
    parser.add_argument(
        "--references-per-article",
        type=int,
        default=5,
        help="accuracy@1 over at most this many references of each article (0: every reference)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/fusion.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.stage == "combine":
        return combine_stage(args)
    if args.models is None:
        parser.error("--models is required for train and measure")
    if args.stage == "train":
        return train_stage(args)
    return measure_stage(args)


if __name__ == "__main__":
    sys.exit(main())
