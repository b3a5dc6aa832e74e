"""The evidence automap weighs for each candidate pair: one registered function per signal.

Each feature scores every candidate (see `automap.engine.sides`) in [0, 1]; the solver turns the weighted sum
of `1 - score` into a cost. Features marked `weak` (position in file order) can break ties but never make a
pair trustworthy on their own: confidence looks at how much of a decision the strong ones carry. Every
feature is registered in this module with `@feature`, so `FEATURES` is complete once it is imported.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import sparse

from automap._types import Array

from .conventions import ConventionIndex
from .graph import ModuleTree, owner
from .names import TokenWeights, leaf_concept, number_contexts
from .numbering import SlotRule, all_or_little, compare, numbered_slots, value_columns
from .sides import Candidates, Side

__all__ = ["FEATURES", "FeatureContext", "feature", "score_candidates", "total_weight"]

Shape = tuple[int, ...]


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
    untrusted_numbers: frozenset[tuple[str, ...]] = frozenset()  # number keys whose values differ across sides
    transposed_share: float | None = None  # share of confident non-square 2-D pairs that needed a transpose
    conventions: ConventionIndex | None = None  # published rename tables matched against both sides' names


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


# -------------------------------------------------------------------------------------------------- features


@feature("shape", weight=1.0)
def shape_feature(ctx: FeatureContext) -> Array:
    """1 for identical shapes; less for a layout change, transpose or reshape; parts cost a little more.

    Whether a port stores matrices transposed is a property of the model: once the confident pairs show that
    it does not, a transposed candidate is an unlikely one.
    """
    t_part = np.array([n.part is not None for n in ctx.target.nodes], dtype=bool)
    s_part = np.array([n.part is not None for n in ctx.source.nodes], dtype=bool)
    is_part = t_part[ctx.candidates.target] | s_part[ctx.candidates.source]
    scores = np.array([r.score for r in ctx.candidates.relation])
    if ctx.transposed_share is not None:
        transposed = np.array([r.kind == "transpose" for r in ctx.candidates.relation], dtype=bool)
        scores = np.where(transposed, 0.5 + 0.45 * ctx.transposed_share, scores)
    return np.where(is_part, scores * 0.8, scores)


def _dice(ctx: FeatureContext, t_sets: Sequence[Iterable[str]], s_sets: Sequence[Iterable[str]]) -> Array:
    """Weighted Dice coefficient of token sets for every candidate, computed with sparse matrices.

    shared(t, s) = sum of the weights of tokens in both; Dice = 2 shared / (weight(t) + weight(s)); 1 when both
    sets are empty.
    """
    vocabulary: dict[str, int] = {}
    for sets in (t_sets, s_sets):
        for tokens in sets:
            for token in tokens:
                vocabulary.setdefault(token, len(vocabulary))
    weights = np.array([ctx.weights(token) for token in vocabulary]) if vocabulary else np.zeros(0)

    def binary(sets: Sequence[Iterable[str]]) -> sparse.csr_matrix:
        rows, cols = [], []
        for row, tokens in enumerate(sets):
            for column in {vocabulary[t] for t in tokens}:
                rows.append(row)
                cols.append(column)
        data = np.ones(len(rows))
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(sets), len(vocabulary)))

    t_matrix, s_matrix = binary(t_sets), binary(s_sets)
    rows, cols = ctx.candidates.target, ctx.candidates.source
    shared = np.asarray(t_matrix[rows].multiply(s_matrix[cols]) @ weights).ravel()
    total = np.asarray(t_matrix @ weights).ravel()[rows] + np.asarray(s_matrix @ weights).ravel()[cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * shared / np.where(total > 0, total, 1.0), 1.0)


@feature("leaf", weight=2.0)
def leaf_feature(ctx: FeatureContext) -> Array:
    """Do the last name components agree (`gamma`~`weight`, `moving_mean`~`running_mean`)?

    Components spelled the same, or naming the same convention (`gamma` and `weight`), agree fully; otherwise the
    token overlap counts, a little less: `bias_ih_l1` is much more like `bias_ih_l1` than like
    `bias_hh_l0_reverse`, with which it shares three tokens.
    """
    overlap = _dice(ctx, [t.leaf for t in ctx.target.node_tokens], [t.leaf for t in ctx.source.node_tokens])
    lexicon = ctx.target.lexicon
    t_leaf = np.array([leaf_concept(ctx.target.table.names[n.base], lexicon) for n in ctx.target.nodes])
    s_leaf = np.array([leaf_concept(ctx.source.table.names[n.base], lexicon) for n in ctx.source.nodes])
    same = t_leaf[ctx.candidates.target] == s_leaf[ctx.candidates.source]
    return np.asarray(np.where(same, 1.0, 0.8 * overlap))


@feature("path", weight=2.5)
def path_feature(ctx: FeatureContext) -> Array:
    """Do the module paths share rare tokens (with learned correspondences, `head`~`classifier`)?"""
    t_paths = [t.path for t in ctx.target.node_tokens]
    s_paths = [t.path for t in ctx.source.node_tokens]
    direct = _dice(ctx, t_paths, s_paths)
    if not ctx.learned:
        return direct
    translated = [[_translate(token, ctx.learned) for token in path] for path in t_paths]
    return np.maximum(direct, _dice(ctx, translated, s_paths))


def _translate(token: str, learned: Mapping[str, Counter[str]]) -> str:
    """A target token replaced by the source token learned to correspond to it."""
    options = learned.get(token)
    return options.most_common(1)[0][0] if options else token


@feature("convention", weight=2.5)
def convention_feature(ctx: FeatureContext) -> Array:
    """Does a library's published rename table pair these names (`self_attn.q_proj` ~ `attention.wq`)?

    0 when a table pairs one of them with a name the other side has instead, or pairs them but with the other
    layout (a weight the script transposes, paired untransposed); 0.5 when no table speaks of either.
    """
    index = ctx.conventions
    out = np.full(len(ctx.candidates.target), 0.5)
    if index is None or not index.active:
        return out
    t_nodes, s_nodes = ctx.target.nodes, ctx.source.nodes
    for i, (t, s) in enumerate(zip(ctx.candidates.target, ctx.candidates.source, strict=True)):
        tb, sb = t_nodes[t].base, s_nodes[s].base
        if index.target[tb] or index.source[sb]:
            kind, shape = ctx.candidates.relation[i].kind, t_nodes[t].shape
            # a bias, or a square weight taken as it is, shows no layout: the table's is applied afterwards
            shows_layout = kind == "transpose" or (len(shape) == 2 and shape[0] != shape[1])
            transposed = kind == "transpose" if shows_layout else None
            out[i] = index.score(tb, sb, (t_nodes[t].part, s_nodes[s].part), transposed)
    return out


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
    source_names = [ctx.source.table.names[n.base] for n in ctx.source.nodes]
    s_raw = value_columns([number_contexts(n, lexicon=lexicon) for n in source_names])
    s_heads = value_columns([number_contexts(n, lexicon=lexicon, heads=True) for n in source_names])
    s_slots = value_columns([dict(numbered_slots(n)) for n in source_names])
    out = np.empty(len(ctx.candidates.target))
    for t, index, sources in _by_target(ctx):
        name = ctx.target.table.names[ctx.target.nodes[t].base]
        agree = np.zeros(len(index))
        informative = np.zeros(len(index))
        for slot, value in numbered_slots(name):
            rule = slots.get(slot)
            expected = rule.predict(value) if rule is not None else None
            column = s_slots.get(rule.source_slot) if rule is not None else None
            if expected is None or column is None:
                continue
            present = column[sources] >= 0
            informative += present
            agree += present & (column[sources] == expected)
        raw_agree, raw_shared = compare(number_contexts(name, lexicon=lexicon), s_raw, sources, ctx.untrusted_numbers)
        # names that share no full key may still number the same kind of thing (`resblocks.0` and `layers.0`)
        head_agree, head_shared = compare(
            number_contexts(name, lexicon=lexicon, heads=True), s_heads, sources, ctx.untrusted_numbers
        )
        raw_agree = np.where(raw_shared > 0, raw_agree, head_agree)
        raw_shared = np.where(raw_shared > 0, raw_shared, head_shared)
        # One differing index means another tensor (`layer2.1.conv1` is not `layer2.0.conv1`), so partial
        # agreement counts for little.
        raw = np.where(raw_shared > 0, all_or_little(raw_agree, raw_shared), 0.5)
        learned = all_or_little(agree, informative)
        # Learned rules cover the slots confident pairs showed; a number they do not cover (`w1` against `w3`
        # inside experts whose index a rule maps) still tells tensors apart, so it can only lower the score.
        out[index] = np.where(informative > 0, np.where(raw_shared > 0, np.minimum(learned, raw), learned), raw)
    return out


def _by_target(ctx: FeatureContext) -> Iterator[tuple[int, Array, Array]]:
    """(target node, candidate indices, their source nodes) for every target node with candidates."""
    order = np.argsort(ctx.candidates.target, kind="stable")
    targets = ctx.candidates.target[order]
    for chunk in np.split(order, np.flatnonzero(np.diff(targets)) + 1):
        if len(chunk):
            yield int(ctx.candidates.target[chunk[0]]), chunk, ctx.candidates.source[chunk]


def _under(side: Side) -> dict[str, Array]:
    """For each module, a boolean mask over the side's nodes: which nodes lie below it."""
    masks: dict[str, Array] = {}
    for index, node in enumerate(side.nodes):
        for module in side.tree.ancestors(side.table.names[node.base], 64):
            if module not in masks:
                masks[module] = np.zeros(len(side.nodes), dtype=bool)
            masks[module][index] = True
    return masks


