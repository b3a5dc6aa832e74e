"""One read-only memory map of a checkpoint file, shared by the loaders of all its tensors.

Readers that know where each tensor's bytes lie (safetensors, torch's zip format) hand out loaders that return
zero-copy views of this map, so listing a file reads no tensor data and reading a tensor touches only its pages.
The map is opened on the first read, and stays open while any view or loader holds it.
"""

from __future__ import annotations

import functools
import math
import mmap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from automap._errors import CheckpointFormatError
from automap._types import Array
from automap.dtypes import get_dtype

__all__ = ["MappedFile"]


class MappedFile:
    """Loaders of arrays lying in one file, read through a single shared memory map."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None

    def loader(self, start: int, dtype: str, shape: tuple[int, ...]) -> Callable[[], Array]:
        """A loader of the C-ordered array of `shape` whose bytes begin at `start`."""
        storage = _storage(dtype)
        count = math.prod(shape)

        def load() -> Array:
            return np.frombuffer(self._buffer(), dtype=storage, count=count, offset=start).reshape(shape)

        return load

    def strided_loader(
        self, start: int, dtype: str, shape: tuple[int, ...], stride: tuple[int, ...], span: int
    ) -> Callable[[], Array]:
        """A loader of a strided layout (strides in elements) within the `span` elements from `start`, made C-ordered.

        The caller has checked that every element the strides reach lies within the span.
        """
        storage = _storage(dtype)
        steps = tuple(s * storage.itemsize for s in stride)

        def load() -> Array:
            base = np.frombuffer(self._buffer(), dtype=storage, count=span, offset=start)
            return np.ascontiguousarray(np.lib.stride_tricks.as_strided(base, shape, steps, writeable=False))

        return load

    def _buffer(self) -> mmap.mmap:
        if self._map is None:
            try:
                with self.path.open("rb") as handle:
                    self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as error:
                msg = f"{str(self.path)!r}: cannot map the file for reading: {error}"
                raise CheckpointFormatError(msg) from None
        return self._map


@functools.cache
def _storage(dtype: str) -> np.dtype[Any]:
    """The numpy dtype a dtype's data is read as (made once per dtype: a checkpoint may hold 100k tensors)."""
    return np.dtype(get_dtype(dtype).storage)
