"""Both frameworks behind one small interface: the few verbs that running a network needs.

A `Backend` knows how one framework holds a network: its parameters (what a checkpoint of it stores) and its
module tree; how to turn its tensors into numpy arrays and storage arrays into its tensors; how to run the
network, or one module of it, in eval mode without gradients on numpy inputs while it reports each tensor the
network uses; and how to hook a module to record or replace its outputs. What is the same for both
frameworks is written once here: loading weights by name with every problem listed, the stable order in
which nested outputs are flattened and rebuilt, and the error for a network that fails on its inputs.

`automap.netaware.networks` (verify, the zoo's proofs) and `automap.netaware._nets` (tracing and teacher
forcing for network-aware inference) are written against this interface only.

As einops' backends are, a backend is created on first use and its framework imported only then: importing
this package imports neither torch nor MindSpore. `backend_of` asks only the backends whose framework is
already imported, since no model or tensor of a framework that is not imported can exist.
"""

from __future__ import annotations

import copy
import importlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, cast

import numpy as np

from automap._errors import AutomapError, ConversionError, MissingDependencyError
from automap._text import first_line
from automap._types import Array, Framework
from automap.dtypes import dtype_from_numpy, get_dtype

__all__ = ["Backend", "NetworkRunError", "backend_of", "get_backend", "leaves", "named_leaves", "rebuild"]

Model = Any
"""A `torch.nn.Module` or a `mindspore.nn.Cell` (or one of their sub-modules)."""
Tensor = Any
"""A framework tensor: `torch.Tensor`, `mindspore.Tensor` or `mindspore.Parameter`."""
Hook = Callable[..., Any]

# framework -> (the framework's top-level module, this package's module holding its backend)
_MODULES: dict[Framework, tuple[str, str]] = {"pytorch": ("torch", "torch"), "mindspore": ("mindspore", "mindspore")}
_LOADED: dict[Framework, Backend] = {}


