"""Turn candidate scores into one consistent assignment, and measure how sure each chosen pair is.

The cost of a candidate is the weighted sum of `1 - score` over features. A target may stay unmatched at cost
`unmatched`; a target split into parts (to be built by concatenation) pays its unmatched cost spread over its
parts, so "whole", "all parts" and "nothing" compete fairly. `scipy.optimize.linear_sum_assignment` solves the
rectangular problem; a source (or target) used both whole and through its parts is an inconsistency, resolved
by forbidding the costlier option and solving again.

Confidence is the probability-like share of the chosen pair against its alternatives, where an alternative's
"distance" is the cost increase of the best exchange that would make it happen (a 2-swap with whoever holds
that source). A decision that only the weak features (file order) carry is capped below the audit threshold,
however large its margin: among interchangeable candidates, order alone is not proof.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from automap._decisions import DecidedBy
from automap._types import Array

from .features import FEATURES
from .sides import Candidates, Side

__all__ = ["ORDER_ONLY_CAP", "Assignment", "Solution", "candidate_costs", "solve"]

INF = 1e9
_TAU = 0.25  # cost units per e-fold of odds between two alternatives
_MARGIN = 0.0  # a rival this much costlier is still an even bet: small margins are not evidence
ORDER_ONLY_CAP = 0.45
_STRONG_EPS = 0.15
_DECISIVE = 1.0  # a strong-feature margin this large (a leaf mismatch, a number mismatch) outweighs order


@dataclass
class Assignment:
    """One target node's choice and how sure it is."""

    target: int  # target node
    source: int | None  # source node, None = unmatched
    candidate: int | None  # index into the candidate arrays
    cost: float
    confidence: float = 1.0
    order_only: bool = False
    doubt: DecidedBy | None = None  # why the confidence was capped, if it was
    uncapped: float = 1.0  # the confidence before a doubt capped it
    rivals: tuple[tuple[int | None, float], ...] = ()  # (source node, confidence), best first


@dataclass
class Solution:
    """All target nodes' assignments (parts included) and the cost matrix they came from."""

    assignments: dict[int, Assignment]
    costs: Array  # per candidate


def candidate_costs(scores: Mapping[str, Array], weights: Mapping[str, float]) -> tuple[Array, Array]:
    """Total costs per candidate, and per candidate the strong-only cost and the part of it the layout makes.

    The second array has two columns: the cost of the strong features, and of the `shape` feature alone, so
    that a decision only the layout carries (an exact shape against a transposed one) can be told apart.
    """
    total = np.zeros_like(next(iter(scores.values())))
    strong = np.zeros((len(total), 2))
    for name, values in scores.items():
        weight = weights.get(name, FEATURES[name].weight)
        part = weight * (1.0 - np.clip(values, 0.0, 1.0))
        total = total + part
        if not FEATURES[name].weak:
            strong[:, 0] += part
        if name == "shape":
            strong[:, 1] += part
    return total, strong


def solve(
    source: Side,
    target: Side,
    candidates: Candidates,
    costs: Array,
    strong_costs: Array,
    unmatched: float,
    forbidden: set[int] | None = None,
    repeated: Callable[[int, int], bool] | None = None,
) -> Solution:
    """The minimum-cost consistent assignment, with confidence for every chosen pair."""
    n_t, n_s = len(target.nodes), len(source.nodes)
    keys = candidates.target.astype(np.int64) * (n_s + 1) + candidates.source
    allowed = np.ones(len(costs), dtype=bool)
    if forbidden:
        allowed[list(forbidden)] = False
    t_parts = np.array([n.part.parts if n.part is not None else 1 for n in target.nodes], dtype=float)
    # a part of a target carries 1/k of it: k parts together weigh what one whole pair does
    weighted = costs / t_parts[candidates.target]
    dummy = unmatched / t_parts
    for _ in range(8):
        matrix = np.full((n_t, n_s + n_t), INF)
        matrix[candidates.target[allowed], candidates.source[allowed]] = weighted[allowed]
        matrix[np.arange(n_t), n_s + np.arange(n_t)] = dummy
        row_index, col_index = linear_sum_assignment(matrix)
        chosen = {int(r): int(c) for r, c in zip(row_index, col_index, strict=True)}
        conflict = _conflicts(source, target, chosen, n_s, matrix)
        if not conflict:
            break
        bad = np.array([t * (n_s + 1) + c for t, c in conflict], dtype=np.int64)
        allowed &= ~np.isin(keys, bad)
    lookup = _Lookup(keys[allowed], np.flatnonzero(allowed), n_s + 1)
    assignments: dict[int, Assignment] = {}
    for t, c in chosen.items():
        if c >= n_s or matrix[t, c] >= INF or (t, c) not in lookup:  # unresolved conflicts stay unmatched
            assignments[t] = Assignment(t, None, None, float(dummy[t]))
        else:
            assignments[t] = Assignment(t, c, lookup[(t, c)], float(matrix[t, c]))
    _confidence(assignments, matrix, dummy, n_s, strong_costs, lookup, repeated)
    return Solution(assignments, costs)


