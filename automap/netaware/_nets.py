"""A network of either framework seen through parameter names and module paths, with traced and hooked runs.

A `Net` wraps a `torch.nn.Module` or a `mindspore.nn.Cell` through its framework's backend
(`automap.netaware._frameworks`). It knows every parameter (what a checkpoint of the network stores) and every
module path ("" is the root), and it can run the network in eval mode on numpy inputs while recording, on one
clock:

- when each parameter is first used (the backend reports every tensor the network uses), and when each module
  is entered (forward pre-hooks, the fallback for parameters no use was seen of);
- each module call's outputs, flattened to numpy arrays (forward hooks), for the modules asked for;
- and it can replace a module call's outputs with given arrays ("teacher forcing"), so that what follows that
  module sees the reference network's values.

Nothing here depends on the framework; torch and MindSpore are imported by the backend, when one is needed.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automap._advice import option
from automap._errors import AutomapError
from automap._text import first_line
from automap._types import Array, Framework

from ._frameworks import Backend, NetworkRunError, backend_of, rebuild

Outputs = list[Array]
"""One module call's outputs, flattened (nested tuples/lists/dicts in a stable order) to numpy arrays."""
Forced = list[list[Array | None]]
"""Values forced into a module's calls: per call, per output array in flattened order (None: kept as computed)."""


@dataclass
class Run:
    """What one hooked forward pass recorded.

    Attributes:
        outputs: the network's outputs, flattened (the selected ones, see `Net.selection`).
        names: the name of each output (`named_leaves` paths: `logits`, `0`, `text_model_output.pooler_output`).
        calls: module path -> the outputs of each call of that module (only modules asked for).
        inputs: module path -> the first tensor argument of each call, as a one-array list (modules asked for).
        events: (tick, module path, call number) for every module call, in the order the calls completed.
        param_ticks: parameter -> tick of its first use (only when the run traced parameter use).
        entry_ticks: module path -> tick of its first call's start (only when traced).
        arguments: module path -> the (args, kwargs) of each call, as framework tensors (modules asked for), so
            that a module can be run again on its own (`Net.rerun`).
        precision: module path -> the least precise floating-point dtype among its outputs (traced runs).
    """

    outputs: Outputs
    names: list[str] = field(default_factory=list)
    calls: dict[str, list[Outputs]] = field(default_factory=dict)
    inputs: dict[str, list[Outputs]] = field(default_factory=dict)
    events: list[tuple[int, str, int]] = field(default_factory=list)
    param_ticks: dict[str, int] = field(default_factory=dict)
    entry_ticks: dict[str, int] = field(default_factory=dict)
    arguments: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)
    precision: dict[str, str] = field(default_factory=dict)