_NORM_WORDS = ("norm", "ln", "bn")


def role_modules(tree: ModuleTree) -> dict[str, str]:
    """Norms named after the sibling they serve: module path -> that sibling's path.

    `blocks.0.cross_attention_layernorm` beside `blocks.0.cross_attention`, `self_attn_layer_norm` beside
    `self_attn` (BART, Whisper), `attention_norm` beside `attention`: where the other port keeps each norm inside
    the module of its sublayer (T5's `layer.1.layer_norm` beside `layer.1.EncDecAttention`), the norm is read as
    part of that sibling. A qualified name (`post_attention_layernorm`) does not start with its sibling's name.
    """
    graph = tree.graph
    roles: dict[str, str] = {}
    for parent in tree.modules():
        children = {c.rsplit(".", 1)[-1]: c for c in graph.successors(parent) if graph.nodes[c]["kind"] == "module"}
        for name, child in children.items():
            words = name.split("_")
            for cut in range(len(words) - 1, 0, -1):  # the longest sibling name first
                sibling = "_".join(words[:cut])
                if sibling in children and any(w.lower().endswith(_NORM_WORDS) for w in words[cut:]):
                    roles[child] = children[sibling]
                    break
    return roles


@feature("module", weight=2.0)
def module_feature(ctx: FeatureContext) -> Array:
    """Does the source sit inside the source module that corresponds to each of the target's modules?

    Correspondence is judged by where the modules' other, confidently matched parameters went, and by modules
    whose content is the same on both sides.
    """
    affinity = ctx.module_affinity
    if not affinity:
        return np.full(len(ctx.candidates.target), 0.5)
    by_target: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (t_module, s_module), value in affinity.items():
        by_target[t_module].append((s_module, value))
    under = _under(ctx.source)
    for path, role in role_modules(ctx.source.tree).items():  # a norm named after its sibling counts as inside it
        if role in under and path in under:
            under[role] = under[role] | under[path]
    target_roles = role_modules(ctx.target.tree)
    vectors: dict[str, tuple[float, Array]] = {}

    def vector(t_module: str) -> tuple[float, Array]:
        """(best affinity, per source node: the best affinity of any module enclosing it) for a target module."""
        if t_module not in vectors:
            values = np.zeros(len(ctx.source.nodes))
            for s_module, value in by_target.get(t_module, ()):
                mask = under.get(s_module)
                if mask is not None:
                    values[mask] = np.maximum(values[mask], value)
            vectors[t_module] = (float(values.max()) if len(values) else 0.0, values)
        return vectors[t_module]

    level_weights = (0.5, 0.3, 0.2)
    sizes: Counter[str] = Counter()
    for name in ctx.target.table.names:
        sizes.update(ctx.target.tree.ancestors(name, 64))

    def module_size(module: str) -> int:
        return sizes[module]

    out = np.full(len(ctx.candidates.target), 0.5)
    for t, index, sources in _by_target(ctx):
        total = np.zeros(len(index))
        weight_sum = 0.0
        modules = ctx.target.tree.ancestors(ctx.target.table.names[ctx.target.nodes[t].base], 3)
        if modules and modules[0] in target_roles:
            modules = [modules[0], target_roles[modules[0]], *modules[1:2]]
        for level, t_module in enumerate(modules):
            if module_size(t_module) < 2:
                continue  # a module holding only this parameter would vote for the pair itself
            top, values = vector(t_module)
            if top <= 0:
                continue
            total += level_weights[level] * values[sources] / top
            weight_sum += level_weights[level]
        if weight_sum:
            out[index] = total / weight_sum
    return out