class _Lookup:
    """(target node, source node) -> candidate index, by binary search over sorted pair keys."""

    def __init__(self, keys: Array, indices: Array, stride: int) -> None:
        order = np.argsort(keys, kind="stable")
        self._keys, self._indices, self._stride = keys[order], indices[order], stride

    def get(self, pair: tuple[int, int]) -> int | None:
        key = pair[0] * self._stride + pair[1]
        position = int(np.searchsorted(self._keys, key))
        if position < len(self._keys) and self._keys[position] == key:
            return int(self._indices[position])
        return None

    def __contains__(self, pair: object) -> bool:
        return isinstance(pair, tuple) and self.get(pair) is not None

    def __getitem__(self, pair: tuple[int, int]) -> int:
        index = self.get(pair)
        if index is None:
            raise KeyError(pair)
        return index


def _conflicts(source: Side, target: Side, chosen: dict[int, int], n_s: int, matrix: Array) -> set[tuple[int, int]]:
    """Pairs to forbid so that no tensor is used both whole and in parts, and parts come in complete sets."""
    bad: set[tuple[int, int]] = set()
    # sources: whole and parts of one tensor both used -> drop the costlier side
    for groups in _uses(source, chosen, n_s, matrix, by_source=True).values():
        if len(groups) > 1:
            best = min(groups, key=lambda k: sum(matrix[t, c] for t, c in groups[k]) / len(groups[k]))
            bad.update(p for k, pairs in groups.items() if k != best for p in pairs)
    # targets: whole matched and parts matched, or an incomplete set of parts
    for groups in _uses(target, chosen, n_s, matrix, by_source=False).values():
        for key, pairs in groups.items():
            if key != "whole" and (len(groups) > 1 or len(pairs) < int(key.split("/")[1])):
                bad.update(pairs)
    return bad


