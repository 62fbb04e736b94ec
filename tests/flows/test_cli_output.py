"""The commands' table helper: how values become cells."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from wikiref.flows.cli import output


def test_cells_format_numbers_and_never_read_text_as_markup() -> None:
    assert output.cell(None) == ""
    assert output.cell(0.123456) == "0.1235"
    assert output.cell(12345) == "12345"  # ids stay as stored; counts go through output.count
    assert output.count(12345) == "12,345"
    console = Console(record=True, width=80)
    console.print(output.cell("[1] Smith, J. [bold]unclosed"))
    assert console.export_text().strip() == "[1] Smith, J. [bold]unclosed"
    styled = Text("active", style="green")
    assert output.cell(styled) is styled


def test_long_texts_are_cut_only_when_asked() -> None:
    text = "x" * 200
    assert output.cell(text) == text
    assert output.cell(text, 160) == "x" * 157 + "..."


def test_print_table_prints_every_row(monkeypatch) -> None:
    console = Console(record=True, width=80)
    monkeypatch.setattr(output, "console", console)
    output.print_table(("kind", "count"), [("references", output.count(1500)), ("[titles]", None)], title="t")
    printed = console.export_text()
    assert "references" in printed and "1,500" in printed and "[titles]" in printed
