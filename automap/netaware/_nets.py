"""Both frameworks' networks behind one small interface: module tree, parameter names, traced and hooked runs.

A `Net` wraps a `torch.nn.Module` or a `mindspore.nn.Cell`. It knows every parameter (PyTorch: the state dict,
buffers included; MindSpore: `parameters_and_names`) and every module path ("" is the root), and it can run
the network in eval mode on numpy inputs while recording, on one clock:

- when each parameter is first used (PyTorch: a `TorchFunctionMode` sees every tensor handed to a torch
  function, so a bare `cls_token` used in `forward` is caught; MindSpore: reading a parameter attribute of a
  cell), and when each module is entered (forward pre-hooks, the fallback for parameters no use was seen of);
- each module call's outputs, flattened to numpy arrays (forward hooks), for the modules asked for;
- and it can replace a module call's outputs with given arrays ("teacher forcing"), so that what follows that
  module sees the reference network's values.

torch and MindSpore are imported only inside the methods that need them.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automap._errors import AutomapError, ConversionError
from automap._text import first_line
from automap._types import Array, Framework

Outputs = list[Array]
"""One module call's outputs, flattened (nested tuples/lists/dicts in a stable order) to numpy arrays."""


@dataclass
class Run:
    """What one hooked forward pass recorded.

    Attributes:
        outputs: the network's outputs, flattened.
        calls: module path -> the outputs of each call of that module (only modules asked for).
        events: (tick, module path, call number) for every module call, in the order the calls completed.
        param_ticks: parameter -> tick of its first use (only when the run traced parameter use).
        entry_ticks: module path -> tick of its first call's start (only when traced).
        arguments: module path -> the (args, kwargs) of each call, as framework tensors (modules asked for), so
            that a module can be run again on its own (`Net.rerun`).
    """

    outputs: Outputs
    calls: dict[str, list[Outputs]] = field(default_factory=dict)
    events: list[tuple[int, str, int]] = field(default_factory=list)
    param_ticks: dict[str, int] = field(default_factory=dict)
    entry_ticks: dict[str, int] = field(default_factory=dict)
    arguments: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)


