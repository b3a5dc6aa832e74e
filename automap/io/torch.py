"""Read PyTorch checkpoints (`.pth`, `.pt`, `.bin`) through `torch.load(weights_only=True)`; move tensors to numpy.

Code from a checkpoint never runs: torch's restricted unpickler allows tensors and plain containers only, and
the full unpickler is reachable only through the loudly named `unsafe_pickle` opt-in. Checkpoints in torch's
zip format are memory-mapped, so listing one reads no tensor data. Plain state dicts in the zip format are
usually read without torch (`automap.io.torch_zip_reader`); this module reads everything else, and gives the
definitive answer, and message, for any file that reader declines. Which state dict to take from a container
is decided in `automap.io._state_dict`, for both readers alike.

Zip entries must be stored uncompressed, as torch.save writes them (a compressed entry could inflate without
bound).
"""

from __future__ import annotations

import pickle
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automap._advice import option
from automap._errors import CheckpointFormatError, UnsafeCheckpointError
from automap._text import first_line, shown
from automap._types import Array, StrPath
from automap.dtypes import get_dtype
from automap.records import ParamTable

from ._sniff import open_regular
from ._state_dict import Described, state_dict_table
from .torch_zip_reader import torchscript_error, zip_entries

__all__ = ["read", "to_numpy", "to_torch"]

_TORCH_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "float64",
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float8_e4m3fn: "float8_e4m3fn",
    torch.float8_e5m2: "float8_e5m2",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint64: "uint64",
    torch.uint32: "uint32",
    torch.uint16: "uint16",
    torch.uint8: "uint8",
    torch.bool: "bool",
}
_FROM_NAME = {name: dtype for dtype, name in _TORCH_DTYPES.items()}
# Signed twins used to move bits between numpy and torch, which lack some unsigned/float8 conversions.
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def read(path: StrPath, *, key: str | None = None, unsafe_pickle: bool = False) -> ParamTable:
    """Read a PyTorch checkpoint; tensors of zip-format files stay memory-mapped until read.

    Args:
        path: the file.
        key: which state dict to take when the file holds several (`"model"`, or a nested path `"a/b"`).
        unsafe_pickle: allow arbitrary pickled objects. This RUNS CODE FROM THE FILE; only for files you trust.

    Raises:
        UnsafeCheckpointError: the file needs code execution to load and `unsafe_pickle` is off.
        CheckpointFormatError: the file is corrupt, or no unique state dict can be found.
    """
    file = Path(path)
    size = open_regular(file)
    obj, in_memory = _load(file, unsafe_pickle)
    if unsafe_pickle and isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    notes = [f"tensor data was read into memory at load: {in_memory}"] if in_memory else []
    return state_dict_table(file, size, obj, key, is_tensor=_is_tensor, describe=_describe, notes=notes)


def to_torch(array: Array, dtype: str) -> torch.Tensor:
    """A torch tensor with the exact bits of a storage array."""
    target = _FROM_NAME[dtype]
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")  # torch.from_numpy warns on read-only memory
    if dtype == "bool":
        return torch.from_numpy(array)
    container = np.dtype(np.uint8) if array.dtype.itemsize == 1 else np.dtype(f"<i{array.dtype.itemsize}")
    return torch.from_numpy(array.view(container)).view(target)


def to_numpy(tensor: torch.Tensor) -> Array:
    """The storage array (raw bits for bfloat16/float8) of a tensor."""
    name = _TORCH_DTYPES[tensor.dtype]
    tensor = tensor.detach().cpu().contiguous()
    storage = np.dtype(get_dtype(name).storage)
    if tensor.dtype == torch.bool:
        return tensor.numpy()
    return tensor.view(_BITS[storage.itemsize]).numpy().view(storage)


