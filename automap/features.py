"""The evidence automap weighs for each candidate pair: one registered function per signal.

A *node* is something that can be matched: a real parameter, or one of the `k` equal parts of a tensor that
a port fuses or splits (`qkv` seen as `q`, `k`, `v`). A *candidate* is a (target node, source node) pair whose
shapes are compatible (see `automap.shapes`). Each feature scores every candidate in [0, 1]; the solver turns
the weighted sum of `1 - score` into a cost. Features marked `weak` (position in file order) can break ties
but never make a pair trustworthy on their own: confidence looks at how much of a decision the strong ones
carry.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ._types import Array
from .graph import ModuleTree, owner
from .names import NameTokens, TokenWeights, Vocabulary, number_contexts, tokenize
from .records import ParamTable
from .shapes import Part, Relation, part_shape, relate

__all__ = ["FEATURES", "Candidates", "FeatureContext", "Side", "build_sides", "feature"]

Shape = tuple[int, ...]
_MAX_PARTS = 512
_MAX_FUSED = 8
_DIGITS = re.compile(r"\d+")


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

    def name(self, node: int) -> str:
        """Display name of a node: `qkv.weight` or `qkv.weight[1/3 on axis 0]`."""
        item = self.nodes[node]
        base = self.table.params[item.base].name
        if item.part is None:
            return base
        return f"{base}[{item.part.index}/{item.part.parts} on axis {item.part.axis}]"


class Candidates(NamedTuple):
    """Parallel arrays over candidate pairs."""

    target: Array  # target node index
    source: Array  # source node index
    relation: list[Relation]


@dataclass
class FeatureContext:
    """Everything a feature may look at, including what earlier passes learned."""

    source: Side
    target: Side
    candidates: Candidates
    weights: TokenWeights
    learned: Mapping[str, Counter[str]] = field(default_factory=dict)  # target token -> source tokens
    module_affinity: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (t module, s module)
    predicted_position: Array | None = None  # per target node, expected source position in [0, 1]
    number_slots: Mapping[str, SlotRule] = field(default_factory=dict)  # target slot -> learned rule


class Feature(NamedTuple):
    """A registered signal."""

    name: str
    weight: float
    weak: bool
    compute: Callable[[FeatureContext], Array]


FEATURES: dict[str, Feature] = {}


def feature(
    name: str, *, weight: float, weak: bool = False
) -> Callable[[Callable[[FeatureContext], Array]], Callable[[FeatureContext], Array]]:
    """Register a feature function scoring all candidates in [0, 1].

    Raises:
        ValueError: a feature of that name is already registered.
    """

    def register(compute: Callable[[FeatureContext], Array]) -> Callable[[FeatureContext], Array]:
        if name in FEATURES:
            msg = f"feature {name!r} is registered twice"
            raise ValueError(msg)
        FEATURES[name] = Feature(name, weight, weak, compute)
        return compute

    return register


# ---------------------------------------------------------------------------------------------------- sides


def build_sides(source: ParamTable, target: ParamTable, *, lexicon: bool = True) -> tuple[Side, Side]:
    """Tokenize both tables against each other's vocabulary and create nodes, parts included."""
    source_vocab, target_vocab = Vocabulary(source.names, lexicon=lexicon), Vocabulary(target.names, lexicon=lexicon)
    source_side = Side(source, ModuleTree(source), [tokenize(n, target_vocab, lexicon=lexicon) for n in source.names], [])
    target_side = Side(target, ModuleTree(target), [tokenize(n, source_vocab, lexicon=lexicon) for n in target.names], [])
    source_side.lexicon = target_side.lexicon = lexicon
    for side, other in ((source_side, target_side), (target_side, source_side)):
        side.nodes = [Node(r.index, None, r.shape) for r in side.table.params]
        side.nodes += _part_nodes(side.table, other.table)
        side.node_tokens = [_node_tokens(side, node) for node in side.nodes]
        count = max(len(side.table) - 1, 1)
        side.position = np.array(
            [(n.base + (n.part.index / n.part.parts if n.part else 0.0)) / count for n in side.nodes]
        )
    return source_side, target_side


def _dtype_kind(dtype: str) -> str:
    return "float" if dtype.startswith(("float", "bfloat")) else "other"


