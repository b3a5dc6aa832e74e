"""Run real networks of both frameworks: load weights into them, run them on the same inputs, compare.

This is where a mapping meets reality: `automap verify`, the benchmark zoo's ground-truth proofs and the
network-aware inference all load numpy weights into a `torch.nn.Module` or a `mindspore.nn.Cell`, run it in
eval mode and compare outputs. torch and MindSpore are imported only when these functions are called.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from automap._errors import AutomapError, ConversionError
from automap._types import Array

__all__ = [
    "OutputComparison",
    "compare_outputs",
    "flatten_outputs",
    "load_factory",
    "load_into_mindspore",
    "load_into_torch",
    "mindspore_state",
    "run_mindspore",
    "run_torch",
    "torch_state",
]


@dataclass(frozen=True, slots=True)
class OutputComparison:
    """How far two networks' outputs are apart.

    Attributes:
        max_abs: largest absolute difference over all outputs.
        max_rel: `max_abs` divided by the largest absolute reference value.
        passed: every output has the same shape and agrees within tolerance.
        detail: one line per output (shape, differences) for a report.
    """

    max_abs: float
    max_rel: float
    passed: bool
    detail: tuple[str, ...]


def load_factory(spec: str) -> Any:
    """Import `pkg.module:callable` and call it with no arguments (a model factory given on the command line).

    Raises:
        AutomapError: the spec is malformed, the module cannot be imported, or the factory fails.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        msg = f"model factory {spec!r} must look like 'package.module:function'"
        raise AutomapError(msg)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        msg = f"cannot import {module_name!r} for model factory {spec!r}: {error}"
        raise AutomapError(msg) from None
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            msg = f"{module_name!r} has no attribute {attr!r} (model factory {spec!r})"
            raise AutomapError(msg)
    if not callable(factory):
        msg = f"model factory {spec!r} is not callable"
        raise AutomapError(msg)
    return factory()


def torch_state(module: Any) -> dict[str, Array]:
    """A torch module's state dict as storage arrays."""
    from automap.io.torch import to_numpy

    return {name: to_numpy(value) for name, value in module.state_dict().items()}


def mindspore_state(cell: Any) -> dict[str, Array]:
    """A MindSpore cell's parameters as storage arrays, in declaration order."""
    return {name: _ms_to_numpy(param) for name, param in cell.parameters_and_names()}


def load_into_torch(module: Any, arrays: Mapping[str, Array], dtypes: Mapping[str, str] | None = None) -> None:
    """Load arrays into a torch module by name; every entry of its state dict must be given.

    Raises:
        ConversionError: a name is missing or unknown, or a shape differs; all problems are listed.
    """
    import torch

    from automap.io.torch import to_torch

    state = module.state_dict()
    problems = _name_problems(
        state.keys(), arrays.keys(), optional={n for n in state if n.endswith("num_batches_tracked")}
    )
    values = {}
    for name, current in state.items():
        if name not in arrays:
            values[name] = current
            continue
        dtype = (dtypes or {}).get(name) or str(current.dtype).removeprefix("torch.")
        tensor = to_torch(np.asarray(arrays[name]), dtype)
        if tuple(tensor.shape) != tuple(current.shape):
            problems.append(f"{name}: shape {list(tensor.shape)}, the module expects {list(current.shape)}")
        values[name] = tensor.to(current.dtype) if tensor.dtype != current.dtype else tensor
    _raise_if(problems, "torch module")
    with torch.no_grad():
        module.load_state_dict(values, strict=True)


def load_into_mindspore(cell: Any, arrays: Mapping[str, Array], dtypes: Mapping[str, str] | None = None) -> None:
    """Load arrays into a MindSpore cell by parameter name; every parameter must be given.

    Raises:
        ConversionError: a name is missing or unknown, or a shape differs; all problems are listed.
    """
    params = dict(cell.parameters_and_names())
    problems = _name_problems(params.keys(), arrays.keys(), optional=set())
    updates = []
    for name, param in params.items():
        if name not in arrays:
            continue
        array = np.asarray(arrays[name])
        if tuple(array.shape) != tuple(param.shape):
            problems.append(f"{name}: shape {list(array.shape)}, the cell expects {list(param.shape)}")
            continue
        updates.append((param, _numpy_to_ms(array, (dtypes or {}).get(name), param.dtype)))
    _raise_if(problems, "MindSpore cell")
    for param, tensor in updates:
        param.set_data(tensor)


def run_torch(module: Any, inputs: Sequence[Any]) -> list[Array]:
    """Run a torch module in eval mode without gradients; outputs flattened to float64 arrays."""
    import torch

    module.eval()
    with torch.no_grad():
        args = [torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x for x in inputs]
        return flatten_outputs(module(*args))