@dataclass
class _Context:
    """The bookkeeping of the run in progress."""

    record: Run
    capture: Collection[str] | None
    force: Mapping[str, Forced]
    trace: bool
    keep: Collection[str] = ()
    capture_inputs: Collection[str] | None = ()
    force_inputs: Mapping[str, Forced] = field(default_factory=dict)
    clock: Iterator[int] = field(default_factory=itertools.count)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    entries: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Net:
    """A network of either framework, seen through parameter names and module paths.

    Attributes:
        backend: its framework's backend.
        module: the wrapped `torch.nn.Module` or `mindspore.nn.Cell`.
        params: parameter name -> the framework's tensor object, in declaration order.
        modules: module path -> module object ("" is the root), in registration order.
        checkpoint_names: parameter name -> the name a checkpoint of this network stores it under.
        owner: parameter name -> the path of the module holding it.
        declared: parameter name -> its position in declaration order.
        subtree: module path -> the parameters at or below it.
        leaves: paths of the leaf layers: modules holding parameters, none of whose sub-modules do.
        selection: the names of the outputs to keep (a name also selects the outputs below it); None keeps all.
        stateful: type names of stateful objects among the arguments kept to run a module again (copied per run).
    """

    def __init__(self, module: Any, backend: Backend) -> None:
        self.backend = backend
        self.module = module
        self.params: dict[str, Any] = backend.parameters(module)
        self.modules: dict[str, Any] = backend.modules(module)
        self.checkpoint_names = {name: backend.checkpoint_name(name, t) for name, t in self.params.items()}
        self.owner = {name: name.rpartition(".")[0] for name in self.params}
        self.declared = {name: i for i, name in enumerate(self.params)}
        below: dict[str, set[str]] = defaultdict(set)
        for name in self.params:
            for module_path in _ancestors(name):
                below[module_path].add(name)
        self.subtree: dict[str, frozenset[str]] = {path: frozenset(below.get(path, ())) for path in self.modules}
        holders = {self.owner[n] for n in self.params}
        self.leaves = {path for path in holders if all(self.owner[n] == path for n in below[path])}
        self.selection: tuple[str, ...] | None = None
        self.stateful: set[str] = set()
        self._int32 = False
        self._floats: dict[str, bool] = {}
        self._handles: list[Any] = []
        self._context: _Context | None = None

    @property
    def framework(self) -> Framework:
        """The framework: "pytorch" or "mindspore"."""
        return self.backend.framework

    # -- parameters ------------------------------------------------------------------------------------------

    def load(self, arrays: Mapping[str, Array], dtypes: Mapping[str, str]) -> None:
        """Set the given parameters (by name) to storage arrays of the given dtypes; the others keep their values.

        Raises:
            ConversionError: a name is unknown or a shape differs from the parameter's.
        """
        self.backend.load(self.params, arrays, dtypes)

    def array(self, name: str) -> Array:
        """A parameter's values as a numpy array (floating point as float32)."""
        return self.backend.values(self.params[name])

    def is_float(self, name: str) -> bool:
        """Whether a parameter holds floating-point values (not a counter such as `num_batches_tracked`)."""
        found = self._floats.get(name)
        if found is None:
            dtype = self.backend.dtype(self.params[name]) or "float32"  # a type automap cannot name: a weight
            found = self._floats[name] = dtype.startswith(("float", "bfloat"))
        return found

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of a parameter."""
        return tuple(int(d) for d in self.params[name].shape)

    # -- hooks -----------------------------------------------------------------------------------------------

    def _install(self) -> None:
        """Hook every module once; the hooks do nothing outside `run` (MindSpore recompiles on each new hook)."""
        if self._handles:
            return
        for path, module in self.modules.items():
            self._handles += self.backend.hook(module, self._entered(path), self._completed(path))

    def close(self) -> None:
        """Remove the hooks this object put on the network's modules."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _entered(self, path: str) -> Callable[..., Any]:
        def hook(module: Any, args: Any, kwargs: Any) -> Any:
            context = self._context
            if context is None:
                return None
            number = context.entries[path]
            context.entries[path] += 1
            if context.trace:
                context.record.entry_ticks.setdefault(path, next(context.clock))
            if context.capture_inputs is None or path in context.capture_inputs:  # as computed, before forcing
                first = _first_tensor(args, kwargs, self.backend)
                if first is not None:
                    context.record.inputs.setdefault(path, []).append([self.backend.values(first)])
            replaced = None
            forced = context.force_inputs.get(path)
            if forced is not None and number < len(forced) and forced[number] and forced[number][0] is not None:
                value = forced[number][0]
                assert value is not None
                replaced = args, kwargs = self.with_first(args, kwargs, value)
            if path in context.keep:
                self.stateful.update(self.backend.stateful(args, kwargs))
                context.record.arguments.setdefault(path, []).append(self.backend.keep(args, kwargs))
            return replaced

        return hook

    def _completed(self, path: str) -> Callable[..., Any]:
        def hook(module: Any, args: Any, output: Any) -> Any:
            context = self._context
            if context is None:
                return None
            number = context.counts[path]
            context.counts[path] += 1
            context.record.events.append((next(context.clock), path, number))
            if context.trace:
                lowest = self.backend.lowest_float(output)
                if lowest is not None and lowest not in ("float32", "float64"):
                    context.record.precision[path] = lowest
            if context.capture is None or path in context.capture:
                arrays = self._root_outputs(output)[1] if path == "" else self.backend.outputs(output)
                context.record.calls.setdefault(path, []).append(arrays)
            forced = context.force.get(path)
            if forced is not None and number < len(forced):
                return self._replaced(output, forced[number])
            return None

        return hook

    def _replaced(self, output: object, arrays: Sequence[Array | None]) -> object:
        """`output` with its tensors replaced, in the order `Backend.outputs` lists them, by `arrays` (None: kept)."""
        given = iter(arrays)
        backend = self.backend

        def replace(leaf: object) -> object:
            if not backend.is_tensor(leaf):
                return leaf
            value = next(given, None)
            return leaf if value is None else backend.like(value, leaf)

        return rebuild(output, replace)

    def with_first(self, args: Any, kwargs: Any, array: Array) -> tuple[tuple[object, ...], dict[str, object]]:
        """A call's arguments with their first tensor replaced by `array` (in its dtype)."""
        args, kwargs = tuple(args), dict(kwargs or {})
        for number, value in enumerate(args):
            if self.backend.is_tensor(value):
                return (*args[:number], self.backend.like(array, value), *args[number + 1 :]), kwargs
        for key, value in kwargs.items():
            if self.backend.is_tensor(value):
                return args, {**kwargs, key: self.backend.like(array, value)}
        return args, kwargs

    def _root_outputs(self, value: object) -> tuple[list[str], Outputs]:
        """The network's selected outputs with their names."""
        named = self.backend.named_outputs(value)
        if self.selection is None:
            return [n for n, _ in named], [a for _, a in named]
        names: list[str] = []
        arrays: Outputs = []
        for wanted in self.selection:
            for name, array in named:
                if name == wanted or name.startswith(wanted + ".") or not wanted:
                    names.append(name)
                    arrays.append(array)
        return names, arrays

    # -- runs ------------------------------------------------------------------------------------------------

    def run(
        self,
        inputs: Sequence[object],
        *,
        keywords: Mapping[str, object] | None = None,
        capture: Collection[str] | None = (),
        force: Mapping[str, Forced] | None = None,
        trace: bool = False,
        keep: Collection[str] = (),
        capture_inputs: Collection[str] | None = (),
        force_inputs: Mapping[str, Forced] | None = None,
    ) -> Run:
        """Run in eval mode without gradients.

        Args:
            inputs: one value per positional argument (numpy arrays become tensors).
            keywords: keyword arguments, alike.
            capture: module paths whose call outputs to keep (None: every module).
            force: module path -> replacement outputs per call, in the layout this network produces.
            trace: also record first parameter uses, module entries and output precision.
            keep: module paths whose call arguments to keep, to run them again on their own.
            capture_inputs: module paths whose calls' first tensor argument to keep (None: every module).
            force_inputs: module path -> a replacement for the first tensor argument of each call.

        Returns:
            The recorded run.

        Raises:
            AutomapError: the network fails on the inputs.
        """
        context = _Context(Run([]), capture, force or {}, trace, keep, capture_inputs, force_inputs or {})
        try:
            return self._run(inputs, keywords or {}, context)
        except AutomapError:
            raise
        except Exception as error:
            given = [*inputs, *(keywords or {}).values()]
            integer64 = any(isinstance(x, np.ndarray) and x.dtype == np.int64 for x in given)
            if self.backend.int32_retry and integer64 and not self._int32:
                self._int32 = True
                try:
                    context = _Context(Run([]), capture, force or {}, trace, keep, capture_inputs, force_inputs or {})
                    return self._run(inputs, keywords or {}, context)
                except Exception:  # report the first failure, which is the informative one
                    self._int32 = False
            described = [_describe(x) for x in inputs] + [f"{k}={_describe(v)}" for k, v in (keywords or {}).items()]
            raise NetworkRunError(self.backend, described, error, _input_hint()) from error

    def _run(self, inputs: Sequence[object], keywords: Mapping[str, object], context: _Context) -> Run:
        self._install()
        arrays = [self._converted(x) for x in inputs]
        named = {k: self._converted(v) for k, v in keywords.items()}
        self._context = context
        try:
            output = self.backend.run(self.module, arrays, keywords=named, uses=self._uses() if context.trace else None)
        finally:
            self._context = None
        context.record.names, context.record.outputs = self._root_outputs(output)
        if self.selection is not None and "" in context.record.calls:  # the whole model is read as its selection
            context.record.calls[""] = [list(context.record.outputs)]
        return context.record

    def _converted(self, value: object) -> object:
        if isinstance(value, np.ndarray) and self._int32 and value.dtype == np.int64:
            return value.astype(np.int32)
        return value

    def _uses(self) -> Callable[[object], None]:
        """What the backend calls with each tensor the network uses: notes the first use of a parameter."""
        ids = {id(t): name for name, t in reversed(self.params.items())}  # tied tensors: the first name wins

        def used(value: object) -> None:
            name = ids.get(id(value))
            context = self._context
            if name is not None and context is not None and name not in context.record.param_ticks:
                context.record.param_ticks[name] = next(context.clock)

        return used

    def rerun(
        self, path: str, arguments: Sequence[tuple[Any, Any]], *, capture_inputs: Collection[str] = ()
    ) -> tuple[list[Outputs], dict[str, list[Outputs]]]:
        """Run one module again on the arguments a run kept for it (its current weights).

        Each call gets a fresh copy of its arguments, so that what the module changes in them (a cache it fills,
        a list it rewrites) does not reach the next run.

        Returns:
            The outputs of each call, and the first tensor argument of each call of the modules in
            `capture_inputs` (sub-modules of `path`).

        Raises:
            AutomapError: the module fails.
        """
        module = self.modules[path]
        context = _Context(Run([]), (), {}, False, (), capture_inputs)
        self._install()
        self._context = context
        try:
            outputs = []
            for args, kwargs in arguments:
                fresh_args, fresh_kwargs = self.backend.keep(args, kwargs)
                value = self.backend.call(self.module, module, fresh_args, fresh_kwargs)
                whole = not path and self.selection is not None  # the whole model is read as its selection
                outputs.append(self._root_outputs(value)[1] if whole else self.backend.outputs(value))
        except Exception as error:
            what = f"{type(error).__name__}: {first_line(str(error))}"
            msg = f"running {path or 'the model'} again on its own failed: {what}"
            raise AutomapError(msg) from error
        finally:
            self._context = None
        return outputs, context.record.inputs

    def execution_order(self, run: Run) -> list[str]:
        """Parameters in the order the traced run first used them (unused ones left out).

        A leaf layer's parameters (a module holding parameters and no sub-module that does) take the time of
        the layer's first use and keep their declaration order among themselves, as both frameworks' layers
        read weight and bias in different orders (BatchNorm: statistics first in PyTorch, gamma first in
        MindSpore). A parameter held directly by a container module (a bare `cls_token`) takes its own first
        use, or the container's entry when no use of it was seen.
        """
        leaf_time: dict[str, int] = {}
        for name in self.params:
            owner = self.owner[name]
            if owner in self.leaves:
                seen = [t for t in (run.param_ticks.get(name), run.entry_ticks.get(owner)) if t is not None]
                if seen:
                    leaf_time[owner] = min(leaf_time.get(owner, seen[0]), *seen)
        keys: dict[str, tuple[int, int]] = {}
        for name in self.params:
            owner = self.owner[name]
            tick = leaf_time.get(owner) if owner in self.leaves else run.param_ticks.get(name)
            if tick is None and owner not in self.leaves:
                tick = run.entry_ticks.get(owner)
            if tick is not None:
                keys[name] = (tick, self.declared[name])
        return sorted(keys, key=keys.__getitem__)


