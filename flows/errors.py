"""Expected errors: what the user caused or can fix, printed by ``wikiref`` as one line without a traceback.

Each layer has one base, because ``db`` and ``models`` import neither each other nor ``flows``:
``wikiref.db.errors.DatabaseError``, ``wikiref.models.errors.ModelError`` and, for everything in ``flows`` (the MediaWiki
library, the mirror, the steps, the commands), ``WikirefError``. ``EXPECTED_ERRORS`` is the one place that
names all three; the CLI's ``main()`` handles exactly these.
"""

from __future__ import annotations

from wikiref.db.errors import DatabaseError
from wikiref.models.errors import ModelError


class WikirefError(Exception):
    """Bad input, or a source or service that cannot be used: one line that says what to change."""


class UserError(WikirefError, ValueError):
    """An impossible option or parameter (also a ``ValueError``, so that validators can raise it)."""


EXPECTED_ERRORS: tuple[type[Exception], ...] = (WikirefError, DatabaseError, ModelError)
