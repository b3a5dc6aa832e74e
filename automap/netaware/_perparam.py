"""Per-parameter proof: every parameter confirmed in its own module, when the networks differ as wholes.

Two ports may compute different things although every weight is in its place: one pads a max-pool otherwise,
pools differently, or returns outputs that cannot be compared with the other's. Then the whole-model proof
cannot hold, yet each parameter can still be checked where it acts. In one run of the target network, every
module that can be compared with its source counterpart (its *point*, see `_points`) gets the source
module's input in place of its own first argument and the source module's output in place of its own
(teacher forcing at every point). A parameter of a layer that is itself a point is confirmed when that
layer's own output, computed from the source's input with the converted weights, agrees with the source's.
A parameter held by a larger module (a `cls_token`, a layer scale, a gate) is confirmed where its effect is
first seen: the output of its smallest comparable module, when it is used after every comparable module
inside that one has finished, and otherwise the input of the next comparable module to start, as the target
computed it before forcing. A parameter with neither stays untestable.

A layer that cannot be compared in place (its output has another shape than its counterpart's: one port pools
before the norm, the other after) and whose own input is already a value the source never computes (the networks
differ upstream, so no in-place check is possible) is checked on its function instead: fed its source layer's
recorded input, it must give that layer's output. That shows how its weights are stored, not where they belong,
so it counts only when every other target layer of the same kind (the same parameters and shapes) is confirmed
in place and every source layer of that kind is read by some target: the one left is this layer's.

A layer that disagrees in place got, in the forced run, the input its true counterpart got in the source run.
When exactly one other source layer of its kind saw that input, it is named (`ParameterProof.places`), so that
the caller can try the two source layers the other way round and keep that only if the whole model is proven.

Where the networks differ in parameter-free code, the first parameter-free module whose output matches no
value the source network computed (no module output or input of it) is named.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from automap._errors import AutomapError
from automap._types import Array

from ._candidates import Option
from ._compare import arrangements, relative_difference
from ._nets import Forced, Net, Run
from ._points import Point
from ._resolve import Reference
from ._session import Session, paired_modules
from ._tolerance import lowest_precision

__all__ = ["ParameterProof", "prove_per_parameter"]

_MAX_PLACES = 32  # layers that disagree in place, at most, for which a better placed source layer is looked for


@dataclass(frozen=True)
class ParameterProof:
    """What the per-parameter proof found.

    Attributes:
        confirmed: target checkpoint names confirmed in their own module.
        failed: (target checkpoint name, its module) whose module disagreed although fed the source's values.
        untestable: target checkpoint names with no module that can be compared with the source's.
        modules: modules checked.
        worst: the largest difference among the modules that agreed (relative to their largest value).
        free_difference: the first parameter-free target module whose output the source never computes, if any.
        framework: the target network's framework title, for the report.
        by_function: confirmed parameters (among `confirmed`) whose layer could only be checked on its function:
            fed its source layer's input, the only layer of its kind not confirmed in place.
        places: (target layer, its source layer, another source layer) for layers that disagree in place where
            exactly one other source layer of the same kind was fed the very input the target layer got: the
            layer's weights belong to that one (two same-shaped norms of different places swapped).
        explained: the whole-model difference is explained by the parameter-free difference: it lies before the
            first diverging module. When it is not (no such difference, or one only after it), the modules agree
            when fed their paired source modules' values and still the unforced run diverges: the pairing of
            whole modules may be wrong (two same-shaped blocks swapped agree module by module), so nothing is
            confirmed.
    """

    confirmed: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    untestable: tuple[str, ...]
    modules: int
    worst: float
    free_difference: str | None
    framework: str = ""
    explained: bool = True
    by_function: tuple[str, ...] = ()
    places: tuple[tuple[str, str, str], ...] = ()

    @property
    def complete(self) -> bool:
        """Every parameter used was confirmed in its own module, and the whole-model difference is explained."""
        return self.explained and bool(self.confirmed) and not self.failed and not self.untestable

    def describe(self) -> str:
        """One line for a report."""
        where = (
            f"the networks differ at parameter-free module {self.framework} {self.free_difference!r}"
            if self.free_difference is not None
            else "no parameter-free module of the target computes a value the source does not"
        )
        if not self.explained:
            return (
                f"{len(self.confirmed)} parameters agree in their own modules, yet the unforced run diverges before "
                f"any parameter-free difference ({where}): modules may be paired with the wrong places, so none "
                "counts as confirmed"
            )
        if self.complete:
            return (
                f"all {len(self.confirmed)} parameters confirmed in their own modules ({self.modules} modules fed "
                f"the source's values, max rel diff {self.worst:.2g}){self._functional()}; {where}"
            )
        parts = [f"{len(self.confirmed)} parameters confirmed in their own modules"]
        if self.failed:
            shown = ", ".join(f"{n} ({m or 'the model'})" for n, m in self.failed[:4])
            parts.append(f"{len(self.failed)} disagree: {shown}")
        if self.untestable:
            shown = ", ".join(self.untestable[:4]) + (", ..." if len(self.untestable) > 4 else "")
            parts.append(f"{len(self.untestable)} untestable: {shown}")
        return "; ".join(parts) + self._functional() + f"; {where}"

    def _functional(self) -> str:
        if not self.by_function:
            return ""
        shown = ", ".join(self.by_function[:4]) + (", ..." if len(self.by_function) > 4 else "")
        return (
            f" ({len(self.by_function)} on their layer's function alone, fed its source layer's input, the only "
            f"layer of its kind not confirmed in place: {shown})"
        )


def prove_per_parameter(
    session: Session,
    assignment: Mapping[str, Option],
    reference: Reference,
    used: Sequence[str],
    points_of: Mapping[str, Point | None],
) -> ParameterProof:
    """Check every used target parameter in its own module, all modules fed the source's inputs and outputs.

    Args:
        session: the two networks.
        assignment: target checkpoint name -> option, loaded into the target network.
        reference: the source's run and how the target is run and read.
        used: target checkpoint names the forward pass uses (with a source).
        points_of: target module path -> its point of comparison (None: none), for the modules holding a
            parameter and those above them.
    """
    net = session.target.net
    own: dict[str, Point | None] = {}
    for ckpt in used:
        name = session.target.from_checkpoint.get(ckpt)
        if name is None or not net.is_float(name):
            continue
        own[ckpt] = _own_point(net.owner[name], points_of)
    points = {p.module: p for p in own.values() if p is not None}
    unplaced = {net.owner[session.target.from_checkpoint[c]] for c in own} - set(points)
    force: dict[str, Forced] = {}
    force_inputs: dict[str, Forced] = {}
    for point in points.values():
        if point.module == "":
            continue
        forced = point.force(reference.run)
        if forced is not None:
            where, is_input, values = forced
            (force_inputs if is_input else force)[where] = values
        fed = _source_input(point, reference)
        if fed is not None:
            force_inputs.setdefault(point.module, fed)
    names = session.source_names(assignment)
    session.load_target(assignment)
    run = session.run_target(
        reference.call,
        capture=None,
        force=force,
        capture_inputs=None,
        force_inputs=force_inputs,
        trace=True,
        keep=unplaced,
    )
    checker = _Checker(session, reference, run, points_of)
    agree: dict[str, tuple[bool, float]] = {}
    for path, point in points.items():
        diff = point.difference(reference.run, run)
        # the module's own input, as the target computed it from what came before (forced), must be its source
        # module's too when the source computes it at all: two same-function modules swapped (LayerNorms of two
        # places) agree when fed, not in place; an input no source module sees comes from a parameter-free difference
        in_place = (
            point.module == "" or checker.input_agrees(point) is not False or not checker.input_known(point.module)
        )
        agree[path] = (diff <= reference.bound(point) and in_place, diff)
    confirmed: list[str] = []
    failed: list[tuple[str, str]] = []
    untestable: list[str] = []
    for ckpt, found in own.items():
        place, ok = checker.check(session.target.from_checkpoint[ckpt], found, agree)
        if place is None:
            untestable.append(ckpt)
        elif ok:
            confirmed.append(ckpt)
        else:
            failed.append((ckpt, place))
    open_names = [*untestable, *(n for n, _ in failed)]
    by_function = _by_function(session, assignment, reference, run, checker, unplaced, confirmed, open_names)
    confirmed += by_function
    untestable = [n for n in untestable if n not in by_function]
    failed = [(n, m) for n, m in failed if n not in by_function]
    diffs = [d for ok, d in agree.values() if ok]
    return ParameterProof(
        tuple(confirmed),
        tuple(failed),
        tuple(untestable),
        len(points),
        max(diffs, default=0.0),
        first_free_difference(session, reference, run),
        net.backend.title,
        by_function=tuple(by_function),
        places=tuple(
            _places(
                session,
                reference,
                run,
                [net.owner[session.target.from_checkpoint[n]] for n, _ in failed],
                source_names=names,
            )
        ),
    )


def _by_function(
    session: Session,
    assignment: Mapping[str, Option],
    reference: Reference,
    run: Run,
    checker: _Checker,
    unplaced: set[str],
    confirmed: Sequence[str],
    open_names: Sequence[str],
) -> list[str]:
    """The open parameters confirmed on their layer's function (see the module docstring)."""
    net = session.target.net
    placed = {session.target.from_checkpoint[c] for c in confirmed}
    names = session.source_names(assignment)
    taken = {s for option in assignment.values() for s in option.sources}
    verdicts: dict[str, bool] = {}
    out = []
    for ckpt in open_names:
        name = session.target.from_checkpoint[ckpt]
        layer = net.owner[name]
        if layer not in unplaced or checker.input_known(layer):
            continue
        if layer not in verdicts:
            sources = paired_modules(net, layer, names, reference.pairing)
            verdicts[layer] = (
                _only_one_left(net, layer, placed)
                and all(_all_taken(session, source, taken) for source in sources[:1])
                and _function_agrees(session, reference, run, layer, sources)
            )
        if verdicts[layer]:
            out.append(ckpt)
    return out