def _first_tensor(args: Any, kwargs: Any, backend: Backend) -> object | None:
    values: list[object] = [*tuple(args), *dict(kwargs or {}).values()]
    return next((value for value in values if backend.is_tensor(value)), None)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return "x".join(str(d) for d in value.shape) + f":{value.dtype}"
    return repr(value)


def wrap(module: object) -> Net:
    """A `Net` for a torch module or a MindSpore cell.

    Raises:
        AutomapError: the object is neither.
    """
    backend = backend_of(module)
    if backend is None or not backend.is_model(module):
        msg = f"a {type(module).__name__} is neither a torch.nn.Module nor a mindspore.nn.Cell"
        raise AutomapError(msg)
    return Net(module, backend)


def _ancestors(name: str) -> Iterator[str]:
    """Module paths enclosing a parameter, innermost first, ending with the root ""."""
    parts = name.split(".")[:-1]
    for i in range(len(parts), 0, -1):
        yield ".".join(parts[:i])
    yield ""


def align_names(net: Net, names: Sequence[str]) -> dict[str, str]:
    """Net parameter name -> checkpoint name, allowing one consistent prefix difference.

    A checkpoint may carry a wrapper's prefix (`model.`, `network.backbone.`) that the network lacks, or the
    other way round. Names equal on both sides pair first; the prefix rule that explains most of the rest
    (strip a leading part of the network's names, then add one) pairs the others.
    """
    available = set(names)
    out: dict[str, str] = {}
    for name in net.params:
        for candidate in (net.checkpoint_names.get(name, name), name):
            if candidate in available:
                out[name] = candidate
                break
    rest = [n for n in net.params if n not in out]
    if not rest:
        return out
    taken = set(out.values())
    free = [n for n in names if n not in taken]
    by_suffix: dict[str, list[str]] = defaultdict(list)
    for name in free:
        parts = name.split(".")
        for i in range(len(parts)):
            by_suffix[".".join(parts[i:])].append(name)
    rules: dict[tuple[str, str], int] = defaultdict(int)
    for name in rest:
        parts = name.split(".")
        for i in range(len(parts) - 1):  # a tail of at least two parts: `norm.weight`, not just `weight`
            tail = ".".join(parts[i:])
            found = by_suffix.get(tail, [])
            if len(found) == 1:
                rules[(".".join(parts[:i]), found[0][: len(found[0]) - len(tail)])] += 1
    if not rules:
        return out
    (strip, add), count = max(rules.items(), key=lambda item: (item[1], -len(item[0][0]) - len(item[0][1])))
    if count < max(2, len(rest) // 2):  # a prefix difference explains most names, not a stray one
        return out
    for name in rest:
        if strip and not name.startswith(strip + "."):
            continue
        candidate = add + (name[len(strip) + 1 :] if strip else name)
        if candidate in available and candidate not in taken:
            out[name] = candidate
            taken.add(candidate)
    return out


def _input_hint() -> str:
    """What to do when a network fails on the probe inputs, in the caller's words."""
    return (
        f"; give the model's inputs with {option('inputs', ['SHAPE:DTYPE'])} (one per argument), e.g. "
        f"{option('inputs', ['1x3x224x224:float32'])} or {option('inputs', ['1x16:int64:0-1000'])}"
    )
