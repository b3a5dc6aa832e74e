"""Infer a `NameMapping` from two parameter tables: the orchestration of tokens, features and solver passes.

Pass 1 scores candidates on names, shapes and proportional position and solves. What its confident pairs
show is then fed back: token correspondences that recur (`classifier`~`head`), which module pairs with which
(so a bias with a unique shape pulls its module's weight along), and where the two file orders align (anchors
for a better position estimate). Pass 2 solves again with all of it. Finally each target gets its source,
layout transform, confidence, evidence and alternatives.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from automap._decisions import DECIDED_BY, DecidedBy
from automap._errors import MappingFileError
from automap._types import Array, StrPath
from automap.mapping import fingerprint
from automap.records import Alternative, Endpoint, Match, NameMapping, ParamRecord, ParamTable
from automap.transforms import Reshape, Split, Step, Transpose, output_shape

from .decompose import solve_in_blocks
from .features import (
    FEATURES,
    FeatureContext,
    Side,
    SlotRule,
    build_sides,
    candidate_pairs,
    numbered_slots,
    score_candidates,
    total_weight,
)
from .names import TokenWeights, number_contexts
from .shapes import Part, concat_steps
from .solver import Assignment, Solution, candidate_costs, solve

__all__ = ["infer_mapping"]

_UNMATCHED_SHARE = 0.62  # a target stays unmatched rather than take a candidate this bad (share of all weight)
_CONFIDENT = 0.8
_REFINEMENTS = 3  # passes that feed what confident pairs showed back into the scores
_LEVELS = 3  # module levels above a parameter that structural context looks at


def infer_mapping(
    source: ParamTable | StrPath,
    target: ParamTable | StrPath,
    *,
    threshold: float = 0.5,
    pins: NameMapping | None = None,
    weights: Mapping[str, float] | None = None,
    learn: bool = True,
    lexicon: bool = True,
    source_order: Sequence[str] | None = None,
    target_order: Sequence[str] | None = None,
) -> NameMapping:
    """Infer which source parameter feeds each target parameter, with a confidence for every pair.

    Args:
        source: the checkpoint (or table) whose values will be converted.
        target: the checkpoint, listing or table whose names, shapes and order the result must have; its
            values are never read.
        threshold: confidence below which a pair is reported as needing review.
        pins: a (partial, possibly hand-edited) mapping whose pairs are kept as they are; everything else is
            solved around them.
        weights: feature weights overriding the defaults (0 switches a feature off), for ablations.
        learn: feed correspondences learned from confident pairs into a second pass.
        lexicon: use the lexicon of naming conventions (switch off only to measure what it contributes).
        source_order: source parameter names in the order a forward pass first uses them (execution order);
            replaces file order as the order signal. Parameters not listed keep their file position.
        target_order: the same for the target.

    Returns:
        One pair per target parameter, in target order.

    Raises:
        CheckpointFormatError: a path cannot be read.
        MappingFileError: a pin names a parameter that does not exist.

    Example:
        >>> mapping = infer_mapping("model.pth", "template.ckpt")  # doctest: +SKIP
        >>> [(p.target, p.source, round(p.confidence, 2)) for p in mapping.pairs][:1]  # doctest: +SKIP
        [('conv1.weight', 'conv1.weight', 1.0)]
    """
    source_table, target_table = _table(source), _table(target)
    for table in (source_table, target_table):
        if any(not name or name.startswith(".") or name.endswith(".") or ".." in name for name in table.names):
            bad = next(n for n in table.names if not n or n.startswith(".") or n.endswith(".") or ".." in n)
            msg = f"{table.source}: parameter name {bad!r} has an empty component; names look like 'layer.weight'"
            raise MappingFileError(msg)
    pinned = _pinned_pairs(pins, source_table, target_table)
    free_source = _subtable(source_table, {n for m in pinned.values() for n in m.source_names})
    free_target = _subtable(target_table, set(pinned))
    inferred: dict[str, Match] = {}
    notes: list[str] = []
    if len(free_target) and len(free_source):
        orders = (source_order, target_order)

        def dense(sub_source: ParamTable, sub_target: ParamTable) -> tuple[dict[str, Match], list[str]]:
            return _infer(sub_source, sub_target, dict(weights or {}), learn, lexicon, orders)

        inferred, notes = solve_in_blocks(free_source, free_target, dense)
    pairs = []
    for record in target_table.params:
        match = (
            pinned.get(record.name)
            or inferred.get(record.name)
            or Match(record.name, None, 0.0, target_shape=record.shape)
        )
        pairs.append(match)
    used = {n for m in pairs for n in m.source_names}
    return NameMapping(
        source=Endpoint(source_table.source, source_table.framework, len(source_table), fingerprint(source_table)),
        target=Endpoint(target_table.source, target_table.framework, len(target_table), fingerprint(target_table)),
        pairs=tuple(pairs),
        threshold=threshold,
        unmatched_source=tuple(n for n in source_table.names if n not in used),
        excluded_source=tuple(r.name for r in source_table.excluded),
        excluded_target=tuple(r.name for r in target_table.excluded),
        notes=tuple(notes),
    )


def _table(value: ParamTable | StrPath) -> ParamTable:
    if isinstance(value, ParamTable):
        return value
    from automap.io import load_checkpoint

    return load_checkpoint(Path(value))


def _subtable(table: ParamTable, drop: set[str]) -> ParamTable:
    if not drop:
        return table
    kept = [r for r in table.params if r.name not in drop]
    return ParamTable(
        table.framework, table.source, tuple(r.with_index(i) for i, r in enumerate(kept)), format=table.format
    )


def _pinned_pairs(pins: NameMapping | None, source: ParamTable, target: ParamTable) -> dict[str, Match]:
    if pins is None:
        return {}
    out: dict[str, Match] = {}
    for match in pins.pairs:
        if not match.pinned or match.source is None:
            continue
        if match.target not in target:
            msg = f"pinned target {match.target!r} is not a parameter of {target.source}"
            raise MappingFileError(msg)
        missing = [n for n in match.source_names if n not in source]
        if missing:
            msg = f"pinned pair for {match.target!r} names source {missing[0]!r}, which {source.source} lacks"
            raise MappingFileError(msg)
        shapes = [source[n].shape for n in match.source_names]
        # a pair carried from a reviewed pattern stays marked as such: no person looked at it
        spread = match.decided_by is DecidedBy.SAME_PATTERN
        out[match.target] = replace(
            match,
            confidence=1.0,
            target_shape=target[match.target].shape,
            source_shape=shapes[0] if len(shapes) == 1 else tuple(shapes),
            evidence={},
            alternatives=(),
            labels=dict(match.labels) if spread else {"pinned": "fixed by a person"},
        )
    explicit = list(out.values())
    used = {n for m in explicit for n in m.source_names}
    for match in explicit:
        for extra in _same_pattern(match, source, target):
            if extra.target not in out and isinstance(extra.source, str) and extra.source not in used:
                out[extra.target] = extra
                used.add(extra.source)
    return out


def _same_pattern(pin: Match, source: ParamTable, target: ParamTable) -> list[Match]:
    """A reviewed pair of a repeated block, carried to every block of its pattern.

    `layers.0.w1 <- layers.0.gate_proj` also settles `layers.7.w1 <- layers.7.gate_proj`, so a person reviews a
    pattern once, not once per layer.
    """
    if not isinstance(pin.source, str):
        return []
    t_parts, s_parts = pin.target.split("."), pin.source.split(".")
    t_slots = [i for i, p in enumerate(t_parts) if p.isdigit()]
    s_slots = [i for i, p in enumerate(s_parts) if p.isdigit()]
    if not t_slots or len(t_slots) != len(s_slots):
        return []
    offsets = [int(s_parts[j]) - int(t_parts[i]) for i, j in zip(t_slots, s_slots, strict=True)]
    template = [None if i in t_slots else p for i, p in enumerate(t_parts)]
    out = []
    for record in target.params:
        parts = record.name.split(".")
        if record.name == pin.target or len(parts) != len(t_parts):
            continue
        if any(t is not None and t != p for t, p in zip(template, parts, strict=True)):
            continue
        if not all(parts[i].isdigit() for i in t_slots):
            continue
        candidate = list(s_parts)
        for i, j, offset in zip(t_slots, s_slots, offsets, strict=True):
            candidate[j] = str(int(parts[i]) + offset)
        name = ".".join(candidate)
        if name not in source:
            continue
        try:
            if output_shape([source[name].shape], pin.transform) != record.shape:
                continue
        except MappingFileError:
            continue
        out.append(
            Match(
                record.name,
                name,
                1.0,
                pin.transform,
                record.shape,
                source[name].shape,
                {},
                (),
                True,
                {
                    DECIDED_BY: DecidedBy.SAME_PATTERN.value,
                    "pinned": f"same pattern as the reviewed pair {pin.target!r}",
                },
            )
        )
    return out


# ------------------------------------------------------------------------------------------------- the passes


def _infer(
    source: ParamTable,
    target: ParamTable,
    weights: dict[str, float],
    learn: bool,
    lexicon: bool,
    orders: tuple[Sequence[str] | None, Sequence[str] | None] = (None, None),
) -> tuple[dict[str, Match], list[str]]:
    s_side, t_side = build_sides(source, target, lexicon=lexicon, source_order=orders[0], target_order=orders[1])
    candidates = candidate_pairs(s_side, t_side)
    if len(candidates.target) == 0:
        return {}, ["no source tensor has a shape compatible with any target"]
    token_weights = TokenWeights(s_side.tokens, t_side.tokens)
    ctx = FeatureContext(s_side, t_side, candidates, token_weights)
    unmatched = _UNMATCHED_SHARE * total_weight()
    seeds = _signature_seeds(s_side, t_side)
    ctx.module_affinity = seeds
    offsets = _renumbered_keys(seeds, s_side, t_side, lexicon)
    ctx.untrusted_numbers = offsets
    solution, scores = _solve_pass(ctx, weights if seeds else {**weights, "module": 0.0}, unmatched)
    notes: list[str] = []
    if learn:
        # Token correspondences are learned once, from the first pass, which no learned signal has shaped yet:
        # learning them again from later passes would let a pair confirm itself.
        ctx.learned = _learn_tokens(_confident_pairs(solution, s_side, t_side), s_side, t_side)
        previous: dict[int, int | None] = {}
        for _ in range(_REFINEMENTS):
            confident = _confident_pairs(solution, s_side, t_side)
            ctx.module_affinity = {**_module_affinity(confident, s_side, t_side), **seeds}
            ctx.predicted_position = _predicted_positions(confident, s_side, t_side)
            ctx.number_slots = _learn_number_slots(confident, s_side, t_side)
            ctx.transposed_share = _transposed_share(confident, s_side, t_side)
            ctx.untrusted_numbers = offsets | _contradicted_number_keys(confident, s_side, t_side, lexicon)
            solution, scores = _solve_pass(ctx, weights, unmatched)
            current = {t: a.source for t, a in solution.assignments.items()}
            if current == previous:
                break
            previous = current
        if ctx.learned:
            shown = ", ".join(f"{t}~{c.most_common(1)[0][0]}" for t, c in sorted(ctx.learned.items())[:8])
            notes.append(f"learned name correspondences: {shown}")
    _follow_local_order(solution, scores, ctx)
    _order_parts(solution, ctx)
    matches = _matches(solution, scores, ctx, notes)
    return matches, notes


def _solve_pass(
    ctx: FeatureContext, weights: Mapping[str, float], unmatched: float
) -> tuple[Solution, dict[str, Array]]:
    scores = score_candidates(ctx, weights)
    costs, strong = candidate_costs(scores, weights)
    templates = [_index_template(ctx.source.table.params[n.base].name) for n in ctx.source.nodes]
    return solve(ctx.source, ctx.target, ctx.candidates, costs, strong, unmatched, templates=templates), scores


def _index_template(name: str) -> str:
    """A name with its container indices blanked: `blocks.3.attn.qkv.weight` -> `blocks.#.attn.qkv.weight`."""
    return ".".join("#" if c.isdigit() else c for c in name.split("."))


def _confident_pairs(solution: Solution, source: Side, target: Side) -> list[tuple[int, int, float]]:
    """(target param, source param, confidence) of whole-tensor pairs the first pass is sure of."""
    out = []
    for a in solution.assignments.values():
        if a.source is None or a.order_only or a.confidence < _CONFIDENT:
            continue
        t_node, s_node = target.nodes[a.target], source.nodes[a.source]
        out.append((t_node.base, s_node.base, a.confidence))
    return out


def _learn_tokens(pairs: Sequence[tuple[int, int, float]], source: Side, target: Side) -> dict[str, Counter[str]]:
    """Target words that confident pairs consistently pair with one source word (`classifier` -> `head`).

    Components are aligned from the leaf end, so an extra wrapper prefix on one side does not shift them. Only
    words the other name does not already explain are counted, and a correspondence must recur and dominate.
    """
    together: dict[str, Counter[str]] = defaultdict(Counter)
    seen: Counter[str] = Counter()
    for t, s, _ in pairs:
        t_tokens, s_tokens = target.tokens[t], source.tokens[s]
        t_all, s_all = set(t_tokens.path) | set(t_tokens.leaf), set(s_tokens.path) | set(s_tokens.leaf)
        for t_words, s_words in zip(reversed(t_tokens.words[:-1]), reversed(s_tokens.words[:-1]), strict=False):
            t_new = [w for w in t_words if w not in s_all]
            s_new = [w for w in s_words if w not in t_all]
            for word in t_new:
                seen[word] += 1
                together[word].update(s_new)
    learned: dict[str, Counter[str]] = {}
    for word, counts in together.items():
        best, count = counts.most_common(1)[0] if counts else ("", 0)
        if count >= 2 and count >= 0.6 * seen[word]:
            learned[word] = Counter({best: count})
    return learned


def _learn_number_slots(pairs: Sequence[tuple[int, int, float]], source: Side, target: Side) -> dict[str, SlotRule]:
    """For each numbered slot of the target names, the source slot whose value it determines, if any.

    A rule needs at least two distinct target values, a source slot that is not constant, and observations
    that agree (each target value maps to one source value in nine cases out of ten).
    """
    observations: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for t, s, _ in pairs:
        s_slots = numbered_slots(source.table.names[s])
        for t_slot, t_value in numbered_slots(target.table.names[t]):
            for s_slot, s_value in s_slots:
                observations[(t_slot, s_slot)].append((t_value, s_value))
    best: dict[str, tuple[float, SlotRule]] = {}
    for (t_slot, s_slot), seen in observations.items():
        by_value: dict[int, Counter[int]] = defaultdict(Counter)
        for t_value, s_value in seen:
            by_value[t_value][s_value] += 1
        if len(by_value) < 2 or len({s for _, s in seen}) < 2:
            continue
        table = {t_value: counts.most_common(1)[0][0] for t_value, counts in by_value.items()}
        agreeing = sum(counts[table[t_value]] for t_value, counts in by_value.items())
        if agreeing < 0.9 * len(seen) or len(seen) < 3:
            continue
        offsets = {s_value - t_value for t_value, s_value in table.items()}
        rule = SlotRule(s_slot, table, offsets.pop() if len(offsets) == 1 else None)
        score = agreeing * len(by_value)
        if t_slot not in best or score > best[t_slot][0]:
            best[t_slot] = (score, rule)
    return {slot: rule for slot, (_, rule) in best.items()}


def _signature_seeds(source: Side, target: Side) -> dict[tuple[str, str], float]:
    """Modules that hold exactly the same kinds of tensors, where that content is unique on each side.

    A module's signature is the multiset of its parameters' shapes (length-1 axes and axis order ignored, so
    layout differences do not matter; scalars such as `num_batches_tracked` left out). A signature held by one
    module on each side pairs those modules before any parameter is matched: `stages.1` finds `feature.3`
    even when their blocks are numbered and ordered differently.
    """

    def by_signature(side: Side) -> dict[frozenset[tuple[tuple[int, ...], int]], list[str]]:
        groups: dict[frozenset[tuple[tuple[int, ...], int]], list[str]] = defaultdict(list)
        graph = side.tree.graph
        for module in side.tree.modules():
            if module == "":
                continue
            children = list(graph.successors(module))
            if len(children) == 1 and graph.nodes[children[0]]["kind"] == "module":
                continue  # a pure wrapper reads the same as its only child
            content: Counter[tuple[int, ...]] = Counter()
            for shape, count in graph.nodes[module]["signature"].items():
                if shape:
                    content[tuple(sorted(d for d in shape if d != 1))] += count
            if sum(content.values()) >= 2:
                groups[frozenset(content.items())].append(module)
        return groups

    source_groups = by_signature(source)
    seeds: dict[tuple[str, str], float] = {}
    for key, t_modules in by_signature(target).items():
        s_modules = source_groups.get(key, [])
        if len(t_modules) == 1 and len(s_modules) == 1:
            seeds[(t_modules[0], s_modules[0])] = 1.0
    # Top-down: inside paired modules (and the two models themselves), line up the child modules whose
    # content is the same, in order. Repeated blocks (`features.3..17` vs `features.1..15`) pair up by position
    # in the run, however each side numbers them.
    queue = [("", ""), *seeds]
    seen: set[tuple[str, str]] = set()
    while queue:
        pair = queue.pop()
        if pair in seen:
            continue
        seen.add(pair)
        for child_pair in _align_children(target, source, *pair):
            if child_pair not in seeds:
                seeds[child_pair] = 1.0
            queue.append(child_pair)
    return seeds


def _module_content(side: Side, module: str) -> frozenset[tuple[tuple[int, ...], int]]:
    """A module's parameter shapes (length-1 axes dropped, so Conv1d's 3-D and 4-D weights agree), as a multiset."""
    content: Counter[tuple[int, ...]] = Counter()
    for shape, count in side.tree.graph.nodes[module]["signature"].items():
        if shape:
            content[tuple(d for d in shape if d != 1)] += count
    return frozenset(content.items())


def _align_children(target: Side, source: Side, t_module: str, s_module: str) -> list[tuple[str, str]]:
    """Child modules of two paired modules that hold the same content.

    Numbered children (container elements: `features.3`, `blocks.0`) are lined up in order, longest common
    subsequence first: every port enumerates a container's elements in order. Named children (`attention`,
    `ffn_norm`) pair only when their content is unique among the siblings on both sides, because the order of
    named siblings is a matter of taste and proves nothing.
    """
    t_graph, s_graph = target.tree.graph, source.tree.graph
    t_all = [c for c in t_graph.successors(t_module) if t_graph.nodes[c]["kind"] == "module"]
    s_all = [c for c in s_graph.successors(s_module) if s_graph.nodes[c]["kind"] == "module"]
    named: list[tuple[str, str]] = []
    t_named = Counter(_module_content(target, c) for c in t_all)
    s_named = Counter(_module_content(source, c) for c in s_all)
    s_by_key = {_module_content(source, c): c for c in s_all}
    for child in t_all:
        key = _module_content(target, child)
        if not _is_index(child) and t_named[key] == 1 and s_named.get(key) == 1 and not _is_index(s_by_key[key]):
            named.append((child, s_by_key[key]))
    t_children = sorted((c for c in t_all if _is_index(c)), key=_index_value)
    s_children = sorted((c for c in s_all if _is_index(c)), key=_index_value)
    if not t_children or not s_children or len(t_children) * len(s_children) > 250_000:
        return named
    t_keys = [_module_content(target, c) for c in t_children]
    s_keys = [_module_content(source, c) for c in s_children]
    rows, cols = len(t_keys), len(s_keys)
    table = np.zeros((rows + 1, cols + 1), dtype=np.int32)
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            if t_keys[i] == s_keys[j]:
                table[i, j] = table[i + 1, j + 1] + 1
            else:
                table[i, j] = max(table[i + 1, j], table[i, j + 1])
    pairs, i, j = [], 0, 0
    while i < rows and j < cols:
        if t_keys[i] == s_keys[j] and table[i, j] == table[i + 1, j + 1] + 1:
            pairs.append((t_children[i], s_children[j]))
            i, j = i + 1, j + 1
        elif table[i + 1, j] >= table[i, j + 1]:
            i += 1
        else:
            j += 1
    return named + pairs


def _index_value(module: str) -> int:
    return int(module.rsplit(".", 1)[-1])


def _is_index(module: str) -> bool:
    """Whether a module is a numbered element of a container (its last name component is a number)."""
    return module.rsplit(".", 1)[-1].isdigit()


def _transposed_share(pairs: Sequence[tuple[int, int, float]], source: Side, target: Side) -> float | None:
    """Of the confident pairs of non-square matrices, the share stored transposed (None below three such pairs)."""
    kinds = []
    for t, s, _ in pairs:
        t_shape, s_shape = target.table.params[t].shape, source.table.params[s].shape
        if len(t_shape) == 2 and t_shape[0] != t_shape[1] and len(s_shape) == 2:
            kinds.append(t_shape != s_shape)
    return sum(kinds) / len(kinds) if len(kinds) >= 3 else None


def _renumbered_keys(
    seeds: Mapping[tuple[str, str], float], source: Side, target: Side, lexicon: bool
) -> frozenset[tuple[str, ...]]:
    """Number keys whose values differ between container elements that line up (`layers.1` with `blocks.0`).

    When one side numbers a container from 1 and the other from 0, equal numbers mean different elements.
    """
    first_t: dict[str, str] = {}
    for name in target.table.names:
        for module in target.tree.ancestors(name, 64):
            first_t.setdefault(module, name)
    first_s: dict[str, str] = {}
    for name in source.table.names:
        for module in source.tree.ancestors(name, 64):
            first_s.setdefault(module, name)
    keys: set[tuple[str, ...]] = set()
    for t_module, s_module in seeds:
        if not (_is_index(t_module) and _is_index(s_module)) or _index_value(t_module) == _index_value(s_module):
            continue
        t_numbers = number_contexts(first_t[t_module], lexicon=lexicon)
        s_numbers = number_contexts(first_s[s_module], lexicon=lexicon)
        for key, value in t_numbers.items():
            if value == _index_value(t_module) and s_numbers.get(key) == _index_value(s_module):
                keys.add(key)
    return frozenset(keys)


def _contradicted_number_keys(
    pairs: Sequence[tuple[int, int, float]], source: Side, target: Side, lexicon: bool
) -> frozenset[tuple[str, ...]]:
    """Number keys (`("features", "[]")`) whose values confident pairs show to differ between the sides."""
    agree: Counter[tuple[str, ...]] = Counter()
    seen: Counter[tuple[str, ...]] = Counter()
    for t, s, _ in pairs:
        t_numbers = number_contexts(target.table.names[t], lexicon=lexicon)
        s_numbers = number_contexts(source.table.names[s], lexicon=lexicon)
        for key, value in t_numbers.items():
            if key in s_numbers:
                seen[key] += 1
                agree[key] += value == s_numbers[key]
    return frozenset(k for k, n in seen.items() if n >= 2 and agree[k] < 0.8 * n)


def _module_affinity(
    pairs: Sequence[tuple[int, int, float]], source: Side, target: Side
) -> dict[tuple[str, str], float]:
    """How much each (target module, source module) pair is the same module, judged by confident pairs.

    Every ancestor of a confident pair's target votes for every ancestor of its source; a vote count becomes a
    Jaccard-like overlap, votes / (size_t + size_s - votes), so the most *specific* source module wins over a
    wrapper that contains everything.
    """
    votes: dict[tuple[str, str], float] = defaultdict(float)
    for t, s, confidence in pairs:
        for t_module in target.tree.ancestors(target.table.names[t], _LEVELS):
            for s_module in source.tree.ancestors(source.table.names[s], _LEVELS + 1):
                votes[(t_module, s_module)] += confidence
    t_size, s_size = _module_sizes(target), _module_sizes(source)
    return {(mt, ms): v / (t_size[mt] + s_size[ms] - v) for (mt, ms), v in votes.items()}


def _module_sizes(side: Side) -> Counter[str]:
    sizes: Counter[str] = Counter()
    for name in side.table.names:
        for module in side.tree.ancestors(name, 32):
            sizes[module] += 1
    return sizes


def _predicted_positions(pairs: Sequence[tuple[int, int, float]], source: Side, target: Side) -> Array | None:
    """Where each target node should sit in the source order, interpolated between monotone anchors."""
    if len(pairs) < 2:
        return None
    points = sorted((float(target.position[t]), float(source.position[s])) for t, s, _ in pairs)
    keep = _longest_increasing([p[1] for p in points])
    xs = np.array([points[i][0] for i in keep])
    ys = np.array([points[i][1] for i in keep])
    return np.interp(target.position, xs, ys)


def _longest_increasing(values: Sequence[float]) -> list[int]:
    """Indices of a longest non-decreasing subsequence (patience sorting)."""
    import bisect

    tails: list[float] = []
    tail_index: list[int] = []
    previous = [-1] * len(values)
    for i, value in enumerate(values):
        pos = bisect.bisect_right(tails, value)
        if pos == len(tails):
            tails.append(value)
            tail_index.append(i)
        else:
            tails[pos] = value
            tail_index[pos] = i
        previous[i] = tail_index[pos - 1] if pos > 0 else -1
    out, i = [], tail_index[-1] if tail_index else -1
    while i >= 0:
        out.append(i)
        i = previous[i]
    return out[::-1]


def _follow_local_order(solution: Solution, scores: Mapping[str, Array], ctx: FeatureContext) -> None:
    """Where names and order disagree about two pairs, follow the order.

    Such a conflict arises when a shared token pulls one way (`attention_norm` ~ `post_attention_layernorm`)
    and the order signals (rank among like siblings, within the block, in the file) the other. Neither is
    proof, and both pairs stay below the threshold; but a lone shared token is the weaker guide, so the order
    settles which way the pairs are written.
    """
    weak = [name for name, f in FEATURES.items() if f.weak and name in scores]
    if not weak:
        return
    local = sum((scores[name] * FEATURES[name].weight for name in weak), start=np.zeros(len(ctx.candidates.target)))
    index = {
        (int(t), int(s)): i for i, (t, s) in enumerate(zip(ctx.candidates.target, ctx.candidates.source, strict=True))
    }
    holder = {a.source: a for a in solution.assignments.values() if a.source is not None}
    conflict = DecidedBy.NAMES_AND_ORDER_DISAGREE
    for a in list(solution.assignments.values()):
        if a.doubt is not conflict or a.source is None or not a.rivals or a.rivals[0][0] is None:
            continue
        rival = a.rivals[0][0]
        b = holder.get(rival)
        if b is None or b.doubt is not conflict or b.source is None or b.rivals[0][0] != a.source:
            continue
        swapped_a, swapped_b = index.get((a.target, rival)), index.get((b.target, a.source))
        if swapped_a is None or swapped_b is None or a.candidate is None or b.candidate is None:
            continue
        if local[swapped_a] + local[swapped_b] > local[a.candidate] + local[b.candidate]:
            a_source = a.source
            a.source, a.candidate = rival, swapped_a
            b.source, b.candidate = a_source, swapped_b
            holder[a.source], holder[b.source] = a, b
            for moved in (a, b):
                moved.doubt = DecidedBy.FOLLOWED_BLOCK_ORDER


# ---------------------------------------------------------------------------------------------- fused tensors


def _order_parts(solution: Solution, ctx: FeatureContext) -> None:
    """Decide which piece of a fused tensor goes with which partner, once the partners are chosen.

    The assignment picks *which* tensors pair with the pieces of a fused one; the order of the pieces is
    settled here, by the strongest evidence available: container indices that number the partners like the
    pieces (`experts.0..7` for the 8 slices of a stacked tensor), else piece names (`qkv` -> q, k, v) when
    the assignment already follows them, else file order, which is then reported as order-only.
    """
    lookup = {
        (int(t), int(s)): i for i, (t, s) in enumerate(zip(ctx.candidates.target, ctx.candidates.source, strict=True))
    }
    groups: dict[tuple[str, int, int, int], list[Assignment]] = defaultdict(list)
    for a in solution.assignments.values():
        if a.source is None:
            continue
        t_part, s_part = ctx.target.nodes[a.target].part, ctx.source.nodes[a.source].part
        if s_part is not None:
            groups[("source", ctx.source.nodes[a.source].base, s_part.axis, s_part.parts)].append(a)
        elif t_part is not None:
            groups[("target", ctx.target.nodes[a.target].base, t_part.axis, t_part.parts)].append(a)
    for (side, _, _, _), members in groups.items():
        if len(members) < 2:
            continue
        fused_on_source = side == "source"
        partner_side = ctx.target if fused_on_source else ctx.source

        def partner(a: Assignment, fused_on_source: bool = fused_on_source, side: Side = partner_side) -> int:
            node = a.target if fused_on_source else a.source
            return side.nodes[node].base if node is not None else -1

        partner_names = (ctx.target if fused_on_source else ctx.source).table.names
        pieces = sorted(members, key=lambda a: _piece(ctx, a, fused_on_source))
        partners = sorted(members, key=lambda a: partner_side.rank[partner(a)])
        by_index = _numbered_partners([partner_names[partner(a)] for a in partners], len(pieces))
        if by_index is not None:
            ordered, how = [partners[i] for i in by_index], "container indices"
        elif _pieces_named(ctx, members, fused_on_source) and all(
            a.doubt is None and a.confidence >= 0.5 for a in members
        ):
            ordered, how = partners, "names"
        else:
            ordered, how = partners, "file order"
        if how != "file order":
            _set_confidence(members, fused_on_source)
            if how == "names":
                continue  # the assignment already follows the piece names
        # snapshot before rewriting: the same assignment objects appear as pieces and as partners
        piece_nodes = [(a.source if fused_on_source else a.target) for a in pieces]
        partner_nodes = [(a.target if fused_on_source else a.source) for a in ordered]
        for node, other in zip(piece_nodes, partner_nodes, strict=True):
            t, s = (other, node) if fused_on_source else (node, other)
            candidate = lookup.get((t, s))  # type: ignore[arg-type]
            if candidate is None:
                continue
            holder = solution.assignments[t]  # type: ignore[index]
            holder.source, holder.candidate = s, candidate
            if how == "file order":
                holder.order_only = True
                holder.confidence = min(holder.confidence, 0.45)


def _pieces_named(ctx: FeatureContext, members: list[Assignment], fused_on_source: bool) -> bool:
    """Whether the fused tensor's name spells its pieces (`qkv` -> q, k, v), so names can order them."""
    side = ctx.source if fused_on_source else ctx.target
    nodes = [(a.source if fused_on_source else a.target) for a in members]
    return all(side.node_tokens[n] != side.tokens[side.nodes[n].base] for n in nodes if n is not None)


