"""Run real networks of both frameworks: load weights into them, run them on the same inputs, compare.

This is where a mapping meets reality: `automap verify`, the benchmark zoo's ground-truth proofs and the
network-aware inference all load numpy weights into a `torch.nn.Module` or a `mindspore.nn.Cell`, run it in
eval mode and compare outputs. These functions are the public face of the frameworks' backends
(`automap.netaware._frameworks`); torch and MindSpore are imported only when they are called.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from automap._errors import AutomapError
from automap._types import Array

from ._frameworks import backend_of, get_backend, leaves

__all__ = [
    "OutputComparison",
    "compare_outputs",
    "flatten_outputs",
    "load_factory",
    "load_into_mindspore",
    "load_into_torch",
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


def torch_state(module: object) -> dict[str, Array]:
    """A torch module's state dict as storage arrays."""
    return get_backend("pytorch").state(module)


def load_into_torch(module: object, arrays: Mapping[str, Array], dtypes: Mapping[str, str] | None = None) -> None:
    """Load arrays into a torch module by name; every entry of its state dict must be given.

    Raises:
        ConversionError: a name is missing or unknown, or a shape differs; all problems are listed.
    """
    backend = get_backend("pytorch")
    backend.load(backend.parameters(module), arrays, dtypes, complete=True)


def load_into_mindspore(cell: object, arrays: Mapping[str, Array], dtypes: Mapping[str, str] | None = None) -> None:
    """Load arrays into a MindSpore cell by parameter name; every parameter must be given.

    Raises:
        ConversionError: a name is missing or unknown, or a shape differs; all problems are listed.
    """
    backend = get_backend("mindspore")
    backend.load(backend.parameters(cell), arrays, dtypes, complete=True)


def run_torch(module: object, inputs: Sequence[object]) -> list[Array]:
    """Run a torch module in eval mode without gradients; outputs flattened to float64 arrays."""
    return flatten_outputs(get_backend("pytorch").run(module, inputs))


def run_mindspore(cell: object, inputs: Sequence[object]) -> list[Array]:
    """Run a MindSpore cell in eval mode (PyNative); outputs flattened to float64 arrays."""
    return flatten_outputs(get_backend("mindspore").run(cell, inputs))


def flatten_outputs(value: object) -> list[Array]:
    """Nested tuples/lists/dicts of tensors -> a flat list of float64 numpy arrays, in a stable order.

    Tensors of either framework, numpy arrays and numbers are kept; None is left out.
    """
    out = []
    for leaf in leaves(value):
        if leaf is None:
            continue
        backend = backend_of(leaf)
        array = backend.values(leaf) if backend is not None else leaf
        out.append(np.asarray(array, dtype=np.float64))
    return out


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
