"""Markdown for Prefect artifacts: every piece of user or wiki text goes through ``escape`` first.

Titles, reference texts, file names and reasons come from outside; unescaped, ``# x`` starts a heading,
``|`` breaks a table and ``[click](javascript:...)`` becomes a link. CommonMark lets any ASCII punctuation be
escaped with a backslash, so escaping all of it leaves the text as written and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
MAX_CELL = 300


def escape(text: object, *, limit: int = MAX_CELL) -> str:
    """``text`` as literal markdown on one line (tables need one), cut to ``limit`` characters."""
    value = _LINE_BREAKS.sub(" ", str(text))
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return _PUNCTUATION.sub(r"\\\1", value)


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a markdown table; every cell escaped (numbers included: they are text once formatted)."""
    lines = ["| " + " | ".join(escape(name) for name in header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows]
    return lines


def code_block(code: str, language: str = "") -> str:
    """``code`` in a fence longer than any run of backticks inside it, so that it cannot close the fence."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code}\n{fence}"
