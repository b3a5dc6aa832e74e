"""The dtype table agrees with how torch, safetensors and MindSpore themselves spell and size each type."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from automap import CheckpointFormatError
from automap.dtypes import all_dtype_names, dtype_from_mindspore, dtype_from_numpy, dtype_from_safetensors, get_dtype

NAMES = all_dtype_names()


def test_every_documented_dtype_is_supported() -> None:
    documented = {
        "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
    }  # fmt: skip
    assert set(NAMES) == documented


@pytest.mark.parametrize("name", NAMES)
def test_size_and_torch_spelling(name: str) -> None:
    dtype = get_dtype(name)
    reference = getattr(torch, name)
    assert torch.empty((), dtype=reference).element_size() == dtype.itemsize
    assert dtype.is_float == reference.is_floating_point


@pytest.mark.parametrize("name", NAMES)
def test_safetensors_spelling(name: str) -> None:
    dtype = get_dtype(name)
    assert safetensors.torch._TYPES[dtype.safetensors] == getattr(torch, name)
    assert dtype_from_safetensors(dtype.safetensors) is dtype


@pytest.mark.mindspore
@pytest.mark.parametrize("name", NAMES)
def test_mindspore_spelling(name: str, mindspore_cpu: Any) -> None:
    """save_checkpoint writes `str(tensor.dtype)` as the tensor_type of a .ckpt."""
    dtype = get_dtype(name)
    assert str(getattr(mindspore_cpu, "bool_" if name == "bool" else name)) == dtype.mindspore
    assert dtype_from_mindspore(dtype.mindspore) is dtype


@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_types_numpy_lacks_travel_as_bits(name: str) -> None:
    dtype = get_dtype(name)
    assert not dtype.numpy_native
    assert np.dtype(dtype.storage).kind == "u"
    assert dtype_from_numpy(np.dtype(dtype.storage)).name != name  # plain uint arrays stay uint


@pytest.mark.parametrize(
    ("numpy_dtype", "name"),
    [("<f4", "float32"), (">f4", "float32"), (">i8", "int64"), ("?", "bool"), ("u1", "uint8"), ("<u2", "uint16")],
)
def test_dtype_from_numpy(numpy_dtype: str, name: str) -> None:
    found = dtype_from_numpy(np.dtype(numpy_dtype))
    assert found is not None
    assert found.name == name


def test_unknown_dtypes() -> None:
    with pytest.raises(CheckpointFormatError, match=r"unsupported dtype 'complex64'; supported: float64, .*bool"):
        get_dtype("complex64")
    assert dtype_from_safetensors("C64") is None
    assert dtype_from_mindspore("Complex64") is None
    assert dtype_from_numpy(np.dtype("complex64")) is None
