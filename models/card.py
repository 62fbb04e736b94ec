"""The model card (README.md) of a trained version: data, training, its loss as a plot, base vs fine-tuned with
confidence intervals (fused as served, and the embeddings alone), its fusion weights, and the gate's verdict."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wikiref.models.evaluate import METRICS, REVERSE_METRIC

_TAGS = ("sentence-transformers", "sentence-similarity", "feature-extraction", "wikipedia", "wikiref")
LOSS_PLOT = "training_loss.svg"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def loss_table(loss_log: Sequence[Mapping[str, Any]]) -> str:
    return _table(
        ("step", "epoch", "training loss", "learning rate"),
        [(e["step"], f"{e['epoch']:.3f}", f"{e['loss']:.4f}", f"{e['learning_rate']:.2e}") for e in loss_log],
    )


def loss_plot_svg(loss_log: Sequence[Mapping[str, Any]], *, width: int = 640, height: int = 280) -> str:
    """The training loss against the step as a self-contained SVG line chart (no plotting library needed)."""
    left, right, top, bottom = 56, 16, 24, 40
    points = [(float(e["step"]), float(e["loss"])) for e in loss_log]
    if not points:
        points = [(0.0, 0.0)]
    steps = [s for s, _ in points]
    losses = [v for _, v in points]
    x0, x1 = min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1
    y0, y1 = min(0.0, min(losses)), max(losses) * 1.05 or 1.0

    def x(step: float) -> float:
        return left + (step - x0) / (x1 - x0) * (width - left - right)

    def y(loss: float) -> float:
        return top + (1 - (loss - y0) / (y1 - y0)) * (height - top - bottom)

    line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
    ticks = []
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        ticks.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.2f}</text>'
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#ddd"/>'
        )
    for i in range(5):
        step = x0 + (x1 - x0) * i / 4
        ticks.append(
            f'<text x="{x(step):.1f}" y="{height - bottom + 16}" text-anchor="middle">{step:.0f}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
        f'<rect width="{width}" height="{height}" fill="white"/>{"".join(ticks)}'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{line}"/>'
        f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">step</text>'
        f'<text x="14" y="{height / 2}" text-anchor="middle" transform="rotate(-90 14 {height / 2})">'
        "training loss</text>"
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">Training loss</text></svg>'
    )


def svg_data_uri(svg: str) -> str:
    """An SVG as a data: URI, so that markdown shows it without a file server (the Prefect UI, say)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _ci(entry: Mapping[str, float] | None) -> str:
    return f"{entry['delta']:+.4f} [{entry['ci_low']:+.4f}, {entry['ci_high']:+.4f}]" if entry else "-"


