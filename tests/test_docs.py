"""The README's and docs/' shell examples marked runnable run as written: against a fresh database holding the
embedded slice of the shared pages, in an empty working folder beside ``../shared``, with no network.

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

from tests.conftest import REPO_ROOT, SHARED_WIKIPEDIA

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


def test_the_docs_mark_examples_to_run() -> None:
    assert len(EXAMPLES) >= 6
    assert {example.document.name for example in EXAMPLES} >= {"README.md", "sql.md", "scraping.md"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_links_between_documents_resolve(document: Path) -> None:
    for match in LINK.finditer(document.read_text()):
        target = match["target"]
        if "://" not in target:
            assert (document.parent / target).is_file(), f"{document.name} links to missing {target}"


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.id)
def test_example_runs_as_written(example: Example, embedded_database_url: str, tmp_path: Path) -> None:
    # ../shared/data/wikipedia resolves from the working folder as it does from the repository root.
    (tmp_path / "shared").symlink_to(SHARED_WIKIPEDIA.parent.parent)
    workdir = tmp_path / "wikiref"
    workdir.mkdir()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("WIKIREF_", "PREFECT_"))
    }
    environment.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
        WIKIREF_DATABASE_URL=embedded_database_url,
        WIKIREF_DATA_DIR=str(tmp_path / "data"),
        WIKIREF_EMBED_CACHE_DIR=os.environ["WIKIREF_EMBED_CACHE_DIR"],
        HF_HUB_OFFLINE="1",
        COLUMNS="160",
    )
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.code],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{example.id} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    command = next(line for line in readme.splitlines() if line.endswith(".venv/bin/python -m pytest"))
    assert command in ci.splitlines()
    assert ci.index(".venv/bin/ruff check .") < ci.index(command)
    assert ".venv/bin/ruff format --check ." in ci