def _load(file: Path, unsafe_pickle: bool) -> tuple[Any, str | None]:
    """The unpickled object, and why its tensors were read into memory (None: they stay memory-mapped)."""
    if unsafe_pickle:
        print(
            f"automap: WARNING: unpickling {file} with code execution ENABLED ({option('unsafe_pickle')}); "
            "only do this for files you trust",
            file=sys.stderr,
        )
    # Only the zip format can be memory-mapped; the legacy format is read into memory.
    mapped = zip_entries(file) is not None
    try:
        with warnings.catch_warnings():
            # torch warns about odd pickle protocols before failing on a corrupt file; the error says enough.
            warnings.simplefilter("ignore", UserWarning)
            if str(file).endswith(".safetensors"):
                # torch.load hands a path with this ending to safetensors; an open file keeps it on torch's
                # reader (memory-mapping needs the path, so this misnamed file is read into memory).
                with file.open("rb") as handle:
                    obj = torch.load(handle, map_location="cpu", weights_only=not unsafe_pickle)
                return obj, "its name ends in .safetensors, so torch reads it through an open file"
            obj = torch.load(file, map_location="cpu", weights_only=not unsafe_pickle, mmap=mapped)
            return obj, None if mapped else "legacy (non-zip) PyTorch format, which cannot be memory-mapped"
    except pickle.UnpicklingError as error:
        text = str(error)
        # torch prefixes every failure of its restricted unpickler with "Weights only load failed", a corrupt
        # pickle included; only these messages mean the file asks for code or objects beyond tensors.
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", text) or re.search(
            r"(unrecognized function [^\s,]+|new object for .*? but got [^\s,]+|"
            r"Can only build .*? but got [^\s,]+|Unsupported class [\w.]+)",
            text,
        )
        if found:
            what = f"it references {found.group(1)}"
            msg = (
                f"{str(file)!r} refused: loading it would run code from the file ({what}). automap loads tensors "
                "only; re-save the weights as a state dict (torch.save(model.state_dict(), ...)), or, only if you "
                f"trust the file completely, pass {option('unsafe_pickle')}"
            )
            raise UnsafeCheckpointError(msg) from None
        msg = f"{str(file)!r}: not a readable PyTorch checkpoint ({_unpickler_detail(text)}); the file is corrupt"
        raise CheckpointFormatError(msg) from None
    except Exception as error:  # torch's parsers raise many kinds (struct.error, AssertionError, ...) on bad bytes
        if "TorchScript" in str(error):
            raise torchscript_error(file) from None
        msg = (
            f"{str(file)!r}: not a readable PyTorch checkpoint ({type(error).__name__}: {first_line(str(error))}); "
            "the file is truncated or corrupt"
        )
        raise CheckpointFormatError(msg) from None


def _unpickler_detail(text: str) -> str:
    """The restricted unpickler's own complaint, without the advice torch wraps around it."""
    tail = text.split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation"))]
    return first_line(useful[0] if useful else text)


def _dtype_name(file: Path, name: str, tensor: torch.Tensor) -> str:
    if tensor.layout != torch.strided or tensor.is_quantized:
        kind = "quantized" if tensor.is_quantized else f"a {str(tensor.layout).removeprefix('torch.')} tensor"
        msg = (
            f"{str(file)!r}: tensor {shown(name)} is {kind}; automap handles dense tensors only "
            "(convert it with .to_dense() or .dequantize() and save again)"
        )
        raise CheckpointFormatError(msg)
    dtype = _TORCH_DTYPES.get(tensor.dtype)
    if dtype is None:
        msg = f"{str(file)!r}: tensor {shown(name)} has dtype {tensor.dtype}, which automap does not support"
        raise CheckpointFormatError(msg)
    return dtype


def _is_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor)


def _describe(file: Path, name: str, tensor: torch.Tensor) -> Described:
    dtype = _dtype_name(file, name, tensor)
    nbytes = tensor.numel() * tensor.element_size()
    return tuple(tensor.shape), dtype, tuple(tensor.stride()), nbytes, lambda: to_numpy(tensor)
