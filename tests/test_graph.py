"""The module hierarchy of a parameter table: nodes, shape signatures, navigation."""

from __future__ import annotations

from collections import Counter

from automap.engine.graph import ROOT, ModuleTree, owner
from automap.records import ParamRecord, ParamTable


def _table(*specs: tuple[str, tuple[int, ...]]) -> ParamTable:
    return ParamTable("pytorch", "graph-test", tuple(ParamRecord(n, s, "float32", i) for i, (n, s) in enumerate(specs)))


TABLE = _table(
    ("conv.weight", (4, 3, 3, 3)),
    ("conv.bias", (4,)),
    ("layer1.0.conv1.weight", (4, 4, 3, 3)),
    ("layer1.0.bn1.weight", (4,)),
    ("layer1.1.conv1.weight", (4, 4, 3, 3)),
    ("fc.weight", (2, 4)),
    ("scale", ()),
)


def test_owner_is_the_name_without_its_last_component() -> None:
    assert owner("layer1.0.conv1.weight") == "layer1.0.conv1"
    assert owner("scale") == ROOT


def test_every_prefix_is_a_module_and_every_name_a_parameter() -> None:
    tree = ModuleTree(TABLE)
    graph = tree.graph
    assert sorted(tree.modules()) == sorted(
        ["", "conv", "layer1", "layer1.0", "layer1.0.conv1", "layer1.0.bn1", "layer1.1", "layer1.1.conv1", "fc"]
    )
    params = [n for n, d in graph.nodes(data=True) if d["kind"] == "param"]
    assert sorted(params) == sorted(TABLE.names)
    assert graph.nodes["layer1.0.bn1.weight"]["shape"] == (4,)
    assert set(graph.successors("layer1")) == {"layer1.0", "layer1.1"}
    assert set(graph.successors(ROOT)) == {"conv", "layer1", "fc", "scale"}


def test_children_in_the_order_they_first_appear() -> None:
    graph = ModuleTree(TABLE).graph
    assert list(graph.successors(ROOT)) == ["conv", "layer1", "fc", "scale"]
    assert list(graph.successors("layer1.0")) == ["layer1.0.conv1", "layer1.0.bn1"]
    assert list(graph.successors("conv")) == ["conv.weight", "conv.bias"]


def test_signature_is_the_multiset_of_shapes_below_a_module() -> None:
    graph = ModuleTree(TABLE).graph
    assert graph.nodes["layer1"]["signature"] == Counter({(4, 4, 3, 3): 2, (4,): 1})
    assert graph.nodes["layer1.1"]["signature"] == Counter({(4, 4, 3, 3): 1})
    assert graph.nodes[ROOT]["signature"] == Counter({(4, 3, 3, 3): 1, (4,): 2, (4, 4, 3, 3): 2, (2, 4): 1, (): 1})


def test_ancestors_innermost_first_and_shorter_near_the_root() -> None:
    tree = ModuleTree(TABLE)
    assert tree.ancestors("layer1.0.conv1.weight", 2) == ["layer1.0.conv1", "layer1.0"]
    assert tree.ancestors("layer1.0.conv1.weight", 10) == ["layer1.0.conv1", "layer1.0", "layer1", ROOT]
    assert tree.ancestors("scale", 3) == [ROOT]


def test_same_structure_gets_the_same_signature_whatever_the_names() -> None:
    torch_like = ModuleTree(_table(("blocks.0.fc.weight", (8, 4)), ("blocks.0.fc.bias", (8,))))
    port = ModuleTree(_table(("layers.0.dense.kernel", (8, 4)), ("layers.0.dense.b", (8,))))
    assert torch_like.graph.nodes["blocks.0"]["signature"] == port.graph.nodes["layers.0"]["signature"]
