"""What the confident pairs of one pass teach the next, and the layouts settled after the final pass.

From the pairs a pass is sure of (confidence at least 0.8, not decided by order alone) come: token
correspondences that recur (`classifier`~`head`), rules between numbered slots (`features.#` = source
`features.#` - 2), which module pairs with which, anchors where the two orders align (for a better position
estimate), whether the model stores matrices transposed, and number keys whose values differ between the
sides. `FeatureContext` carries them to the features of the next pass. After the last pass,
`settle_layout_doubts` settles the layout of square weights nothing else orients.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from automap._decisions import DecidedBy
from automap._types import Array

from .features import FeatureContext
from .graph import owner
from .names import AMBIGUOUS, index_template, number_contexts
from .numbering import SlotRule, numbered_slots
from .sides import Side
from .solver import Solution

__all__ = [
    "confident_pairs",
    "contradicted_number_keys",
    "layout_conventions",
    "layout_family",
    "learn_number_slots",
    "learn_tokens",
    "module_affinity",
    "predicted_positions",
    "settle_layout_doubts",
    "transposed_share",
]

_CONFIDENT = 0.8  # a pair this sure teaches the next pass
_LEVELS = 3  # module levels above a parameter that structural context looks at


def confident_pairs(solution: Solution, source: Side, target: Side) -> list[tuple[int, int, float]]:
    """(target param, source param, confidence) of whole-tensor pairs the first pass is sure of."""
    out = []
    for a in solution.assignments.values():
        if a.source is None or a.order_only or a.confidence < _CONFIDENT:
            continue
        t_node, s_node = target.nodes[a.target], source.nodes[a.source]
        out.append((t_node.base, s_node.base, a.confidence))
    return out


def learn_tokens(pairs: Sequence[tuple[int, int, float]], source: Side, target: Side) -> dict[str, Counter[str]]:
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


def learn_number_slots(pairs: Sequence[tuple[int, int, float]], source: Side, target: Side) -> dict[str, SlotRule]:
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


def transposed_share(pairs: Sequence[tuple[int, int, float]], source: Side, target: Side) -> float | None:
    """Of the confident pairs of non-square matrices, the share stored transposed (None below three such pairs)."""
    kinds = []
    for t, s, _ in pairs:
        t_shape, s_shape = target.table.params[t].shape, source.table.params[s].shape
        if len(t_shape) == 2 and t_shape[0] != t_shape[1] and len(s_shape) == 2:
            kinds.append(t_shape != s_shape)
    return sum(kinds) / len(kinds) if len(kinds) >= 3 else None


def contradicted_number_keys(
    pairs: Sequence[tuple[int, int, float]], source: Side, target: Side, lexicon: bool
) -> frozenset[tuple[str, ...]]:
    """Number keys (`("features", "[]")`) whose values confident pairs show to differ between the sides."""
    agree: Counter[tuple[str, ...]] = Counter()
    seen: Counter[tuple[str, ...]] = Counter()
    for t, s, _ in pairs:
        t_numbers = number_contexts(target.table.names[t], lexicon=lexicon)
        s_numbers = number_contexts(source.table.names[s], lexicon=lexicon)
        for key, value in t_numbers.items():
            if key in s_numbers and AMBIGUOUS not in (value, s_numbers[key]):
                seen[key] += 1
                agree[key] += value == s_numbers[key]
    return frozenset(k for k, n in seen.items() if n >= 2 and agree[k] < 0.8 * n)


def module_affinity(
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


def predicted_positions(pairs: Sequence[tuple[int, int, float]], source: Side, target: Side) -> Array | None:
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


def layout_family(name: str) -> str:
    """The layer family of a parameter: its module with container indices blanked (`blocks.#.output.mapping`)."""
    return index_template(owner(name))


def layout_conventions(observations: Iterable[tuple[str, tuple[int, ...], bool]]) -> dict[str, bool]:
    """For each layer family, whether its 2-D weights are stored transposed, where every observation agrees.

    An observation is (target name, target shape, transposed?) of a pair whose layout was not what decided it
    (names did, or a person did). Square weights say nothing and are left out.
    """
    seen: dict[str, set[bool]] = defaultdict(set)
    for name, shape, transposed in observations:
        if len(shape) == 2 and shape[0] != shape[1]:
            seen[layout_family(name)].add(transposed)
    return {family: next(iter(kinds)) for family, kinds in seen.items() if len(kinds) == 1}


def settle_layout_doubts(solution: Solution, ctx: FeatureContext, known: Mapping[str, bool]) -> None:
    """Lift the doubt of pairs only the layout decided, where their layer family's convention is established.

    Ports store some layer families `(in, out)` and others `(out, in)`, so an exact shape against a transposed
    one is no evidence by itself. But when other weights of the same family were paired by their names (or
    reviewed by a person) and all needed the same layout, the family's convention is known, and a pair that
    follows it is as sure as its margin says.
    """
    names, shapes = ctx.target.table.names, [r.shape for r in ctx.target.table.params]
    observations = [
        (names[t.base], shapes[t.base], ctx.candidates.relation[a.candidate].kind == "transpose")
        for a in solution.assignments.values()
        if a.candidate is not None
        and a.doubt is None
        and a.confidence >= _CONFIDENT
        and (t := ctx.target.nodes[a.target]).part is None
        and a.source is not None
        and ctx.source.nodes[a.source].part is None
    ]
    conventions = {**layout_conventions(observations), **known}
    for a in solution.assignments.values():
        if a.doubt is not DecidedBy.LAYOUT_ONLY or a.candidate is None:
            continue
        family = layout_family(names[ctx.target.nodes[a.target].base])
        if family in conventions and conventions[family] == (ctx.candidates.relation[a.candidate].kind == "transpose"):
            a.doubt = None
            a.confidence = a.uncapped
