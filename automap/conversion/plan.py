"""The conversion plan: a mapping checked against the checkpoints, and every output tensor worked out.

Nothing here reads tensor data or writes a file. `plan_conversion` is the gate every conversion passes before
anything is written (the output path itself is checked by `convert` before that).

Invariants:

- Every way the mapping fails to fit the checkpoints is found before any is reported: unknown source names (with
  the nearest name as a hint), a source feeding two targets (except different parts of one split), shapes that do
  not fit after the pair's transform, sources of different dtypes, targets without a source. One error lists them
  all (the first `SHOWN`). A checkpoint other than the one a versioned mapping remembers (its fingerprint), pairs
  below the confidence threshold, and a cast that needs a missing torch are each refused with an error of their own.
- A plan that is returned has no problems; `check_mapping` gives the same problems as data for `automap audit`.
- The output follows the target's parameter order when the target is known, else the mapping's pair order.
  automap adds a step on its own only where nothing else is possible (a concat of several sources along axis 0,
  a reshape over length-1 axes), and records it in `PlannedTensor.automatic` so the report says so.
- A cast involving bfloat16 or float8 (which numpy lacks) needs torch (`needs_torch_to_cast`); the writer does it.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from automap._advice import option
from automap._errors import AutomapError, ConversionError, MissingDependencyError
from automap._text import shape_text
from automap._types import Framework
from automap.dtypes import all_dtype_names, get_dtype
from automap.io._framework import guess_framework
from automap.io.formats import FORMATS
from automap.mapping import fingerprint
from automap.records import DEFAULT_THRESHOLD, Match, NameMapping, ParamTable
from automap.transforms import Concat, Reshape, Split, Step, describe, output_shape

__all__ = [
    "SHOWN",
    "ConversionPlan",
    "PlannedTensor",
    "check_mapping",
    "installed",
    "is_restored_by_loader",
    "low_confidence",
    "needs_torch_to_cast",
    "output_framework",
    "plan_conversion",
    "quoted_names",
]

SHOWN = 12
"""Problems quoted in one error line; `automap audit` lists them all."""
_SHOWN_PAIRS = 5


@dataclass(frozen=True, slots=True)
class PlannedTensor:
    """One output tensor: which source tensor(s) it is made from and how.

    Attributes:
        target: the output parameter's name.
        sources: the source names read (several when parts are concatenated).
        steps: layout steps applied to the source(s), automatic ones included.
        shape: the output shape.
        dtype: the output dtype.
        source_dtype: the sources' dtype (differs from `dtype` when a cast was asked for).
        automatic: what automap added on its own (a reshape over length-1 axes, an implied concat), or "".
    """

    target: str
    sources: tuple[str, ...]
    steps: tuple[Step, ...]
    shape: tuple[int, ...]
    dtype: str
    source_dtype: str
    automatic: str = ""

    @property
    def nbytes(self) -> int:
        """Size of the output tensor in bytes."""
        size = get_dtype(self.dtype).itemsize
        for dim in self.shape:
            size *= dim
        return size


@dataclass(frozen=True)
class ConversionPlan:
    """A checked conversion, ready to run.

    Attributes:
        tensors: the output tensors in target order.
        framework: whose naming conventions the output follows (the `.safetensors` flavour).
        left_out: targets with no source, left out because missing targets were allowed.
        restored_by_loader: targets left out because the target framework's loader restores them
            (PyTorch BatchNorm's `num_batches_tracked`).
        unused_sources: source parameters no output tensor reads.
        problems: everything that prevents the conversion; empty for a plan that can run.
        accepted_low: pairs below the confidence threshold that were converted because low confidence was
            accepted, unreviewed.
        low_threshold: the mapping's confidence threshold those pairs are below.
        target_checked: False when nothing told the target's names and shapes (a flat mapping without the
            target): the output follows the mapping as it is, and a missing layout step would go unnoticed.
    """

    tensors: tuple[PlannedTensor, ...]
    framework: Framework
    left_out: tuple[str, ...] = ()
    restored_by_loader: tuple[str, ...] = ()
    unused_sources: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    accepted_low: tuple[Match, ...] = ()
    low_threshold: float = DEFAULT_THRESHOLD
    target_checked: bool = True

    def __repr__(self) -> str:
        return f"<ConversionPlan to {self.framework}: {len(self.tensors)} tensors, {len(self.problems)} problems>"

    @property
    def automatic(self) -> tuple[PlannedTensor, ...]:
        """Tensors that got a layout step automap added on its own."""
        return tuple(t for t in self.tensors if t.automatic)


def plan_conversion(
    source: ParamTable,
    mapping: NameMapping,
    *,
    target: ParamTable | None = None,
    dtype: str | None = None,
    framework: Framework | None = None,
    allow_missing: bool = False,
    accept_low_confidence: bool = False,
    ignore_fingerprint: bool = False,
    where: str = "the mapping",
) -> ConversionPlan:
    """Check a mapping against the checkpoints and work out every output tensor, reading no tensor data.

    Args:
        source: the source checkpoint's table.
        mapping: the mapping.
        target: the target's table (checkpoint or listing), when known.
        dtype: cast floating-point tensors to this dtype.
        framework: the output's naming flavour; defaults to the target's.
        allow_missing: leave out targets with no source instead of failing.
        accept_low_confidence: accept pairs below the mapping's threshold.
        ignore_fingerprint: accept checkpoints other than the ones the mapping was made from.
        where: how to name the mapping in messages (its file name).

    Returns:
        A plan with no problems.

    Raises:
        ConversionError: anything prevents the conversion; every problem is listed in one message.
        MissingDependencyError: a cast involves bfloat16 or float8 and torch is not installed.

    Example:
        >>> plan = plan_conversion(load_checkpoint("model.pth"), load_mapping("mapping.json"))  # doctest: +SKIP
        >>> [t.target for t in plan.tensors][:1]  # doctest: +SKIP
        ['conv1.weight']
    """
    if dtype is not None and (dtype not in all_dtype_names() or not get_dtype(dtype).is_float):
        floats = ", ".join(name for name in all_dtype_names() if get_dtype(name).is_float)
        msg = f"cannot cast to {dtype!r}: give a floating-point dtype ({floats})"
        raise ConversionError(msg)
    if not ignore_fingerprint:
        _check_fingerprint("source", mapping, source, where)
        if target is not None:
            _check_fingerprint("target", mapping, target, where)
    plan = _plan(source, mapping, target, dtype, framework, allow_missing)
    if plan.problems:
        count = len(plan.problems)
        shown = "; ".join(plan.problems[:SHOWN])
        more = f"; ... and {count - SHOWN} more (automap audit lists them all)" if count > SHOWN else ""
        msg = f"{where} does not fit {source.source!r}: {count} problem{'s' if count > 1 else ''}: {shown}{more}"
        raise ConversionError(msg)
    low = tuple(p for p in low_confidence(mapping) if p.target not in plan.restored_by_loader)
    if low and accept_low_confidence:
        plan = replace(plan, accepted_low=low, low_threshold=mapping.threshold)
    if low and not accept_low_confidence:
        shown = ", ".join(f"{p.target} <- {_source_text(p)} ({p.confidence:.2f})" for p in low[:_SHOWN_PAIRS])
        more = ", ..." if len(low) > _SHOWN_PAIRS else ""
        msg = (
            f"{where}: {len(low)} pair{'s are' if len(low) > 1 else ' is'} below the confidence threshold "
            f"{mapping.threshold:g}: {shown}{more}; review with `automap audit`, mark the right ones reviewed with "
            f"`automap audit MAPPING --accept TARGET`, or pass {option('accept_low_confidence')}"
        )
        raise ConversionError(msg)
    _check_cast_possible(plan)
    return plan


def check_mapping(mapping: NameMapping, source: ParamTable, target: ParamTable | None = None) -> list[str]:
    """Every way a mapping fails to fit its checkpoints, as readable lines (empty when it fits).

    Args:
        mapping: the mapping.
        source: the source checkpoint's table.
        target: the target's table, when known.

    Returns:
        One line per problem: fingerprints, unknown or reused source names, shapes, transforms, missing targets.

    Example:
        >>> check_mapping(load_mapping("m.json"), load_checkpoint("model.pth"))  # doctest: +SKIP
        []
    """
    problems = []
    for side, table in (("source", source), ("target", target)):
        if table is not None:
            found = _fingerprint_problem(side, mapping, table)
            if found:
                problems.append(found)
    plan = _plan(source, mapping, target, None, None, allow_missing=False)
    return [*problems, *plan.problems]


def low_confidence(mapping: NameMapping) -> tuple[Match, ...]:
    """Pairs with a source whose confidence is below the mapping's threshold and that no person reviewed."""
    return tuple(p for p in mapping.pairs if p.source is not None and p.confidence < mapping.threshold and not p.pinned)


