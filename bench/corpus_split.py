"""The shared bulk split of the benches: which articles of ``../shared/data/wikipedia`` are evaluated.

Evaluation articles are the articles of ``bulk.tar.gz`` whose title hashes into 2 of 5 buckets (about 40% of
the bulk); training articles are ``pages/`` plus the rest of the bulk. Both benches import this one rule, so
their numbers are measured on the same articles.
"""

from __future__ import annotations

import hashlib


def is_eval_article(title: str, *, from_bulk: bool) -> bool:
    """Whether an article of the shared folder is an evaluation article (never trained on)."""
    return from_bulk and int(hashlib.sha256(title.encode()).hexdigest(), 16) % 5 < 2
