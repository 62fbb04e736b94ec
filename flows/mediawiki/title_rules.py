"""MediaWiki's title rules (``MediaWikiTitleCodec::splitTitleString``), for the mirror and the dump reader.

A title is normalised (underscores and runs of white space to one space, trimmed, a leading ``:`` dropped,
a known namespace prefix canonicalised, the first letter upper-cased) and then rejected, with the reason the
real API gives, when it holds an illegal character, is empty or only a namespace, is longer than 255 bytes
(512 for ``Special:``), or is a relative path or a signature. ``Foo#bar`` is ``Foo`` with a fragment, as on
the wiki.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# English Wikipedia's namespaces (canonical names and the aliases the API accepts), by prefix.
NAMESPACES: dict[str, int] = {
    "Media": -2,
    "Special": -1,
    "Talk": 1,
    "User": 2,
    "User talk": 3,
    "Wikipedia": 4,
    "Wikipedia talk": 5,
    "File": 6,
    "File talk": 7,
    "MediaWiki": 8,
    "MediaWiki talk": 9,
    "Template": 10,
    "Template talk": 11,
    "Help": 12,
    "Help talk": 13,
    "Category": 14,
    "Category talk": 15,
    "Portal": 100,
    "Portal talk": 101,
    "Draft": 118,
    "Draft talk": 119,
    "TimedText": 710,
    "TimedText talk": 711,
    "Module": 828,
    "Module talk": 829,
}
_ALIASES = {"wp": "Wikipedia", "project": "Wikipedia", "image": "File", "image talk": "File talk"}
_BY_LOWER = {name.lower(): name for name in NAMESPACES} | _ALIASES

MAX_TITLE_BYTES = 255
MAX_SPECIAL_TITLE_BYTES = 512
_ILLEGAL = re.compile(r"[#<>\[\]|{}\x00-\x1f\x7f\ufffd]|%[0-9A-Fa-f]{2}|&[A-Za-z0-9\x80-\uffff]+;")
# MediaWiki's white space (tabs and newlines are illegal characters, not spaces).
_SPACES = re.compile(r"[ _\u00a0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_RELATIVE = re.compile(r"^\.\.?$|^\.\.?/|/\.\.?/|/\.\.?$")

EMPTY = "The requested page title is empty or contains only the name of a namespace."
ILLEGAL = "The requested page title contains invalid characters: {chars}."
TOO_LONG = "The requested page title is too long (more than {limit} bytes)."
RELATIVE = "Title has relative path. Relative page titles (./, ../) are invalid."
TILDES = "The requested page title contains three or more tildes (~~~)."


class InvalidTitle(ValueError):
    """The title breaks one of MediaWiki's rules; ``reason`` is the API's ``invalidreason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Title:
    text: str
    """The canonical title, e.g. ``Category:Birds``."""
    namespace: int

    @property
    def is_article(self) -> bool:
        return self.namespace == 0


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def parse_title(raw: str) -> Title:
    """The canonical form of ``raw`` and its namespace; raises ``InvalidTitle`` as the real API would."""
    text = _SPACES.sub(" ", raw.split("#", 1)[0]).strip(" ")
    text = text.removeprefix(":").strip(" ")
    namespace = 0
    prefix, sep, rest = text.partition(":")
    canonical = _BY_LOWER.get(prefix.strip().lower()) if sep else None
    if canonical is not None:
        namespace = NAMESPACES[canonical]
        rest = rest.strip(" ")
        if not rest or rest.startswith(":"):
            raise InvalidTitle(EMPTY)
        text = f"{canonical}:{_first_upper(rest)}"
    else:
        rest = text
        text = _first_upper(text)
    if not rest:
        raise InvalidTitle(EMPTY)
    illegal = sorted({match.group(0) for match in _ILLEGAL.finditer(rest)})
    if illegal:
        shown = ", ".join(f'"{char}"' for char in illegal[:5])
        raise InvalidTitle(ILLEGAL.format(chars=shown.encode("unicode_escape").decode("ascii")))
    limit = MAX_SPECIAL_TITLE_BYTES if namespace == -1 else MAX_TITLE_BYTES
    if len(rest.encode("utf-8", errors="surrogatepass")) > limit:
        raise InvalidTitle(TOO_LONG.format(limit=limit))
    if _RELATIVE.search(rest):
        raise InvalidTitle(RELATIVE)
    if "~~~" in rest:
        raise InvalidTitle(TILDES)
    return Title(text=text, namespace=namespace)


def check_title_length(raw: str) -> None:
    """Raise ``InvalidTitle`` (too long) if ``raw``'s name, after a namespace prefix, is over MediaWiki's 255
    bytes of UTF-8: such a title can never exist, so it is refused before it is stored anywhere."""
    prefix, sep, rest = raw.partition(":")
    name = rest if sep and prefix.strip().lower() in _BY_LOWER else raw
    if len(_SPACES.sub(" ", name).strip(" ").encode("utf-8", errors="surrogatepass")) > MAX_TITLE_BYTES:
        raise InvalidTitle(TOO_LONG.format(limit=MAX_TITLE_BYTES))


MAX_ECHOED_CHARS = 300
"""The most of a title a listing echoes: every valid title fits (255 bytes), a pasted paragraph does not."""


def shortened(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for messages that echo user input."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