def _part_nodes(table: ParamTable, other: ParamTable) -> list[Node]:
    """Parts of tensors whose shape has more copies here than the other side can take whole.

    A fused `qkv [3d, d]` has no `[3d, d]` counterpart in a port with separate projections, so its thirds are
    offered as candidates; a `[4d, d]` MLP weight that both sides have is not cut up.
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
                    if r.shape == shape
                    for i in range(parts)
                )
    return nodes


def _node_tokens(side: Side, node: Node) -> NameTokens:
    """A part inherits its tensor's tokens; when the owning module's name splits into exactly `parts` words
    (`qkv` -> q, k, v), part `i` takes word `i` instead of the whole name.
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


# ------------------------------------------------------------------------------------------------ candidates


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


# -------------------------------------------------------------------------------------------------- features


@feature("shape", weight=1.0)
def shape_feature(ctx: FeatureContext) -> Array:
    """1 for identical shapes; less for a layout change, transpose or reshape; parts cost a little more."""
    is_part = np.array(
        [
            ctx.source.nodes[s].part is not None or ctx.target.nodes[t].part is not None
            for t, s in zip(ctx.candidates.target, ctx.candidates.source, strict=True)
        ],
        dtype=bool,
    )
    scores = np.array([r.score for r in ctx.candidates.relation])
    return np.where(is_part, scores * 0.8, scores)


def _pairwise(ctx: FeatureContext, score: Callable[[NameTokens, NameTokens], float]) -> Array:
    cache: dict[tuple[int, int], float] = {}
    out = np.empty(len(ctx.candidates.target))
    for i, (t, s) in enumerate(zip(ctx.candidates.target, ctx.candidates.source, strict=True)):
        key = (int(t), int(s))
        if key not in cache:
            cache[key] = score(ctx.target.node_tokens[t], ctx.source.node_tokens[s])
        out[i] = cache[key]
    return out


@feature("leaf", weight=2.0)
def leaf_feature(ctx: FeatureContext) -> Array:
    """Do the last name components agree (`gamma`~`weight`, `moving_mean`~`running_mean`)?"""
    return _pairwise(ctx, lambda t, s: ctx.weights.similarity(t.leaf, s.leaf))


@feature("path", weight=2.5)
def path_feature(ctx: FeatureContext) -> Array:
    """Do the module paths share rare tokens (with learned correspondences, `head`~`classifier`)?"""
    learned = ctx.learned

    def score(t: NameTokens, s: NameTokens) -> float:
        direct = ctx.weights.similarity(t.path, s.path)
        if not learned:
            return direct
        translated = [_translate(token, learned, s.path) for token in t.path]
        return max(direct, ctx.weights.similarity(translated, s.path))

    return _pairwise(ctx, score)


def _translate(token: str, learned: Mapping[str, Counter[str]], present: tuple[str, ...]) -> str:
    """A target token replaced by a source token learned to correspond to it, if that token is present."""
    options = learned.get(token)
    if not options:
        return token
    for candidate, _ in options.most_common():
        if candidate in present:
            return candidate
    return token


@feature("numbers", weight=1.5)
def numbers_feature(ctx: FeatureContext) -> Array:
    """Do the numbers in the names agree (`layers.3` ~ `blocks.3`, `conv1` vs `conv2`)?

    Raw numbers mislead when the two sides nest differently (`convs.1.1` vs `double_conv.4`), so before
    anything is learned they only count for little; once confident pairs have shown how each numbered slot of
    a target name corresponds to a slot of the source names (`features.#` = source `features.#` - 2), the
    feature checks those learned correspondences instead.
    """
    slots = ctx.number_slots
    lexicon = ctx.target.lexicon
    t_raw = [number_contexts(ctx.target.table.names[n.base], lexicon=lexicon) for n in ctx.target.nodes]
    s_raw = [number_contexts(ctx.source.table.names[n.base], lexicon=lexicon) for n in ctx.source.nodes]
    t_slots = [numbered_slots(ctx.target.table.names[n.base]) for n in ctx.target.nodes]
    s_slots = [dict(numbered_slots(ctx.source.table.names[n.base])) for n in ctx.source.nodes]
    cache: dict[tuple[int, int], float] = {}
    out = np.empty(len(ctx.candidates.target))
    for i, (t, s) in enumerate(zip(ctx.candidates.target, ctx.candidates.source, strict=True)):
        key = (ctx.target.nodes[t].base, ctx.source.nodes[s].base)
        if key not in cache:
            agree = informative = 0
            for slot, value in t_slots[t]:
                rule = slots.get(slot)
                if rule is None or rule.source_slot not in s_slots[s]:
                    continue
                expected = rule.predict(value)
                if expected is None:
                    continue
                informative += 1
                agree += expected == s_slots[s][rule.source_slot]
            cache[key] = agree / informative if informative else _number_similarity(t_raw[t], s_raw[s])
        out[i] = cache[key]
    return out