def metrics_rows(
    base_on_titles: Mapping[str, float],
    base: Mapping[str, float],
    finetuned: Mapping[str, float],
    deltas: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> list[dict[str, Any]]:
    """Per metric: base on titles, base on the version's article text, fine-tuned, deltas with 95% CIs."""
    rows = []
    for name in METRICS:
        if name not in base or name not in finetuned:
            continue
        row: dict[str, Any] = {
            "metric": name,
            "base on titles": round(base_on_titles.get(name, float("nan")), 4),
            "base": round(base[name], 4),
            "fine-tuned": round(finetuned[name], 4),
            "vs base [95% CI]": _ci(deltas.get("vs_base", {}).get(name)),
            "vs base on titles [95% CI]": _ci(deltas.get("vs_base_on_titles", {}).get(name)),
        }
        if "vs_active" in deltas:
            row["vs active [95% CI]"] = _ci(deltas["vs_active"].get(name))
        rows.append(row)
    return rows


def fusion_table(fusion_weights: Mapping[str, Mapping[str, float]]) -> str:
    """Each SQL function's weights, relative to the embeddings' (always 1); "-" where it has no such signal."""
    signals = sorted({signal for weights in fusion_weights.values() for signal in weights})
    return _table(
        ("SQL function", "embeddings", *signals),
        [
            (f"`{function}`", 1, *(weights.get(signal, "-") for signal in signals))
            for function, weights in fusion_weights.items()
        ],
    )


def gate_line(metric: str, verdict: str, reason: str) -> str:
    return f"**Gate ({metric}): {verdict}.** {reason}"


def render_model_card(
    *,
    name: str,
    base_model: str,
    params: Mapping[str, Any],
    dataset_fingerprint: str,
    dataset_counts: Mapping[str, Any],
    loss_log: Sequence[Mapping[str, Any]],
    base_metrics: Mapping[str, float],
    base_title_metrics: Mapping[str, float],
    finetuned_metrics: Mapping[str, float],
    deltas: Mapping[str, Mapping[str, Mapping[str, float]]],
    article_text: str,
    gate: str,
    samples_per_second: float,
    fusion_weights: Mapping[str, Mapping[str, float]],
    embedding_metrics: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    front_matter = "\n".join(
        [
            "---",
            "library_name: sentence-transformers",
            "pipeline_tag: sentence-similarity",
            f"base_model: {base_model}",
        ]
        + ["tags:"]
        + [f"- {tag}" for tag in _TAGS]
        + ["---"]
    )
    hyperparameters = _table(("parameter", "value"), sorted(params.items()))
    counts = _table(("count", "value"), list(dataset_counts.items()))
    rows = metrics_rows(base_title_metrics, base_metrics, finetuned_metrics, deltas)
    metrics = _table(list(rows[0]), [list(row.values()) for row in rows]) if rows else ""
    alone = ""
    if embedding_metrics:
        alone_rows = metrics_rows(
            base_title_metrics,
            embedding_metrics["base"],
            embedding_metrics["finetuned"],
            {"vs_base": deltas.get("embeddings_alone_vs_base", {})},
        )
        alone = (
            "The embeddings alone (cosine similarity only, `fusion => false`), for comparison:\n\n"
            + _table(list(alone_rows[0]), [list(row.values()) for row in alone_rows])
            if alone_rows
            else ""
        )
    return f"""{front_matter}

# wikiref model version `{name}`

A [sentence-transformers](https://www.sbert.net) model fine-tuned from `{base_model}` to put a Wikipedia
article's text close to the references it cites, and far from other articles' references. It maps text to
normalised 384-dimensional vectors compared by cosine similarity.

**Article text: `{article_text}`.** An article is embedded, trained on and served as this text
(`wikiref.models.article_text.ArticleTextRecipe`); embed articles with the same recipe when using this model.

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/{name}")
embeddings = model.encode(["Dog", "Coppinger, Raymond (2001). Dogs: a Startling New Understanding ..."])
```

## Training data

(article text, reference) pairs, split by article into training and held-out articles (by a hash of the
title, so an article stays on its side as the corpus grows). Wikipedia text is licensed CC BY-SA 4.0.
Dataset fingerprint: `{dataset_fingerprint}`.

{counts}

## Training

`SentenceTransformerTrainer`, {samples_per_second:.1f} training samples/s.

{hyperparameters}

### Training loss

![training loss]({LOSS_PLOT})

{loss_table(loss_log)}

## Serving: fused scores

The SQL functions of wikiref rank by `z(embeddings - w_hubness * hubness) + w_words * z(words) + w_vote * z(vote)`
(each signal z-normalised over a call's candidates; hubness, in `similar_references`: a reference's mean cosine to
its 10 nearest articles; words: BM25 of the query's text; vote: the best cosine between a reference and an
article's other references). This version's weights, chosen by its training run on validation articles
(neither trained on nor held out):

{fusion_table(fusion_weights)}

## Evaluation

On the held-out articles, never trained on: `ndcg@10`, `mrr@10`, `recall@10`: each article's text as the query
against every single reference of every held-out article (relevant: its own references; what
`similar_references` answers); `{REVERSE_METRIC}`: for each held-out reference, whether its own article is the
nearest of all held-out articles (what `articles_for_reference` answers); `chunk_ndcg@10`: the same as the first
against chunks of consecutive references. "base" scores the base model with this version's article text, "base
on titles" with the title alone. Both directions are ranked as the SQL functions serve them: fused with the
words (BM25) and hubness and, for `{REVERSE_METRIC}`, the vote of each article's other references (each version with its own
fusion weights; "base on titles" is the embeddings alone). Changes come with a 95% paired bootstrap interval over
the held-out articles.

{metrics}

{alone}

{gate}
"""


def write_model_card(folder: Path, *, loss_log: Sequence[Mapping[str, Any]], **card: Any) -> Path:
    """README.md and the loss plot it shows, in the version's folder."""
    (folder / LOSS_PLOT).write_text(loss_plot_svg(loss_log), encoding="utf-8")
    path = folder / "README.md"
    path.write_text(render_model_card(loss_log=loss_log, **card), encoding="utf-8")
    return path