@feature("group", weight=0.5, weak=True)
def group_feature(ctx: FeatureContext) -> Array:
    """Same rank among same-shaped siblings (third of three `[d, d]` weights under one module)?

    Neutral when either file's order says nothing inside a block (names sorted as text).
    """
    if not (ctx.source.ordered and ctx.target.ordered):
        return np.full(len(ctx.candidates.target), 0.5)
    t_rank = np.array(_group_ranks(ctx.target), dtype=float)[[n.base for n in ctx.target.nodes]]
    s_rank = np.array(_group_ranks(ctx.source), dtype=float)[[n.base for n in ctx.source.nodes]]
    (rt, nt), (rs, ns) = t_rank[ctx.candidates.target].T, s_rank[ctx.candidates.source].T
    same_size = np.where(nt == ns, 1.0 - np.abs(rt - rs) / nt, 0.5 * (1.0 - np.abs(rt / nt - rs / ns)))
    alone = (nt == 1) != (ns == 1)  # a tensor alone of its kind on one side has no rank to compare: no preference
    return np.where((nt == 1) & (ns == 1), 1.0, np.where(alone, 0.25, same_size))


def _group_ranks(side: Side) -> list[tuple[int, int]]:
    """For each parameter: its rank and the size of its group (same grandparent, shape and leaf)."""
    groups: dict[tuple[str, Shape, tuple[str, ...]], list[int]] = defaultdict(list)
    for index in _in_order(side):
        record, tokens = side.table.params[index], side.tokens[index]
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
    if not affinity or not (ctx.source.ordered and ctx.target.ordered):
        return np.full(len(ctx.candidates.target), 0.5)
    best: dict[str, tuple[float, str]] = {}
    for (t_module, s_module), value in affinity.items():
        if value > best.get(t_module, (0.0, ""))[0]:
            best[t_module] = (value, s_module)
    t_rank = _ranks_within(ctx.target)
    s_rank = _ranks_within(ctx.source)
    under = _under(ctx.source)
    s_bases = np.array([n.base for n in ctx.source.nodes])
    rank_cache: dict[str, tuple[Array, Array]] = {}

    def source_ranks(module: str) -> tuple[Array, Array]:
        """Per source node: its rank and group size among like tensors below `module` (-1/0 outside it)."""
        if module not in rank_cache:
            ranks = np.full(len(s_bases), -1)
            counts = np.zeros(len(s_bases), dtype=int)
            mask = under.get(module)
            if mask is not None:
                for node in np.flatnonzero(mask):
                    ranks[node], counts[node] = s_rank(int(s_bases[node]), module)
            rank_cache[module] = (ranks, counts)
        return rank_cache[module]

    out = np.full(len(ctx.candidates.target), 0.5)
    for t, index, sources in _by_target(ctx):
        tb = ctx.target.nodes[t].base
        open_ = np.ones(len(index), dtype=bool)
        for t_module in ctx.target.tree.ancestors(ctx.target.table.names[tb], 3):
            if t_module not in best:
                continue
            s_module = best[t_module][1]
            mask = under.get(s_module)
            if mask is None:
                continue
            inside = open_ & mask[sources]
            if not inside.any():
                continue
            open_ &= ~inside
            t_position, t_count = t_rank(tb, t_module)
            s_ranks, s_counts = source_ranks(s_module)
            picked = np.flatnonzero(inside)
            rs, ns = s_ranks[sources[picked]], s_counts[sources[picked]]
            rt, nt = float(t_position), float(t_count)
            agreement = np.where(ns == nt, (rs == rt).astype(float), 1.0 - np.abs(rt / nt - rs / np.maximum(ns, 1)))
            active = (ns > 1) & (nt > 1)  # a tensor alone of its kind in its block has no place among others
            out[index[picked[active]]] = agreement[active]
    return out


