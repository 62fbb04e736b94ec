"""The model registry: ``model_versions`` rows, their life cycle, and the promotion rule.

candidate -> active -> superseded (still queryable by explicit version) -> retired (embeddings dropped).
Every status change runs in one transaction under an advisory lock, so two runs promoting at once cannot both
win, and queries never see zero or two active versions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.embeddings import drop_version_embeddings
from db.errors import DatabaseError
from db.schema import ModelVersion

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
    status_reason: str | None = None,
    article_text: str = "title",
) -> ModelVersion:
    """Insert a new candidate version and commit.

    ``article_text`` is the name of the article-text recipe it was trained with (``ArticleTextRecipe.name``):
    it is embedded and served with that recipe for as long as it lives.
    """
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
        status_reason=status_reason,
        article_text=article_text,
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


def decide_promotion(
    *, metric: str, candidate_score: float, active_name: str | None, active_score: float | None
) -> PromotionDecision:
    """The promotion rule: a candidate wins when its gate metric is at least the active version's.

    Both scores must come from the same held-out set; ties promote, so retraining on more data with an equal
    score moves the product to the newer model.
    """
    if active_name is None:
        return PromotionDecision(True, f"no active version; {metric} {candidate_score:.4f}")
    if active_score is None:
        return PromotionDecision(
            False, f"could not score the active version {active_name} on this held-out set; promote by hand"
        )
    if candidate_score >= active_score:
        return PromotionDecision(
            True,
            f"{metric} {candidate_score:.4f} >= {active_score:.4f} of {active_name} on the same held-out set",
        )
    return PromotionDecision(
        False,
        f"{metric} {candidate_score:.4f} < {active_score:.4f} of active {active_name} on the same held-out set",
    )


def promote_if_better(
    *,
    session: Session,
    version_id: int,
    metric: str,
    candidate_score: float,
    compared_with_id: int | None,
    compared_score: float | None,
) -> PromotionDecision:
    """Apply the promotion rule against the version that was active when the scores were measured.

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
            candidate_score=candidate_score,
            active_name=current.name if current else None,
            active_score=compared_score,
        )
    if decision.promote:
        _activate_locked(session, version, decision.reason)
    else:
        version.status_reason = decision.reason
        session.commit()
        log.info("%s stays candidate: %s", version.name, decision.reason)
    return decision
