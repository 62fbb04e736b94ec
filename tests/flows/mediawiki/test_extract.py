"""Reference extraction over every shared page and on small hand-made markup."""

from __future__ import annotations

import csv
import re
import unicodedata

import ftfy.badness
import pytest

from tests.conftest import SHARED_WIKIPEDIA
from wikiref.db.page_records import ReferenceRecord
from wikiref.flows.mediawiki.extract import clean_text, extract_references
from wikiref.flows.mediawiki.saved import iter_saved_pages

MOJIBAKE = re.compile("Ã[\u0080-\u00bf]|â€|Â[\u00a0-\u00bf]|[\u0080-\u009f]")
CS1_MESSAGES = re.compile(r"CS1 (maint|errors?)|Cite error|\{\{cite", re.IGNORECASE)


def manifest_counts() -> dict[str, int]:
    with (SHARED_WIKIPEDIA / "MANIFEST.tsv").open(encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {
            row["title"]: int(row["n_cite_note_li_parsed"])
            for row in rows
            if row["file"].startswith("pages/")
        }


@pytest.fixture(scope="module")
def extracted() -> dict[str, list[ReferenceRecord]]:
    return {page.title: extract_references(page.html) for page in iter_saved_pages(SHARED_WIKIPEDIA)}


def test_count_equals_manifest_for_every_page(extracted: dict[str, list[ReferenceRecord]]) -> None:
    expected = manifest_counts()
    assert len(expected) == 303
    mismatches = {
        title: (len(extracted[title]), n) for title, n in expected.items() if len(extracted[title]) != n
    }
    assert mismatches == {}
    assert sum(len(refs) for refs in extracted.values()) == 13_992


def test_markup_variants_are_all_found(extracted: dict[str, list[ReferenceRecord]]) -> None:
    # 2026 entity-encoded ids, Parsoid (about= before id=), Kiwix, action=parse JSON, note groups.
    counts = {
        title: len(extracted[title])
        for title in ("Rust (programming language)", "Bengaluru", "Dog", "Ray Charles", "Douglas Adams")
    }
    assert counts == {
        "Rust (programming language)": 212,
        "Bengaluru": 466,
        "Dog": 237,
        "Ray Charles": 69,
        "Douglas Adams": 71,
    }
    rust = extracted["Rust (programming language)"]
    assert rust[0].text.startswith("Including build tools, host tools")
    # The note's own inline citation marker "[2]" is not part of its text.
    assert rust[0].text.endswith("and s390x.")


def test_texts_are_clean(extracted: dict[str, list[ReferenceRecord]]) -> None:
    problems = []
    for title, references in extracted.items():
        for ref in references:
            text = ref.text
            if (
                MOJIBAKE.search(text)
                or ftfy.badness.is_bad(text)
                or "^" in text
                or "↑" in text
                or CS1_MESSAGES.search(text)
                or text != text.strip()
                or "  " in text
                or re.search(r"[\t\n\r\u00a0]", text)
                or unicodedata.normalize("NFC", text) != text
                or ".mw-parser-output" in text
            ):
                problems.append((title, text[:120]))
    assert problems == []


def test_backlinks_and_jump_letters_are_gone(extracted: dict[str, list[ReferenceRecord]]) -> None:
    # Legacy markup: "^ a b" backlinks before the text (the second note, cite_note-Linnaeus1758-1).
    assert extracted["Cat"][1].text.startswith("Linnaeus, C. (1758)")
    # Kiwix markup: "↑ 2.0 2.1" backlinks (the second note, cite_note-RollingStone-2).
    assert extracted["Ray Charles"][1].text.startswith("Van Morrison.")


def test_mojibake_in_the_source_is_repaired(extracted: dict[str, list[ReferenceRecord]]) -> None:
    texts = [ref.text for ref in extracted["Same-sex marriage in New Jersey"]]
    assert any("Garden State’s Highest Court" in text for text in texts)
    cello = [ref.text for ref in extracted["Cello (web browser)"] if ref.text.startswith("Vaughan-Nichols")]
    assert cello and "pp. 186–187." in cello[0]


def test_cs1_maintenance_messages_are_removed(extracted: dict[str, list[ReferenceRecord]]) -> None:
    deccan = [
        ref for ref in extracted["Bengaluru"] if "deccanherald.com/content/237394" in " ".join(ref.urls)
    ]
    assert len(deccan) == 1
    assert "maint" not in deccan[0].text and deccan[0].text.endswith(".")


def test_fields_are_parsed() -> None:
    html = """
    <ol class="references"><li id="cite&#95;note-a-1"><span class="mw-cite-backlink">^ <a href="#cite_ref-a_1-0">
    <sup><i><b>a</b></i></sup></a> <a href="#cite_ref-a_1-1"><sup><i><b>b</b></i></sup></a></span>
    <span class="reference-text"><cite class="citation journal cs1">Smith, J. (2001).
    <a rel="nofollow" class="external text" href="https://example.org/paper">"A&nbsp;study of  ducks"</a>.
    <i>Nature</i>. <a rel="nofollow" class="external text" href="https://web.archive.org/web/2001/https://example.org/paper">Archived</a>
    <a href="/wiki/Doi_(identifier)">doi</a>:<a rel="nofollow" class="external text" href="https://doi.org/10.1038%2F123">10.1038/123</a>.
    <a href="/wiki/PMID_(identifier)">PMID</a>&nbsp;<a rel="nofollow" class="external text" href="https://pubmed.ncbi.nlm.nih.gov/4567/">4567</a>.
    <a href="/wiki/ISBN_(identifier)">ISBN</a>&nbsp;<a href="/wiki/Special:BookSources/978-0-12-345678-9"><bdi>978-0-12-345678-9</bdi></a>.</cite>
    <span title="ctx_ver=Z39.88-2004&amp;rft.atitle=A+study+of+ducks&amp;rft.date=2001&amp;rft_id=info%3Adoi%2F10.1038%2F123" class="Z3988"></span>
    <span class="cs1-maint citation-comment"><code class="cs1-code">{{cite journal}}</code>: CS1 maint: url-status (<a href="/wiki/Category:CS1_maint">link</a>)</span>
    </span></li></ol>"""
    [ref] = extract_references(html)
    assert ref == ReferenceRecord(
        text='Smith, J. (2001). "A study of ducks". Nature. Archived doi:10.1038/123. PMID 4567. ISBN 978-0-12-345678-9.',
        urls=(
            "https://example.org/paper",
            "https://web.archive.org/web/2001/https://example.org/paper",
            "https://doi.org/10.1038%2F123",
            "https://pubmed.ncbi.nlm.nih.gov/4567/",
        ),
        archive_url="https://web.archive.org/web/2001/https://example.org/paper",
        doi="10.1038/123",
        pmid="4567",
        isbn="9780123456789",
        cited_title="A study of ducks",
        date="2001",
    )


def test_clean_text_repairs_and_normalises() -> None:
    assert clean_text(" Maz\u00c3\u00a1k  \u00e2\u0080\u0093\u00a0e\u0301t\u00e9 \n") == "Mazák – été"
    assert clean_text("Garden Stateâ€™s") == "Garden State’s"
    assert clean_text("“curly” quotes stay") == "“curly” quotes stay"
