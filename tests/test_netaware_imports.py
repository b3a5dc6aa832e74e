"""The netaware room's imports: no cycle among its modules, and the command line enters through the package only.

Imports are read from the source, lazy ones inside functions and type-checking ones included: a lazy import
still ties two modules together, and the package's type-checking imports stand for the ones its `__getattr__`
makes on first use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import automap

ROOT = Path(automap.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, as dotted names; `from x import y` counts as importing `x` and `x.y`."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = (f"{base}.{node.module}" if node.module else base) if node.level else str(node.module)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph(folder: Path) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in sorted(folder.rglob("*.py"))}
    return {name: (_imports(path) & modules.keys()) - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, as the modules along it, or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_netaware_modules_import_each_other_without_a_cycle() -> None:
    graph = _graph(ROOT / "netaware")
    assert "automap.netaware._frameworks.torch" in graph and graph["automap.netaware._api"]
    assert _cycle(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_the_command_line_uses_no_private_netaware_module() -> None:
    private = {
        f"{path.name}: {module}"
        for path in sorted((ROOT / "cli").glob("*.py"))
        for module in _imports(path)
        if module.startswith("automap.netaware.") and module.split(".")[2].startswith("_")
    }
    assert private == set()