def _in_order(side: Side) -> list[int]:
    """Parameter indices sorted by the side's order signal."""
    return sorted(range(len(side.table)), key=side.rank.__getitem__)


def _ranks_within(side: Side) -> Callable[[int, str], tuple[int, int]]:
    """rank(param, module): position of a parameter among like parameters (shape, kind) below a module."""
    kinds = [
        (record.shape, tuple(sorted(t for t in tokens.leaf if t.startswith("="))) or tokens.leaf)
        for record, tokens in zip(side.table.params, side.tokens, strict=True)
    ]
    members: dict[tuple[str, tuple[Shape, tuple[str, ...]]], list[int]] = defaultdict(list)
    position: dict[tuple[str, int], int] = {}
    for index in _in_order(side):
        for module in side.tree.ancestors(side.table.names[index], 64):
            group = members[(module, kinds[index])]
            position[(module, index)] = len(group)
            group.append(index)

    def rank(index: int, module: str) -> tuple[int, int]:
        return position[(module, index)], len(members[(module, kinds[index])])

    return rank


@feature("order", weight=0.75, weak=True)
def order_feature(ctx: FeatureContext) -> Array:
    """Is the source where the target's position predicts it (from anchors once known, else proportionally)?"""
    t_pos = ctx.target.position[ctx.candidates.target]
    s_pos = ctx.source.position[ctx.candidates.source]
    if ctx.predicted_position is not None:
        t_pos = ctx.predicted_position[ctx.candidates.target]
    delta = np.abs(t_pos - s_pos)
    # Distance is measured in units of the spacing between a target's candidates: in a model of 1,000 tensors
    # two neighbouring experts are 0.3% apart, in one of 50 tensors 6%; either way the neighbour is "one step".
    scale = np.full(len(delta), 0.05)
    for _, index, _ in _by_target(ctx):
        if len(index) > 1:
            positions = np.sort(s_pos[index])
            gaps = np.diff(positions)
            gaps = gaps[gaps > 1e-9]
            if len(gaps):
                scale[index] = min(0.05, max(float(np.median(gaps)), 1e-4))
    return np.asarray(np.clip(0.7 * np.exp(-delta / scale) + 0.3 * (1.0 - delta), 0.0, 1.0))


def score_candidates(ctx: FeatureContext, active: Mapping[str, float] | None = None) -> dict[str, Array]:
    """Every registered feature's scores; `active` may override weights (0 disables a feature)."""
    return {name: f.compute(ctx) for name, f in FEATURES.items() if (active or {}).get(name, f.weight) > 0}


def total_weight() -> float:
    """Sum of the default weights: the cost of a candidate that every feature rejects."""
    return math.fsum(f.weight for f in FEATURES.values())