def _set_confidence(members: list[Assignment], fused_on_source: bool) -> None:
    """Once the pieces are ordered by evidence, only rivals outside the group speak against a member."""
    group = {(a.target if fused_on_source else a.source) for a in members}
    for a in members:
        if a.confidence <= 0:
            continue
        odds_per_share = 1.0 / a.confidence  # rivals' shares are odds divided by the same total
        outside = sum(share * odds_per_share for node, share in a.rivals if node not in group and node is not None)
        a.confidence = 1.0 / (1.0 + outside)
        a.order_only = False
        a.doubt = None


def _piece(ctx: FeatureContext, a: Assignment, fused_on_source: bool) -> int:
    node = ctx.source.nodes[a.source] if fused_on_source else ctx.target.nodes[a.target]  # type: ignore[index]
    return node.part.index if node.part is not None else 0


def _numbered_partners(names: Sequence[str], count: int) -> list[int] | None:
    """When the partners differ only in one container index running 0..count-1 (or 1..count), their order by it."""
    split = [n.split(".") for n in names]
    if len({len(s) for s in split}) != 1:
        return None
    differing = [i for i in range(len(split[0])) if len({s[i] for s in split}) > 1]
    if len(differing) != 1 or not all(s[differing[0]].isdigit() for s in split):
        return None
    numbers = [int(s[differing[0]]) for s in split]
    base = min(numbers)
    if sorted(numbers) != list(range(base, base + count)) or base not in (0, 1):
        return None
    return sorted(range(len(numbers)), key=lambda i: numbers[i])


