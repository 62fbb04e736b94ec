"""The reader of the shared saved-pages folder, bulk archive included (streamed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED_WIKIPEDIA
from wikiref.flows.mediawiki.saved import SavedPagesError, iter_saved_pages, saved_titles


def test_pages_have_titles_html_and_known_ids() -> None:
    pages = {page.title: page for page in iter_saved_pages(SHARED_WIKIPEDIA)}
    assert len(pages) == 303
    assert list(pages) == saved_titles(SHARED_WIKIPEDIA)
    # action=render fragment: ids from the manifest and the fetch-URL comment.
    draft = pages["1976 NBA draft"]
    assert (draft.page_id, draft.revision_id) == (4506416, 601466720)
    # full page: RLCONF; Parsoid: mw:pageId meta and the revision URL; parse JSON: pageid only.
    assert (pages["Bengaluru"].page_id, pages["Bengaluru"].revision_id) == (44275267, 1347626746)
    assert (pages["Dog"].page_id, pages["Dog"].revision_id) == (4269567, 845493773)
    assert (pages["Douglas Adams"].page_id, pages["Douglas Adams"].revision_id) == (8091, None)
    assert pages["Douglas Adams"].html.lstrip().startswith("<")
    assert pages["Snooker season 1996/1997"].source == "pages/Snooker_season_1996%2F1997.html"


def test_bulk_archive_is_streamed_after_pages() -> None:
    pages = list(iter_saved_pages(SHARED_WIKIPEDIA, include_bulk=True))
    assert len(pages) == 303 + 701
    bulk = pages[303:]
    assert all(page.source.startswith("bulk.tar.gz:bulk/pages/") for page in bulk)
    fc_gute = next(page for page in bulk if page.title == "FC Gute")
    assert (fc_gute.page_id, fc_gute.revision_id) == (28843248, 579659816)
    assert len({page.title for page in pages}) == 1004


def test_folder_without_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SavedPagesError, match="has no MANIFEST.tsv"):
        list(iter_saved_pages(tmp_path))
