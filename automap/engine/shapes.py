"""Which source shapes can become which target shapes, by which layout transform, and how plausibly.

Equal shapes need nothing. Shapes equal up to length-1 axes need an unsqueeze/squeeze (MindSpore's Conv1d
weight `[O, I, 1, k]` vs torch's `[O, I, k]`, a `(C, 1, 1)` scale vs `(C,)`). A reversed 2-D shape needs a
transpose (ports that store linear weights as `(in, out)`). Any other shape of equal size is a reshape, scored
low. Anything else is incompatible and never a candidate. A *part* is a tensor cut into `k` equal pieces along
an axis: a fused `qkv` seen as three `q`, `k`, `v` pieces, or a target that concatenates several sources.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from automap.transforms import Concat, Reshape, Squeeze, Step, Transpose, Unsqueeze

__all__ = ["TRANSPOSE", "Part", "Relation", "RelationKind", "concat_steps", "part_shape", "relate"]

Shape = tuple[int, ...]
Steps = tuple[Step, ...]
RelationKind = Literal["exact", "layout", "transpose", "reshape"]

EXACT, LAYOUT, TRANSPOSE, RESHAPE = 1.0, 0.92, 0.9, 0.3


@dataclass(frozen=True, slots=True)
class Relation:
    """How a source shape becomes a target shape: the steps and how plausible that is (1 = identical)."""

    steps: Steps
    score: float
    kind: RelationKind


@dataclass(frozen=True, slots=True)
class Part:
    """Piece `index` of `parts` equal pieces along `axis` of a tensor."""

    axis: int
    parts: int
    index: int


def part_shape(shape: Shape, axis: int, parts: int) -> Shape:
    """The shape of one of `parts` equal pieces of `shape` along `axis`."""
    return (*shape[:axis], shape[axis] // parts, *shape[axis + 1 :])


def relate(source: Shape, target: Shape) -> Relation | None:
    """How `source` becomes `target`, or None when no layout transform can do it.

    Example:
        >>> relate((64, 3, 7), (64, 3, 1, 7)).steps
        (Unsqueeze(axis=2),)
    """
    if source == target:
        return Relation((), EXACT, "exact")
    if math.prod(source) != math.prod(target):
        return None
    if [d for d in source if d != 1] == [d for d in target if d != 1]:
        return Relation(_layout_steps(source, target), LAYOUT, "layout")
    if len(source) == 2 and source == target[::-1]:
        return Relation((Transpose(),), TRANSPOSE, "transpose")
    return Relation((Reshape(target),), RESHAPE, "reshape")


def _layout_steps(source: Shape, target: Shape) -> Steps:
    """One unsqueeze or squeeze when a single length-1 axis differs; a reshape otherwise."""
    if len(target) == len(source) + 1:
        for axis in range(len(target)):
            if target[axis] == 1 and (*target[:axis], *target[axis + 1 :]) == source:
                return (Unsqueeze(axis),)
    if len(source) == len(target) + 1:
        for axis in range(len(source)):
            if source[axis] == 1 and (*source[:axis], *source[axis + 1 :]) == target:
                return (Squeeze(axis),)
    return (Reshape(target),)


def concat_steps(part: Part, relation: Relation, target: Shape, sources: Sequence[Shape]) -> Steps | None:
    """Steps building `target` by concatenating `sources` (each related to one part by `relation`).

    Returns None when the parts' layout cannot be expressed as a concatenation followed by one transform.
    """
    if relation.kind == "exact":
        return (Concat(part.axis),)
    if relation.kind == "transpose" and len(target) == 2:
        return (Concat(1 - part.axis), Transpose())
    stacked = sum(s[0] for s in sources) if all(len(s) >= 1 for s in sources) else 0
    if (
        relation.kind in ("layout", "reshape")
        and part.axis == 0
        and stacked
        and all(s[1:] == sources[0][1:] for s in sources)
    ):
        concat = (stacked, *sources[0][1:])
        if math.prod(concat) == math.prod(target):
            return (Concat(0), Reshape(target))
    return None
