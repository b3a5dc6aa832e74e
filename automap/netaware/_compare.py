"""Pair the modules of two networks through a mapping, and compare what paired modules output.

A target module and a source module are paired when the mapping feeds the target module's parameters from
exactly the source module's parameters (all of them, and nothing else). Their outputs are comparable when
each call returns the same number of arrays and each reference array can be put in the candidate's layout:
the same shape, the same axes in another order (`[length, batch, width]` against `[batch, length, width]`),
or adjacent axes merged or split (`[batch * length, width]` against `[batch, length, width]`, as MindFormers'
layers compute), possibly after a permutation. Where the sizes allow several such arrangements, each is kept
as a candidate and the values decide: the outputs agree when one arrangement makes them agree.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from automap._types import Array

from ._nets import Net, Outputs

CallShapes = list[list[tuple[int, ...]]]
_MAX_ARRANGEMENTS = 6


@dataclass(frozen=True)
class Arrangement:
    """How a reference array is put in the candidate's layout: axes permuted, then reshaped (axes merged or split).

    Attributes:
        axes: the permutation (None: the order as it is).
        shape: the candidate's shape, when adjacent axes are merged or split (None: no reshape).
    """

    axes: tuple[int, ...] | None = None
    shape: tuple[int, ...] | None = None

    def apply(self, array: Array) -> Array:
        """The reference array in the candidate's layout."""
        out = array if self.axes is None else np.transpose(array, self.axes)
        if self.shape is not None:
            out = out.reshape(self.shape)
        return out if self.axes is None and self.shape is None else np.ascontiguousarray(out)

    def describe(self) -> str:
        """`as it is`, `axes (1, 0, 2)`, `reshaped to [32, 64]`."""
        parts = []
        if self.axes is not None:
            parts.append(f"axes {self.axes}")
        if self.shape is not None:
            parts.append(f"reshaped to {list(self.shape)}")
        return ", ".join(parts) or "as it is"


Layout = tuple[Arrangement, ...]
"""The arrangements that may put one reference array in the candidate's layout, the most likely first."""
AS_IT_IS = Arrangement()


def arrangements(reference: tuple[int, ...], candidate: tuple[int, ...]) -> Layout:
    """The ways a reference array of one shape can be compared with a candidate array of another (empty: none).

    The same shape is compared as it is, never permuted. Otherwise: the permutations that give the candidate's
    shape; adjacent axes merged or split as they are; then permutations followed by such a reshape.
    """
    reference, candidate = tuple(reference), tuple(candidate)
    if reference == candidate:
        return (AS_IT_IS,)
    if math.prod(reference) != math.prod(candidate) or len(reference) > 5 or len(candidate) > 6:
        return ()
    found: list[Arrangement] = []
    orders = [p for p in itertools.permutations(range(len(reference))) if p != tuple(range(len(reference)))]
    if len(reference) == len(candidate):
        found += [Arrangement(p) for p in orders if tuple(reference[i] for i in p) == candidate]
    if _regroups(reference, candidate):
        found.append(Arrangement(None, candidate))
    for p in orders:
        permuted = tuple(reference[i] for i in p)
        if permuted != candidate and _regroups(permuted, candidate):
            found.append(Arrangement(p, candidate))
    return tuple(found[:_MAX_ARRANGEMENTS])


