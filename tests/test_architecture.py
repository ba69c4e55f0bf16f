"""The package's shape: one subpackage per stage of the data's path, imports pointing one way.

Every ``import`` of a ``sdoml_sql`` module (at module level or inside a function) must point
to the importer's own stage or an earlier one, and no chain of imports may come back to
where it started.  The graph is read from the source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sdoml_sql"

#: Stages in import order: a module may import from its own stage and the ones above it.
STAGES = {
    "base": ("sdoml_sql.exceptions", "sdoml_sql.config", "sdoml_sql.version", "sdoml_sql.files"),
    "stores": ("sdoml_sql.stores",),
    "catalog_builder": ("sdoml_sql.catalog_builder",),
    "fetch": ("sdoml_sql.fetch",),
    "quality": ("sdoml_sql.quality",),
    "datasets": ("sdoml_sql.datasets",),
    "query": ("sdoml_sql.query",),
    "clients": ("sdoml_sql.fido",),
    "web": ("sdoml_sql.web",),
    "entry points": ("sdoml_sql", "sdoml_sql.cli", "sdoml_sql.demo"),
}


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module under the package directory ``root``."""
    names = {}
    for path in root.rglob("*.py"):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that module ``name`` imports (anywhere in its body)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {_owning_module(target, modules) for target in found if _owning_module(target, modules)}


def _owning_module(target: str, modules: dict[str, Path]) -> str | None:
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def stage_of(module: str, stages: dict[str, tuple[str, ...]]) -> int:
    """Position of the stage holding ``module`` (the longest matching prefix wins)."""
    best, rank = -1, None
    for position, prefixes in enumerate(stages.values()):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), position
    if rank is None:
        raise AssertionError(f"module {module} belongs to no stage: add it to STAGES in {__file__}")
    return rank


def upward_imports(root: Path, stages=STAGES) -> list[str]:
    """Imports that point from an earlier stage to a later one, as ``'a imports b'`` lines."""
    modules = module_names(root)
    names = list(stages)
    problems = []
    for name, path in sorted(modules.items()):
        for target in sorted(imports_of(name, path, modules)):
            if stage_of(target, stages) > stage_of(name, stages):
                problems.append(f"{name} ({names[stage_of(name, stages)]}) imports {target} "
                                f"({names[stage_of(target, stages)]})")
    return problems


def import_cycles(root: Path) -> list[list[str]]:
    """Every cycle of the import graph, each as the list of modules around it."""
    modules = module_names(root)
    graph = {name: sorted(imports_of(name, path, modules) - {name}) for name, path in modules.items()}
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in graph[node]:
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_every_module_belongs_to_a_stage():
    for name in module_names(PACKAGE):
        stage_of(name, STAGES)


def test_imports_point_from_later_stages_to_earlier_ones():
    assert upward_imports(PACKAGE) == []


def test_no_import_cycles():
    assert import_cycles(PACKAGE) == []


def test_stage_subpackages_say_what_they_take_give_and_import():
    for stage in ("stores", "catalog_builder", "fetch", "quality", "datasets", "query", "fido", "web"):
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and "In:" in doc and "Out:" in doc and "May import:" in doc, stage


def external_imports(path: Path) -> set[str]:
    """Top-level names of what a module imports from outside the package (``sunpy.net.attrs``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.update([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
    return found


def test_only_the_fido_client_imports_sunpy_net():
    # Fido's clients register themselves on import: the rest of the package stays out of it.
    importers = {name for name, path in module_names(PACKAGE).items()
                 if any(n == "sunpy.net" or n.startswith("sunpy.net.") for n in external_imports(path))}
    assert importers and all(stage_of(name, STAGES) == list(STAGES).index("clients") for name in importers), importers


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "sdoml_sql"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_checks_catch_the_old_fetch_maps_pair(tmp_path):
    # The flat layout before the split: fetch.py imported maps.py inside a function, and
    # maps.py imported fetch.py at the top.
    root = _package(tmp_path, {
        "__init__.py": "",
        "fetch.py": "def write_fits():\n    from sdoml_sql.maps import header_records\n",
        "maps.py": "from sdoml_sql.fetch import _build, frame_headers\n",
    })
    assert import_cycles(root) == [["sdoml_sql.fetch", "sdoml_sql.maps", "sdoml_sql.fetch"]]


def test_the_checks_catch_an_upward_import(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "fetch/__init__.py": "",
        "fetch/maps.py": "def run():\n    from ..query import catalog\n",
        "query/__init__.py": "",
        "query/catalog.py": "from sdoml_sql.fetch import maps\n",
    })
    assert upward_imports(root) == ["sdoml_sql.fetch.maps (fetch) imports sdoml_sql.query.catalog (query)"]
    with pytest.raises(AssertionError, match="belongs to no stage"):
        upward_imports(root, {"fetch": ("sdoml_sql.fetch",)})
