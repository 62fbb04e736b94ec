"""docs/settings.md, generated from the ``Settings`` fields: their ``WIKIREF_*`` names, defaults, limits and
descriptions, one table per area. ``python -m wikiref.flows.settings_reference`` rewrites the file; a test keeps it
current (tests/flows/test_settings_reference.py).
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from wikiref.flows import settings

SETTINGS_DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"

AREAS = (
    settings.CoreSettings,
    settings.ScrapeSettings,
    settings.TrainSettings,
    settings.EmbedSettings,
    settings.OrchestrationSettings,
)

_BOUNDS = (
    (annotated_types.Ge, "≥"),
    (annotated_types.Gt, ">"),
    (annotated_types.Le, "≤"),
    (annotated_types.Lt, "<"),
)

HEADER = """# Settings

Every setting is an environment variable (or a line of a `.env` file in the working directory). An invalid value
stops every command with one line naming the variable, e.g.
`wikiref: error: invalid settings: WIKIREF_SCRAPE_CONCURRENCY: Input should be greater than or equal to 1`.

This page is generated from the field descriptions in `flows/settings.py`:
`python -m wikiref.flows.settings_reference` rewrites it, and a test fails when it is out of date.
"""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, Path):
            return "the platform's user data folder (Linux: `~/.local/share/wikiref`)"
        if isinstance(value, list):
            return f"{len(value)} items: {', '.join(map(str, value[:3]))}, …"
        return f"`{value}`"
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return "unset"
    return f"`{field.default}`"


def _limits(field: FieldInfo) -> list[str]:
    limits = []
    for constraint in field.metadata:
        for kind, sign in _BOUNDS:
            if isinstance(constraint, kind):
                limits.append(f"{sign} {getattr(constraint, kind.__name__.lower())}")
        if isinstance(constraint, annotated_types.MinLen):
            limits.append(f"at least {constraint.min_length} item{'s' if constraint.min_length != 1 else ''}")
    choices = [arg for arg in typing.get_args(field.annotation) if isinstance(arg, str)]
    if typing.get_origin(field.annotation) is typing.Literal and choices:
        limits.append("one of " + ", ".join(f"`{choice}`" for choice in choices))
    return limits


def _row(name: str, field: FieldInfo) -> str:
    description = " ".join((field.description or "").split())
    limits = _limits(field)
    if limits:
        description += f" ({'; '.join(limits)})"
    description = description.replace("|", "\\|")
    return f"| `WIKIREF_{name.upper()}` | {_default(field)} | {description} |"


def _area_fields(area: type) -> dict[str, Any]:
    """The fields an area class declares itself (the classes share no fields, but subclasses would inherit)."""
    return {name: area.model_fields[name] for name in area.__annotations__ if name in area.model_fields}


def render() -> str:
    parts = [HEADER]
    for area in AREAS:
        title = (area.__doc__ or area.__name__).strip().splitlines()[0].rstrip(".")
        parts.append(f"## {area.__name__.removesuffix('Settings')}: {title}\n")
        rows = [_row(name, field) for name, field in _area_fields(area).items()]
        parts.append("\n".join(["| variable | default | meaning |", "| --- | --- | --- |", *rows]) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    SETTINGS_DOC.write_text(render())
    print(f"wrote {SETTINGS_DOC}", file=sys.stderr)
