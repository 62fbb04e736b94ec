"""The model registry: ``model_versions`` rows, their life cycle, and the gate's stored verdict.

candidate -> active -> superseded (still queryable by explicit version) -> retired (embeddings dropped).
Every status change runs in one transaction under an advisory lock, so two runs promoting at once cannot both
win, and queries never see zero or two active versions.
"""

from __future__ import annotations

import logging
import math
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
    article_text: str,
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


# The signals each fused SQL function weighs against the embeddings (whose weight is 1), migrations 0008 and 0019.
FUSION_SIGNALS = {
    "similar_references": ("words", "hubness"),
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
    *, session: Session, name: str, base_model: str, article_text: str
) -> tuple[ModelVersion, bool]:
    """The version that serves the base model untouched (no artifact), registered once; active if none is.

    ``article_text`` is the recipe it serves with when registered now; a version already registered keeps its
    own. Returns the version and whether it was activated now. The base model is a version of its own so that it can
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


def store_verdict(
    *,
    session: Session,
    version_id: int,
    promote: bool,
    reason: str,
    compared_with_id: int | None,
) -> ModelVersion:
    """Store the gate's verdict (``wikiref.models.gate``), taken against the version active when the scores were
    measured: promote the version, or keep it a candidate with ``reason``.

    If another version became active in between, the comparison is stale: the candidate stays a candidate.
    """
    _lock(session)
    version = session.get(ModelVersion, version_id, populate_existing=True)
    if version is None:
        raise RegistryError(f"no model version with id {version_id}")
    current = active_version(session=session)
    if (current.id if current else None) != compared_with_id:
        promote = False
        reason = (
            f"the active version changed to {current.name if current else 'none'} during this run; "
            "compare again or promote by hand"
        )
    if promote:
        return _activate_locked(session, version, reason)
    version.status_reason = reason
    session.commit()
    log.info("%s stays candidate: %s", version.name, reason)
    return version
