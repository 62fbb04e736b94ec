"""The project installs under one import name: wikiref (wikiref.db, wikiref.models, wikiref.flows)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_install_puts_one_top_level_name_into_site_packages(tmp_path):
    target = tmp_path / "site-packages"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    top_level = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert top_level == {"wikiref"}
    assert {p.name for p in (target / "wikiref").iterdir()} >= {"db", "models", "flows"}
    # The migrations are data to alembic, not packages: they must travel with the installed package.
    assert (target / "wikiref/db/migrations/versions/0001_initial_schema.py").is_file()
    assert (target / "wikiref/db/migrations/script.py.mako").is_file()
    found = subprocess.run(
        [sys.executable, "-c", "import wikiref.flows.cli, wikiref.db.migrate as m; print(m.__file__)"],
        env={"PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip().startswith(str(target))
