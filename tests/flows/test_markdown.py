"""User text in markdown artifacts is literal text: no headings, tables, links or HTML of its own (issue 12, item 8).

Rendered with markdown-it (CommonMark with GFM tables, as the Prefect UI renders artifacts).
"""

from __future__ import annotations

from markdown_it import MarkdownIt

from wikiref.flows import markdown
from wikiref.flows.mediawiki.dump import SkippedRecord
from wikiref.flows.steps.scraping import ScrapeSummary

HOSTILE = [
    "# Heading",
    "[click](javascript:alert(1))",
    "| a | b |\n| --- | --- |\n| c | d |",
    "<img src=x onerror=alert(1)>",
    "**bold** _it_ `code` ~~gone~~",
    "![img](http://evil.example/x.png)",
    "<https://evil.example>",
    "\\[escaped\\]",
    "line\nbreak\r\n# second heading",
]
RENDER = MarkdownIt("commonmark").enable("table").enable("strikethrough")


def all_tokens(source: str) -> list:
    tokens = []
    for token in RENDER.parse(source):
        tokens += [token, *(token.children or [])]
    return tokens


def rendered_tags(source: str) -> set[str]:
    return {token.tag for token in all_tokens(source) if token.tag}


def test_escaped_text_renders_as_the_same_text_in_one_paragraph() -> None:
    for text in HOSTILE:
        html = RENDER.render(markdown.escape(text))
        assert rendered_tags(markdown.escape(text)) == {"p"}, (text, html)
        inline = RENDER.parseInline(markdown.escape(text))[0].children
        assert "".join(child.content for child in inline if child.type == "text") == " ".join(
            text.replace("\r\n", "\n").split("\n")
        )


def test_scrape_summary_artifacts_hold_one_table_and_no_injected_markup() -> None:
    summary = ScrapeSummary(
        wiki="en.wikipedia.org",
        missing=HOSTILE[:3],
        invalid=HOSTILE[3:6],
        failed=HOSTILE[6:],
        skipped_records=[SkippedRecord(text, line, text) for line, text in enumerate(HOSTILE, start=1)],
    )
    summary.counts.quarantined = [(text, text) for text in HOSTILE]
    for source in (summary.markdown(), summary.skipped_records_markdown()):
        tokens = RENDER.parse(source)
        tags = [token.tag for token in tokens if token.nesting == 1]
        assert tags.count("h1") == 1 and tags.count("table") == 1, source
        assert not {"a", "img", "h2", "em", "code", "s"} & rendered_tags(source)
        # The one bold text is the quarantine warning's own; "**bold**" in a title stays literal.
        assert [t.type for t in all_tokens(source)].count("strong_open") == (1 if "Warning" in source else 0)
        assert not {"html_block", "html_inline", "link_open", "image", "autolink"} & {
            t.type for t in all_tokens(source)
        }
    table_rows = [t for t in RENDER.parse(summary.skipped_records_markdown()) if t.tag == "tr"]
    assert len(table_rows) // 2 == len(HOSTILE) + 1  # header + one row per record (open and close tokens)


def test_code_block_cannot_be_closed_by_its_content() -> None:
    sql = "SELECT * FROM wikiref.similar_references('```\n# owned', 10);"
    tokens = RENDER.parse(markdown.code_block(sql, "sql"))
    assert [token.type for token in tokens] == ["fence"] and tokens[0].content == sql + "\n"
