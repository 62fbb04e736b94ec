"""docs/settings.md is generated from the Settings fields and must be current."""

from __future__ import annotations

from wikiref.flows import settings_reference
from wikiref.flows.settings import Settings


def test_settings_doc_is_current() -> None:
    assert settings_reference.SETTINGS_DOC.read_text() == settings_reference.render(), (
        "docs/settings.md is out of date: run `python -m wikiref.flows.settings_reference`"
    )


def test_every_setting_is_documented_once_with_its_description() -> None:
    rendered = settings_reference.render()
    for name, field in Settings.model_fields.items():
        assert rendered.count(f"`WIKIREF_{name.upper()}`") == 1, name
        assert field.description, f"{name} has no description"
        assert " ".join(field.description.split()) in rendered.replace("\\|", "|"), name
