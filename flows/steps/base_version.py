"""The base model as the version ``base``: registered by the first command that needs a version (``wikiref
embed``, ``wikiref train``, their flows), active until a fine-tuned version passes the gate.

Not a migration: which model is the base and which article text it serves with are settings
(``WIKIREF_BASE_MODEL``, ``WIKIREF_TRAIN_ARTICLE_TEXT``), and migrations do not read settings. A version has
nothing to serve before it is embedded, so registering it when the first embedding run starts loses nothing.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from wikiref.db import registry
from wikiref.flows.settings import Settings

log = logging.getLogger(__name__)


def register_base_version(
    engine: Engine, *, base_model: str, default_base_model: str, article_text: str
) -> str:
    """Register ``base_model`` as a version once (``base``, or ``base:<model>`` for a non-default one) and
    activate it when no version is active; returns its name. A later call reuses the row."""
    name = registry.base_version_name(base_model, default_base_model)
    with Session(engine) as session:
        _, activated = registry.ensure_base_version(
            session=session, name=name, base_model=base_model, article_text=article_text
        )
    if activated:
        log.info("the base model serves as version %s until a fine-tuned version passes the gate", name)
    return name


def register_configured_base_version(engine: Engine, settings: Settings) -> str:
    """The settings' base model, with the article text training would give it."""
    return register_base_version(
        engine,
        base_model=settings.base_model,
        default_base_model=settings.base_model,
        article_text=settings.train_knobs().article_text,
    )