def is_restored_by_loader(name: str, framework: Framework) -> bool:
    """True for a target the framework's own loader fills in when absent (PyTorch's `num_batches_tracked`)."""
    return framework == "pytorch" and name.rsplit(".", 1)[-1] == "num_batches_tracked"


def output_framework(
    out: Path, explicit: Framework | None, target: ParamTable | None, mapping: NameMapping
) -> Framework:
    """Whose naming an output follows: its format's framework, else the one asked for, the target's or the mapping's."""
    fmt = FORMATS.for_suffix(out)
    if fmt is not None and fmt.framework is not None:
        return fmt.framework
    if explicit is not None:
        return explicit
    return target.framework if target is not None else _mapping_framework(mapping)


def _plan(
    source: ParamTable,
    mapping: NameMapping,
    target: ParamTable | None,
    dtype: str | None,
    framework: Framework | None,
    allow_missing: bool,
) -> ConversionPlan:
    target_framework: Framework = (
        framework or (target.framework if target is not None else None) or _mapping_framework(mapping)
    )
    problems: list[str] = []
    by_target = {p.target: p for p in mapping.pairs}
    if target is not None:
        order: list[tuple[str, Match | None, tuple[int, ...] | None]] = [
            (r.name, by_target.get(r.name), r.shape) for r in target.params
        ]
        unknown = [p.target for p in mapping.pairs if p.target not in target]
        if unknown:
            problems.append(
                f"{_count(unknown, 'target')} in the mapping {'is' if len(unknown) == 1 else 'are'} not "
                f"parameters of {target.source!r}: {quoted_names(unknown)}"
            )
    else:
        order = [(p.target, p, _recorded_target_shape(p)) for p in mapping.pairs]
    checked = target is not None or all(shape is not None for _, pair, shape in order if pair and pair.source)
    tensors: list[PlannedTensor] = []
    missing: list[str] = []
    restored: list[str] = []
    uses: dict[str, list[tuple[str, tuple[Step, ...], int]]] = {}
    for name, pair, expected in order:
        # a target the loader restores is left to it unless a sure or reviewed pair gives it a source: a doubtful
        # guess there (`num_batches_tracked` <- some other integer scalar) is nothing to write
        by_loader = is_restored_by_loader(name, target_framework)
        doubtful = pair is not None and pair.confidence < mapping.threshold and not pair.pinned
        if pair is None or pair.source is None or (by_loader and doubtful):
            if by_loader:
                restored.append(name)
            else:
                missing.append(name)
            continue
        planned, problem = _plan_pair(source, pair, expected, dtype)
        if problem or planned is None:
            problems.append(problem)
            continue
        tensors.append(planned)
        for source_name in pair.source_names:
            uses.setdefault(source_name, []).append((name, pair.transform, len(pair.source_names)))
    problems.extend(_reuse_problems(uses))
    if missing and not allow_missing:
        problems.append(
            f"{_count(missing, 'target parameter')} {'has' if len(missing) == 1 else 'have'} no source: "
            f"{quoted_names(missing)} (give {'it a source' if len(missing) == 1 else 'them sources'} in the mapping, "
            f"or pass {option('allow_missing')} to leave {'it' if len(missing) == 1 else 'them'} out of the output)"
        )
    if not tensors and not problems:
        problems.append("no target parameter has a source; there is nothing to convert")
    unused = tuple(name for name in source.names if name not in uses)
    return ConversionPlan(
        tensors=tuple(tensors),
        framework=target_framework,
        left_out=tuple(missing),
        restored_by_loader=tuple(restored),
        unused_sources=unused,
        problems=tuple(problems),
        target_checked=checked,
    )


