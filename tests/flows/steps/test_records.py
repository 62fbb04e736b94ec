"""Saved pages to records: the one load loop of test databases and benchmarks."""

from __future__ import annotations

from tests.conftest import SHARED_WIKIPEDIA
from wikiref.flows.mediawiki.extract import extract_references
from wikiref.flows.mediawiki.saved import iter_saved_pages
from wikiref.flows.steps.records import PAGES_PER_BATCH, saved_page_batches


def test_saved_page_batches_are_every_page_in_order_batch_by_batch() -> None:
    titles = [page.title for page in iter_saved_pages(SHARED_WIKIPEDIA)]
    batches = list(saved_page_batches(SHARED_WIKIPEDIA))
    assert [len(batch) for batch in batches] == [PAGES_PER_BATCH] * 6 + [3]
    records = [record for batch in batches for record in batch]
    assert [record.title for record in records] == titles
    dog = next(record for record in records if record.title == "Dog")
    assert (dog.wiki, dog.page_id, dog.revision_id) == ("en.wikipedia.org", 4269567, 845493773)
    assert len(dog.references) == 237


def test_saved_page_batches_keep_only_the_titles_asked_for() -> None:
    [batch] = saved_page_batches(SHARED_WIKIPEDIA, titles={"Dog", "Cat", "No such page"})
    assert sorted(record.title for record in batch) == ["Cat", "Dog"]
    cat = next(page for page in iter_saved_pages(SHARED_WIKIPEDIA) if page.title == "Cat")
    cat_record = next(record for record in batch if record.title == "Cat")
    assert list(cat_record.references) == extract_references(cat.html)
