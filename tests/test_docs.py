"""The README's and docs/' shell examples marked runnable run as written, in an empty working folder beside
``../shared`` whose ``.venv`` is this virtual environment, with no network. docs/' examples run each against a
fresh database holding the embedded slice of the shared pages; the README's run in order, as a reader runs them,
on one fresh database, starting with its offline quick start.

Mark a block by putting ``<!-- runnable -->`` on the line before its fence. Each example starts several
``wikiref`` processes (tens of seconds on 2 busy cores), so they run under the ``slow`` marker; the link and CI
checks are fast.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SHARED_WIKIPEDIA, TEMPLATE_DATABASE, create_database, drop_database

DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"^<!-- runnable -->\n```bash\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\((?P<target>[^)#\s]+\.md)(?:#[^)]*)?\)")


@dataclass(frozen=True)
class Example:
    document: Path
    line: int
    code: str

    @property
    def id(self) -> str:
        return f"{self.document.relative_to(REPO_ROOT)}:{self.line}"


def examples() -> list[Example]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in RUNNABLE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Example(document, line, match["code"]))
    return found


EXAMPLES = examples()
README = REPO_ROOT / "README.md"


def test_the_docs_mark_examples_to_run() -> None:
    assert len(EXAMPLES) >= 6
    assert {example.document.name for example in EXAMPLES} >= {"README.md", "sql.md", "scraping.md"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_links_between_documents_resolve(document: Path) -> None:
    for match in LINK.finditer(document.read_text()):
        target = match["target"]
        if "://" not in target:
            assert (document.parent / target).is_file(), f"{document.name} links to missing {target}"


def reader_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder as a reader's checkout: ``../shared`` beside it, ``.venv`` in it; and the environment."""
    # ../shared/data/wikipedia resolves from the working folder as it does from the repository root.
    (tmp_path / "shared").symlink_to(SHARED_WIKIPEDIA.parent.parent)
    workdir = tmp_path / "wikiref"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("WIKIREF_", "PREFECT_"))
    }
    environment.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
        WIKIREF_DATA_DIR=str(tmp_path / "data"),
        WIKIREF_EMBED_CACHE_DIR=os.environ["WIKIREF_EMBED_CACHE_DIR"],
        HF_HUB_OFFLINE="1",
        COLUMNS="160",
    )
    return workdir, environment


def run_example(
    example: Example, workdir: Path, environment: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.code],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{example.id} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize(
    "example", [e for e in EXAMPLES if e.document != README], ids=lambda example: example.id
)
def test_example_runs_as_written(example: Example, embedded_database_url: str, tmp_path: Path) -> None:
    workdir, environment = reader_folder(tmp_path)
    run_example(example, workdir, {**environment, "WIKIREF_DATABASE_URL": embedded_database_url})


@pytest.mark.slow
# The quick start trains and embeds: minutes on 2 idle cores, over 15 on 2 cores shared by five test runs.
@pytest.mark.timeout(3600)
def test_the_readme_runs_in_order_after_its_offline_quick_start(
    server_url: str, template_url: str, tmp_path: Path
) -> None:
    readme = [example for example in EXAMPLES if example.document == README]
    assert "wikiref run pipeline --param mirror_dir=../shared/data/wikipedia" in readme[0].code
    database_url = create_database(server_url, template=TEMPLATE_DATABASE)  # migrated, empty
    workdir, environment = reader_folder(tmp_path)
    environment["WIKIREF_DATABASE_URL"] = database_url
    try:
        outputs = [run_example(example, workdir, environment, timeout=2400).stdout for example in readme]
    finally:
        drop_database(server_url, database_url)
    everything = "\n".join(outputs)
    assert "(0 rows)" not in everything
    assert everything.count("(5 rows)") >= 3  # similar_references, similar_articles, search_text
    # The free-text search, the block's last table, finds rows: a data row below its header's rule.
    search = next(output for example, output in zip(readme, outputs) if "--full-text-only" in example.code)
    assert re.search(r"^│\s*\d+\s*│", search[search.rindex("┡") :], re.MULTILINE), search[-2000:]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    command = next(line for line in readme.splitlines() if line.endswith(".venv/bin/python -m pytest"))
    assert command in ci.splitlines()
    assert ci.index(".venv/bin/ruff check .") < ci.index(command)
    assert ".venv/bin/ruff format --check ." in ci
