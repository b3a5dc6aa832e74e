"""How close two networks' outputs must be to count as the same, and the final comparison under that bound.

Differences are measured against the size of each output: an output agrees when its largest absolute
difference is at most `rtol` times its largest absolute reference value, plus `atol` (a floor for outputs
that are all near zero). An elementwise bound fails ordinary float32 noise on large logits (a difference of
3e-5 on values around 18 next to a value near 0), while a wrong weight moves an output by a sizeable share of
its scale.

The bound follows the precision the networks compute in, the least precise floating-point type seen among any
module's outputs in either network: float16 or bfloat16 arithmetic drifts more than float32's. Module checks
(numeric resolution, localisation) use a looser bound than the final proof, as a module's output compared on
its own has no later layers to average its rounding out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automap._types import Array

from ._compare import Layout, arrangements, best_arrangement
from .networks import OutputComparison

__all__ = ["MODULE_RTOL", "PROOF_RTOL", "Tolerance", "compare_named", "lowest_precision", "tolerance_for"]

PROOF_RTOL = {"float64": 1e-4, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
"""Largest difference of a final output, relative to its largest value, per compute precision."""
MODULE_RTOL = {"float64": 1e-3, "float32": 1e-3, "float16": 2e-2, "bfloat16": 8e-2}
"""Largest difference of one module's output, relative to its largest value, per compute precision."""
DEFAULT_ATOL = 1e-5
_ORDER = ("float64", "float32", "float16", "bfloat16")


def lowest_precision(dtypes: Iterable[str]) -> str:
    """The least precise of some floating-point dtypes (float32 when none is known)."""
    known = [d for d in dtypes if d in _ORDER]
    return max(known, key=_ORDER.index) if known else "float32"


@dataclass(frozen=True)
class Tolerance:
    """The bounds in force and where they come from.

    Attributes:
        precision: the least precise floating-point type either network computes in.
        rtol: the final proof's bound, relative to each output's largest value.
        atol: the final proof's absolute floor.
        module_rtol: the bound of module checks at `precision` (a module computing more precisely gets its own).
        given: `rtol` was given by the caller rather than chosen for the precision.
    """

    precision: str
    rtol: float
    atol: float
    module_rtol: float
    given: bool = False

    def module(self, precision: str) -> float:
        """The bound of a module check for a module computing at `precision`."""
        return MODULE_RTOL.get(precision, self.module_rtol)

    def describe(self) -> str:
        """One line for a report."""
        origin = "given" if self.given else f"for {self.precision} compute"
        return (
            f"tolerance ({origin}): each output within {self.rtol:g} x its largest value (+ {self.atol:g}); "
            f"module checks within {self.module_rtol:g}"
        )


def tolerance_for(precision: str, rtol: float | None = None, atol: float | None = None) -> Tolerance:
    """The bounds for networks computing at `precision`; a given `rtol`/`atol` replaces the proof's."""
    return Tolerance(
        precision,
        PROOF_RTOL.get(precision, PROOF_RTOL["float32"]) if rtol is None else rtol,
        DEFAULT_ATOL if atol is None else atol,
        MODULE_RTOL.get(precision, MODULE_RTOL["float32"]),
        given=rtol is not None,
    )


def compare_named(
    reference: Mapping[str, Array],
    candidate: Mapping[str, Array],
    pairs: Sequence[tuple[str, str]],
    tolerance: Tolerance,
) -> OutputComparison:
    """Compare the paired outputs of two runs under a tolerance, each reference output in its best arrangement."""
    detail = []
    passed = bool(pairs)
    if not pairs:
        detail.append("no output of one model can be compared with an output of the other")
    max_abs = max_rel = 0.0
    for number, (a_name, b_name) in enumerate(pairs):
        a, b = reference[a_name].astype(np.float64), candidate[b_name].astype(np.float64)
        layout: Layout = arrangements(tuple(a.shape), tuple(b.shape))
        if not layout:
            detail.append(f"output {number}: shapes {list(a.shape)} and {list(b.shape)} cannot be compared")
            passed, max_abs, max_rel = False, float("inf"), float("inf")
            continue
        rel, arrangement = best_arrangement(a, b, layout)
        a = arrangement.apply(a)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        ok = bool(np.all(np.isfinite(b))) and diff <= tolerance.rtol * scale + tolerance.atol
        passed = passed and ok
        max_abs, max_rel = max(max_abs, diff), max(max_rel, rel)
        how = "" if arrangement.axes is None and arrangement.shape is None else f", {arrangement.describe()}"
        label = a_name if a_name == b_name else f"{a_name or '(the output)'} ~ {b_name or '(the output)'}"
        detail.append(
            f"output {number} {label} {list(b.shape)}{how}: max abs diff {diff:.3g}, max rel diff {rel:.3g}"
            f"{'' if ok else ' (over the bound)'}"
        )
    return OutputComparison(max_abs, max_rel, passed, tuple(detail))