@dataclass
class _Context:
    """The bookkeeping of the run in progress."""

    record: Run
    capture: Collection[str] | None
    force: Mapping[str, list[Outputs]]
    trace: bool
    keep: Collection[str] = ()
    clock: Iterator[int] = field(default_factory=itertools.count)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Net:
    """A network of either framework, seen through parameter names and module paths.

    Attributes:
        framework: "pytorch" or "mindspore".
        module: the wrapped `torch.nn.Module` or `mindspore.nn.Cell`.
        params: parameter name -> the framework's tensor object, in declaration order.
        modules: module path -> module object ("" is the root), in registration order.
        checkpoint_names: parameter name -> the name a checkpoint of this network stores it under.
    """

    framework: Framework
    _unit: str  # what messages call one of its modules: "module" or "cell"
    _described: str  # what they call the whole network: "torch module" or "MindSpore cell"

    def __init__(self, module: Any) -> None:
        self.module = module
        self.params: dict[str, Any] = {}
        self.modules: dict[str, Any] = {}
        self.checkpoint_names: dict[str, str] = {}
        self._collect()
        self.owner = {name: name.rpartition(".")[0] for name in self.params}
        self.declared = {name: i for i, name in enumerate(self.params)}
        below: dict[str, set[str]] = defaultdict(set)
        for name in self.params:
            for module_path in _ancestors(name):
                below[module_path].add(name)
        self.subtree: dict[str, frozenset[str]] = {path: frozenset(below.get(path, ())) for path in self.modules}
        holders = {self.owner[n] for n in self.params}
        self.leaves = {path for path in holders if all(self.owner[n] == path for n in below[path])}
        self._int32 = False
        self._floats: dict[str, bool] = {}
        self._handles: list[Any] = []
        self._context: _Context | None = None

    # -- framework specifics ---------------------------------------------------------------------------------

    def _collect(self) -> None:
        raise NotImplementedError

    def _forward(self, inputs: Sequence[Array], trace: bool) -> Any:
        """Run the network on numpy inputs (eval mode, no gradients); the raw output."""
        raise NotImplementedError

    def _like(self, array: Array, like: Any) -> Any:
        """A framework tensor holding `array`, with the dtype of `like`."""
        raise NotImplementedError

    def _register(self, module: Any, entered: Callable[..., None], completed: Callable[..., Any]) -> list[Any]:
        """Put the entry and completion hooks on one module; the handles that remove them."""
        return [
            module.register_forward_pre_hook(entered, with_kwargs=True),
            module.register_forward_hook(completed),
        ]

    # -- hooks -----------------------------------------------------------------------------------------------

    def _install(self) -> None:
        """Hook every module once; the hooks do nothing outside `run` (MindSpore recompiles on each new hook)."""
        if self._handles:
            return
        for path, module in self.modules.items():
            self._handles += self._register(module, self._entered(path), self._completed(path))

    def close(self) -> None:
        """Remove the hooks this object put on the network's modules."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _entered(self, path: str) -> Callable[..., None]:
        def hook(module: Any, args: Any, kwargs: Any) -> None:
            context = self._context
            if context is None:
                return
            if context.trace:
                context.record.entry_ticks.setdefault(path, next(context.clock))
            if path in context.keep:
                context.record.arguments.setdefault(path, []).append(self._kept(args, kwargs))

        return hook

    def _kept(self, args: Any, kwargs: Any) -> tuple[Any, Any]:
        """A call's arguments as they must be kept to call the module again (PyTorch: copies)."""
        return tuple(args), dict(kwargs or {})

    def _call(self, module: Any, args: Any, kwargs: Any) -> Any:
        """Call one module in eval mode without gradients."""
        raise NotImplementedError

    def rerun(self, path: str, arguments: Sequence[tuple[Any, Any]]) -> list[Outputs]:
        """Run one module again on the arguments a run kept for it (its current weights); outputs per call.

        Raises:
            AutomapError: the module fails.
        """
        module = self.modules[path]
        try:
            return [_flatten(self._call(module, args, kwargs)) for args, kwargs in arguments]
        except Exception as error:
            detail = first_line(str(error), 300)
            msg = f"running {path or 'the model'} again on its own failed: {type(error).__name__}: {detail}"
            raise AutomapError(msg) from error

    def _completed(self, path: str) -> Callable[..., Any]:
        def hook(module: Any, args: Any, output: Any) -> Any:
            context = self._context
            if context is None:
                return None
            number = context.counts[path]
            context.counts[path] += 1
            context.record.events.append((next(context.clock), path, number))
            if context.capture is None or path in context.capture:
                context.record.calls.setdefault(path, []).append(_flatten(output))
            forced = context.force.get(path)
            if forced is not None and number < len(forced):
                return _rebuild(output, iter(forced[number]), self._like)
            return None

        return hook

    def _run(
        self,
        inputs: Sequence[Array],
        capture: Collection[str] | None,
        force: Mapping[str, list[Outputs]],
        trace: bool,
        keep: Collection[str] = (),
    ) -> Run:
        self._install()
        context = _Context(Run([]), capture, force, trace, keep)
        self._context = context
        try:
            output = self._forward(inputs, trace)
        finally:
            self._context = None
        context.record.outputs = _flatten(output)
        return context.record

    def _use(self, name: str) -> None:
        """Note the first use of a parameter (called by the tracing machinery)."""
        context = self._context
        if context is not None and name not in context.record.param_ticks:
            context.record.param_ticks[name] = next(context.clock)

    def load(self, arrays: Mapping[str, Array], dtypes: Mapping[str, str]) -> None:
        """Set the given parameters (by name) to storage arrays of the given dtypes; the others keep their values.

        Raises:
            ConversionError: a name is unknown or a shape differs from the parameter's.
        """
        problems = []
        updates = []
        for name, array in arrays.items():
            current = self.params.get(name)
            if current is None:
                problems.append(f"{name}: not a parameter of the network")
                continue
            if tuple(array.shape) != tuple(current.shape):
                problems.append(f"{name}: shape {list(array.shape)}, the {self._unit} expects {list(current.shape)}")
                continue
            updates.append((current, self._converted(name, np.asarray(array), dtypes.get(name), current)))
        _raise_if(problems, self._described)
        self._assign(updates)

    def _converted(self, name: str, array: Array, dtype: str | None, current: Any) -> Any:
        """A framework tensor for parameter `name` (currently `current`) from a storage array of `dtype`."""
        raise NotImplementedError

    def _assign(self, updates: Sequence[tuple[Any, Any]]) -> None:
        """Set each parameter to its converted tensor."""
        raise NotImplementedError

    def dtype(self, name: str) -> str:
        """The automap dtype name of a parameter."""
        raise NotImplementedError

    def array(self, name: str) -> Array:
        """A parameter's values as a numpy array (floating point as float32)."""
        raise NotImplementedError

    def is_float(self, name: str) -> bool:
        """Whether a parameter holds floating-point values (not a counter such as `num_batches_tracked`)."""
        found = self._floats.get(name)
        if found is None:
            found = self._floats[name] = self.dtype(name).startswith(("float", "bfloat"))
        return found

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of a parameter."""
        return tuple(int(d) for d in self.params[name].shape)

    # -- shared ----------------------------------------------------------------------------------------------

    def run(
        self,
        inputs: Sequence[Array],
        *,
        capture: Collection[str] | None = (),
        force: Mapping[str, list[Outputs]] | None = None,
        trace: bool = False,
        keep: Collection[str] = (),
    ) -> Run:
        """Run in eval mode without gradients.

        Args:
            inputs: one numpy array per positional argument.
            capture: module paths whose call outputs to keep (None: every module).
            force: module path -> replacement outputs per call, in the layout this network produces.
            trace: also record first parameter uses and module entries.
            keep: module paths whose call arguments to keep, to run them again on their own.

        Returns:
            The recorded run.

        Raises:
            AutomapError: the network fails on the inputs.
        """
        try:
            return self._run(inputs, capture, force or {}, trace, keep)
        except AutomapError:
            raise
        except Exception as error:
            integer64 = any(np.asarray(x).dtype == np.int64 for x in inputs)
            if self.framework == "mindspore" and integer64 and not self._int32:
                self._int32 = True  # MindSpore ports commonly index their embeddings with int32
                try:
                    return self._run(inputs, capture, force or {}, trace, keep)
                except Exception:  # report the first failure, which is the informative one
                    self._int32 = False
            raise NetworkRunError(self.framework, inputs, error) from error

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

    def module_of(self, path: str) -> Any:
        """The module object at a path."""
        return self.modules[path]


class NetworkRunError(AutomapError):
    """A network failed on the probe inputs (usually: inputs of the wrong shape or dtype)."""

    def __init__(self, framework: Framework, inputs: Sequence[Array], error: Exception) -> None:
        text = first_line(str(error), 300)
        described = ", ".join("x".join(str(d) for d in np.shape(x)) + f":{np.asarray(x).dtype}" for x in inputs)
        name = "PyTorch" if framework == "pytorch" else "MindSpore"
        super().__init__(
            f"the {name} model failed on input {described}: {type(error).__name__}: {text}; give the model's "
            "inputs with --input SHAPE:DTYPE (one per argument), e.g. --input 1x3x224x224:float32 or "
            "--input 1x16:int64:0-1000"
        )


def wrap(module: Any) -> Net:
    """A `Net` for a torch module or a MindSpore cell.

    Raises:
        AutomapError: the object is neither.
    """
    if hasattr(module, "state_dict") and hasattr(module, "named_modules"):
        return TorchNet(module)
    if hasattr(module, "parameters_and_names") and hasattr(module, "cells_and_names"):
        return MindSporeNet(module)
    msg = f"a {type(module).__name__} is neither a torch.nn.Module nor a mindspore.nn.Cell"
    raise AutomapError(msg)


# ------------------------------------------------------------------------------------------------------ PyTorch


class TorchNet(Net):
    """A `torch.nn.Module`: parameters and persistent buffers as its state dict names them."""

    framework: Framework = "pytorch"
    _unit, _described = "module", "torch module"

    def _collect(self) -> None:
        self.params = dict(self.module.state_dict(keep_vars=True))
        self.modules = dict(self.module.named_modules())
        self.checkpoint_names = {name: name for name in self.params}

    def dtype(self, name: str) -> str:
        return str(self.params[name].dtype).removeprefix("torch.")

    def array(self, name: str) -> Array:
        return _to_numpy(self.params[name])

    def _converted(self, name: str, array: Array, dtype: str | None, current: Any) -> Any:
        from automap.io.torch import to_torch

        return to_torch(array, dtype or self.dtype(name))

    def _assign(self, updates: Sequence[tuple[Any, Any]]) -> None:
        import torch

        with torch.no_grad():
            for current, tensor in updates:
                current.copy_(tensor.to(current.dtype))

    def _like(self, array: Array, like: Any) -> Any:
        return _torch_like(array, like)

    def _kept(self, args: Any, kwargs: Any) -> tuple[Any, Any]:
        import torch

        def copy(value: Any) -> Any:  # the forward pass may change its tensors in place afterwards
            return value.detach().clone() if isinstance(value, torch.Tensor) else value

        return tuple(copy(a) for a in args), {k: copy(v) for k, v in (kwargs or {}).items()}

    def _call(self, module: Any, args: Any, kwargs: Any) -> Any:
        import torch

        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                return module(*args, **kwargs)
        finally:
            self.module.train(was_training)

    def _forward(self, inputs: Sequence[Array], trace: bool) -> Any:
        import torch
        from torch.overrides import TorchFunctionMode

        ids = {id(t): name for name, t in reversed(self.params.items())}  # tied tensors: the first name wins
        use = self._use

        class Uses(TorchFunctionMode):
            def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                for value in _leaves((args, kwargs)):
                    name = ids.get(id(value))
                    if name is not None:
                        use(name)
                return func(*args, **(kwargs or {}))

        was_training = self.module.training
        self.module.eval()
        try:
            args = [torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]
            with torch.no_grad():
                if trace:
                    with Uses():
                        return self.module(*args)
                return self.module(*args)
        finally:
            self.module.train(was_training)


def _torch_like(array: Array, like: Any) -> Any:
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.to(dtype=like.dtype, device=like.device)


# ---------------------------------------------------------------------------------------------------- MindSpore


class MindSporeNet(Net):
    """A `mindspore.nn.Cell`, run in PyNative mode: parameters by their path in the cell tree."""

    framework: Framework = "mindspore"
    _unit, _described = "cell", "MindSpore cell"

    def _collect(self) -> None:
        self.params = dict(self.module.parameters_and_names())
        self.modules = dict(self.module.cells_and_names())
        self.checkpoint_names = {path: str(param.name) for path, param in self.params.items()}

    def dtype(self, name: str) -> str:
        from automap.dtypes import dtype_from_mindspore

        found = dtype_from_mindspore(str(self.params[name].dtype))
        return found.name if found is not None else "float32"

    def array(self, name: str) -> Array:
        return _to_numpy(self.params[name])

    def _converted(self, name: str, array: Array, dtype: str | None, current: Any) -> Any:
        from .networks import _numpy_to_ms

        return _numpy_to_ms(array, dtype, current.dtype)

    def _assign(self, updates: Sequence[tuple[Any, Any]]) -> None:
        for param, tensor in updates:
            param.set_data(tensor)

    def _like(self, array: Array, like: Any) -> Any:
        return _mindspore_like(array, like)

    def _call(self, module: Any, args: Any, kwargs: Any) -> Any:
        from .networks import _pynative

        was_training = bool(getattr(self.module, "training", False))
        try:
            with _pynative():
                self.module.set_train(False)
                return module(*args, **kwargs)
        finally:
            self.module.set_train(was_training)

    def _forward(self, inputs: Sequence[Array], trace: bool) -> Any:
        import mindspore
        from mindspore import nn

        from .networks import _pynative

        ids = {id(p): name for name, p in reversed(self.params.items())}
        use = self._use
        original = nn.Cell.__getattr__

        def reading(cell: Any, name: str) -> Any:
            value = original(cell, name)
            found = ids.get(id(value))
            if found is not None:
                use(found)
            return value

        was_training = bool(getattr(self.module, "training", False))
        try:
            with _pynative():
                self.module.set_train(False)
                arrays = [np.asarray(x) for x in inputs]
                if self._int32:
                    arrays = [x.astype(np.int32) if x.dtype == np.int64 else x for x in arrays]
                args = [mindspore.Tensor(np.ascontiguousarray(x)) for x in arrays]
                if trace:
                    nn.Cell.__getattr__ = reading  # MindSpore is untyped here; restored below
                try:
                    return self.module(*args)
                finally:
                    nn.Cell.__getattr__ = original
        finally:
            self.module.set_train(was_training)


def _mindspore_like(array: Array, like: Any) -> Any:
    import mindspore

    tensor = mindspore.Tensor(np.ascontiguousarray(array))
    return tensor if tensor.dtype == like.dtype else tensor.astype(like.dtype)


# ------------------------------------------------------------------------------------------------------ helpers


def _ancestors(name: str) -> Iterator[str]:
    """Module paths enclosing a parameter, innermost first, ending with the root ""."""
    parts = name.split(".")[:-1]
    for i in range(len(parts), 0, -1):
        yield ".".join(parts[:i])
    yield ""


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and (hasattr(value, "detach") or hasattr(value, "asnumpy"))


def _to_numpy(value: Any) -> Array:
    if hasattr(value, "detach"):  # torch.Tensor
        tensor = value.detach().cpu()
        if tensor.is_floating_point():
            return np.array(tensor.float().numpy(), copy=True)
        return np.array(tensor.numpy(), dtype=np.float64)
    import mindspore

    if value.dtype in (mindspore.float16, mindspore.bfloat16, mindspore.float64):
        return np.array(value.astype(mindspore.float32).asnumpy(), copy=True)
    array = np.array(value.asnumpy(), copy=True)
    return array if array.dtype == np.float32 else array.astype(np.float64)


def _flatten(value: Any) -> Outputs:
    """Nested outputs -> flat list of numpy arrays (floats as float32, the rest as float64)."""
    if isinstance(value, Mapping):
        return [a for key in sorted(value) for a in _flatten(value[key])]
    if isinstance(value, list | tuple):
        return [a for item in value for a in _flatten(item)]
    if _is_tensor(value):
        return [_to_numpy(value)]
    return []


def _rebuild(value: Any, arrays: Iterator[Array], like: Callable[[Array, Any], Any]) -> Any:
    """`value` with each tensor replaced by the next array, in `_flatten`'s order."""
    if isinstance(value, Mapping):
        rebuilt = {key: _rebuild(value[key], arrays, like) for key in sorted(value)}
        return type(value)(rebuilt) if isinstance(value, dict) else rebuilt
    if isinstance(value, tuple):
        items = [_rebuild(item, arrays, like) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [_rebuild(item, arrays, like) for item in value]
    if _is_tensor(value):
        return like(next(arrays), value)
    return value


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif value is not None:
        yield value


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... ({len(problems)} problems)" if len(problems) > 10 else "")
        msg = f"cannot load the weights into the {what}: {shown}"
        raise ConversionError(msg)


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