def _places(
    session: Session,
    reference: Reference,
    run: Run,
    modules: Sequence[str],
    *,
    source_names: Mapping[str, tuple[str, ...]],
) -> list[tuple[str, str, str]]:
    """For layers that disagree in place: the one other source layer of their kind that saw the input they got.

    In the forced run every comparable module before a layer gave the source's values, so the input the layer got
    is the one its true counterpart got in the source run.
    """
    net, source = session.target.net, session.source.net
    out: list[tuple[str, str, str]] = []
    layers = list(dict.fromkeys(modules))
    if len(layers) > _MAX_PLACES:  # a port that differs everywhere: no swap of a few layers will prove it
        return out
    for layer in layers:
        if layer not in net.leaves:
            continue
        current = paired_modules(net, layer, source_names, reference.pairing)
        got = run.inputs.get(layer)
        if len(current) != 1 or not got:
            continue
        kind = _kind(source, current[0])
        bound = reference.tolerance.module_rtol
        found = [
            path
            for path in source.leaves
            if path != current[0]
            and _kind(source, path) == kind
            and _same_inputs(reference.run.inputs.get(path), got, bound)
        ]
        if len(found) == 1:
            out.append((layer, current[0], found[0]))
    return out


def _same_inputs(want: Sequence[Sequence[Array]] | None, got: Sequence[Sequence[Array]], bound: float) -> bool:
    if not want or len(want) != len(got):
        return False
    return all(bool(a) and bool(b) and _close(a[0], b[0], bound) for a, b in zip(want, got, strict=True))