# --------------------------------------------------------------------------------------------- building pairs


def _matches(
    solution: Solution, scores: Mapping[str, Array], ctx: FeatureContext, notes: list[str]
) -> dict[str, Match]:
    source, target = ctx.source, ctx.target
    t_records = target.table.params
    part_rows: dict[int, list[Assignment]] = defaultdict(list)
    for a in solution.assignments.values():
        node = target.nodes[a.target]
        if node.part is not None and a.source is not None:
            part_rows[node.base].append(a)
    out: dict[str, Match] = {}
    for record in t_records:
        whole = solution.assignments.get(record.index)
        if whole is not None and whole.source is not None:
            out[record.name] = _single(whole, record, scores, ctx)
        elif part_rows.get(record.index):
            built = _concatenated(
                sorted(part_rows[record.index], key=lambda a: _piece(ctx, a, False)), record, scores, ctx
            )
            if built is not None:
                out[record.name] = built
        if record.name not in out:
            rivals = whole.rivals if whole is not None else ()
            out[record.name] = Match(
                record.name,
                None,
                0.0,
                target_shape=record.shape,
                alternatives=tuple(Alternative(_source_name(source, c), 0.0) for c, _ in rivals if c is not None),
                labels={"note": "no source tensor fits well enough"},
            )
    _apply_transpose_convention(out, notes)
    return out


