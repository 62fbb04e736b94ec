"""``wikiref corpus`` and ``wikiref scrape --corpus / --refresh`` as a user runs them (subprocesses, real HTTP
against the mirror, real database)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import SHARED_WIKIPEDIA
from wikiref.db.articles import upsert_page
from wikiref.db.engine import make_engine
from wikiref.db.page_records import PageRecord, ReferenceRecord

WIKI = "en.wikipedia.org"


def test_corpus_commands_define_list_show_refresh_and_remove(run_cli, database_url: str) -> None:
    env = {"WIKIREF_DATABASE_URL": database_url}
    added = run_cli(
        "corpus",
        "add",
        "animals",
        "Cat",
        "Duck",
        "--category",
        "Category:Dogs",
        "--category-depth",
        "2",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert "corpus animals: 2 new sources" in added.stdout
    again = run_cli("corpus", "add", "animals", "Cat", "Duck", env=env)
    assert "0 new sources (1 already there)" in again.stdout
    # The earlier spelling --depth still works (hidden): the same source, not a depth-0 one.
    old = run_cli("corpus", "add", "animals", "--category", "Category:Dogs", "--depth", "2", env=env)
    assert "0 new sources (1 already there)" in old.stdout, old.stderr

    # A scrape that names a corpus records its sources there too.
    scraped = run_cli(
        "scrape", "Microsoft", "--corpus", "insects", "--mirror", str(SHARED_WIKIPEDIA), env=env
    )
    assert scraped.returncode == 0, scraped.stderr

    refreshed = run_cli("scrape", "--refresh", "--mirror", str(SHARED_WIKIPEDIA), env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    rows = {line.split("│")[1].strip(): line for line in refreshed.stdout.splitlines() if line.count("│") > 5}
    # animals: Cat and Duck (the mirror has no Category:Dogs); insects: Microsoft, stored and unchanged.
    assert [cell.strip() for cell in rows["animals"].split("│")[2:7]] == ["2", "2", "2", "0", "0"]
    assert [cell.strip() for cell in rows["insects"].split("│")[2:7]] == ["1", "1", "0", "0", "0"]
    assert "stored articles checked: 1" in refreshed.stdout

    listed = run_cli("corpus", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "animals" in listed.stdout and "insects" in listed.stdout
    shown = run_cli("corpus", "show", "animals", env=env)
    assert "titles: Cat, Duck (2)" in shown.stdout
    assert "category Category:Dogs (depth 2)" in shown.stdout
    assert "articles 2" in shown.stdout

    removed = run_cli("corpus", "remove", "animals", env=env)
    assert removed.returncode == 0 and "removed corpus animals" in removed.stdout
    missing = run_cli("corpus", "show", "animals", env=env)
    assert missing.returncode == 2
    error = "wikiref: error: no corpus named animals; list them with: wikiref corpus list"
    assert error in missing.stderr.splitlines()
    engine = make_engine(database_url)
    with engine.connect() as connection:  # removing a corpus keeps its articles
        assert connection.execute(text("SELECT count(*) FROM articles")).scalar_one() == 3
    engine.dispose()


def test_quarantine_lists_pending_revisions_and_accept_applies_one(run_cli, database_url: str) -> None:
    env = {"WIKIREF_DATABASE_URL": database_url}
    good = tuple(ReferenceRecord(text=f"Author {i} (2001). A book about cats. Press.") for i in range(10))
    engine = make_engine(database_url)
    with Session(engine) as session:
        upsert_page(session=session, page=PageRecord(wiki=WIKI, title="Cat", revision_id=1, references=good))
        bad = upsert_page(
            session=session, page=PageRecord(wiki=WIKI, title="Cat", revision_id=2, references=good[:2])
        )
    assert bad.status == "quarantined"

    listed = run_cli("corpus", "quarantine", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "reference list shrank from 10 to 2" in listed.stdout and "10 → 2" in listed.stdout
    assert "1 pending" in listed.stdout

    accepted = run_cli("corpus", "accept", "Cat", env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert "accepted Cat: 0 references added, 8 moved to history" in accepted.stdout
    with engine.connect() as connection:
        assert connection.execute(text("SELECT revision_id FROM articles")).scalar_one() == 2
        assert connection.execute(text("SELECT count(*) FROM reference_history")).scalar_one() == 8
    engine.dispose()
    assert "0 pending" in run_cli("corpus", "quarantine", env=env).stdout
    none = run_cli("corpus", "accept", "Cat", env=env)
    assert none.returncode == 2
    assert any(
        line.startswith("wikiref: error: no quarantined revision of 'Cat'")
        for line in none.stderr.splitlines()
    )


def test_accept_applies_the_revision_quarantined_on_the_articles_own_wiki(run_cli, database_url: str) -> None:
    """Issue 27, item 9: not en.wikipedia.org by default; --wiki only where the title is pending on several."""
    env = {"WIKIREF_DATABASE_URL": database_url}
    good = tuple(ReferenceRecord(text=f"Autor {i} (2001). Ein Buch über Katzen. Verlag.") for i in range(10))
    engine = make_engine(database_url)
    with Session(engine) as session:
        for wiki in ("de.wikipedia.org", "fr.wikipedia.org"):
            upsert_page(
                session=session, page=PageRecord(wiki=wiki, title="Katze", revision_id=1, references=good)
            )
            upsert_page(
                session=session, page=PageRecord(wiki=wiki, title="Katze", revision_id=2, references=good[:2])
            )
    ambiguous = run_cli("corpus", "accept", "Katze", env=env)
    assert ambiguous.returncode == 2
    assert ambiguous.stderr.strip().splitlines()[-1] == (
        "wikiref: error: Katze is quarantined on de.wikipedia.org, fr.wikipedia.org: choose one with --wiki"
    )
    accepted = run_cli("corpus", "accept", "Katze", "--wiki", "fr.wikipedia.org", env=env)
    assert accepted.returncode == 0, accepted.stderr
    only = run_cli("corpus", "accept", "Katze", env=env)  # now pending on de.wikipedia.org alone
    assert only.returncode == 0, only.stderr
    with engine.connect() as connection:
        revisions = connection.execute(text("SELECT wiki, revision_id FROM articles ORDER BY wiki")).all()
    assert [tuple(row) for row in revisions] == [("de.wikipedia.org", 2), ("fr.wikipedia.org", 2)]
    engine.dispose()
