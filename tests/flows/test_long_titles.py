"""A title over MediaWiki's 255 bytes is refused before anything stores it, and messages echo a capped part of
long input (issue 27, item 14)."""

from __future__ import annotations

import json

import pytest

from tests.flows.test_cli_bad_input import one_error_line
from wikiref.flows.mediawiki.errors import ScrapeError
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.steps.corpus import source_specs

HUGE = "Koryak Okrug " * 770  # 10,010 characters


@pytest.mark.parametrize(
    "sources",
    [
        TitleSources(titles=("Dog", "x" * 256)),
        TitleSources(titles=("é" * 128,)),  # 128 characters, 256 bytes of UTF-8
        TitleSources(category="Category:" + "x" * 256),
        TitleSources(list_page="y" * 300),
    ],
)
def test_titles_over_255_bytes_are_refused_before_a_corpus_records_them(sources: TitleSources) -> None:
    with pytest.raises(
        ScrapeError, match=r"bytes\): The requested page title is too long \(more than 255 bytes\)\.$"
    ):
        source_specs(sources)


def test_titles_up_to_255_bytes_are_recorded() -> None:
    longest = ("é" * 127) + "x"  # 255 bytes
    specs = source_specs(TitleSources(titles=(longest,), category="Category:" + "c" * 255))
    assert specs[0].spec == {"titles": [longest]} and specs[1].spec["name"] == "Category:" + "c" * 255


def test_a_huge_title_is_one_short_line_and_nothing_is_stored(run_cli, database_url: str, tmp_path) -> None:
    env = {"WIKIREF_DATABASE_URL": database_url}
    added = run_cli("corpus", "add", "russia", "Dog", HUGE, env=env)
    line = one_error_line(added)
    assert (
        line.startswith(f"title {HUGE[:79]!r}"[:-1])
        and "(10,010 bytes): The requested page title is too long" in line
    )
    assert len(line) < 200
    assert json.loads(run_cli("corpus", "list", "--json", env=env).stdout) == {"corpora": []}

    titles_file = tmp_path / "titles.txt"
    titles_file.write_text(f"Dog\n{HUGE}\n")
    scraped = run_cli("scrape", "--titles-file", str(titles_file), "--corpus", "russia", env=env)
    assert len(one_error_line(scraped)) < 200

    accepted = run_cli("corpus", "accept", HUGE, env=env)
    assert len(one_error_line(accepted)) < 200
    shown = run_cli("corpus", "show", HUGE, env=env)
    assert len(one_error_line(shown)) < 200
