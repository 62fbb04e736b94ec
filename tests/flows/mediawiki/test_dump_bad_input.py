"""Bad dump records are skipped one by one with their line numbers; broken streams keep what came before them.

Regression tests for issue 12 item 3, plus a Hypothesis fuzz of the reader, the extraction and the load
over generated and mutated records (real files, the real database).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import tarfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from tests.conftest import SHARED_WIKIPEDIA
from wikiref.db.page_records import ReferenceRecord
from wikiref.flows.mediawiki.dump import DumpError, DumpReader, iter_dump
from wikiref.flows.mediawiki.extract import extract_references
from wikiref.flows.mediawiki.saved import iter_saved_pages
from wikiref.flows.steps.loading import load_dump

HTML = (
    '<ol class="references"><li id="cite_note-1"><span class="reference-text">Smith, J. (2001). '
    '<a class="external text" href="https://example.org/a">A book</a>.</span></li></ol>'
)


def good(title: str, page_id: int = 1, revision: int = 10) -> dict:
    return {
        "name": title,
        "identifier": page_id,
        "version": {"identifier": revision},
        "url": f"https://en.wikipedia.org/wiki/{title.replace(' ', '_')}",
        "namespace": {"identifier": 0},
        "article_body": {"html": HTML},
    }


def line(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8") + b"\n"


BAD_LINES: dict[str, bytes] = {
    "a JSON list, not an object": b"[1,2,3]\n",
    "a JSON str, not an object": b'"hello"\n',
    'version.identifier is "abc", not an integer': line({**good("V"), "version": {"identifier": "abc"}}),
    "article_body.html is int, not a string": line({**good("H"), "article_body": {"html": 42}}),
    "name is int, not a string": line({**good("N"), "name": 12345}),
    'identifier is "12", not an integer': line({**good("I"), "identifier": "12"}),
    "identifier 9223372036854775808 is outside": line({**good("B"), "identifier": 2**63}),
    "identifier -5 is outside": line({**good("M"), "identifier": -5}),
    "contains invalid characters": line(good("Nul\x00title")),
    "is too long": line(good("x" * 300)),
    "not JSON": b'{"name": "Trunc\n',
    "not UTF-8": b'{"name": "\xff\xfe"}\n',
    "unpaired surrogate": b'{"name": "S\\ud800", "article_body": {"html": "<p>x</p>"}}\n',
}


def test_each_bad_record_is_skipped_with_its_line_number_and_the_rest_loads(
    engine: Engine, tmp_path: Path
) -> None:
    lines = [line(good("First"))]
    for bad in BAD_LINES.values():
        lines += [bad]
    lines += [line(good("Last", page_id=2))]
    path = tmp_path / "dump.ndjson.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    summary = load_dump(engine, path)
    assert (summary.requested, summary.counts.articles_new) == (2, 2)
    assert [record.line for record in summary.skipped_records] == list(range(2, 2 + len(BAD_LINES)))
    for record, expected in zip(summary.skipped_records, BAD_LINES, strict=True):
        assert expected in record.reason, (record, expected)
        assert record.source == str(path)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT title FROM articles ORDER BY title")).scalars().all() == [
            "First",
            "Last",
        ]
    assert (
        "bad records (skipped)" in dict(summary.rows())
        and dict(summary.rows())["bad records (skipped)"] == 13
    )
    table = summary.skipped_records_markdown()
    assert "| 2 | a JSON list, not an object |" in table.replace("\\", "")


def test_a_truncated_gzip_keeps_the_articles_before_the_break(engine: Engine, tmp_path: Path) -> None:
    data = gzip.compress(b"".join(line(good(f"Page {n}", page_id=n + 1)) for n in range(400)))
    path = tmp_path / "dump.ndjson.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(
        DumpError, match=r"is broken after [\d,]+ records .*the articles before the break were kept"
    ):
        load_dump(engine, path, batch_size=50)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM articles")).scalar_one()
    assert 0 < stored < 400


def test_a_corrupt_gzip_body_is_one_line(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(b"".join(line(good(f"Page {n}")) for n in range(50))))
    data[30:60] = b"\x00" * 30  # zlib.error: invalid stored block lengths / distance too far back
    path = tmp_path / "dump.ndjson.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DumpError, match="is broken after") as raised:
        list(iter_dump(path))
    assert "\n" not in str(raised.value)


def test_empty_dumps_and_archives_without_ndjson_say_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"\n\n")
    with pytest.raises(DumpError, match="is empty: no records"):
        list(iter_dump(empty))
    archive = tmp_path / "nothing.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("README.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    with pytest.raises(DumpError, match="holds no NDJSON files"):
        list(iter_dump(archive))
    only_categories = tmp_path / "categories.ndjson"
    only_categories.write_bytes(line({**good("Category:Birds"), "namespace": {"identifier": 14}}))
    with pytest.raises(DumpError, match=r"holds no articles \(1 records: 1 not articles, 0 bad\)"):
        list(iter_dump(only_categories))


def test_scrape_dump_prints_the_skipped_records_and_exits_2_on_a_broken_stream(
    run_cli, database_url: str, tmp_path: Path
) -> None:
    env = {"WIKIREF_DATABASE_URL": database_url}
    path = tmp_path / "dump.ndjson"
    path.write_bytes(line(good("First")) + b"[1,2,3]\n" + line(good("Second", page_id=2)))
    result = run_cli(
        "scrape", "--dump", str(path), env=env
    )  # the earlier spelling of --dump-path still works
    assert result.returncode == 0, result.stderr
    assert "bad records skipped: 1" in result.stdout
    assert f"{path} line 2: a JSON list, not an object" in result.stdout
    assert "Traceback" not in result.stderr
    broken = tmp_path / "broken.ndjson.gz"
    broken.write_bytes(gzip.compress(path.read_bytes())[:-12])
    result = run_cli("scrape", "--dump-path", str(broken), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"wikiref: error: dump {broken} is broken after")
    assert "Traceback" not in result.stderr


# --- fuzz ---------------------------------------------------------------------------------------------------

# The reference lists of a few real pages (their last 30,000 characters): what extraction works on.
SAMPLE_HTML = [page.html[-30_000:] for page in itertools.islice(iter_saved_pages(SHARED_WIKIPEDIA), 6)]
SLOW_BOX = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ("name", "identifier", "version", "url", "namespace", "article_body", "redirects", "is_part_of")


@st.composite
def mutated_html(draw: st.DrawFn) -> str:
    """A real page cut, spliced and sprinkled with junk (NUL, unbalanced tags, lone surrogates excluded)."""
    page = draw(st.sampled_from(SAMPLE_HTML))
    start = draw(st.integers(0, len(page)))
    html = page[start : start + draw(st.integers(0, 8_000))]
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(html)))
        junk = draw(
            st.sampled_from(["\x00", "<li>", "</ol>", '<ol class="references">', "&#0;", '<a href="'])
        )
        html = html[:at] + junk + html[at + draw(st.integers(0, 500)) :]
    return html


@st.composite
def dump_lines(draw: st.DrawFn) -> tuple[list[bytes], list[str]]:
    """Lines of a dump, and the titles of its good records in order (each title unique to the example)."""
    prefix = f"Fuzz {uuid.uuid4().hex[:8]}"
    lines, good_titles = [], []
    for number in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["good", "good", "mutated", "bad", "raw"]))
        record = good(f"{prefix} {number}", page_id=number + 1, revision=draw(st.integers(1, 2**63 - 1)))
        if kind == "good":
            record["article_body"]["html"] = draw(mutated_html()) or HTML  # empty HTML: not an article
            record["redirects"] = [{"name": f"{prefix} {number} redirect"}]
            good_titles.append(record["name"])
            lines.append(line(record))
        elif kind == "mutated":  # a field replaced by any JSON value: may or may not still be an article
            record[draw(st.sampled_from(FIELDS))] = draw(json_values)
            lines.append(line(record))
        elif kind == "bad":
            lines.append(draw(st.sampled_from(list(BAD_LINES.values()))))
        else:
            lines.append(draw(st.binary(max_size=40)).replace(b"\n", b" ") + b"\n")
    return lines, good_titles


def read(lines: list[bytes], path: Path) -> tuple[DumpReader, list[str], DumpError | None]:
    path.write_bytes(gzip.compress(b"".join(lines)))
    reader = DumpReader(path)
    titles: list[str] = []
    try:
        titles = [page.title for page in reader]
    except DumpError as exc:
        return reader, titles, exc
    return reader, titles, None


@settings(max_examples=80, deadline=None, suppress_health_check=SLOW_BOX)
@given(example=dump_lines())
def test_fuzz_reader_skips_only_bad_records(example: tuple[list[bytes], list[str]], tmp_path: Path) -> None:
    lines, good_titles = example
    reader, titles, error = read(lines, tmp_path / "fuzz.ndjson.gz")
    # Every good record is read, in order; mutated records may be articles too, never anything else.
    assert [title for title in titles if title in good_titles] == good_titles
    assert reader.articles + reader.not_articles + len(reader.skipped) == reader.records
    assert all(record.line >= 1 and record.reason for record in reader.skipped)
    assert (error is not None) == (not titles)


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW_BOX)
@given(html=mutated_html())
def test_fuzz_extraction_of_mutated_pages(html: str) -> None:
    references = extract_references(html)
    # A note made only of markers stays empty (extract.py keeps its position); none holds what Postgres refuses.
    assert all(isinstance(ref, ReferenceRecord) for ref in references)
    assert all("\x00" not in ref.text and ref.text == ref.text.strip() for ref in references)
    assert len(references) <= html.count("cite_note-")


def names_in(lines: list[bytes]) -> set[str]:
    """Every string "name" of a JSON object line: the titles a load of these lines may store."""
    names = set()
    for raw in lines:
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("name"), str):
            names.add(record["name"])
    return names


def snapshot(engine: Engine) -> dict[str, tuple]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT a.title, a.revision_id, a.redirects, count(r.id), coalesce(max(r.xmin::text), '') "
                "FROM articles a LEFT JOIN article_references r ON r.article_id = a.id GROUP BY a.id"
            )
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


@settings(max_examples=20, deadline=None, suppress_health_check=SLOW_BOX)
@given(example=dump_lines())
def test_fuzz_load_stores_every_good_record_and_changes_nothing_else(
    example: tuple[list[bytes], list[str]], engine: Engine, tmp_path: Path
) -> None:
    lines, good_titles = example
    before = snapshot(engine)
    path = tmp_path / "fuzz.ndjson.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    try:
        summary = load_dump(engine, path, batch_size=3)
    except DumpError:
        summary = None
    after = snapshot(engine)
    loaded = set(after) - set(before)
    assert set(good_titles) <= loaded
    # Rows stored before are untouched; new rows are only the articles of this dump (good or still valid).
    assert {title: after[title] for title in before} == before
    # A mutated record may name any valid title (its "name" replaced by any string), so the bound is the names the
    # dump's lines hold, not the example's prefix.
    assert loaded <= names_in(lines)
    if summary is None:
        assert not good_titles
    else:
        # A body the write path's sanity checks refuse (e.g. "<") is stored quarantined: still a row, no references.
        assert summary.counts.articles_new + summary.counts.articles_quarantined == len(loaded)
