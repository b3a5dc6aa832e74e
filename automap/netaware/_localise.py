"""Find where two networks that should compute the same thing first part ways.

Both networks run on the same input with every module's outputs recorded. Walking the target's module calls
in the order they completed, each call of a module paired with a source module is compared with that source
module's call. The first call that disagrees is the divergence, and the parameters involved are the target
parameters first used since the last call that agreed: that covers layers whose outputs cannot be compared on
their own (the thirds of a fused projection) but run between the two points. A disagreement with no parameter
first used since the last agreement is a difference in how the two ports are built (a residual added inside
one module in one port and outside it in the other), not a mapping error, and is passed over.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automap._types import Array

from ._compare import ModulePairing
from ._nets import Net, Run, wrap
from ._points import Point, find_point, timeline, trailing_children
from ._tolerance import MODULE_RTOL

__all__ = ["Divergence", "locate", "locate_divergence", "pair_by_values"]


@dataclass(frozen=True)
class Divergence:
    """The first paired module whose outputs differ.

    Attributes:
        module: the target network's module path ("" is the whole model).
        reference: the paired module of the reference (source) network.
        call: which call of the module (0 for the first).
        difference: largest difference relative to the largest reference value.
        parameters: target parameters involved (first used since the last module that agreed).
        sources: where those parameters come from, as the pairing has it.
        agreed: paired module calls that agreed before this one.
        target_framework: the framework of the target network.
        reference_framework: the framework of the reference network.
    """

    module: str
    reference: str
    call: int
    difference: float
    parameters: tuple[str, ...]
    sources: tuple[str, ...]
    agreed: int
    target_framework: str = ""
    reference_framework: str = ""

    def describe(self) -> str:
        """One line for a report."""
        target = _framework(self.target_framework)
        reference = _framework(self.reference_framework)
        module = self.module or "(the whole model)"
        call = f" (call {self.call + 1})" if self.call else ""
        shown = ", ".join(self.parameters[:6]) + (
            f", ... ({len(self.parameters)} in all)" if len(self.parameters) > 6 else ""
        )
        sources = ", ".join(self.sources[:6]) + (", ..." if len(self.sources) > 6 else "")
        paired = self.reference or "(the whole model)"
        return (
            f"first diverging module: {target} {module!r}{call} vs {reference} {paired!r} "
            f"(max rel diff {self.difference:.3g}, after {self.agreed} agreeing module calls); "
            f"parameters involved: {shown} (from {sources})"
        )


def _framework(name: str) -> str:
    return {"pytorch": "PyTorch", "mindspore": "MindSpore"}.get(name, name)


def locate(
    target: Net,
    reference: Run,
    run: Run,
    names: Mapping[str, tuple[str, ...]],
    pairing: ModulePairing,
    *,
    source_trailing: Mapping[str, str] | None = None,
    bound: Callable[[Point], float] | float = MODULE_RTOL["float32"],
    to_checkpoint: Mapping[str, str] | None = None,
    source_to_checkpoint: Mapping[str, str] | None = None,
    reference_framework: str = "",
) -> Divergence | None:
    """The first paired module call (in completion order) whose outputs disagree, or None.

    Args:
        target: the network being checked.
        reference: the reference network's run, every module's outputs and inputs captured.
        run: the target's run on the same input, every module's outputs and inputs captured, parameter use traced.
        names: target parameter -> the reference parameters it is made from.
        pairing: reference modules by parameter set.
        source_trailing: the reference modules' trailing parameter-free sub-modules (found from `reference`
            when not given).
        bound: module outputs agree when their largest difference is at most this share of the largest value
            (a number, or a function of the point of comparison).
        to_checkpoint: target parameter -> checkpoint name, for the report.
        source_to_checkpoint: reference parameter -> checkpoint name, for the report.
        reference_framework: the reference network's framework, for the report.
    """
    first_use: dict[str, int] = {}
    for name in target.params:
        tick = run.param_ticks.get(name, run.entry_ticks.get(target.owner[name]))
        if tick is not None:
            first_use[name] = tick
    by_tick = sorted(first_use, key=first_use.__getitem__)
    line = timeline(run, target)
    trailing = source_trailing if source_trailing is not None else {}
    points: dict[str, Point | None] = {}
    last_ok = -1
    agreed = 0
    for tick, path, call in run.events:
        if path not in points:
            points[path] = find_point(target, path, line, reference, trailing, names, pairing)
        point = points[path]
        if point is None:
            continue
        diff = point.call_difference(reference, run, call)
        if diff <= (bound(point) if callable(bound) else bound):
            last_ok, agreed = tick, agreed + 1
            continue
        involved = [n for n in by_tick if last_ok < first_use[n] <= tick]
        if not involved:
            continue
        checkpoint = to_checkpoint or {}
        source_checkpoint = source_to_checkpoint or {}
        sources = sorted({source_checkpoint.get(s, s) for n in involved for s in names.get(n, ())})
        return Divergence(
            module=path,
            reference=point.reference,
            call=call,
            difference=diff,
            parameters=tuple(checkpoint.get(n, n) for n in involved),
            sources=tuple(sources),
            agreed=agreed,
            target_framework=target.framework,
            reference_framework=reference_framework,
        )
    return None


def pair_by_values(target: Net, source: Net) -> dict[str, tuple[str, ...]]:
    """Target parameter -> the source parameter holding the same values in any layout (unique matches only).

    Two tensors match when they hold the same float32 values in any order (a transposed or reshaped copy):
    the count, and the sums of the values' bit patterns and of their squares, agree exactly.
    """
    keys: dict[tuple[int, int, int], list[str]] = defaultdict(list)
    for name in source.params:
        keys[_key(source.array(name))].append(name)
    out: dict[str, tuple[str, ...]] = {}
    for name in target.params:
        found = keys.get(_key(target.array(name)), [])
        if len(found) == 1:
            out[name] = (found[0],)
    return out


def _key(array: Array) -> tuple[int, int, int]:
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        return int(bits.size), int(bits.sum(dtype=np.uint64)), int((bits * bits).sum(dtype=np.uint64))


def locate_divergence(
    reference_model: object,
    model: object,
    inputs: Sequence[Array],
    *,
    pairs: Mapping[str, Sequence[str]] | None = None,
    rtol: float = MODULE_RTOL["float32"],
) -> Divergence | None:
    """Run two networks that should agree and name the first module of `model` whose outputs differ.

    Modules are paired through their parameters: by `pairs` (a parameter of `model` -> the reference
    parameters it was made from, e.g. a mapping's pairs), or, without it, by finding which reference
    parameter holds the same values (weights converted from the reference checkpoint).

    Args:
        reference_model: the reference network (a torch module or MindSpore cell) with its weights loaded.
        model: the network to check, of the other framework (or the same), with its weights loaded.
        inputs: one numpy array per argument (integer inputs are passed to MindSpore as int32 if int64 fails).
        pairs: parameter pairs, by the networks' parameter names.
        rtol: module outputs agree when their largest difference is at most this share of the largest value.

    Returns:
        The first divergence, or None when every comparable module agrees (or none can be compared).

    Raises:
        AutomapError: a network fails on the inputs.

    Example:
        >>> found = locate_divergence(torch_net, ms_net, [np.zeros((1, 3, 32, 32), np.float32)])  # doctest: +SKIP
        >>> found.describe() if found else "no divergence"  # doctest: +SKIP
    """
    source, target = wrap(reference_model), wrap(model)
    names = (
        {t: tuple(s) for t, s in pairs.items() if t in target.params}
        if pairs is not None
        else pair_by_values(target, source)
    )
    used = {s for found in names.values() for s in found}
    # with given pairs, reference parameters they leave out are unused; with pairs found by value, the thirds
    # of a fused tensor find no whole counterpart but are used, so only counters are left out
    ignored = [n for n in source.params if not source.is_float(n) or (pairs is not None and n not in used)]
    pairing = ModulePairing(source, ignored)
    try:
        reference = source.run(inputs, capture=None, capture_inputs=None)
        run = target.run(inputs, capture=None, trace=True, capture_inputs=None)
    finally:
        source.close()
        target.close()
    return locate(
        target,
        reference,
        run,
        names,
        pairing,
        source_trailing=trailing_children(source, reference),
        bound=rtol,
        reference_framework=source.framework,
    )