def _plan_pair(
    source: ParamTable, pair: Match, expected: tuple[int, ...] | None, dtype: str | None
) -> tuple[PlannedTensor | None, str]:
    """The output tensor of one pair, or the problem that prevents it."""
    names = pair.source_names
    records = [source.get(n) for n in names]
    absent = [n for n, r in zip(names, records, strict=True) if r is None]
    if absent:
        hints = [difflib.get_close_matches(n, source.names, n=1) for n in absent]
        hint = next((f" (did you mean {h[0]!r}?)" for h in hints if h), "")
        return None, f"target {pair.target!r}: source {quoted_names(absent)} not in {source.source!r}{hint}"
    found = [r for r in records if r is not None]
    dtypes = {r.dtype for r in found}
    if len(dtypes) > 1:
        return None, f"target {pair.target!r}: its sources have different dtypes {sorted(dtypes)}"
    steps: tuple[Step, ...] = pair.transform
    automatic = ""
    shapes = [r.shape for r in found]
    shapes_recorded = pair.source_shape is not None
    if len(found) > 1 and not steps and not shapes_recorded:
        steps = (Concat(0),)
        automatic = f"concatenated {len(found)} sources along axis 0"
    try:
        shape = output_shape(shapes, steps, where=f"target {pair.target!r}")
    except AutomapError as error:
        return None, str(error)
    if expected is not None and shape != expected:
        if not pair.transform and not shapes_recorded and _squeezed(shape) == _squeezed(expected):
            steps = (*steps, Reshape(expected))
            change = f"reshaped {shape_text(shape)} -> {shape_text(expected)} (they differ only in length-1 axes)"
            automatic = f"{automatic}; {change}" if automatic else change
            shape = expected
        else:
            how = f"after {describe(steps)}" if steps else "with no transform"
            given = " + ".join(shape_text(s) for s in shapes)
            return None, (
                f"target {pair.target!r}: source {_source_text(pair)} {given} gives {shape_text(shape)} {how}, "
                f"the target needs {shape_text(expected)}"
            )
    source_dtype = found[0].dtype
    out_dtype = dtype if dtype is not None and get_dtype(source_dtype).is_float else source_dtype
    return PlannedTensor(pair.target, names, steps, shape, out_dtype, source_dtype, automatic), ""


