"""Lead extraction on real pages of every HTML flavour the scraper reads, and on small hand-made markup."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import SHARED_WIKIPEDIA
from wikiref.flows.mediawiki.dump import iter_dump
from wikiref.flows.mediawiki.extract import (
    extract_lead,
    extract_page,
    extract_references,
    extract_short_description,
)
from wikiref.flows.mediawiki.saved import iter_saved_pages

PAGES = SHARED_WIKIPEDIA / "pages"
VARIANTS = SHARED_WIKIPEDIA / "other" / "variants"
# What must never be in a lead: citation markers ("[1]", "[b]", "[note 2]"), edit links, coordinates, leftover
# pronunciation marks or empty brackets, hidden metadata.
CLUTTER = re.compile(
    r"\[(?:\d+|[a-z]|note \d+|edit|citation needed)\](?![a-z])|Coordinates:|ⓘ|\ue000|\(\s*[;,]?\s*\)|\.mw-parser-output|\{\{"
)


def page_html(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def parse_json_html(name: str) -> str:
    text = json.loads((PAGES / name).read_text(encoding="utf-8"))["parse"]["text"]
    return text if isinstance(text, str) else text["*"]


@pytest.fixture(scope="module")
def leads() -> dict[str, tuple[str, str | None]]:
    """(manifest format, lead) of every page of pages/."""
    return {page.title: (page.format, extract_lead(page.html)) for page in iter_saved_pages(SHARED_WIKIPEDIA)}


def test_expected_leads_verbatim_in_each_flavour() -> None:
    # action=render fragment (2014)
    assert extract_lead(page_html("1998–99_Oxford_United_F.C._season.html")) == (
        "During the 1998–99 English football season, Oxford United F.C. competed in the Football League First "
        "Division."
    )
    # Kiwix/ZIM (mwoffliner 2015): an infobox table before the paragraph, a citation marker inside it
    assert extract_lead(page_html("Ray_Charles_in_Concert.html")) == (
        "Ray Charles In Concert is a limited edition compilation album of live performances by Ray Charles "
        "released in 2003 by Rhino Handmade. The tracks were all previously released on 5 different Ray Charles "
        "live concert albums released between 1958 and 1975."
    )
    # action=parse JSON (formatversion 2): hatnote and infobox before the paragraph
    assert extract_lead(parse_json_html("Blue_Train_(album).parse.json")) == (
        "Blue Train is a studio album by John Coltrane, released in 1958 on Blue Note Records, catalogue BLP 1577. "
        "Recorded at the Van Gelder Studio in Hackensack, New Jersey, it is the only Blue Note recording by "
        "Coltrane as the leader on the session. It has been certified a gold record by the RIAA."
    )
    # Full page, Vector 2022 (2024): several paragraphs joined, the short description is not part of the lead
    assert extract_lead(page_html("Duck.html")) == (
        "Duck is the common name for numerous species of waterfowl in the family Anatidae. Ducks are generally "
        "smaller and shorter-necked than swans and geese, which are members of the same family. Divided among "
        "several subfamilies, they are a form taxon; they do not represent a monophyletic group (the group of all "
        "descendants of a single common ancestral species), since swans and geese are not considered ducks. Ducks "
        "are mostly aquatic birds, and may be found in both fresh water and sea water. Ducks are sometimes "
        "confused with several types of unrelated water birds with similar forms, such as loons or divers, "
        "grebes, gallinules and coots."
    )


def test_leads_of_other_flavours_start_with_the_first_sentence() -> None:
    first = {
        # Parsoid REST page/html (2018): <section data-mw-section-id="0">, hatnotes, mw-ref markers
        "Dog.html": "The domestic dog (Canis lupus familiaris when considered a subspecies of the gray wolf or "
        "Canis familiaris when considered a distinct species) is a member of the genus Canis (canines),",
        # MobileFrontend <section class="mf-section-0"> (legacy parser, 2024)
        "Cat.html": "The cat (Felis catus), commonly referred to as the domestic cat or house cat, is a small "
        "domesticated carnivorous mammal.",
        # Full page, 2026, entity-encoded ids, <sup class="reference"> with cite-bracket spans
        "Bengaluru.html": "Bengaluru, also known as Bangalore (its official name until 1 November 2014), is the "
        "capital and largest city of the southern Indian state of Karnataka.",
        # Full page, legacy Vector (2014): the coordinates paragraph before the lead is dropped
        "New_Zealand.html": "New Zealand is a sovereign island country in the southwestern Pacific Ocean.",
    }
    for name, sentence in first.items():
        assert extract_lead(page_html(name)).startswith(sentence), name
    # PCS mobile-html and REST page/html variants of titles in pages/
    assert extract_lead((VARIANTS / "Dog.mobile-html.html").read_text(encoding="utf-8")).startswith(
        first["Dog.html"]
    )
    assert extract_lead(
        (VARIANTS / "Douglas_Adams.rest_page_html.html").read_text(encoding="utf-8")
    ).startswith(
        "Douglas Noel Adams (11 March 1952 – 11 May 2001) was an English author, scriptwriter, essayist,"
    )


def test_enterprise_dump_html_gives_the_lead(tmp_path) -> None:
    html = page_html("United_States.html")
    record = {
        "name": "United States",
        "identifier": 3434750,
        "version": {"identifier": 870000000},
        "url": "https://en.wikipedia.org/wiki/United_States",
        "namespace": {"identifier": 0},
        "article_body": {"html": html},
    }
    dump = tmp_path / "enwiki.ndjson"
    dump.write_text(json.dumps(record) + "\n", encoding="utf-8")
    [page] = iter_dump(dump)
    lead = extract_lead(page.html)
    assert lead is not None and lead.startswith(
        "The United States of America (USA), commonly known as the United States (U.S. or US) or America, is a "
        "country comprising 50 states, a federal district, five major self-governing territories, and various "
        "possessions. At 3.8 million square miles"
    )


def test_pronunciation_guides_are_dropped_and_the_rest_of_the_clause_kept() -> None:
    assert extract_lead(page_html("Catherine_Deneuve.html")).startswith(
        "Catherine Deneuve (born 22 October 1943) is a French actress."
    )
    assert extract_lead(page_html("Gordon_Ramsay.html")).startswith(
        "Gordon James Ramsay, OBE (born 8 November 1966) is a Scottish celebrity chef"
    )
    # A transliteration is not a pronunciation guide: it stays.
    assert extract_lead(page_html("Constitutional_Court_of_Thailand.html")).startswith(
        "The Constitutional Court (Thai: ศาลรัฐธรรมนูญ; RTGS: San Rattha Thammanun) is an independent Thai court"
    )


def test_no_lead_is_cluttered_and_pages_without_one_give_none(
    leads: dict[str, tuple[str, str | None]],
) -> None:
    assert len(leads) == 303
    cluttered = {title: lead for title, (_format, lead) in leads.items() if lead and CLUTTER.search(lead)}
    assert cluttered == {}
    untidy = {
        title: lead
        for title, (_format, lead) in leads.items()
        if lead and (lead != lead.strip() or "  " in lead or re.search(r"[\t\n\r\u00a0]", lead))
    }
    assert untidy == {}
    # A list made of tables has no paragraph before its first heading.
    assert [title for title, (_format, lead) in leads.items() if lead is None] == [
        "List of Dungeons & Dragons monsters (1977–99)"
    ]
    formats = {fmt for fmt, lead in leads.values() if lead}
    assert formats == {"parser-output-html", "full-page-html", "action-parse-json", "other"}


def test_infobox_and_hatnote_text_stay_out() -> None:
    adams = extract_lead(parse_json_html("Douglas_Adams.parse.json"))
    assert "For other people named" not in adams  # hatnote
    assert (
        "Resting place" not in adams and "Highgate" not in adams and "douglasadams.com" not in adams
    )  # infobox
    dog = extract_lead(page_html("Dog.html"))
    assert "This article is about" not in dog and "Doggie" not in dog
    assert "Fossil range" not in dog and "Scientific classification" not in dog


def test_hand_made_pages() -> None:
    tables_only = "<div class='mw-parser-output'><table><tr><td><p>Cell</p></td></tr></table><h2>A</h2><p>Body</p></div>"
    assert extract_lead(tables_only) is None
    list_only = "<div class='mw-parser-output'><ul><li>One</li></ul><div class='mw-heading mw-heading2'><h2>A</h2></div><p>x</p></div>"
    assert extract_lead(list_only) is None
    assert extract_lead("") is None
    html = (
        "<div class='mw-parser-output'><div class='shortdescription' style='display:none'>A  bird</div>"
        "<div role='note' class='hatnote'>For other uses, see Duck (disambiguation).</div>"
        "<p><span id='coordinates'>Coordinates: 1°N 2°E</span></p>"
        "<p><b>Mallard</b> (<span class='rt-commentedText'>MAL-ard</span>; <i>Anas platyrhynchos</i>) is a "
        "duck.<sup class='reference'><a href='#cite_note-1'>[1]</a></sup><span class='mw-editsection'>[edit]</span></p>"
        "<p>Second\nparagraph&nbsp;here.</p><p><br></p><h2>Taxonomy</h2><p>Not the lead.</p></div>"
    )
    page = extract_page(html)
    assert page.lead == "Mallard (Anas platyrhynchos) is a duck. Second paragraph here."
    assert page.short_description == "A bird" == extract_short_description(html)
    assert page.references == []


def test_extract_page_agrees_with_the_single_extractors() -> None:
    html = page_html("Rust_(programming_language).html")
    page = extract_page(html)
    assert page.references == extract_references(html)
    assert page.lead == extract_lead(html)
    assert page.short_description == "General-purpose programming language"
    assert len(page.references) == 212
