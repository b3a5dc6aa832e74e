"""The package's shape: no import cycles between modules, and imports that flow one way through the rooms.

Every module of `automap/` is parsed (not imported), and every `import` counts as an edge, including those inside
functions (a function-level import only postpones a cycle to run time), and so does a module named as a literal
to `importlib.import_module` or `load_adapter` (the format registry loads its adapters so). Imports under
`if TYPE_CHECKING:` are exempt, since they never run, except in a module with a module-level `__getattr__`: there
they mirror the names it imports lazily, by name, on first use.

The rooms follow the data: `io` -> `engine` -> `conversion` / `netaware` -> `report` -> the package's public
surface (`automap/__init__.py`) -> `cli` -> `__main__`. A module may import its own room, the shared floor
(`automap/_*.py`, `records`, `transforms`, `mapping`, `dtypes`) and the rooms before it; the floor imports no
room. `netaware` may import `conversion` (none does today), never the other way.

Edges known to break these rules are listed below with the reason; each must still exist (so the lists shrink
as the code is fixed), and no other may appear.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "automap"

# (importer, imported): why the edge exists though it closes a cycle.
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}

# (importer, imported): why the edge exists though it points against the flow.
KNOWN_LAYER_VIOLATIONS: dict[tuple[str, str], str] = {}

_FLOOR_MODULES = frozenset({"records", "transforms", "mapping", "dtypes"})
_ROOMS = {"io": 0, "engine": 1, "conversion": 2, "netaware": 2, "report": 3}
_SURFACE = 4  # automap/__init__.py: re-exports io, conversion, netaware, report
_CLI = 5
_MAIN = 6
_ALLOWED_SIDEWAYS = frozenset({("netaware", "conversion")})
_BY_NAME = frozenset({"import_module", "load_adapter"})  # functions that import the module they are given by name


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    found = {}
    for file in sorted(package.rglob("*.py")):
        parts = list(file.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = file
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module: str, is_package: bool, modules: Collection[str]) -> set[str]:
    """The modules of `modules` that `module` imports anywhere in its code (see the module docstring).

    `from a import b` imports module `a.b` when there is one, else a name defined by `a`. The packages above an
    imported module, which Python runs first, are not counted: every module would depend on `automap`.
    """
    lazy = any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in tree.body)
    base = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not lazy:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and _loaded_by_name(node):
            names.add(_loaded_by_name(node))
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                origin = ".".join([*anchor, *([node.module] if node.module else [])])
            names.update(
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin for alias in node.names
            )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {target for target in (_resolve(name, modules) for name in names) if target and target != module}


def _loaded_by_name(call: ast.Call) -> str:
    """The module `importlib.import_module("automap...")` or `load_adapter("automap...", ...)` imports, or ""."""
    func = call.func
    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    first = call.args[0] if call.args else None
    if called in _BY_NAME and isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return ""


def _resolve(name: str, modules: Collection[str]) -> str | None:
    """The module a dotted name refers to: itself, or its longest prefix that is a module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports."""
    modules = _modules(package)
    graph = {}
    for module, file in modules.items():
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        graph[module] = _imports(tree, module, file.name == "__init__.py", modules)
    return graph


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (as a closed path) for each group of modules that import each other, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(graph, group) for group in sorted(groups)]


def _cycle_through(graph: Mapping[str, Iterable[str]], group: list[str]) -> list[str]:
    """A closed path from the group's first module back to itself, within the group."""
    members, start = set(group), group[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for other in sorted(graph.get(node, ())):
            if other == start:
                return [*paths[node], start]
            if other in members and other not in paths:
                paths[other] = [*paths[node], other]
                queue.append(other)
    raise AssertionError(group)  # unreachable: a strongly connected group has a cycle through each member


def _place(module: str) -> tuple[int, str] | None:
    """A module's rank along the flow and its room ("floor" for the shared floor), or None if unplaced."""
    parts = module.split(".")
    if module == "automap":
        return _SURFACE, "surface"
    if module == "automap.__main__":
        return _MAIN, "main"
    if parts[1] == "cli":
        return _CLI, "cli"
    if parts[1] in _ROOMS:
        return _ROOMS[parts[1]], parts[1]
    if len(parts) == 2 and (parts[1] in _FLOOR_MODULES or (parts[1].startswith("_") and not parts[1].endswith("__"))):
        return -1, "floor"
    return None


def layer_violations(graph: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    """Edges against the flow: a floor module importing a room, or a room importing a later or sibling room."""
    found = []
    for importer in sorted(graph):
        here = _place(importer)
        for imported in sorted(graph[importer]):
            there = _place(imported)
            if here is None or there is None:
                continue  # reported by the test that every module has a place
            (rank, room), (their_rank, their_room) = here, there
            if their_room in (room, "floor"):
                continue
            if room == "floor" or their_rank > rank:
                found.append((importer, imported))
            elif their_rank == rank and (room, their_room) not in _ALLOWED_SIDEWAYS:
                found.append((importer, imported))
    return found


def test_every_module_has_a_place() -> None:
    unplaced = [module for module in _modules() if _place(module) is None]
    assert not unplaced, f"put these in a room or on the floor (see this test's docstring): {unplaced}"


def test_no_import_cycles() -> None:
    graph = import_graph()
    for (importer, imported), why in KNOWN_CYCLE_EDGES.items():
        assert imported in graph.get(importer, set()), (
            f"{importer} -> {imported} is gone ({why}); remove it from the list"
        )
        graph[importer] = graph[importer] - {imported}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_imports_flow_one_way() -> None:
    violations = layer_violations(import_graph())
    for edge, why in KNOWN_LAYER_VIOLATIONS.items():
        assert edge in violations, f"{edge[0]} -> {edge[1]} is gone or allowed now ({why}); remove it from the list"
    unexpected = [f"{a} -> {b}" for a, b in violations if (a, b) not in KNOWN_LAYER_VIOLATIONS]
    assert not unexpected, "imports against the flow io -> engine -> conversion/netaware -> report -> cli: " + (
        ", ".join(unexpected)
    )


def test_io_never_imports_mindspore_and_imports_torch_only_in_its_adapters() -> None:
    adapters = {"torch.py", "_torch_zip.py", "_fsdp_torch.py"}  # loaded by name when a PyTorch file needs torch
    for file in sorted((PACKAGE / "io").rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        roots = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and not node.level
        }
        assert "mindspore" not in roots, f"{file.name} imports MindSpore"
        if file.name not in adapters:
            assert "torch" not in roots, f"{file.name} imports torch; only {sorted(adapters)} may"


# --- the checks themselves can fail ------------------------------------------------------------------------------


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_function_level_imports_count_and_type_checking_ones_do_not(tmp_path: Path) -> None:
    package = tmp_path / "automap"
    (package / "io").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "io" / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from automap.io import b\n"
    )
    (package / "io" / "a.py").write_text("def f():\n    from . import b\n")
    (package / "io" / "b.py").write_text("def g():\n    import automap.io.a\n")
    (package / "records.py").write_text("from automap.io import a\n")
    (package / "engine").mkdir()
    (package / "engine" / "__init__.py").write_text(  # lazy re-exports: its TYPE_CHECKING imports are real
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import x\ndef __getattr__(name): ...\n"
    )
    (package / "engine" / "c.py").write_text("def h():\n    return load_adapter('automap.io.a', 'reading')\n")
    graph = import_graph(package)
    assert graph["automap.io.a"] == {"automap.io.b"}
    assert graph["automap.io.b"] == {"automap.io.a"}
    assert graph["automap.io"] == set()
    assert graph["automap.engine"] == {"automap.engine.c"}
    assert graph["automap.engine.c"] == {"automap.io.a"}
    assert find_cycles(graph) == [["automap.io.a", "automap.io.b", "automap.io.a"]]
    assert layer_violations(graph) == [("automap.records", "automap.io.a")]


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("automap.engine.x", "automap.io.y", True),
        ("automap.io.y", "automap.engine.x", False),
        ("automap.netaware.n", "automap.conversion.c", True),
        ("automap.conversion.c", "automap.netaware.n", False),
        ("automap.report.r", "automap.cli.c", False),
        ("automap.cli.c", "automap", True),
        ("automap.mapping", "automap._text", True),
        ("automap._text", "automap.engine.x", False),
    ],
)
def test_the_flow_rule(importer: str, imported: str, allowed: bool) -> None:
    assert (layer_violations({importer: {imported}}) == []) == allowed
