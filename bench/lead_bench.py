"""Lead bench: the base model, no training, with each article text (title vs title + lead under a budget).

Run from the repository root:  python bench/lead_bench.py [--out bench/results/lead_bench.json]

On the evaluation articles of ``bulk.tar.gz`` (``bench/corpus_split.py``: never trained on by the training
bench), extracted with ``wikiref.flows.mediawiki.extract.extract_page`` as the scraper does, for each article text:

* title -> each single reference: NDCG@10 of the article's text as the query against every reference of the
  evaluated articles (relevant: the article's own references; binary gain), averaged over articles;
* reference -> article: accuracy@1 of each reference's nearest article text among all evaluated articles
  (what ``wikiref.articles_for_reference`` answers).

References are encoded once; only the article side changes between rows. Article texts come from
``wikiref.models.article_text.ArticleTextRecipe.compose`` (the served definition), except "first sentence", which is a
comparison point only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.corpus_split import is_eval_article
from wikiref.flows.mediawiki.extract import extract_page
from wikiref.flows.mediawiki.saved import iter_saved_pages
from wikiref.models.article_text import ArticleTextRecipe
from wikiref.models.base import BASE_MODEL_ID, resolve_model_path

SHARED = REPO_ROOT.parent / "shared" / "data" / "wikipedia"
BUDGETS = (20, 40, 60, 80, 120, 160, 256)
WHOLE_LEAD = 100_000
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s+[A-Z0-9\"“‘(]|$)")


def first_sentence(lead: str | None) -> str | None:
    if not lead:
        return None
    match = _FIRST_SENTENCE.match(lead)
    return match.group(1) if match else lead


def load_articles() -> list[tuple[str, str | None, list[str]]]:
    """(title, lead, reference texts) of the evaluation articles that have references, in bulk order."""
    articles = []
    for page in iter_saved_pages(SHARED, include_bulk=True):
        if page.format != "bulk" or not is_eval_article(page.title, from_bulk=True):
            continue
        extracted = extract_page(page.html)
        references = [ref.text for ref in extracted.references if ref.text.strip()]
        if references:
            articles.append((page.title, extracted.lead, references))
    return articles


def ndcg_at_10(scores: np.ndarray, owner: np.ndarray) -> float:
    """Mean NDCG@10 over queries (rows of ``scores``: query i's relevant corpus items are ``owner == i``)."""
    discounts = 1.0 / np.log2(np.arange(2, 12))
    values = []
    for query, row in enumerate(scores):
        top = np.argpartition(-row, 10)[:10]
        top = top[np.argsort(-row[top])]
        gains = (owner[top] == query).astype(float)
        relevant = int((owner == query).sum())
        ideal = discounts[: min(10, relevant)].sum()
        values.append(float((gains * discounts).sum() / ideal))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "lead_bench.json")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    articles = load_articles()
    references = [text for _title, _lead, refs in articles for text in refs]
    owner = np.array([index for index, (_t, _l, refs) in enumerate(articles) for _ in refs])
    with_lead = sum(1 for _t, lead, _r in articles if lead)
    print(f"{len(articles)} evaluation articles ({with_lead} with a lead), {len(references)} references")

    model = SentenceTransformer(resolve_model_path(BASE_MODEL_ID), device="cpu")
    encode_started = time.perf_counter()
    reference_vectors = model.encode(references, batch_size=args.batch_size, normalize_embeddings=True)
    reference_seconds = time.perf_counter() - encode_started

    variants: dict[str, list[str]] = {
        "title": [ArticleTextRecipe(0).compose(title, lead) for title, lead, _ in articles],
        "title + first sentence": [
            ArticleTextRecipe(WHOLE_LEAD).compose(title, first_sentence(lead)) for title, lead, _ in articles
        ],
    }
    for budget in BUDGETS:
        recipe = ArticleTextRecipe(budget)
        variants[f"{recipe.name}"] = [recipe.compose(title, lead) for title, lead, _ in articles]
    variants["title + whole lead"] = [
        ArticleTextRecipe(WHOLE_LEAD).compose(t, lead) for t, lead, _ in articles
    ]

    rows = []
    for name, texts in variants.items():
        article_vectors = model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
        scores = article_vectors @ reference_vectors.T  # articles x references
        ndcg = ndcg_at_10(scores, owner)
        accuracy = float((scores.argmax(axis=0) == owner).mean())
        words = float(np.mean([len(text.split()) for text in texts]))
        rows.append(
            {"article_text": name, "ndcg@10": ndcg, "ref_to_article_acc@1": accuracy, "mean_words": words}
        )
        print(f"{name:24s} NDCG@10 {ndcg:.4f}  acc@1 {accuracy:.4f}  ({words:.1f} words)")

    base = rows[0]
    for row in rows:
        row["ndcg@10_gain"] = row["ndcg@10"] - base["ndcg@10"]
        row["acc@1_gain"] = row["ref_to_article_acc@1"] - base["ref_to_article_acc@1"]
    result = {
        "bench": "lead_bench",
        "model": BASE_MODEL_ID,
        "training": "none (base model)",
        "split": "bulk.tar.gz articles with sha256(title) % 5 < 2 (bench/corpus_split.py)",
        "articles": len(articles),
        "articles_with_lead": with_lead,
        "references": len(references),
        "max_seq_length": model.max_seq_length,
        "reference_encoding_seconds": round(reference_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
