"""The two sides of a matching problem and their candidate pairs: what can be matched, and with what.

A *node* is something that can be matched: a real parameter, or one of the `k` equal parts of a tensor that
a port fuses or splits (`qkv` seen as `q`, `k`, `v`). A *candidate* is a (target node, source node) pair whose
shapes are compatible (see `automap.engine.shapes`) and whose dtypes are of one kind; parts never pair with
parts. The features (`automap.engine.features`) score the candidates built here.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from automap._types import Array
from automap.records import ParamTable

from .graph import ModuleTree
from .names import NameTokens, Vocabulary, tokenize
from .shapes import Part, Relation, part_shape, relate

__all__ = ["Candidates", "Node", "Side", "build_sides", "candidate_pairs", "effective_rank"]

Shape = tuple[int, ...]
_MAX_PARTS = 512
_MAX_FUSED = 8


@dataclass(frozen=True, slots=True)
class Node:
    """A matchable item: parameter `base` of its table, whole (`part` None) or one part of it."""

    base: int
    part: Part | None
    shape: Shape


@dataclass
class Side:
    """One side of the problem: its table, hierarchy, tokens and matchable nodes."""

    table: ParamTable
    tree: ModuleTree
    tokens: list[NameTokens]
    nodes: list[Node]
    node_tokens: list[NameTokens] = field(default_factory=list)
    position: Array = field(default_factory=lambda: np.zeros(0))  # relative position in [0, 1] per node
    lexicon: bool = True  # whether convention classes are in use (off only for ablations)
    rank: list[int] = field(default_factory=list)  # each parameter's rank in the order signal (file or execution)
    ordered: bool = True  # False when the file order says nothing inside a block (names sorted as text)


class Candidates(NamedTuple):
    """Parallel arrays over candidate pairs."""

    target: Array  # target node index
    source: Array  # source node index
    relation: list[Relation]


def build_sides(
    source: ParamTable,
    target: ParamTable,
    *,
    lexicon: bool = True,
    source_order: Sequence[str] | None = None,
    target_order: Sequence[str] | None = None,
) -> tuple[Side, Side]:
    """Tokenize both tables against each other's vocabulary and create nodes, parts included.

    `source_order`/`target_order` list parameter names in the order a forward pass first uses them; when given
    they replace file order as the order signal (parameters a pass did not touch keep their file position
    relative to their neighbours).
    """
    source_vocab, target_vocab = Vocabulary(source.names, lexicon=lexicon), Vocabulary(target.names, lexicon=lexicon)
    source_side = Side(
        source, ModuleTree(source), [tokenize(n, target_vocab, lexicon=lexicon) for n in source.names], []
    )
    target_side = Side(
        target, ModuleTree(target), [tokenize(n, source_vocab, lexicon=lexicon) for n in target.names], []
    )
    source_side.lexicon = target_side.lexicon = lexicon
    for side, order in ((source_side, source_order), (target_side, target_order)):
        if order:
            side.rank = effective_rank(side.table, order)
        elif _sorted_as_text(side.table):
            side.rank, side.ordered = _block_ranks(side.table), False
        else:
            side.rank = list(range(len(side.table)))
    for side, other in ((source_side, target_side), (target_side, source_side)):
        side.nodes = [Node(r.index, None, r.shape) for r in side.table.params]
        side.nodes += _part_nodes(side.table, other.table)
        side.node_tokens = [_node_tokens(side, node) for node in side.nodes]
        count = max(len(side.table) - 1, 1)
        side.position = np.array(
            [(side.rank[n.base] + (n.part.index / n.part.parts if n.part else 0.0)) / count for n in side.nodes]
        )
    return source_side, target_side


def _sorted_as_text(table: ParamTable) -> bool:
    """Whether a file lists its names sorted as text (safetensors files do): then its order is not the model's."""
    names = list(table.names)
    return len(names) >= 4 and names == sorted(names)


def _block_ranks(table: ParamTable) -> list[int]:
    """Ranks for a file sorted as text: numbered blocks in numeric order, everything inside a block tied.

    Sorted text puts `layers.10` before `layers.2`, and inside a block `input_layernorm` before `self_attn`
    only because `i` comes before `s`. Numbers sorted as numbers restore the order the blocks were declared in;
    inside a block nothing can be restored, so every parameter of a block gets the block's rank and the order
    signals cannot tell its members apart (they stay neutral rather than follow the alphabet).
    """

    def block(name: str) -> str:
        components = name.split(".")
        numbered = [i for i, c in enumerate(components[:-1]) if c.isdigit()]
        return ".".join(components[: numbered[-1] + 1]) if numbered else name

    def natural(text: str) -> list[tuple[int, int, str]]:
        return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text)]

    keys = [block(name) for name in table.names]
    sizes = Counter(keys)
    first: dict[str, int] = {}
    rank = 0
    for key in sorted(sizes, key=natural):
        first[key] = rank
        rank += sizes[key]
    return [first[key] for key in keys]


