"""Unreadable saved pages and titles MediaWiki rejects, through the mirror over real HTTP (issue 12, items 4 and 9)."""

from __future__ import annotations

import asyncio
import csv
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.conftest import SHARED_WIKIPEDIA
from tests.flows.mediawiki.conftest import client_config, scrape
from wikiref.flows.mediawiki.client import MediaWikiClient
from wikiref.flows.mediawiki.saved import SavedPagesError, iter_saved_pages
from wikiref.flows.mediawiki.title_rules import InvalidTitle, parse_title
from wikiref.flows.mediawiki.titles import TitleSources
from wikiref.flows.mirror.server import MirrorApp, MirrorData, serving

BROKEN = {
    "Truncated page": '{"parse": {"title": "Truncated page", "text": {"*": "<p>cut',
    "Error page": '{"error": {"code": "missingtitle", "info": "The page you specified doesn\'t exist."}}',
    "Not a parse": "[1, 2, 3]",
}


@pytest.fixture
def folder_with_broken_pages(tmp_path: Path) -> Path:
    """Two real pages of the shared folder plus three .parse.json files that cannot be served."""
    root = tmp_path / "saved"
    (root / "pages").mkdir(parents=True)
    with (SHARED_WIKIPEDIA / "MANIFEST.tsv").open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        fields = reader.fieldnames
        rows = [row for row in reader if row["file"].endswith(".html")][:2]
    for row in rows:
        shutil.copy(SHARED_WIKIPEDIA / row["file"], root / row["file"])
    for title, body in BROKEN.items():
        name = f"pages/{title.replace(' ', '_')}.parse.json"
        (root / name).write_text(body, encoding="utf-8")
        rows.append(dict.fromkeys(fields, "") | {"file": name, "title": title, "format": "action-parse-json"})
    with (root / "MANIFEST.tsv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_reading_an_unreadable_page_is_one_line(folder_with_broken_pages: Path) -> None:
    with pytest.raises(SavedPagesError, match=r"Truncated_page.parse.json is not JSON .*truncated\?"):
        list(iter_saved_pages(folder_with_broken_pages))
    unreadable = []
    pages = list(iter_saved_pages(folder_with_broken_pages, unreadable=unreadable))
    assert len(pages) == 2
    assert [(page.title, page.reason.split(" ", 1)[1]) for page in unreadable] == [
        ("Truncated page", "is not JSON (Unterminated string starting at): truncated?"),
        (
            "Error page",
            "holds an API error (missingtitle: The page you specified doesn't exist.), not a page",
        ),
        ("Not a parse", "has no 'parse' object: not an action=parse response"),
    ]


def test_scrape_reports_unreadable_mirror_pages_as_failed_and_loads_the_rest(
    engine: Engine, folder_with_broken_pages: Path
) -> None:
    data = MirrorData.from_folder(folder_with_broken_pages)
    with serving(MirrorApp(data)) as api_url:
        summary = scrape(engine, client_config(api_url), TitleSources(list_page="Wikipedia:Saved pages"))
    assert summary.counts.articles_new == 2
    assert sorted(failure.split(":", 1)[0] for failure in summary.failed) == sorted(BROKEN)
    assert all("unreadablepage" in failure for failure in summary.failed)
    assert dict(summary.rows())["pages failed"] == 3
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM articles")).scalar_one() == 2


def test_cli_scrape_of_a_folder_with_broken_pages_exits_0_and_names_them(
    run_cli, database_url: str, folder_with_broken_pages: Path
) -> None:
    result = run_cli(
        "scrape", "--mirror", str(folder_with_broken_pages), env={"WIKIREF_DATABASE_URL": database_url}
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    failed = next(line for line in result.stdout.splitlines() if line.startswith("failed: "))
    assert all(title in failed for title in BROKEN)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("Foo[bar]", 'invalid characters: "[", "]"'),
        ("x" * 300, "too long"),
        ("Talk:", "empty or contains only the name of a namespace"),
        (":", "empty or contains only the name of a namespace"),
        ("../Up", "relative path"),
        ("Tab\there", "invalid characters"),
    ],
)
def test_title_rules_reject_what_mediawiki_rejects(raw: str, reason: str) -> None:
    with pytest.raises(InvalidTitle, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_title(raw)


def test_title_rules_normalise_like_mediawiki() -> None:
    assert parse_title("foo_bar  baz").text == "Foo bar baz"
    assert parse_title("Foo#Section").text == "Foo"
    assert (parse_title("category:birds").text, parse_title("category:birds").namespace) == (
        "Category:Birds",
        14,
    )
    assert parse_title("Special:Search").namespace == -1
    assert parse_title(":Main article").text == "Main article"


def test_mirror_answers_titles_as_the_real_api(mirror_data: MirrorData) -> None:
    long_title = "x" * 300
    titles = ["Foo[bar]", long_title, "Talk:", ":", "Special:Search", "Category:Birds of Europe", "Dog"]

    async def resolve(api_url: str):
        async with MediaWikiClient(client_config(api_url)) as client:
            return await client.resolve_titles(titles)

    with serving(MirrorApp(mirror_data)) as api_url:
        resolution = asyncio.run(resolve(api_url))
    invalid = dict(resolution.invalid)
    assert set(invalid) == {"Foo[bar]", long_title, "Talk:", ":"}
    assert "invalid characters" in invalid["Foo[bar]"] and "too long" in invalid[long_title]
    assert resolution.not_articles == ["Special:Search", "Category:Birds of Europe"]
    assert resolution.missing == []
    assert [page.title for page in resolution.pages] == ["Dog"]


def test_cli_prints_invalid_titles_as_written(run_cli, database_url: str) -> None:
    result = run_cli(
        "scrape",
        "--mirror",
        str(SHARED_WIKIPEDIA),
        "Foo[bar]",
        "Special:Search",
        "Dog",
        env={"WIKIREF_DATABASE_URL": database_url},
    )
    assert result.returncode == 0, result.stderr
    assert "invalid: Foo[bar]" in result.stdout
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") >= 3
    }
    assert (rows["titles invalid"], rows["not articles (skipped)"], rows["articles new"]) == ("1", "1", "1")
