"""The promotion gate: whether a fine-tuned version beats the base model and the active version, from the
paired-bootstrap intervals of one metric on the same held-out articles. The registry (``wikiref.db.registry``)
only stores the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class GateDelta:
    """A gate-metric delta (this run's model minus another) with its 95% bootstrap interval."""

    delta: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.delta:+.4f} [95% CI {self.low:+.4f}, {self.high:+.4f}]"


def decide_promotion(
    *,
    metric: str,
    vs_base: GateDelta,
    active_name: str | None,
    vs_active: GateDelta | None,
    min_vs_base: float = 0.0,
    min_vs_active: float = 0.0,
) -> PromotionDecision:
    """The gate: promote only when the CI's lower bound is above ``min_vs_base`` against the base model and at
    least ``min_vs_active`` against the active version, both on the same held-out articles and article text.

    ``vs_active`` is None when the active version is the base model itself (``vs_base`` already decides) or when
    no version is active.
    """
    if vs_base.low <= min_vs_base:
        return PromotionDecision(
            False,
            f"{metric} vs base {vs_base}: the lower bound is not above {min_vs_base:+.4f}, "
            "so the gain may be noise or a loss; stays candidate",
        )
    if vs_active is not None and vs_active.low < min_vs_active:
        return PromotionDecision(
            False,
            f"{metric} vs active {active_name} {vs_active}: the lower bound is below {min_vs_active:+.4f}; "
            "stays candidate",
        )
    against = f"; vs active {active_name} {vs_active}" if vs_active is not None else ""
    return PromotionDecision(True, f"{metric} vs base {vs_base}{against}")
