"""Pair the modules of two networks through a mapping, and compare what paired modules output.

A target module and a source module are paired when the mapping feeds the target module's parameters from
exactly the source module's parameters (all of them, and nothing else). Their outputs are comparable when
each call returns the same number of arrays and each array has the same shape, or the same axes in another
order that the sizes make unique (`[length, batch, width]` against `[batch, length, width]`).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from automap._types import Array

from ._nets import Net, Outputs

Layout = tuple[int, ...] | None  # axes of the source array that give the target's layout; None: as it is
CallShapes = list[list[tuple[int, ...]]]

MODULE_RTOL = 1e-3
"""Largest difference, relative to the largest reference value, at which two module outputs agree."""


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


def layouts(reference: CallShapes, candidate: CallShapes) -> list[list[Layout]] | None:
    """How each reference array maps onto the candidate's layout, or None when the outputs cannot be compared."""
    if len(reference) != len(candidate) or not reference:
        return None
    out: list[list[Layout]] = []
    for ref_call, got_call in zip(reference, candidate, strict=True):
        if len(ref_call) != len(got_call) or not ref_call:
            return None
        call: list[Layout] = []
        for ref, got in zip(ref_call, got_call, strict=True):
            if ref == got:
                call.append(None)
                continue
            if len(ref) != len(got) or sorted(ref) != sorted(got) or len(ref) > 5:
                return None
            fits = [p for p in itertools.permutations(range(len(ref))) if tuple(ref[i] for i in p) == got]
            if len(fits) != 1:
                return None
            call.append(fits[0])
        out.append(call)
    return out


def relative_difference(reference: Array, candidate: Array) -> float:
    """The largest absolute difference over the largest reference value (inf when the candidate is not finite)."""
    if reference.size == 0:
        return 0.0
    if not np.all(np.isfinite(candidate)):
        return float("inf")
    scale = float(np.max(np.abs(reference)))
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    return diff / scale if scale > 0 else diff


def difference(reference: Sequence[Outputs], candidate: Sequence[Outputs], shapes: Sequence[Sequence[Layout]]) -> float:
    """The largest relative difference over all calls and arrays, reference arrays put in the candidate's layout."""
    worst = 0.0
    for ref_call, got_call, call_layouts in zip(reference, candidate, shapes, strict=True):
        for ref, got, layout in zip(ref_call, got_call, call_layouts, strict=True):
            worst = max(worst, relative_difference(arrange(ref, layout), got))
    return worst


def arrange(array: Array, layout: Layout) -> Array:
    """A reference array in the candidate's layout."""
    return array if layout is None else np.ascontiguousarray(np.transpose(array, layout))


def arranged(reference: Sequence[Outputs], shapes: Sequence[Sequence[Layout]]) -> list[Outputs]:
    """All calls' reference outputs in the candidate's layout (for teacher forcing)."""
    return [
        [arrange(a, layout) for a, layout in zip(call, call_layouts, strict=True)]
        for call, call_layouts in zip(reference, shapes, strict=True)
    ]
