"""Points of comparison: where a target module's output is read, and which source values it is held against.

A target module and a source module paired through their parameters do not always end at the same operation:
MindFormers' `Linear` applies its activation inside the layer (`w1` computes SiLU(x W)), HuggingFace applies it
after `gate_proj`; HuggingFace's `intermediate` applies GELU after its `dense`, MindFormers' `mapping` inside.
So each module is read at one of two *views*: its own output, or, when every call of it ends with a call of a
parameter-free sub-module of the same output shape (the activation), that sub-module's input: the output of
the parameter's own operation. A `Point` pairs a target view with a source view and holds the arrangements
that put the source's arrays in the target's layout; when several combinations are possible, the values
decide (`Point.settle`), and until they have, a point agrees when any combination agrees.

A `Timeline` is what the target network's traced run showed independent of its weights: output and input
shapes, first uses, completions and the trailing sub-modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._compare import CallShapes, Link, ModulePairing, arranged, call_shapes, difference, layouts, settle_layouts
from ._nets import Forced, Net, Outputs, Run
from ._session import paired_modules
from ._tolerance import lowest_precision

__all__ = ["Point", "Timeline", "View", "captures", "find_point", "module_precision", "timeline", "trailing_children"]


@dataclass(frozen=True)
class View:
    """Where a module is read: its output, or the first input of its trailing parameter-free sub-module."""

    module: str
    child: str | None = None

    def values(self, run: Run) -> list[Outputs] | None:
        """The arrays of each call at this view in a run (None when the run did not record them)."""
        if self.child is None:
            return run.calls.get(self.module)
        return run.inputs.get(self.child)

    def describe(self) -> str:
        """`mlp.gate_proj` or `feed_forward.w1 (before its activation)`."""
        name = self.module or "(the whole model)"
        return name if self.child is None else f"{name} (before {self.child.rpartition('.')[2]})"


def trailing_children(net: Net, run: Run) -> dict[str, str]:
    """Module path -> its trailing parameter-free sub-module, for modules whose every call ends with one.

    The sub-module must be a direct child holding no parameter, complete right before the module does (nothing
    runs between its end and the module's), return one array of the module's output shape, and have its first
    input recorded in `run`.
    """
    last: dict[str, set[str | None]] = {}
    previous: tuple[str, int] | None = None
    for _, path, call in run.events:
        child = previous[0] if previous is not None else None
        fits = (
            child is not None
            and child.rpartition(".")[0] == path
            and not net.subtree.get(child)
            and _same_shapes(run, child, previous[1] if previous else 0, path, call)
        )
        last.setdefault(path, set()).add(child if fits else None)
        previous = (path, call)
    out = {}
    for path, found in last.items():
        if len(found) == 1 and path:
            (child,) = found
            if child is not None and child in run.inputs:
                out[path] = child
    return out


def _same_shapes(run: Run, child: str, child_call: int, path: str, call: int) -> bool:
    outputs, inner = run.calls.get(path), run.calls.get(child)
    if outputs is None or inner is None or call >= len(outputs) or child_call >= len(inner):
        return False
    mine, theirs = outputs[call], inner[child_call]
    return len(mine) == 1 and len(theirs) == 1 and mine[0].shape == theirs[0].shape


@dataclass(frozen=True)
class Timeline:
    """What the target network's traced run showed, independent of its weights.

    Attributes:
        shapes: module path -> output shapes of each call.
        input_shapes: module path -> the shape of each call's first tensor argument.
        first_use: parameter -> tick of its first use.
        done: module path -> tick at which its last call completed.
        trailing: module path -> its trailing parameter-free sub-module (see `trailing_children`).
        precision: module path -> the least precise float dtype of its outputs and its sub-modules' outputs.
    """

    shapes: Mapping[str, CallShapes]
    input_shapes: Mapping[str, CallShapes]
    first_use: Mapping[str, int]
    done: Mapping[str, int]
    trailing: Mapping[str, str] = field(default_factory=dict)
    precision: Mapping[str, str] = field(default_factory=dict)


def timeline(run: Run, net: Net) -> Timeline:
    """The timeline of a traced target run with every module's outputs and inputs captured."""
    first_use = dict(run.param_ticks)
    for name, module in net.owner.items():
        if name not in first_use and module in run.entry_ticks:
            first_use[name] = run.entry_ticks[module]
    done: dict[str, int] = {}
    for tick, path, _ in run.events:
        done[path] = tick
    return Timeline(
        {p: call_shapes(c) for p, c in run.calls.items()},
        {p: call_shapes(c) for p, c in run.inputs.items()},
        first_use,
        done,
        trailing_children(net, run),
        module_precision(run, net),
    )


def module_precision(run: Run, net: Net | None = None) -> dict[str, str]:
    """Module path -> the least precise float dtype among its outputs and its sub-modules' (where not float32).

    Given the network, the parameters it holds count too: a weight kept in float16 (a layer that computes a
    product in float16 and casts back) rounds what it is converted from, whatever its module's outputs are.
    """
    found = list(run.precision.items())
    if net is not None:
        for name, tensor in net.params.items():
            dtype = net.backend.dtype(tensor)
            if dtype in ("float16", "bfloat16"):
                found.append((net.owner.get(name, ""), dtype))
    out: dict[str, str] = {}
    for path, dtype in found:
        parts = path.split(".") if path else []
        for i in range(len(parts), -1, -1):
            outer = ".".join(parts[:i])
            out[outer] = lowest_precision([out.get(outer, dtype), dtype])
    return out


@dataclass
class Point:
    """A target module's view compared with a source module's view.

    Attributes:
        module: the target module.
        reference: the paired source module.
        options: (target view, source view, layouts per call and array) combinations that fit by shape, the
            plain outputs first.
        chosen: the combination in force (for teacher forcing and for `want`).
        settled: the values chose `chosen` (a combination agreed); until then any combination may agree.
    """

    module: str
    reference: str
    options: list[tuple[View, View, list[list[Link]]]]
    chosen: int = 0
    settled: bool = False

    @property
    def target_view(self) -> View:
        """The target view in force."""
        return self.options[self.chosen][0]

    def capture(self) -> tuple[set[str], set[str]]:
        """(modules whose outputs, modules whose first inputs) a run must record to judge this point."""
        outputs: set[str] = set()
        inputs: set[str] = set()
        for view, _, _ in self._candidates():
            (outputs if view.child is None else inputs).add(view.module if view.child is None else view.child)
        return outputs, inputs

    def force(self, reference: Run) -> tuple[str, bool, Forced] | None:
        """(module, whether its first input rather than its output, values) to force the source's values in."""
        view, source_view, shapes = self.options[self.chosen]
        want = source_view.values(reference)
        if want is None:
            return None
        values = arranged(want, shapes)
        return (view.module, False, values) if view.child is None else (view.child, True, values)

    def difference(self, reference: Run, got: Run) -> float:
        """The smallest difference over the combinations still possible (inf when a run lacks the values)."""
        best = float("inf")
        for view, source_view, shapes in self._candidates():
            want, have = source_view.values(reference), view.values(got)
            if want is None or have is None:
                continue
            best = min(best, difference(want, have, shapes))
        return best

    def call_difference(self, reference: Run, got: Run, call: int) -> float:
        """The smallest difference of one call over the combinations still possible."""
        best = float("inf")
        for view, source_view, shapes in self._candidates():
            want, have = source_view.values(reference), view.values(got)
            if want is None or have is None or call >= min(len(want), len(have), len(shapes)):
                continue
            best = min(best, difference([want[call]], [have[call]], [shapes[call]]))
        return best

    def settle(self, reference: Run, got: Run, bound: float) -> None:
        """Choose the combination that agrees best in `got`, if one agrees within `bound`; then keep it."""
        if self.settled:
            return
        best: tuple[float, int] = (float("inf"), self.chosen)
        for number, (view, source_view, shapes) in enumerate(self.options):
            want, have = source_view.values(reference), view.values(got)
            if want is None or have is None:
                continue
            found = difference(want, have, shapes)
            if found < best[0]:
                best = (found, number)
        if best[0] <= bound:
            number = best[1]
            view, source_view, shapes = self.options[number]
            want, have = source_view.values(reference), view.values(got)
            assert want is not None and have is not None
            self.options[number] = (view, source_view, settle_layouts(want, have, shapes))
            self.chosen, self.settled = number, True

    def describe(self) -> str:
        """`w1 (before activation) vs mlp.gate_proj`."""
        view, source_view, _ = self.options[self.chosen]
        return f"{view.describe()} vs {source_view.describe()}"

    def _candidates(self) -> list[tuple[View, View, list[list[Link]]]]:
        return [self.options[self.chosen]] if self.settled else self.options


def captures(points: Sequence[Point]) -> tuple[set[str], set[str]]:
    """(modules whose outputs, modules whose first inputs) one run must record to judge all of `points`."""
    outputs: set[str] = set()
    inputs: set[str] = set()
    for point in points:
        more_outputs, more_inputs = point.capture()
        outputs |= more_outputs
        inputs |= more_inputs
    return outputs, inputs


def find_point(
    net: Net,
    path: str,
    line: Timeline,
    reference: Run,
    source_trailing: Mapping[str, str],
    names: Mapping[str, tuple[str, ...]],
    pairing: ModulePairing,
) -> Point | None:
    """The point of comparison of a target module with the first paired source module it can be compared with."""
    if path not in line.shapes:
        return None
    for source_path in paired_modules(net, path, names, pairing):
        options = []
        for view in _views(path, line.trailing):
            got = line.shapes.get(path) if view.child is None else line.input_shapes.get(view.child)
            if got is None:
                continue
            for source_view in _views(source_path, source_trailing):
                want = source_view.values(reference)
                found = layouts(call_shapes(want), got) if want else None
                if found is not None:
                    options.append((view, source_view, found))
        if options:
            options.sort(key=lambda o: (o[0].child is not None) + (o[1].child is not None))
            return Point(path, source_path, options)
    return None


def _views(path: str, trailing: Mapping[str, str]) -> list[View]:
    child = trailing.get(path)
    return [View(path)] + ([View(path, child)] if child is not None else [])
