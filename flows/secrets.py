"""Credentials in URLs stay out of messages, logs and flow parameters.

``wikiref.db.engine.masked_url`` masks the database URL; this does the same for any URL in free text (the wiki's
``api.php``, httpx's request log line), and keeps URLs with credentials out of Prefect flow parameters, which
Prefect stores and shows in clear.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

# scheme://user:password@ : the password is whatever sits between the first ':' after the scheme and '@'.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@")
MASK = "***"


def mask_credentials(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(rf"\g<head>:{MASK}@", text)


def has_credentials(value: object) -> bool:
    """Whether ``value`` is a URL that carries a user name or password."""
    if not isinstance(value, str) or "://" not in value:
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return parts.password is not None or parts.username is not None


class MaskCredentials(logging.Filter):
    """Rewrites a record's message with URL passwords masked (httpx logs every request's full URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_credentials(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_logged_urls(*logger_names: str) -> None:
    """Install ``MaskCredentials`` on these loggers (idempotent)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, MaskCredentials) for existing in logger.filters):
            logger.addFilter(MaskCredentials())