class Backend(ABC):
    """One framework's way of holding and running a network; one instance per framework (`get_backend`).

    Attributes:
        framework: "pytorch" or "mindspore".
        title: the framework's name in messages ("PyTorch").
        unit: what messages call one of its modules ("module", "cell").
        network: what they call a whole network ("torch module", "MindSpore cell").
        body: the method a call of a network runs ("forward", "construct").
        int32_retry: a network that fails on int64 inputs is tried again with them as int32 (MindSpore ports
            commonly index their embeddings with int32).
    """

    framework: ClassVar[Framework]
    title: ClassVar[str]
    unit: ClassVar[str]
    network: ClassVar[str]
    body: ClassVar[str]
    int32_retry: ClassVar[bool] = False

    # -- what a network is made of -----------------------------------------------------------------------

    @abstractmethod
    def is_model(self, value: object) -> bool:
        """Whether `value` is a network of this framework."""

    @abstractmethod
    def is_tensor(self, value: object) -> bool:
        """Whether `value` is a tensor of this framework."""

    @abstractmethod
    def parameters(self, model: Model) -> dict[str, Tensor]:
        """Everything a checkpoint of the network stores (buffers included), by name, in declaration order."""

    @abstractmethod
    def modules(self, model: Model) -> dict[str, Model]:
        """Every module by its path ("" is the root), in registration order."""

    def checkpoint_name(self, name: str, tensor: Tensor) -> str:
        """The name a checkpoint of the network stores parameter `name` under."""
        return name

    def optional(self, name: str) -> bool:
        """Whether a complete load may leave this parameter out (a counter, not a weight)."""
        return False

    @abstractmethod
    def dtype(self, tensor: Tensor) -> str | None:
        """The automap dtype name of a tensor, or None when automap has no name for its type."""

    # -- tensors and numpy ---------------------------------------------------------------------------------

    @abstractmethod
    def values(self, tensor: Tensor) -> Array:
        """A tensor's values as a new numpy array to compute with: floating point as float32, the rest float64."""

    @abstractmethod
    def storage(self, tensor: Tensor) -> Array:
        """A tensor's exact contents as a storage array (raw bits for bfloat16 and float8, as checkpoints hold them)."""

    @abstractmethod
    def tensor(self, array: Array, dtype: str, like: Tensor) -> Tensor:
        """A tensor of `like`'s dtype from a storage array holding `dtype` values (exact bits, then a cast)."""

    @abstractmethod
    def assign(self, updates: Sequence[tuple[Tensor, Tensor]]) -> None:
        """Set each parameter (first) to the values of its new tensor (second), in place."""

    @abstractmethod
    def like(self, array: Array, like: Tensor) -> Tensor:
        """A tensor holding the values of `array`, with the dtype (and device) of `like`."""

    # -- running -------------------------------------------------------------------------------------------

    @abstractmethod
    def run(
        self,
        model: Model,
        inputs: Sequence[object],
        *,
        keywords: Mapping[str, object] | None = None,
        uses: Callable[[object], None] | None = None,
    ) -> object:
        """Run the network in eval mode without gradients; its raw output. Its training mode is restored after.

        Args:
            model: the network.
            inputs: one entry per positional argument: numpy arrays become tensors, anything else is passed as is.
            keywords: keyword arguments, converted alike.
            uses: called with every tensor the network hands a framework function (PyTorch) or reads from a
                cell (MindSpore), to trace when each parameter is first used.
        """

    @abstractmethod
    def call(self, model: Model, module: Model, args: tuple[object, ...], kwargs: Mapping[str, object]) -> object:
        """Call one module of `model` (eval mode, no gradients) on arguments a hook kept; its raw output."""

    def keep(
        self, args: tuple[object, ...], kwargs: Mapping[str, object] | None
    ) -> tuple[tuple[object, ...], dict[str, object]]:
        """A call's arguments as they must be kept to call the module again later, safe from what happens next.

        The forward pass may change its arguments after the call (a list of feature maps rewritten in place,
        a cache that layers append to), and a module run again on kept arguments would change them again: the
        containers are copied, tensors by `copy_tensor`, and other objects (a `DynamicCache`) deep-copied. Call
        it again on kept arguments before each new run (`Net.rerun` does).
        """
        copied = _copy_arguments((tuple(args), dict(kwargs or {})), self)
        kept_args, kept_kwargs = cast("tuple[tuple[object, ...], dict[str, object]]", copied)
        return kept_args, kept_kwargs

    def copy_tensor(self, tensor: Tensor) -> Tensor:
        """A tensor as an argument must be kept (the framework's tensors that cannot change in place: itself)."""
        return tensor

    def stateful(self, args: tuple[object, ...], kwargs: Mapping[str, object] | None) -> list[str]:
        """The type names of the objects among a call's arguments that carry state (neither tensor nor plain data)."""
        return sorted({type(v).__name__ for v in _walk((args, dict(kwargs or {}))) if _is_state(v, self)})

    def hook(self, module: Model, entered: Hook, completed: Hook) -> list[Any]:
        """Hook one module; the handles that remove the hooks.

        `entered(module, args, kwargs)` runs when a call starts; `completed(module, args, output)` when it ends,
        and what it returns, unless None, replaces the output.
        """
        return [
            module.register_forward_pre_hook(entered, with_kwargs=True),
            module.register_forward_hook(completed),
        ]

    # -- written once for both frameworks --------------------------------------------------------------------

    def state(self, model: Model) -> dict[str, Array]:
        """The network's parameters as storage arrays, by name, in declaration order."""
        return {name: self.storage(tensor) for name, tensor in self.parameters(model).items()}

    def load(
        self,
        params: Mapping[str, Tensor],
        arrays: Mapping[str, Array],
        dtypes: Mapping[str, str] | None = None,
        *,
        complete: bool = False,
    ) -> None:
        """Set parameters by name to storage arrays; nothing is set unless all of them fit.

        Args:
            params: the network's parameters (`parameters(model)`).
            arrays: name -> storage array.
            dtypes: name -> the automap dtype the array holds. Without one, an array of a plain numpy type holds
                values of its own type, and any other array the raw bits of the parameter's dtype.
            complete: every parameter must be given (`optional` ones excepted); otherwise the others keep
                their values.

        Raises:
            ConversionError: a name is unknown (or, when complete, missing), a shape differs from the
                parameter's, or a dtype is not supported; all problems are listed.
        """
        given = set(arrays)
        problems = []
        if complete:
            problems += [f"{n}: no value given" for n in sorted(set(params) - given) if not self.optional(n)]
        problems += [f"{n}: not a parameter of the network" for n in sorted(given - set(params))]
        updates = []
        for name, current in params.items():
            if name not in arrays:
                continue
            array = np.asarray(arrays[name])
            if tuple(array.shape) != tuple(current.shape):
                problems.append(f"{name}: shape {list(array.shape)}, the {self.unit} expects {list(current.shape)}")
                continue
            dtype = (dtypes or {}).get(name) or self._held(array, current)
            if dtype is None:
                problems.append(f"{name}: {self.title} dtype {current.dtype} is not supported")
                continue
            updates.append((current, self.tensor(array, dtype, current)))
        if problems:
            many = f"; ... ({len(problems)} problems)" if len(problems) > 10 else ""
            msg = f"cannot load the weights into the {self.network}: {'; '.join(problems[:10])}{many}"
            raise ConversionError(msg)
        self.assign(updates)

    def _held(self, array: Array, current: Tensor) -> str | None:
        """The dtype an array given without one holds, for a parameter (see `load`)."""
        own = self.dtype(current)
        if own is None or not get_dtype(own).numpy_native:
            return own
        found = dtype_from_numpy(array.dtype)
        return found.name if found is not None else own

    def outputs(self, value: object) -> list[Array]:
        """A network's or module's output as a flat list of arrays (`values`), in `leaves` order."""
        return [self.values(leaf) for leaf in leaves(value) if self.is_tensor(leaf)]

    def named_outputs(self, value: object) -> list[tuple[str, Array]]:
        """A network's output as (name, array) pairs in `leaves` order; names are `named_leaves` paths."""
        return [(name, self.values(leaf)) for name, leaf in named_leaves(value) if self.is_tensor(leaf)]

    def lowest_float(self, value: object) -> str | None:
        """The least precise floating-point dtype among an output's tensors (None when it holds none)."""
        found = [self.dtype(leaf) for leaf in leaves(value) if self.is_tensor(leaf)]
        floats = [d for d in found if d is not None and d in _PRECISION]
        return max(floats, key=_PRECISION.__getitem__) if floats else None