def numbered_slots(name: str) -> list[tuple[str, int]]:
    """The numbers of a name keyed by where they stand: `layer1.0.conv2.weight` ->
    `[("layer#", 1), ("layer#.#", 0), ("layer#.#.conv#", 2)]`.
    """
    slots: list[tuple[str, int]] = []
    prefix: list[str] = []
    for component in name.split(".")[:-1]:
        digits = _DIGITS.findall(component)
        template = _DIGITS.sub("#", component)
        prefix.append(template)
        key = ".".join(prefix)
        for occurrence, number in enumerate(digits):
            slots.append((key if occurrence == 0 else f"{key}@{occurrence}", int(number[:18])))
    return slots


@dataclass(frozen=True)
class SlotRule:
    """A learned correspondence: a target slot's value determines a source slot's value."""

    source_slot: str
    table: Mapping[int, int]
    offset: int | None  # when every observation is `source = target + offset`, unseen values follow it

    def predict(self, value: int) -> int | None:
        if value in self.table:
            return self.table[value]
        return value + self.offset if self.offset is not None else None


def _number_similarity(target: Mapping[tuple[str, ...], int], source: Mapping[tuple[str, ...], int]) -> float:
    """Share of comparable numbers (same qualified words) that agree; 0.5 when none are comparable."""
    shared = [key for key in target if key in source]
    if not shared:
        return 0.5
    return sum(target[k] == source[k] for k in shared) / len(shared)


@feature("module", weight=2.0)
def module_feature(ctx: FeatureContext) -> Array:
    """Does the source sit inside the source module that best corresponds to each of the target's enclosing
    modules (as judged by where their other, confidently matched parameters went)?
    """
    affinity = ctx.module_affinity
    if not affinity:
        return np.full(len(ctx.candidates.target), 0.5)
    best: dict[str, float] = defaultdict(float)
    for (t_module, _), value in affinity.items():
        best[t_module] = max(best[t_module], value)
    t_anc = [ctx.target.tree.ancestors(ctx.target.table.names[n.base], 3) for n in ctx.target.nodes]
    s_anc = [ctx.source.tree.ancestors(ctx.source.table.names[n.base], 4) for n in ctx.source.nodes]
    level_weights = (0.5, 0.3, 0.2)
    cache: dict[tuple[int, int], float] = {}
    out = np.empty(len(ctx.candidates.target))
    for i, (t, s) in enumerate(zip(ctx.candidates.target, ctx.candidates.source, strict=True)):
        key = (ctx.target.nodes[t].base, ctx.source.nodes[s].base)
        if key not in cache:
            total = weight_sum = 0.0
            for level, t_module in enumerate(t_anc[t][:3]):
                top = best.get(t_module, 0.0)
                if top <= 0:
                    continue
                here = max((affinity.get((t_module, m), 0.0) for m in s_anc[s]), default=0.0)
                total += level_weights[level] * here / top
                weight_sum += level_weights[level]
            cache[key] = total / weight_sum if weight_sum else 0.5
        out[i] = cache[key]
    return out


@feature("group", weight=0.75, weak=True)
def group_feature(ctx: FeatureContext) -> Array:
    """Same rank among same-shaped siblings (third of three `[d, d]` weights under one module)?"""
    t_rank = _group_ranks(ctx.target)
    s_rank = _group_ranks(ctx.source)
    out = np.empty(len(ctx.candidates.target))
    for i, (t, s) in enumerate(zip(ctx.candidates.target, ctx.candidates.source, strict=True)):
        (rt, nt), (rs, ns) = t_rank[ctx.target.nodes[t].base], s_rank[ctx.source.nodes[s].base]
        if nt == 1 and ns == 1:
            out[i] = 1.0
        elif nt == ns:
            out[i] = 1.0 - abs(rt - rs) / nt
        else:
            out[i] = 0.5 * (1.0 - abs(rt / nt - rs / ns))
    return out