def _reuse_problems(uses: dict[str, list[tuple[str, tuple[Step, ...], int]]]) -> list[str]:
    """A source may feed several targets only when each takes a different part of the same split."""
    problems = []
    for name, items in uses.items():
        if len(items) < 2:
            continue
        splits = [_first_split(steps) if count == 1 else None for _, steps, count in items]
        keys = {(s.axis, s.parts) for s in splits if s is not None}
        indexes = [s.index for s in splits if s is not None]
        if all(s is not None for s in splits) and len(keys) == 1 and len(set(indexes)) == len(indexes):
            continue
        targets = [t for t, _, _ in items]
        problems.append(
            f"source {name!r} feeds {len(items)} targets ({quoted_names(targets)}) (a source may feed only one target, "
            "unless each takes a different part of the same split)"
        )
    return problems


def _first_split(steps: Sequence[Step]) -> Split | None:
    return next((s for s in steps if isinstance(s, Split)), None)


def _recorded_target_shape(pair: Match) -> tuple[int, ...] | None:
    """The target shape a mapping records for a pair, or None when it records no shapes (a flat mapping)."""
    if pair.target_shape or pair.source_shape is not None:
        return tuple(pair.target_shape)
    return None


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _fingerprint_problem(side: str, mapping: NameMapping, table: ParamTable) -> str:
    endpoint = mapping.source if side == "source" else mapping.target
    if not endpoint.fingerprint:
        return ""
    actual = fingerprint(table)
    if actual == endpoint.fingerprint:
        return ""
    made_from = f"{endpoint.path!r}, " if endpoint.path else ""
    return (
        f"{table.source!r} is not the {side} checkpoint the mapping was made from ({made_from}{endpoint.params} "
        f"parameters, fingerprint {endpoint.fingerprint}; this file: {len(table)} parameters, fingerprint {actual})"
    )


def _check_fingerprint(side: str, mapping: NameMapping, table: ParamTable, where: str) -> None:
    problem = _fingerprint_problem(side, mapping, table)
    if problem:
        msg = (
            f"{where}: {problem}; give the right file, re-run `automap infer` for this one, or pass "
            f"{option('ignore_fingerprint')} if its names and shapes still fit"
        )
        raise ConversionError(msg)


def _mapping_framework(mapping: NameMapping) -> Framework:
    side = mapping.target
    if side.path or side.fingerprint or side.params:
        return side.framework
    return guess_framework(p.target for p in mapping.pairs)  # a flat mapping says nothing about frameworks


def _source_text(pair: Match) -> str:
    names = pair.source_names
    return repr(names[0]) if len(names) == 1 else "[" + ", ".join(repr(n) for n in names) + "]"


def _count(items: Sequence[str], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def quoted_names(items: Sequence[str], limit: int = 6) -> str:
    """The first `limit` names quoted and joined, and how many there are in all when some are left out."""
    shown = ", ".join(repr(n) for n in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def needs_torch_to_cast(source: str, target: str) -> bool:
    """Whether a cast between these dtypes goes through torch (numpy has no bfloat16 or float8)."""
    return source != target and not (get_dtype(source).numpy_native and get_dtype(target).numpy_native)


def _check_cast_possible(plan: ConversionPlan) -> None:
    """Refuse, before anything is written, a cast that needs torch when torch is not installed."""
    needing = next((t for t in plan.tensors if needs_torch_to_cast(t.source_dtype, t.dtype)), None)
    if needing is not None and not installed("torch"):
        msg = (
            f"casting {needing.source_dtype} to {needing.dtype} ({needing.target!r}) needs torch, which is not "
            "installed; run: pip install 'automap[torch]'"
        )
        raise MissingDependencyError(msg)


def installed(framework: str) -> bool:
    """Whether a framework can be imported, found without importing it."""
    return importlib.util.find_spec(framework) is not None
