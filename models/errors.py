"""The one base of the model layer's expected errors."""

from __future__ import annotations


class ModelError(RuntimeError):
    """An expected training or encoding problem (bad configuration, no GPU, missing backend), in one line."""
