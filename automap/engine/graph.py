"""A checkpoint's module hierarchy as a networkx graph: modules as inner nodes, parameters as leaves.

Names are paths (`encoder.layer.3.attention.self.query.weight`): every prefix is a module node, the full name a
parameter node. Parameters carry their shape, and each module its subtree signature (the multiset of parameter
shapes below it), which says "these two modules hold the same kinds of tensors" whatever they are called.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import networkx as nx

from automap.records import ParamTable

from .names import spelled

__all__ = ["ROOT", "ModuleTree", "owner"]

ROOT = ""


def owner(name: str) -> str:
    """The module a parameter belongs to: its name without the last component.

    A parametrized tensor's stored values (`conv.parametrizations.weight.original0`) belong to the module the
    tensor belongs to (`conv`).
    """
    name = spelled(name)
    return name.rsplit(".", 1)[0] if "." in name else ROOT


def _parent(path: str) -> str | None:
    if path == ROOT:
        return None
    return path.rsplit(".", 1)[0] if "." in path else ROOT


class ModuleTree:
    """The module hierarchy of one parameter table.

    Attributes:
        graph: `networkx.DiGraph`, edges parent -> child in the order children first appear in the table; node
            attributes `kind` ("module"/"param"), for parameters `shape`, for modules `signature` (Counter of
            parameter shapes below).
    """

    def __init__(self, table: ParamTable) -> None:
        graph = nx.DiGraph()
        graph.add_node(ROOT, kind="module")
        for record in table.params:
            path = record.name
            graph.add_node(path, kind="param", shape=record.shape)
            child = path
            parent = owner(path)
            while True:
                if parent not in graph:
                    graph.add_node(parent, kind="module")
                if not graph.has_edge(parent, child):
                    graph.add_edge(parent, child)
                if parent == ROOT:
                    break
                child, parent = parent, _parent(parent)  # type: ignore[assignment]
        for node in reversed(list(nx.topological_sort(graph))):
            data = graph.nodes[node]
            if data["kind"] == "module":
                signature: Counter[tuple[int, ...]] = Counter()
                for child in graph.successors(node):
                    child_data = graph.nodes[child]
                    if child_data["kind"] == "param":
                        signature[child_data["shape"]] += 1
                    else:
                        signature.update(child_data["signature"])
                data["signature"] = signature
        self.graph = graph

    def ancestors(self, name: str, levels: int) -> list[str]:
        """The first `levels` modules above a parameter, innermost first (shorter near the root)."""
        out: list[str] = []
        node: str | None = owner(name)
        while node is not None and len(out) < levels:
            out.append(node)
            node = _parent(node) if node != ROOT else None
        return out

    def modules(self) -> Sequence[str]:
        """Every module path, root included."""
        return [n for n, d in self.graph.nodes(data=True) if d["kind"] == "module"]
