"""What identifies the source a reference cites, shared by the source-aware sampler and hard-negative mining."""

from __future__ import annotations

import re

_DOI = re.compile(r"\b10\.\d{4,9}/[^\s\"<>]+", re.IGNORECASE)
_URL = re.compile(r"https?://(?:www\.)?([^\s\"<>]+)", re.IGNORECASE)
_NOT_WORD = re.compile(r"\W+")


def source_keys(reference: str) -> set[str]:
    """What identifies the source(s) a reference text cites: its DOIs, URLs and normalised text.

    Two articles citing the same source (same DOI, same URL, or the same text up to case and punctuation) make
    that source relevant to both: it must not serve as a negative for either.
    """
    keys = {"doi:" + doi.rstrip(".,;)").lower() for doi in _DOI.findall(reference)}
    keys |= {"url:" + url.rstrip("/.,;)").lower() for url in _URL.findall(reference)}
    normalised = _NOT_WORD.sub(" ", reference.lower()).strip()
    if normalised:
        keys.add("text:" + normalised)
    return keys
