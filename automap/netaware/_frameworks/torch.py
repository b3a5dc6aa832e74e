"""The PyTorch backend: a `torch.nn.Module`'s state dict, module tree, hooks and runs.

Parameters are what `state_dict` names, persistent buffers included. Parameter use is traced with a
`TorchFunctionMode`, which sees every tensor handed to a torch function, so a bare `cls_token` used in
`forward` is caught as well as a layer's weight. Imported only when the backend is first needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from automap._types import Array, Framework
from automap.dtypes import all_dtype_names
from automap.io.torch import to_numpy, to_torch

from . import Backend

__all__ = ["BACKEND", "TorchBackend"]


class TorchBackend(Backend):
    """`torch.nn.Module`s and `torch.Tensor`s."""

    framework: ClassVar[Framework] = "pytorch"
    title: ClassVar[str] = "PyTorch"
    unit: ClassVar[str] = "module"
    network: ClassVar[str] = "torch module"
    body: ClassVar[str] = "forward"

    def is_model(self, value: object) -> bool:
        return isinstance(value, torch.nn.Module)

    def is_tensor(self, value: object) -> bool:
        return isinstance(value, torch.Tensor)

    def parameters(self, model: Any) -> dict[str, Any]:
        return dict(model.state_dict(keep_vars=True))

    def modules(self, model: Any) -> dict[str, Any]:
        # a parametrization (weight norm, orthogonal, ...) runs when its weight is read, not on the data: its
        # "output" is a weight, which no module of the other network computes
        return {n: m for n, m in model.named_modules() if ".parametrizations" not in f".{n}"}

    def optional(self, name: str) -> bool:
        return name.endswith("num_batches_tracked")

    def dtype(self, tensor: Any) -> str | None:
        name = str(tensor.dtype).removeprefix("torch.")
        return name if name in all_dtype_names() else None

    def values(self, tensor: Any) -> Array:
        found = tensor.detach().cpu()
        if found.is_floating_point():
            return np.array(found.float().numpy(), copy=True)
        return np.array(found.numpy(), dtype=np.float64)

    def storage(self, tensor: Any) -> Array:
        return to_numpy(tensor)

    def tensor(self, array: Array, dtype: str, like: Any) -> Any:
        made = to_torch(array, dtype)
        return made if made.dtype == like.dtype else made.to(like.dtype)

    def assign(self, updates: Sequence[tuple[Any, Any]]) -> None:
        with torch.no_grad():
            for current, tensor in updates:
                current.copy_(tensor)

    def like(self, array: Array, like: Any) -> Any:
        return torch.from_numpy(np.ascontiguousarray(array)).to(dtype=like.dtype, device=like.device)

    def run(
        self,
        model: Any,
        inputs: Sequence[object],
        *,
        keywords: Mapping[str, object] | None = None,
        uses: Callable[[object], None] | None = None,
    ) -> object:
        args = [_tensor(x) for x in inputs]
        kwargs = {k: _tensor(v) for k, v in (keywords or {}).items()}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if uses is None:
                    return model(*args, **kwargs)
                with _Uses(uses):
                    return model(*args, **kwargs)
        finally:
            model.train(was_training)

    def call(self, model: Any, module: Any, args: tuple[object, ...], kwargs: Mapping[str, object]) -> object:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return module(*args, **kwargs)
        finally:
            model.train(was_training)

    def copy_tensor(self, tensor: Any) -> Any:
        return tensor.detach().clone()  # the forward pass may change its tensors in place afterwards


def _tensor(value: object) -> object:
    return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value


class _Uses(TorchFunctionMode):
    """Tells `uses` about every tensor handed to a torch function."""

    def __init__(self, uses: Callable[[object], None]) -> None:
        super().__init__()
        self._uses = uses

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        for value in _arguments((args, kwargs)):
            self._uses(value)
        return func(*args, **(kwargs or {}))


def _arguments(value: object) -> Iterator[object]:
    """Every leaf of a torch function's (args, kwargs)."""
    if isinstance(value, list | tuple):
        for item in value:
            yield from _arguments(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _arguments(item)
    elif value is not None:
        yield value


BACKEND = TorchBackend()