def _kind(net: Net, path: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """A layer's floating-point parameters by their names below it, with their shapes."""
    cut = len(path) + 1 if path else 0
    return tuple(sorted((n[cut:], net.shape(n)) for n in net.subtree.get(path, ()) if net.is_float(n)))


def _only_one_left(net: Net, layer: str, placed: set[str]) -> bool:
    """Whether every other layer of the same kind has all its parameters confirmed in place."""
    kind = _kind(net, layer)
    if not kind:
        return False
    for path in net.modules:
        if path != layer and net.subtree.get(path) and not _inside(layer, path) and _kind(net, path) == kind:
            if not all(n in placed for n in net.subtree[path] if net.is_float(n)):
                return False
    return True


def _all_taken(session: Session, layer: str, taken: set[str]) -> bool:
    """Whether every source layer of this one's kind gives all its parameters to some target.

    A source layer of the kind that no target reads would be where a layer checked on its function alone might
    belong as well.
    """
    net, stored = session.source.net, session.source.to_checkpoint
    kind = _kind(net, layer)
    for path in net.modules:
        if path != layer and net.subtree.get(path) and _kind(net, path) == kind:
            names = [stored[n] for n in net.subtree[path] if net.is_float(n) and n in stored]
            if not all(n in taken for n in names):
                return False
    return True


def _function_agrees(session: Session, reference: Reference, run: Run, layer: str, sources: Sequence[str]) -> bool:
    """Whether the target layer, fed its source layer's recorded input, gives that layer's output (every call)."""
    net = session.target.net
    kept = run.arguments.get(layer)
    got = run.inputs.get(layer)
    for source in sources:
        want_in, want_out = reference.run.inputs.get(source), reference.run.calls.get(source)
        if not kept or not got or not want_in or not want_out or not len(kept) == len(got) == len(want_in):
            continue
        fed = []
        for (args, kwargs), value, mine in zip(kept, want_in, got, strict=True):
            if not value or not mine:
                return False
            layout = arrangements(tuple(value[0].shape), tuple(mine[0].shape))
            # another shape where the ports differ upstream (a pooled input): fed as the source layer saw it
            fed.append(net.with_first(args, kwargs, layout[0].apply(value[0]) if layout else value[0]))
        try:
            outputs, _ = session.rerun_target(layer, fed)
        except AutomapError:
            return False
        precision = [reference.line.precision.get(layer, "float32"), reference.precision.get(source, "float32")]
        bound = reference.tolerance.module(lowest_precision(precision))
        return len(outputs) == len(want_out) and all(
            bool(mine) and bool(theirs) and _close(theirs[0], mine[0], bound)
            for theirs, mine in zip(want_out, outputs, strict=True)
        )
    return False


def _close(want: Array, got: Array, bound: float) -> bool:
    found = arrangements(tuple(want.shape), tuple(got.shape))
    return bool(found) and min(relative_difference(a.apply(want), got) for a in found) <= bound


class _Checker:
    """Where each parameter's effect is first seen in the forced run, and whether it agrees there."""

    def __init__(self, session: Session, reference: Reference, run: Run, points_of: Mapping[str, Point | None]):
        self.net = session.target.net
        self.reference = reference
        self.run = run
        self.points = {p: q for p, q in points_of.items() if q is not None}
        self.done: dict[str, list[int]] = defaultdict(list)
        for tick, path, _ in run.events:
            self.done[path].append(tick)
        self._inputs: dict[str, bool | None] = {}
        self._known: dict[int, list[Array]] | None = None

    def check(self, name: str, point: Point | None, agree: Mapping[str, tuple[bool, float]]) -> tuple[str | None, bool]:
        """(the module where the parameter is checked, whether it agrees there); (None, False) when untestable."""
        owner = self.net.owner[name]
        used = self.run.param_ticks.get(name, self.run.entry_ticks.get(owner))
        if point is not None:
            inner = [t for p in self.points if p != point.module and _inside(p, point.module) for t in self.done[p]]
            first_done = min(self.done[point.module], default=None)
            inner = [t for t in inner if first_done is None or t <= first_done]
            if (owner == point.module and owner in self.net.leaves) or (
                used is not None and all(t < used for t in inner)
            ):
                return point.module, agree[point.module][0]
        if used is None:
            return None, False
        following = sorted(
            (tick, path) for path, tick in self.run.entry_ticks.items() if tick > used and path in self.points
        )
        for _, path in following:
            found = self.input_agrees(self.points[path])
            if found is not None:
                return f"{path} (its input)", found
        return None, False

    def input_known(self, module: str) -> bool:
        """Whether the target's first input of a module is a value some source module computes or reads."""
        if self._known is None:
            self._known = source_values(self.reference)
        got = self.run.inputs.get(module)
        if not got:
            return False
        bound = self.reference.tolerance.module_rtol
        return all(_known(value, self._known.get(int(value.size), []), bound) for call in got for value in call[:1])

    def input_agrees(self, point: Point) -> bool | None:
        """Whether the target computed the same first input for a module as the source (None: not comparable)."""
        if point.module not in self._inputs:
            want = self.reference.run.inputs.get(point.reference)
            got = self.run.inputs.get(point.module)
            result: bool | None = None
            if (
                want
                and got
                and len(want) == len(got)
                and all(len(a) == len(b) == 1 for a, b in zip(want, got, strict=True))
            ):
                found = arrangements(tuple(want[0][0].shape), tuple(got[0][0].shape))
                if found:
                    bound = self.reference.bound(point)
                    result = all(
                        min(relative_difference(a.apply(w[0]), g[0]) for a in found) <= bound
                        for w, g in zip(want, got, strict=True)
                    )
            self._inputs[point.module] = result
        return self._inputs[point.module]


def _inside(path: str, module: str) -> bool:
    return module == "" or path.startswith(module + ".")


def _own_point(path: str, points_of: Mapping[str, Point | None]) -> Point | None:
    """The smallest comparable module at or above `path`."""
    while True:
        point = points_of.get(path)
        if point is not None:
            return point
        if path == "":
            return None
        path = path.rpartition(".")[0]


def _source_input(point: Point, reference: Reference) -> Forced | None:
    """The source module's first input of each call in the target module's layout (None when it does not fit)."""
    want = reference.run.inputs.get(point.reference)
    got = reference.line.input_shapes.get(point.module)
    if want is None or got is None or len(want) != len(got):
        return None
    out: Forced = []
    for call, shapes in zip(want, got, strict=True):
        if len(call) != 1 or len(shapes) != 1:
            return None
        found = arrangements(tuple(call[0].shape), tuple(shapes[0]))
        if not found:
            return None
        out.append([found[0].apply(call[0])])
    return out


def first_free_difference(session: Session, reference: Reference, run: Run) -> str | None:
    """The first parameter-free target module (in completion order) whose output the source never computes.

    A value the source computes is any output or first input of one of its modules; a target value matches it
    when some arrangement puts it within the module-check bound.
    """
    net = session.target.net
    known = source_values(reference)
    bound = reference.tolerance.module_rtol
    seen: set[tuple[str, int]] = set()
    for _, path, call in run.events:
        if not path or net.subtree.get(path) or (path, call) in seen:
            continue
        seen.add((path, call))
        outputs = run.calls.get(path)
        if outputs is None or call >= len(outputs):
            continue
        for array in outputs[call]:
            if array.size > 1 and not _known(array, known.get(int(array.size), []), bound):
                return path
    return None


def source_values(reference: Reference) -> dict[int, list[Array]]:
    """Every output and first input of the source's modules, by size."""
    known: dict[int, list[Array]] = defaultdict(list)
    for recorded in (*reference.run.calls.values(), *reference.run.inputs.values()):
        for values in recorded:
            for value in values:
                if value.size > 1:
                    known[int(value.size)].append(value)
    return known


def _known(array: Array, candidates: Sequence[Array], bound: float) -> bool:
    for other in candidates:
        for arrangement in arrangements(tuple(other.shape), tuple(array.shape)):
            if relative_difference(arrangement.apply(other), array) <= bound:
                return True
    return False
