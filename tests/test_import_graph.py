"""The import graph keeps the rooms apart: db and models are plain libraries, and nothing imports in a circle.

Read from the source (every import statement, at module level or inside a function, TYPE_CHECKING ones
included), so that a lazy import cannot hide a circle or a wrong-way dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository's folders and the import names they install as (pyproject's package-dir).
PACKAGES = {"db": "wikiref.db", "models": "wikiref.models", "flows": "wikiref.flows"}
# Plain libraries: what each must never import.
FORBIDDEN = {
    "wikiref.db": ("prefect", "wikiref.flows", "wikiref.models"),
    "wikiref.models": ("prefect", "wikiref.flows", "wikiref.db"),
    # The shared sequences and the MediaWiki library are the plain part of flows/.
    "wikiref.flows.steps": ("prefect",),
    "wikiref.flows.mediawiki": ("prefect",),
}


def module_files() -> dict[str, Path]:
    """Every product module by its import name, migrations excepted (alembic loads them as scripts)."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if "migrations" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imported_names(path: Path, module: str) -> set[str]:
    """The absolute names a module's import statements name (``from a import b`` gives ``a`` and ``a.b``)."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the product modules it imports (a name that is an attribute, not a module, counts as its module)."""
    modules = module_files()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(path, module):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def in_room(name: str, room: str) -> bool:
    return name == room or name.startswith(room + ".")


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module)):
            return circle
    return None


def test_plain_libraries_never_import_prefect_flows_nor_each_other():
    modules = module_files()
    wrong = sorted(
        f"{module} imports {name}"
        for module, path in modules.items()
        for room, forbidden in FORBIDDEN.items()
        if in_room(module, room)
        for name in imported_names(path, module)
        if any(in_room(name, bad) for bad in forbidden)
    )
    assert wrong == []


def test_no_import_circle_in_wikiref():
    assert find_circle(import_graph()) is None


def test_no_top_level_db_models_or_flows_imports():
    """The folders import only as wikiref.*: a bare ``import db`` works from the repository root and nowhere else."""
    files = [path for folder in (*PACKAGES, "tests", "bench") for path in (ROOT / folder).rglob("*.py")]
    bare = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in imported_names(path, "")
        if name.split(".")[0] in PACKAGES
    )
    assert bare == []


def test_the_graph_reader_sees_lazy_imports_and_circles():
    """The checks above can fail: a function-level import is an edge, and a two-module circle is found."""
    source = ROOT / "models/finetune.py"
    assert "wikiref.models.pairs" in imported_names(source, "wikiref.models.finetune")
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None
