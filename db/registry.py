"""The model registry: ``model_versions`` rows, their life cycle, and the promotion rule.

candidate -> active -> superseded (still queryable by explicit version) -> retired (embeddings dropped).
Every status change runs in one transaction under an advisory lock, so two runs promoting at once cannot both
win, and queries never see zero or two active versions.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from wikiref.db.embeddings import drop_version_embeddings
from wikiref.db.errors import DatabaseError
from wikiref.db.schema import ModelVersion

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key serialising status changes of model versions ("wikiref" in ASCII, as an int).
_REGISTRY_LOCK = 0x77696B6972656600


class RegistryError(DatabaseError):
    """An unknown version or a status change the life cycle does not allow; the message says which."""


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def create_version(
    *,
    session: Session,
    name: str,
    base_model: str,
    params: dict[str, Any],
    dataset_fingerprint: str,
    dataset_counts: dict[str, Any],
    metrics: dict[str, Any],
    loss_log: list[dict[str, Any]],
    artifact_path: str,
    article_text: str = "title",
    status_reason: str | None = None,
) -> ModelVersion:
    """Insert a new candidate version and commit; ``article_text`` is the recipe it is trained and served with."""
    if session.scalar(select(ModelVersion.id).where(ModelVersion.name == name)) is not None:
        raise RegistryError(f"a model version named {name!r} already exists")
    version = ModelVersion(
        name=name,
        base_model=base_model,
        status="candidate",
        params=params,
        dataset_fingerprint=dataset_fingerprint,
        dataset_counts=dataset_counts,
        metrics=metrics,
        loss_log=loss_log,
        artifact_path=artifact_path,
        article_text=article_text,
        status_reason=status_reason,
    )
    session.add(version)
    session.commit()
    log.info("registered model version %s (id %d) as candidate", name, version.id)
    return version


def list_versions(*, session: Session) -> list[ModelVersion]:
    """All versions, newest first."""
    return list(
        session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc()))
    )


def get_version(*, session: Session, name: str) -> ModelVersion:
    """The version called ``name`` (or with that numeric id)."""
    condition = ModelVersion.name == name
    if name.isdigit():
        condition = condition | (ModelVersion.id == int(name))
    version = session.scalars(select(ModelVersion).where(condition).order_by(ModelVersion.id)).first()
    if version is None:
        known = ", ".join(
            session.scalars(select(ModelVersion.name).order_by(ModelVersion.id.desc()).limit(5))
        )
        raise RegistryError(
            f"no model version {name!r}" + (f" (newest: {known})" if known else " (none registered yet)")
        )
    return version


def active_version(*, session: Session) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.status == "active")).one_or_none()


def _lock(session: Session) -> None:
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _REGISTRY_LOCK})


def _activate_locked(session: Session, version: ModelVersion, reason: str) -> ModelVersion:
    if version.status == "retired":
        raise RegistryError(
            f"{version.name} is retired (its embeddings were dropped); train or register a new version"
        )
    previous = session.scalars(
        select(ModelVersion).where(ModelVersion.status == "active", ModelVersion.id != version.id)
    ).one_or_none()
    if previous is not None:
        previous.status = "superseded"
        previous.status_reason = f"superseded by {version.name}"
        # The partial unique index allows one active row at any moment: demote before promoting.
        session.flush()
    version.status = "active"
    version.status_reason = reason
    version.activated_at = func.now()
    session.commit()
    log.info("activated %s%s", version.name, f" (superseded {previous.name})" if previous else "")
    return version


def activate_version(*, session: Session, version_id: int, reason: str = "promoted by hand") -> ModelVersion:
    """Make a version active in one transaction; the previous active one becomes 'superseded'."""
    _lock(session)
    version = session.get(ModelVersion, version_id, populate_existing=True)
    if version is None:
        raise RegistryError(f"no model version with id {version_id}")
    if version.status == "active":
        session.commit()
        return version
    return _activate_locked(session, version, reason)


def retire_version(*, session: Session, version_id: int) -> ModelVersion:
    """Mark a version retired and drop its embeddings, their HNSW indexes and state, in one transaction.

    The active version cannot be retired: promote another one first, so queries always have a version.
    """
    _lock(session)
    version = session.get(ModelVersion, version_id, populate_existing=True)
    if version is None:
        raise RegistryError(f"no model version with id {version_id}")
    if version.status == "active":
        session.rollback()
        raise RegistryError(
            f"{version.name} is the active version: promote another version before retiring it"
        )
    deleted = drop_version_embeddings(session=session, version_id=version.id)
    version.status = "retired"
    version.status_reason = "retired by hand"
    session.commit()
    log.info("retired %s: deleted embeddings %s", version.name, deleted)
    return version


# The signals each fused SQL function weighs against the embeddings (whose weight is 1), migration 0008.
FUSION_SIGNALS = {
    "similar_references": ("words",),
    "articles_for_reference": ("words", "vote"),
    "similar_articles": ("words",),
    "search_text": ("words",),
}


def check_fusion_weights(weights: object) -> dict[str, dict[str, float]]:
    """``weights`` as stored: every function and signal of ``FUSION_SIGNALS``, each a finite float >= 0."""
    if not isinstance(weights, dict) or set(weights) != set(FUSION_SIGNALS):
        raise RegistryError(
            f"fusion weights need exactly the functions {sorted(FUSION_SIGNALS)}, got {weights!r}"
        )
    checked: dict[str, dict[str, float]] = {}
    for function, signals in FUSION_SIGNALS.items():
        given = weights[function]
        if not isinstance(given, dict) or set(given) != set(signals):
            raise RegistryError(
                f"fusion weights of {function} need exactly the signals {list(signals)}, got {given!r}"
            )
        checked[function] = {}
        for signal, value in given.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise RegistryError(
                    f"fusion weight {function}.{signal} must be a finite number of 0 or more, got {value!r}"
                )
            checked[function][signal] = float(value)
    return checked


def fusion_weights(*, session: Session, version_id: int) -> dict[str, dict[str, float]]:
    """The weights the fused SQL functions use for a version (``model_versions.fusion_weights``)."""
    weights = session.scalar(select(ModelVersion.fusion_weights).where(ModelVersion.id == version_id))
    if weights is None:
        raise RegistryError(f"no model version with id {version_id}")
    return weights


def set_fusion_weights(*, session: Session, version_id: int, weights: dict[str, dict[str, float]]) -> None:
    """Store a version's fusion weights (checked first) and commit; the SQL functions use them from then on."""
    checked = check_fusion_weights(weights)
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise RegistryError(f"no model version with id {version_id}")
    version.fusion_weights = checked
    session.commit()
    log.info("fusion weights of %s: %s", version.name, checked)