def _source_name(source: Side, node: int | None) -> str | None:
    if node is None:
        return None
    return source.table.params[source.nodes[node].base].name


def _evidence(a: Assignment, scores: Mapping[str, Array]) -> tuple[dict[str, float], dict[str, str]]:
    """The scores of the chosen candidate, and the labels saying what decided it."""
    evidence: dict[str, float] = {}
    if a.candidate is not None:
        for name in FEATURES:
            if name in scores:
                evidence[name] = float(scores[name][a.candidate])
    decided = a.doubt if a.doubt is not None else DecidedBy.NAMES_AND_STRUCTURE
    return evidence, {DECIDED_BY: decided.value}


def _alternatives(a: Assignment, source: Side) -> tuple[Alternative, ...]:
    out = []
    for node, share in a.rivals:
        name = _source_name(source, node) if node is not None else None
        if name is None:
            continue
        part = source.nodes[node].part if node is not None else None
        steps = (Split(part.axis, part.parts, part.index),) if part else ()
        out.append(Alternative(name, round(share, 4), steps))
    return tuple(out[:3])


def _single(a: Assignment, record: ParamRecord, scores: Mapping[str, Array], ctx: FeatureContext) -> Match:
    source = ctx.source
    assert a.source is not None and a.candidate is not None
    node = source.nodes[a.source]
    base = source.table.params[node.base]
    relation = ctx.candidates.relation[a.candidate]
    steps: list[Step] = []
    if node.part is not None:
        steps.append(Split(node.part.axis, node.part.parts, node.part.index))
    steps.extend(relation.steps)
    evidence, labels = _evidence(a, scores)
    confidence = float(a.confidence)
    if relation.kind == "reshape":  # equal sizes, unrelated layouts: possible, never evident
        confidence = min(confidence, 0.45)
        labels[DECIDED_BY] = DecidedBy.RESHAPE_ONLY.value
    return Match(
        target=record.name,
        source=base.name,
        confidence=confidence,
        transform=tuple(steps),
        target_shape=record.shape,
        source_shape=base.shape,
        evidence=evidence,
        alternatives=_alternatives(a, source),
        labels=labels,
    )