def run_mindspore(cell: Any, inputs: Sequence[Any]) -> list[Array]:
    """Run a MindSpore cell in eval mode (PyNative, CPU); outputs flattened to float64 arrays."""
    import mindspore

    with _pynative():
        cell.set_train(False)
        args = [mindspore.Tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x for x in inputs]
        return flatten_outputs(cell(*args))


def flatten_outputs(value: Any) -> list[Array]:
    """Nested tuples/lists/dicts of tensors -> a flat list of float64 numpy arrays, in a stable order."""
    if isinstance(value, Mapping):
        return [a for key in sorted(value) for a in flatten_outputs(value[key])]
    if isinstance(value, list | tuple):
        return [a for item in value for a in flatten_outputs(item)]
    if hasattr(value, "detach"):  # torch.Tensor
        return [value.detach().float().cpu().numpy().astype(np.float64)]
    if hasattr(value, "asnumpy"):  # mindspore.Tensor
        import mindspore

        return [value.astype(mindspore.float32).asnumpy().astype(np.float64)]
    if isinstance(value, np.ndarray):
        return [value.astype(np.float64)]
    if value is None:
        return []
    return [np.asarray(value, dtype=np.float64)]


def compare_outputs(
    reference: Sequence[Array], candidate: Sequence[Array], *, rtol: float = 1e-4, atol: float = 1e-5
) -> OutputComparison:
    """Compare two flattened output lists elementwise (`|a - b| <= atol + rtol * |a|`)."""
    detail = []
    passed = len(reference) == len(candidate)
    if not passed:
        detail.append(f"the networks return {len(reference)} and {len(candidate)} outputs")
    max_abs = max_rel = 0.0
    for number, (a, b) in enumerate(zip(reference, candidate, strict=False)):
        if a.shape != b.shape:
            detail.append(f"output {number}: shapes {list(a.shape)} and {list(b.shape)} differ")
            passed, max_abs, max_rel = False, float("inf"), float("inf")
            continue
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        rel = diff / scale if scale > 0 else diff
        ok = bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(a))) and bool(np.all(np.isfinite(b)))
        passed = passed and ok
        max_abs, max_rel = max(max_abs, diff), max(max_rel, rel)
        detail.append(f"output {number} {list(a.shape)}: max abs diff {diff:.3g}, max rel diff {rel:.3g}")
    return OutputComparison(max_abs, max_rel, passed, tuple(detail))


@contextlib.contextmanager
def _pynative() -> Iterator[None]:
    import mindspore

    previous = mindspore.get_context("mode")
    if previous != mindspore.PYNATIVE_MODE:
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    try:
        yield
    finally:
        if previous != mindspore.PYNATIVE_MODE:
            mindspore.set_context(mode=previous)


def _name_problems(expected: Any, given: Any, *, optional: set[str]) -> list[str]:
    expected, given = set(expected), set(given)
    problems = [f"{n}: no value given" for n in sorted(expected - given - optional)]
    problems += [f"{n}: not a parameter of the network" for n in sorted(given - expected)]
    return problems


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... ({len(problems)} problems)" if len(problems) > 10 else "")
        msg = f"cannot load the weights into the {what}: {shown}"
        raise ConversionError(msg)


def _ms_to_numpy(param: Any) -> Array:
    from automap.dtypes import get_dtype

    name = _MS_NAMES.get(str(param.dtype))
    if name is None:
        msg = f"{param.name}: MindSpore dtype {param.dtype} is not supported"
        raise ConversionError(msg)
    dtype = get_dtype(name)
    if dtype.numpy_native:
        return np.asarray(param.asnumpy())
    raw = param.get_bytes()
    return np.frombuffer(bytes(raw), dtype=dtype.storage).reshape(tuple(param.shape))


def _numpy_to_ms(array: Array, dtype_name: str | None, like: Any) -> Any:
    import mindspore
    from mindspore._c_expression import TensorPy

    from automap.dtypes import get_dtype

    target = _MS_NAMES.get(str(like))
    name = dtype_name or target
    if name is None:
        msg = f"MindSpore dtype {like} is not supported"
        raise ConversionError(msg)
    if get_dtype(name).numpy_native:
        tensor = mindspore.Tensor(np.ascontiguousarray(array))
    else:
        ms_type = getattr(mindspore, name)
        tensor = mindspore.Tensor(
            TensorPy.convert_bytes_to_tensor(np.ascontiguousarray(array).tobytes(), array.shape, ms_type)
        )
    return tensor if str(tensor.dtype) == str(like) else tensor.astype(like)


_MS_NAMES = {
    "Float64": "float64",
    "Float32": "float32",
    "Float16": "float16",
    "BFloat16": "bfloat16",
    "Float8E4M3FN": "float8_e4m3fn",
    "Float8E5M2": "float8_e5m2",
    "Int64": "int64",
    "Int32": "int32",
    "Int16": "int16",
    "Int8": "int8",
    "UInt64": "uint64",
    "UInt32": "uint32",
    "UInt16": "uint16",
    "UInt8": "uint8",
    "Bool": "bool",
}