BASE_VERSION = "base"


def base_version_name(base_model: str, default_base_model: str) -> str:
    """``base`` for the configured base model, ``base:<model>`` for any other one."""
    return BASE_VERSION if base_model == default_base_model else f"{BASE_VERSION}:{base_model}"


def ensure_base_version(
    *, session: Session, name: str, base_model: str, article_text: str = "title"
) -> tuple[ModelVersion, bool]:
    """The version that serves the base model untouched (no artifact), registered once; active if none is.

    Returns the version and whether it was activated now. The base model is a version of its own so that it can
    be embedded, queried by name (``model_version => 'base'``) and compared with fine-tuned versions, and so
    that it serves whenever no fine-tuned version has passed the gate.
    """
    _lock(session)
    version = session.scalars(select(ModelVersion).where(ModelVersion.name == name)).one_or_none()
    if version is None:
        version = ModelVersion(
            name=name,
            base_model=base_model,
            status="candidate",
            params={},
            dataset_counts={},
            metrics={},
            loss_log=[],
            artifact_path=None,
            article_text=article_text,
            status_reason="the base model, untrained",
        )
        session.add(version)
        session.flush()
        log.info("registered the base model %s as version %s", base_model, name)
    if version.status != "retired" and active_version(session=session) is None:
        _activate_locked(session, version, "no fine-tuned version has passed the gate: the base model serves")
        return version, True
    session.commit()
    return version, False


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


def promote_if_better(
    *,
    session: Session,
    version_id: int,
    metric: str,
    vs_base: GateDelta,
    vs_active: GateDelta | None,
    compared_with_id: int | None,
    min_vs_base: float = 0.0,
    min_vs_active: float = 0.0,
) -> PromotionDecision:
    """Apply the gate against the version that was active when the scores were measured.

    If another version became active in between, the comparison is stale: the candidate stays a candidate.
    """
    _lock(session)
    version = session.get(ModelVersion, version_id, populate_existing=True)
    if version is None:
        raise RegistryError(f"no model version with id {version_id}")
    current = active_version(session=session)
    if (current.id if current else None) != compared_with_id:
        decision = PromotionDecision(
            False,
            f"the active version changed to {current.name if current else 'none'} during this run; "
            "compare again or promote by hand",
        )
    else:
        decision = decide_promotion(
            metric=metric,
            vs_base=vs_base,
            active_name=current.name if current else None,
            vs_active=vs_active,
            min_vs_base=min_vs_base,
            min_vs_active=min_vs_active,
        )
    if decision.promote:
        _activate_locked(session, version, decision.reason)
    else:
        version.status_reason = decision.reason
        session.commit()
        log.info("%s stays candidate: %s", version.name, decision.reason)
    return decision
