"""The element types automap carries, and how each framework and file format spells them.

Arrays travel as numpy arrays of a *storage* dtype. numpy has no bfloat16 or float8, so those travel as their
raw bits (uint16 / uint8) next to the dtype's name: every copy, transpose, split and write keeps them
bit-exact, and only an explicit cast ever interprets them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._errors import CheckpointFormatError

__all__ = [
    "DType",
    "all_dtype_names",
    "dtype_from_mindspore",
    "dtype_from_numpy",
    "dtype_from_safetensors",
    "get_dtype",
]


@dataclass(frozen=True, slots=True)
class DType:
    """One element type with its spelling in every format automap reads or writes."""

    name: str  # canonical, as torch spells it: "bfloat16"
    storage: str  # numpy dtype holding the raw values or bits: "<u2"
    safetensors: str  # "BF16"
    mindspore: str  # tensor_type in a .ckpt: "BFloat16"
    is_float: bool

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return np.dtype(self.storage).itemsize

    @property
    def numpy_native(self) -> bool:
        """True when the storage dtype *is* the type (not a bit container for it)."""
        return self.name not in _BIT_CONTAINERS


_BIT_CONTAINERS = {"bfloat16", "float8_e4m3fn", "float8_e5m2"}

_TABLE = (
    DType("float64", "<f8", "F64", "Float64", True),
    DType("float32", "<f4", "F32", "Float32", True),
    DType("float16", "<f2", "F16", "Float16", True),
    DType("bfloat16", "<u2", "BF16", "BFloat16", True),
    DType("float8_e4m3fn", "u1", "F8_E4M3", "Float8E4M3FN", True),
    DType("float8_e5m2", "u1", "F8_E5M2", "Float8E5M2", True),
    DType("int64", "<i8", "I64", "Int64", False),
    DType("int32", "<i4", "I32", "Int32", False),
    DType("int16", "<i2", "I16", "Int16", False),
    DType("int8", "i1", "I8", "Int8", False),
    DType("uint64", "<u8", "U64", "UInt64", False),
    DType("uint32", "<u4", "U32", "UInt32", False),
    DType("uint16", "<u2", "U16", "UInt16", False),
    DType("uint8", "u1", "U8", "UInt8", False),
    DType("bool", "|b1", "BOOL", "Bool", False),
)

_BY_NAME = {d.name: d for d in _TABLE}
_BY_SAFETENSORS = {d.safetensors: d for d in _TABLE}
_BY_MINDSPORE = {d.mindspore: d for d in _TABLE}
_BY_NUMPY = {np.dtype(d.storage): d for d in _TABLE if d.numpy_native}


def get_dtype(name: str) -> DType:
    """Return the dtype called `name` ("float32", "bfloat16", ...).

    Raises:
        CheckpointFormatError: `name` is not a dtype automap supports.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        msg = f"unsupported dtype {name!r}; supported: {', '.join(_BY_NAME)}"
        raise CheckpointFormatError(msg) from None


def dtype_from_safetensors(code: str) -> DType | None:
    """The dtype for a safetensors header code ("F32", "BF16"), or None when unknown."""
    return _BY_SAFETENSORS.get(code)


def dtype_from_mindspore(code: str) -> DType | None:
    """The dtype for a MindSpore tensor_type ("Float32", "BFloat16"), or None when unknown."""
    return _BY_MINDSPORE.get(code)


def dtype_from_numpy(dtype: np.dtype[np.generic]) -> DType | None:
    """The dtype of a plain numpy array (never bfloat16/float8, which numpy lacks), or None."""
    return _BY_NUMPY.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)


def all_dtype_names() -> tuple[str, ...]:
    """Every dtype name automap supports, in a stable order."""
    return tuple(_BY_NAME)