def effective_rank(table: ParamTable, order: Sequence[str] | None) -> list[int]:
    """Each parameter's rank in `order` (execution order), file order filling in for parameters not listed."""
    if not order:
        return list(range(len(table)))
    listed = {name: i for i, name in enumerate(order) if name in table}
    keys = []
    last = -1
    for record in table.params:
        if record.name in listed:
            last = listed[record.name]
            keys.append((last, 0, record.index))
        else:
            keys.append((last, 1, record.index))
    ranks = [0] * len(table)
    for rank, index in enumerate(sorted(range(len(table)), key=keys.__getitem__)):
        ranks[index] = rank
    return ranks


def _dtype_kind(dtype: str) -> str:
    return "float" if dtype.startswith(("float", "bfloat")) else "other"


def _part_nodes(table: ParamTable, other: ParamTable) -> list[Node]:
    """Parts of tensors whose shape has more copies here than the other side can take whole.

    A fused `qkv [3d, d]` has no `[3d, d]` counterpart in a port with separate projections, so its thirds are
    offered as candidates; a `[4d, d]` MLP weight that both sides have is not cut up. Only floating-point tensors
    are cut: an integer tensor is a counter, an index or a size (`stride [3]`), never weights fused together, and
    its elements would otherwise be offered to scalar counters (`num_batches_tracked`).
    """
    here = Counter(r.shape for r in table.params)
    there = Counter(r.shape for r in other.params)
    there_shapes = set(there)

    def takers(shape: Shape) -> int:
        return sum(n for s, n in there.items() if relate(shape, s) is not None)

    nodes: list[Node] = []
    for shape, count in here.items():
        if not shape or count <= takers(shape):
            continue
        for axis in {0, len(shape) - 1}:
            size = shape[axis]
            # a few fused pieces (qkv, gate-up, LSTM gates), or a stack unstacked into its slices (experts)
            unstack = axis == 0 and len(shape) >= 3 and _MAX_FUSED < size <= _MAX_PARTS
            counts = [*range(2, min(size, _MAX_FUSED) + 1)] + ([size] if unstack else [])
            for parts in counts:
                if size % parts:
                    continue
                piece = part_shape(shape, axis, parts)
                if not any(relate(piece, s) is not None for s in there_shapes):
                    continue
                nodes.extend(
                    Node(r.index, Part(axis, parts, i), piece)
                    for r in table.params
                    if r.shape == shape and _dtype_kind(r.dtype) == "float"
                    for i in range(parts)
                )
    return nodes


def _node_tokens(side: Side, node: Node) -> NameTokens:
    """A part inherits its tensor's tokens, or takes word `i` of a fused name (`qkv` -> q, k, v).

    When the owning module's name splits into exactly `parts` words, part `i` takes word `i` instead of the
    whole name.
    """
    tokens = side.tokens[node.base]
    if node.part is None or len(tokens.words) < 2:
        return tokens
    words = tokens.words[-2]
    if len(words) != node.part.parts:
        return tokens
    name = side.table.params[node.base].name
    components = name.split(".")
    components[-2] = words[node.part.index]
    return tokenize(".".join(components), lexicon=side.lexicon)


def candidate_pairs(source: Side, target: Side) -> Candidates:
    """Every shape-compatible (target node, source node) pair; parts never pair with parts."""
    by_shape: dict[Shape, list[int]] = defaultdict(list)
    for index, node in enumerate(source.nodes):
        by_shape[node.shape].append(index)
    kinds_t = [_dtype_kind(target.table.params[n.base].dtype) for n in target.nodes]
    kinds_s = [_dtype_kind(source.table.params[n.base].dtype) for n in source.nodes]
    rows, cols, relations = [], [], []
    relation_cache: dict[tuple[Shape, Shape], Relation | None] = {}
    for t_index, t_node in enumerate(target.nodes):
        for shape, members in by_shape.items():
            key = (shape, t_node.shape)
            if key not in relation_cache:
                relation_cache[key] = relate(shape, t_node.shape)
            relation = relation_cache[key]
            if relation is None:
                continue
            for s_index in members:
                if t_node.part is not None and source.nodes[s_index].part is not None:
                    continue
                if kinds_t[t_index] != kinds_s[s_index]:
                    continue
                rows.append(t_index)
                cols.append(s_index)
                relations.append(relation)
    return Candidates(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), relations)