def _concatenated(
    parts: list[Assignment], record: ParamRecord, scores: Mapping[str, Array], ctx: FeatureContext
) -> Match | None:
    source, target = ctx.source, ctx.target
    first = target.nodes[parts[0].target].part
    assert first is not None
    kinds = {ctx.candidates.relation[a.candidate].kind for a in parts if a.candidate is not None}
    if (
        len(kinds) != 1
        or len(parts) != first.parts
        or any(source.nodes[a.source].part for a in parts if a.source is not None)
    ):
        return None
    names = tuple(source.table.params[source.nodes[a.source].base].name for a in parts if a.source is not None)
    shapes = tuple(source.table.params[source.nodes[a.source].base].shape for a in parts if a.source is not None)
    relation = ctx.candidates.relation[parts[0].candidate]  # type: ignore[index]
    steps = concat_steps(Part(first.axis, first.parts, 0), relation, record.shape, shapes)
    if steps is None:
        return None
    weakest = min(parts, key=lambda a: a.confidence)
    evidence, labels = _evidence(weakest, scores)
    labels["note"] = f"built by concatenating {len(names)} source tensors"
    return Match(
        target=record.name,
        source=names,
        confidence=float(weakest.confidence),
        transform=tuple(steps),
        target_shape=record.shape,
        source_shape=shapes,
        evidence=evidence,
        alternatives=(),
        labels=labels,
    )


