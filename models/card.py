"""The model card (README.md) of a trained version: what it was trained on, how, its loss log and metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models.evaluate import METRICS

_TAGS = ("sentence-transformers", "sentence-similarity", "feature-extraction", "wikipedia", "wikiref")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def loss_table(loss_log: Sequence[Mapping[str, Any]]) -> str:
    return _table(
        ("step", "epoch", "training loss", "learning rate"),
        [(e["step"], f"{e['epoch']:.3f}", f"{e['loss']:.4f}", f"{e['learning_rate']:.2e}") for e in loss_log],
    )


def metrics_table(base: Mapping[str, float], finetuned: Mapping[str, float]) -> str:
    return _table(
        ("metric", "base", "fine-tuned", "change"),
        [
            (name, f"{base[name]:.4f}", f"{finetuned[name]:.4f}", f"{finetuned[name] - base[name]:+.4f}")
            for name in METRICS
            if name in base and name in finetuned
        ],
    )


def render_model_card(
    *,
    name: str,
    base_model: str,
    params: Mapping[str, Any],
    dataset_fingerprint: str,
    dataset_counts: Mapping[str, Any],
    loss_log: Sequence[Mapping[str, Any]],
    base_metrics: Mapping[str, float],
    finetuned_metrics: Mapping[str, float],
    samples_per_second: float,
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
    return f"""{front_matter}

# wikiref model version `{name}`

A [sentence-transformers](https://www.sbert.net) model fine-tuned from `{base_model}` to put a Wikipedia
article's title close to the references it cites, and far from other articles' references. It maps text to
normalised 384-dimensional vectors compared by cosine similarity.

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/{name}")
embeddings = model.encode(["Dog", "Coppinger, Raymond (2001). Dogs: a Startling New Understanding ..."])
```

## Training data

(article title, reference chunk) pairs: consecutive references of one article joined up to a token budget,
split by article into training and held-out articles. Wikipedia text is licensed CC BY-SA 4.0.
Dataset fingerprint: `{dataset_fingerprint}`.

{counts}

## Training

`SentenceTransformerTrainer` with `MultipleNegativesRankingLoss` (in-batch negatives, cosine similarity),
{samples_per_second:.1f} training samples/s.

{hyperparameters}

### Training log

{loss_table(loss_log)}

## Evaluation

On the held-out articles: titles as queries against all held-out chunks (relevant: the title's own chunks),
and `{METRICS[-1]}`: for each held-out reference, whether its own article's title is the nearest of all
held-out titles.

{metrics_table(base_metrics, finetuned_metrics)}
"""


def write_model_card(folder: Path, **card: Any) -> Path:
    path = folder / "README.md"
    path.write_text(render_model_card(**card), encoding="utf-8")
    return path
