"""The one base of the model layer's expected errors."""

from __future__ import annotations


class ModelError(RuntimeError):
    """An expected training or encoding problem (bad configuration, no GPU, missing backend), in one line."""


class TrainingError(ModelError, ValueError):
    """A training request that cannot run as asked (no pairs, an existing output folder, a bad option)."""