def _template(name: str) -> str:
    return ".".join("#" if c.isdigit() else c for c in name.split("."))


def _apply_transpose_convention(matches: dict[str, Match], notes: list[str]) -> None:
    """Give square 2-D pairs the transpose convention of the nearest non-square 2-D pairs around them.

    Whether a port stores linear weights as `(in, out)` is a property of the model, not of one tensor; shape
    can only tell for non-square weights. The vote is taken in the innermost enclosing module (by template,
    so all layers count together) that has non-square 2-D pairs, then the whole model.
    """
    votes: dict[str, Counter[bool]] = defaultdict(Counter)
    for match in matches.values():
        shape = match.target_shape
        if not _is_layer_weight(match):
            continue
        if len(shape) == 2 and shape[0] != shape[1] and isinstance(match.source, str) and match.source_shape:
            transposed = any(isinstance(s, Transpose) for s in match.transform)
            for scope in _scopes(match.target):
                votes[scope][transposed] += 1
    flipped = 0
    for name, match in matches.items():
        shape = match.target_shape
        if len(shape) != 2 or shape[0] != shape[1] or not isinstance(match.source, str) or not _is_layer_weight(match):
            continue
        if any(isinstance(s, Transpose | Reshape) for s in match.transform):
            continue
        for scope in _scopes(name):
            if votes[scope]:
                transposed, count = votes[scope].most_common(1)[0]
                if transposed and count > votes[scope][False]:
                    labels = dict(match.labels)
                    labels["note"] = (
                        f"square weight transposed like the non-square 2-D weights in {scope or 'the model'!r}"
                    )
                    matches[name] = replace(match, transform=(*match.transform, Transpose()), labels=labels)
                    flipped += 1
                break
    if flipped:
        notes.append(f"{flipped} square 2-D weights transposed to follow the model's (in, out) storage convention")


def _is_layer_weight(match: Match) -> bool:
    """A layer's weight on both sides (`weight`, `kernel`, ...), not a free parameter such as `text_projection`.

    A free parameter's layout follows how the model multiplies with it rather than the layer convention.
    """
    from .names import tokenize

    return isinstance(match.source, str) and all(
        "=weight" in tokenize(name).leaf and not tokenize(name).leaf[0].startswith(("gamma", "embedding"))
        for name in (match.target, match.source)
    )


def _scopes(name: str) -> list[str]:
    """Enclosing module templates of a parameter, innermost first, ending with the whole model ("")."""
    parts = _template(name).split(".")[:-1]
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)] + [""]