def _uses(
    side: Side, chosen: dict[int, int], n_s: int, matrix: Array, *, by_source: bool
) -> dict[int, dict[str, list[tuple[int, int]]]]:
    """For each tensor of a side, the chosen pairs using it, grouped by how: whole, or split in parts."""
    uses: dict[int, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for t, c in chosen.items():
        if c < n_s and matrix[t, c] < INF:
            node = side.nodes[c if by_source else t]
            key = "whole" if node.part is None else f"parts{node.part.axis}/{node.part.parts}"
            uses[node.base][key].append((t, c))
    return uses


def _confidence(
    assignments: dict[int, Assignment],
    matrix: Array,
    dummy: Array,
    n_s: int,
    strong_costs: Array,
    lookup: _Lookup,
    repeated: Callable[[int, int], bool] | None,
) -> None:
    holder = {a.source: a.target for a in assignments.values() if a.source is not None}
    for a in assignments.values():
        if a.source is None:
            alternatives = np.argsort(matrix[a.target, :n_s])[:4]
            deltas = [(int(c), float(matrix[a.target, c] - a.cost)) for c in alternatives if matrix[a.target, c] < INF]
            a.rivals = tuple((c, 0.0) for c, _ in deltas)
            a.confidence = 0.0
            continue
        row = matrix[a.target, :n_s]
        order = np.argsort(row)[:12]
        options: list[tuple[int | None, float, float, float]] = []  # (source, delta, strong delta, layout delta)
        for c in order:
            c = int(c)
            if c == a.source or row[c] >= INF:
                continue
            other = holder.get(c)
            if other is None:
                delta = row[c] - a.cost
                strong = _strong(lookup, strong_costs, a.target, c) - _strong(lookup, strong_costs, a.target, a.source)
            else:
                back = matrix[other, a.source]
                if back >= INF:
                    continue
                delta = row[c] + back - a.cost - matrix[other, c]
                strong = (
                    _strong(lookup, strong_costs, a.target, c)
                    + _strong(lookup, strong_costs, other, a.source)
                    - _strong(lookup, strong_costs, a.target, a.source)
                    - _strong(lookup, strong_costs, other, c)
                )
            options.append((c, max(float(delta), 0.0), float(strong[0]), float(strong[1])))
        unmatched = float(dummy[a.target] - a.cost)
        options.append((None, max(unmatched, 0.0), unmatched, 0.0))
        options.sort(key=lambda o: o[1])
        odds = [np.exp(-(o[1] - _MARGIN) / _TAU) for o in options]
        total = 1.0 + float(np.sum(odds))
        a.confidence = 1.0 / total
        a.rivals = tuple((o[0], float(odd / total)) for o, odd in zip(options[:4], odds[:4], strict=False))
        closest = options[0]
        # Repeated blocks (`blocks.3` vs `blocks.4`) are enumerated in order by every port; siblings with
        # different roles (`q` vs `k`, `norm1` vs `norm2`) are not. Only the latter is order-only doubt.
        block_order = repeated is not None and closest[0] is not None and repeated(closest[0], a.source)
        if closest[0] is None:
            continue
        margin, layout = closest[2], closest[3]
        weak = closest[1] - margin
        if closest[1] <= 1e-6:
            a.doubt = DecidedBy.TIE
        elif (margin < _STRONG_EPS and not block_order) or _order_alone_rejects(a, options, repeated):
            a.order_only = True
            a.doubt = DecidedBy.ORDER_ONLY
        elif layout > 1e-6 and margin - layout < _STRONG_EPS and not block_order:
            # names and structure say nothing between the two: only an exact shape against a transposed (or a
            # whole tensor against a piece) decided, and ports store layers either way round
            a.doubt = DecidedBy.LAYOUT_ONLY
        elif (
            not block_order
            and abs(margin) < _DECISIVE
            and ((margin > _STRONG_EPS and weak < -_STRONG_EPS) or (margin < -_STRONG_EPS and weak > _STRONG_EPS))
        ):
            a.doubt = DecidedBy.NAMES_AND_ORDER_DISAGREE
        a.uncapped = a.confidence
        if a.doubt is not None:
            a.confidence = min(a.confidence, ORDER_ONLY_CAP)
            # the rival that could not be told apart is about as likely as the choice
            node, share = a.rivals[0]
            a.rivals = ((node, max(share, min(ORDER_ONLY_CAP, 1.0 - a.confidence))), *a.rivals[1:])


def _order_alone_rejects(
    a: Assignment,
    options: Sequence[tuple[int | None, float, float, float]],
    repeated: Callable[[int, int], bool] | None,
) -> bool:
    """Whether some rival that is not the same tensor of a repeated block loses on order alone.

    The closest rival may be a sibling block (`layers.0` against `layers.1`), whose order every port keeps; a
    rival further away can still be the same layer in another tower (CLIP's text and vision encoders, built
    alike) that nothing but position tells apart. Then the choice between the towers rests on order.
    """
    for source, delta, margin, _ in options[1:]:
        if source is None or delta <= 1e-6:
            continue
        sibling = repeated is not None and a.source is not None and repeated(source, a.source)
        if margin < _STRONG_EPS and not sibling:
            return True
    return False


def _strong(lookup: _Lookup, strong_costs: Array, t: int, s: int) -> Array:
    """(strong cost, layout cost) of a candidate; zeros for a pair that is no candidate."""
    index = lookup.get((t, s))
    return strong_costs[index] if index is not None else np.zeros(2)