def _regroups(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether `b` is `a` with groups of adjacent axes merged or split (each group one axis on one side)."""
    a = tuple(d for d in a if d != 1)
    b = tuple(d for d in b if d != 1)
    if a == b:
        return True
    i = j = 0
    while i < len(a) and j < len(b):
        size_a, size_b, count_a, count_b = a[i], b[j], 1, 1
        i, j = i + 1, j + 1
        while size_a != size_b:
            if size_a < size_b and i < len(a):
                size_a, count_a, i = size_a * a[i], count_a + 1, i + 1
            elif size_b < size_a and j < len(b):
                size_b, count_b, j = size_b * b[j], count_b + 1, j + 1
            else:
                return False
        if count_a > 1 and count_b > 1:
            return False
    return i == len(a) and j == len(b)


class ModulePairing:
    """Which source modules hold exactly the parameters a set of source names covers."""

    def __init__(self, net: Net, ignored: Iterable[str] = ()) -> None:
        skip = set(ignored)
        self._by_set: dict[frozenset[str], list[str]] = defaultdict(list)
        for path, names in net.subtree.items():
            kept = frozenset(n for n in names if n not in skip)
            if kept:
                self._by_set[kept].append(path)

    def modules_for(self, sources: frozenset[str]) -> list[str]:
        """Source module paths whose parameters are exactly `sources` (outermost first)."""
        return list(self._by_set.get(sources, ()))


def call_shapes(calls: Sequence[Outputs]) -> CallShapes:
    """The shapes of each call's outputs."""
    return [[tuple(a.shape) for a in call] for call in calls]


Link = tuple[int, int, Layout]
"""A reference array (its position in a call's outputs) compared with a candidate array, and how it is arranged."""


def layouts(reference: CallShapes, candidate: CallShapes) -> list[list[Link]] | None:
    """How each call's reference arrays map onto the candidate's, or None when the outputs cannot be compared.

    Calls returning as many arrays pair them in order. Calls returning different numbers of arrays (a layer
    that also returns its cache, or its attention weights) compare their first arrays, the main output, only.
    """
    if len(reference) != len(candidate) or not reference:
        return None
    out: list[list[Link]] = []
    for ref_call, got_call in zip(reference, candidate, strict=True):
        if not ref_call or not got_call:
            return None
        links = _in_order(ref_call, got_call) if len(ref_call) == len(got_call) else _first_only(ref_call, got_call)
        if not links:
            return None
        out.append(links)
    return out


def _in_order(reference: list[tuple[int, ...]], candidate: list[tuple[int, ...]]) -> list[Link] | None:
    links: list[Link] = []
    for number, (ref, got) in enumerate(zip(reference, candidate, strict=True)):
        found = arrangements(ref, got)
        if not found:
            return None
        links.append((number, number, found))
    return links


def _first_only(reference: list[tuple[int, ...]], candidate: list[tuple[int, ...]]) -> list[Link]:
    found = arrangements(reference[0], candidate[0])
    return [(0, 0, found)] if found else []


def relative_difference(reference: Array, candidate: Array) -> float:
    """The largest absolute difference over the largest reference value (inf when the candidate is not finite)."""
    if reference.size == 0:
        return 0.0
    if not np.all(np.isfinite(candidate)):
        return float("inf")
    scale = float(np.max(np.abs(reference)))
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    return diff / scale if scale > 0 else diff


def best_arrangement(reference: Array, candidate: Array, layout: Layout) -> tuple[float, Arrangement]:
    """The smallest relative difference over a layout's arrangements, and the arrangement that gives it."""
    best = (float("inf"), layout[0] if layout else AS_IT_IS)
    for arrangement in layout:
        found = relative_difference(arrangement.apply(reference), candidate)
        if found < best[0]:
            best = (found, arrangement)
    return best


def difference(reference: Sequence[Outputs], candidate: Sequence[Outputs], links: Sequence[Sequence[Link]]) -> float:
    """The largest relative difference over all calls and linked arrays, each in its best arrangement.

    Infinite when a call or an array a link names is missing.
    """
    if len(reference) != len(links) or len(candidate) != len(links):
        return float("inf")
    worst = 0.0
    for ref_call, got_call, call_links in zip(reference, candidate, links, strict=True):
        for a, b, layout in call_links:
            if a >= len(ref_call) or b >= len(got_call):
                return float("inf")
            worst = max(worst, best_arrangement(ref_call[a], got_call[b], layout)[0])
    return worst


def arranged(reference: Sequence[Outputs], links: Sequence[Sequence[Link]]) -> list[list[Array | None]]:
    """Each call's reference arrays in the candidate's layout, by candidate position (None: not forced)."""
    out: list[list[Array | None]] = []
    for call, call_links in zip(reference, links, strict=True):
        size = max((b for _, b, _ in call_links), default=-1) + 1
        values: list[Array | None] = [None] * size
        for a, b, layout in call_links:
            values[b] = layout[0].apply(call[a]) if layout else call[a]
        out.append(values)
    return out


def settle_layouts(
    reference: Sequence[Outputs], candidate: Sequence[Outputs], links: Sequence[Sequence[Link]]
) -> list[list[Link]]:
    """The links with each array's best-agreeing arrangement first (so that forcing uses it)."""
    out = []
    for ref_call, got_call, call_links in zip(reference, candidate, links, strict=True):
        call = []
        for a, b, layout in call_links:
            _, best = best_arrangement(ref_call[a], got_call[b], layout)
            call.append((a, b, (best, *(x for x in layout if x != best))))
        out.append(call)
    return out