def _group_ranks(side: Side) -> list[tuple[int, int]]:
    """For each parameter: its rank and the size of its group (same grandparent, shape and leaf)."""
    groups: dict[tuple[str, Shape, tuple[str, ...]], list[int]] = defaultdict(list)
    for record, tokens in zip(side.table.params, side.tokens, strict=True):
        grandparent = owner(owner(record.name))
        leaf = tuple(sorted(t for t in tokens.leaf if t.startswith("="))) or tokens.leaf
        groups[(grandparent, record.shape, leaf)].append(record.index)
    ranks: list[tuple[int, int]] = [(0, 1)] * len(side.table)
    for members in groups.values():
        for rank, index in enumerate(members):
            ranks[index] = (rank, len(members))
    return ranks


@feature("local_order", weight=1.0, weak=True)
def local_order_feature(ctx: FeatureContext) -> Array:
    """Same rank among like tensors (same shape and kind) inside corresponding blocks?

    File order is only trustworthy locally: ports reorder whole groups (MindSpore training checkpoints list
    BatchNorm statistics after all trainable weights) but keep the order of like tensors within a block. The
    block is the innermost enclosing module of the target whose best-corresponding source module (by what
    confident pairs showed) contains the source.
    """
    affinity = ctx.module_affinity
    if not affinity:
        return np.full(len(ctx.candidates.target), 0.5)
    best: dict[str, tuple[float, str]] = {}
    for (t_module, s_module), value in affinity.items():
        if value > best.get(t_module, (0.0, ""))[0]:
            best[t_module] = (value, s_module)
    t_rank = _ranks_within(ctx.target)
    s_rank = _ranks_within(ctx.source)
    out = np.full(len(ctx.candidates.target), 0.5)
    cache: dict[tuple[int, int], float] = {}
    for i, (t, s) in enumerate(zip(ctx.candidates.target, ctx.candidates.source, strict=True)):
        tb, sb = ctx.target.nodes[t].base, ctx.source.nodes[s].base
        key = (tb, sb)
        if key not in cache:
            cache[key] = 0.5
            s_name = ctx.source.table.names[sb]
            for t_module in ctx.target.tree.ancestors(ctx.target.table.names[tb], 3):
                s_module = best.get(t_module, (0.0, None))[1]
                if s_module is None or not (s_module == "" or s_name.startswith(s_module + ".")):
                    continue
                rt, nt = t_rank(tb, t_module)
                rs, ns = s_rank(sb, s_module)
                if nt > 1 or ns > 1:
                    cache[key] = (1.0 if rt == rs else 0.0) if nt == ns else 1.0 - abs(rt / nt - rs / ns)
                break
        out[i] = cache[key]
    return out


def _ranks_within(side: Side) -> Callable[[int, str], tuple[int, int]]:
    """rank(param, module): position of a parameter among like parameters (shape, kind) below a module."""
    kinds = [
        (record.shape, tuple(sorted(t for t in tokens.leaf if t.startswith("="))) or tokens.leaf)
        for record, tokens in zip(side.table.params, side.tokens, strict=True)
    ]
    memo: dict[tuple[str, tuple[Shape, tuple[str, ...]]], list[int]] = {}

    def rank(index: int, module: str) -> tuple[int, int]:
        key = (module, kinds[index])
        if key not in memo:
            prefix = module + "." if module else ""
            memo[key] = [
                i for i, name in enumerate(side.table.names) if name.startswith(prefix) and kinds[i] == kinds[index]
            ]
        members = memo[key]
        return members.index(index), len(members)

    return rank


@feature("order", weight=1.0, weak=True)
def order_feature(ctx: FeatureContext) -> Array:
    """Is the source where the target's position predicts it (from anchors once known, else proportionally)?"""
    t_pos = ctx.target.position[ctx.candidates.target]
    s_pos = ctx.source.position[ctx.candidates.source]
    if ctx.predicted_position is not None:
        t_pos = ctx.predicted_position[ctx.candidates.target]
    delta = np.abs(t_pos - s_pos)
    return 0.7 * np.exp(-delta / 0.05) + 0.3 * (1.0 - delta)


def score_candidates(ctx: FeatureContext, active: Mapping[str, float] | None = None) -> dict[str, Array]:
    """Every registered feature's scores; `active` may override weights (0 disables a feature)."""
    return {name: f.compute(ctx) for name, f in FEATURES.items() if (active or {}).get(name, f.weight) > 0}


def total_weight() -> float:
    """Sum of the default weights: the cost of a candidate that every feature rejects."""
    return math.fsum(f.weight for f in FEATURES.values())