class NetworkRunError(AutomapError):
    """A network failed on its inputs (usually: inputs of the wrong shape or dtype)."""

    def __init__(self, backend: Backend, described: Sequence[str], error: Exception, hint: str = "") -> None:
        super().__init__(
            f"the {backend.title} model failed on input {', '.join(described)}: {type(error).__name__}: "
            f"{first_line(str(error))}{hint}"
        )


def get_backend(framework: Framework) -> Backend:
    """The backend of a framework, created (and the framework imported) on first use.

    Raises:
        MissingDependencyError: the framework is not installed.
    """
    backend = _LOADED.get(framework)
    if backend is None:
        root, module_name = _MODULES[framework]
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != root:  # a bug inside the backend, not a missing framework
                raise
            msg = f"running {framework} networks needs {root}, which is not installed; run: pip install {root}"
            raise MissingDependencyError(msg) from None
        backend = _LOADED[framework] = module.BACKEND
    return backend


def backend_of(value: object) -> Backend | None:
    """The backend of the framework a model or tensor belongs to, or None when it belongs to neither."""
    for framework, (root, _) in _MODULES.items():
        if root in sys.modules:
            backend = get_backend(framework)
            if backend.is_model(value) or backend.is_tensor(value):
                return backend
    return None


def leaves(value: object) -> Iterator[object]:
    """The leaves of nested outputs in a stable order: mappings, lists and tuples in their own order."""
    for _, leaf in named_leaves(value):
        yield leaf


def named_leaves(value: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(path, leaf) for the leaves of nested outputs, in `leaves` order: `logits`, `0`, `hidden_states.2`.

    A path joins the keys (mappings) and positions (lists, tuples) that lead to the leaf with dots; a bare
    tensor's path is "". Mappings keep their own order: a HuggingFace output lists its fields as the model
    declares them (`start_logits` before `end_logits`), which is what a port's tuple follows.
    """
    if isinstance(value, Mapping):
        for key in list(value):
            yield from named_leaves(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list | tuple):
        for number, item in enumerate(value):
            yield from named_leaves(item, f"{prefix}.{number}" if prefix else str(number))
    else:
        yield prefix, value


_PRECISION = {"float64": 0, "float32": 1, "float16": 2, "bfloat16": 3}
"""Floating-point dtypes, most precise first (float8 types are storage, not compute)."""
_PLAIN = (str, bytes, int, float, complex, bool, type(None), np.ndarray, np.generic)


def _walk(value: object) -> Iterator[object]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def _is_state(value: object, backend: Backend) -> bool:
    return not isinstance(value, _PLAIN) and not backend.is_tensor(value) and not callable(value)


def _copy_arguments(value: object, backend: Backend) -> object:
    """A copy of nested arguments: containers rebuilt, tensors by `copy_tensor`, stateful objects deep-copied."""
    if backend.is_tensor(value):
        return backend.copy_tensor(value)
    if isinstance(value, dict):
        return {key: _copy_arguments(item, backend) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_arguments(item, backend) for item in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_copy_arguments(item, backend) for item in value)
    if _is_state(value, backend):
        try:
            return copy.deepcopy(value)
        except Exception:  # an object that cannot be copied is passed as it is (it may hold no state)
            return value
    return value


def rebuild(value: object, replace: Callable[[object], object]) -> object:
    """`value` with each leaf replaced by `replace(leaf)`, visited in `leaves` order, containers kept."""
    if isinstance(value, Mapping):
        rebuilt = {key: rebuild(value[key], replace) for key in list(value)}
        return type(value)(rebuilt) if isinstance(value, dict) else rebuilt
    if isinstance(value, tuple):
        items = [rebuild(item, replace) for item in value]
        if hasattr(value, "_fields"):  # a named tuple takes its fields as arguments
            named: Any = type(value)
            return named(*items)
        return tuple(items)
    if isinstance(value, list):
        return [rebuild(item, replace) for item in value]
    return replace(value)
