"""The MindSpore backend: a `mindspore.nn.Cell`'s parameters, cell tree, hooks and runs, in PyNative mode.

Parameters are `parameters_and_names` by their path in the cell tree; a checkpoint stores each under the
parameter's own name. Parameter use is traced by watching parameter attributes being read from cells, for
the time of one run. Networks run in PyNative mode (the previous mode is restored after), since hooks and
tracing need Python to run each cell. Imported only when the backend is first needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import mindspore
import numpy as np
from mindspore import nn
from mindspore._c_expression import TensorPy

from automap._types import Array, Framework
from automap.dtypes import dtype_from_mindspore, get_dtype
from automap.io.mindspore import storage_of

from . import Backend

__all__ = ["BACKEND", "MindSporeBackend"]

_WIDENED = (mindspore.float16, mindspore.bfloat16, mindspore.float64)  # computed with as float32


class MindSporeBackend(Backend):
    """`mindspore.nn.Cell`s, `mindspore.Tensor`s and `mindspore.Parameter`s."""

    framework: ClassVar[Framework] = "mindspore"
    title: ClassVar[str] = "MindSpore"
    unit: ClassVar[str] = "cell"
    network: ClassVar[str] = "MindSpore cell"
    body: ClassVar[str] = "construct"
    int32_retry: ClassVar[bool] = True

    def is_model(self, value: object) -> bool:
        return isinstance(value, nn.Cell)

    def is_tensor(self, value: object) -> bool:
        return isinstance(value, mindspore.Tensor)

    def parameters(self, model: Any) -> dict[str, Any]:
        return dict(model.parameters_and_names())

    def modules(self, model: Any) -> dict[str, Any]:
        return dict(model.cells_and_names())

    def checkpoint_name(self, name: str, tensor: Any) -> str:
        return str(tensor.name)

    def dtype(self, tensor: Any) -> str | None:
        found = dtype_from_mindspore(str(tensor.dtype))
        return found.name if found is not None else None

    def values(self, tensor: Any) -> Array:
        if tensor.dtype in _WIDENED:
            return np.array(tensor.astype(mindspore.float32).asnumpy(), copy=True)
        array = np.array(tensor.asnumpy(), copy=True)
        return array if array.dtype == np.float32 else array.astype(np.float64)

    def storage(self, tensor: Any) -> Array:
        return storage_of(tensor)[1]

    def tensor(self, array: Array, dtype: str, like: Any) -> Any:
        contiguous = np.ascontiguousarray(array)
        if get_dtype(dtype).numpy_native:
            made = mindspore.Tensor(contiguous)
        else:
            bits = TensorPy.convert_bytes_to_tensor(contiguous.tobytes(), contiguous.shape, getattr(mindspore, dtype))
            made = mindspore.Tensor(bits)
        return made if str(made.dtype) == str(like.dtype) else made.astype(like.dtype)

    def assign(self, updates: Sequence[tuple[Any, Any]]) -> None:
        for param, tensor in updates:
            param.set_data(tensor)

    def like(self, array: Array, like: Any) -> Any:
        made = mindspore.Tensor(np.ascontiguousarray(array))
        return made if made.dtype == like.dtype else made.astype(like.dtype)

    def run(
        self,
        model: Any,
        inputs: Sequence[object],
        *,
        keywords: Mapping[str, object] | None = None,
        uses: Callable[[object], None] | None = None,
    ) -> object:
        original = nn.Cell.__getattr__

        def reading(cell: Any, name: str) -> Any:
            value = original(cell, name)
            if uses is not None:
                uses(value)
            return value

        was_training = bool(getattr(model, "training", False))
        try:
            with _pynative():
                model.set_train(False)
                args = [_tensor(x) for x in inputs]
                kwargs = {k: _tensor(v) for k, v in (keywords or {}).items()}
                if uses is not None:
                    nn.Cell.__getattr__ = reading  # restored below
                try:
                    return model(*args, **kwargs)
                finally:
                    nn.Cell.__getattr__ = original
        finally:
            model.set_train(was_training)

    def call(self, model: Any, module: Any, args: tuple[object, ...], kwargs: Mapping[str, object]) -> object:
        was_training = bool(getattr(model, "training", False))
        try:
            with _pynative():
                model.set_train(False)
                return module(*args, **kwargs)
        finally:
            model.set_train(was_training)


def _tensor(value: object) -> object:
    return mindspore.Tensor(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value


@contextlib.contextmanager
def _pynative() -> Iterator[None]:
    """PyNative mode for the time of a run, the previous mode restored after."""
    previous = mindspore.get_context("mode")
    if previous != mindspore.PYNATIVE_MODE:
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    try:
        yield
    finally:
        if previous != mindspore.PYNATIVE_MODE:
            mindspore.set_context(mode=previous)


BACKEND = MindSporeBackend()
