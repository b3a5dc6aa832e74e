"""Read and write `.safetensors` files (PyTorch's and MindSpore's flavour) without any framework.

The header is parsed and checked here, before any tensor is touched: every declared size must fit the real
file, offsets must tile the data region exactly, and tensors are mapped lazily from disk. Writing streams one
tensor at a time, so memory stays bounded by the largest tensor. Sharded checkpoints are read through their
`*.index.json` by `automap.io.sharded`, shard by shard.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from automap._errors import CheckpointFormatError
from automap._json import loads
from automap._text import brief, first_line, shown
from automap._types import Framework, StrPath
from automap.dtypes import DType, dtype_from_safetensors, get_dtype
from automap.records import ParamRecord, ParamTable

from ._copy import write_bytes
from ._framework import build_table, guess_framework
from ._mapped import MappedFile
from ._sniff import open_regular

__all__ = ["read", "write_to"]

_MAX_HEADER = 100 * 1024 * 1024  # the limit the reference implementation enforces
_ALIGN = 8


def read(path: StrPath, *, framework: Framework | None = None, **_: object) -> ParamTable:
    """Read a single `.safetensors` file; tensors are mapped from disk only when read (other options are ignored)."""
    file = Path(path)
    entries, metadata, data_start = _parse(file)
    if framework is None:
        framework = _framework_from_metadata(metadata, [e.name for e in entries])
    buffer = MappedFile(file)
    records = [
        (e.name, e.shape, e.dtype, buffer.loader(data_start + e.begin, e.dtype, e.shape))
        for e in sorted(entries, key=lambda e: e.begin)
    ]
    notes = []
    flavour = metadata.get("format") if metadata else None
    if flavour:
        notes.append(f"safetensors metadata format={brief(flavour)}")
    return build_table(framework, str(file), records, notes, "safetensors")


def write_to(handle: BinaryIO, records: Sequence[ParamRecord], *, framework: Framework, **_: object) -> None:
    """Write records as `.safetensors` into an open binary file, streaming tensor data in the records' order.

    MindSpore's flavour carries the metadata `{"format": "ms"}`, PyTorch's `{"format": "pt"}`.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "ms" if framework == "mindspore" else "pt"}}
    offset = 0
    for record in records:
        size = record.nbytes
        header[record.name] = {
            "dtype": get_dtype(record.dtype).safetensors,
            "shape": list(record.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % _ALIGN)
    handle.write(len(encoded).to_bytes(8, "little"))
    handle.write(encoded)
    for record in records:
        _write_array(handle, record)


def _write_array(handle: BinaryIO, record: ParamRecord) -> None:
    write_bytes(handle, np.ascontiguousarray(record.read()))  # copied file to file when it is a mapped view


class _Entry:
    __slots__ = ("begin", "dtype", "name", "shape")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], begin: int) -> None:
        self.name, self.dtype, self.shape, self.begin = name, dtype, shape, begin


def _parse(path: Path) -> tuple[list[_Entry], dict[str, str] | None, int]:
    """Parse and validate a safetensors header; return entries, metadata and where data begins."""
    size = open_regular(path)
    where = f"{str(path)!r}"
    if size < 8:
        msg = f"{where}: truncated safetensors file ({size} bytes; the 8-byte header length is incomplete)"
        raise CheckpointFormatError(msg)
    with path.open("rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len > _MAX_HEADER:
            msg = f"{where}: safetensors header claims {header_len} bytes (limit {_MAX_HEADER}); the file is corrupt"
            raise CheckpointFormatError(msg)
        if header_len > size - 8:
            msg = f"{where}: safetensors header claims {header_len} bytes but the file has {size}; it is truncated"
            raise CheckpointFormatError(msg)
        raw = handle.read(header_len)
    try:
        header = loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        detail = (
            "nested too deeply"
            if isinstance(error, RecursionError)
            else first_line(f"{type(error).__name__}: {error}", 160)
        )
        msg = f"{where}: safetensors header is not valid UTF-8 JSON ({detail}); the file is corrupt"
        raise CheckpointFormatError(msg) from None
    if not isinstance(header, dict):
        msg = f"{where}: safetensors header must be a JSON object"
        raise CheckpointFormatError(msg)
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        msg = f"{where}: safetensors __metadata__ must map strings to strings"
        raise CheckpointFormatError(msg)
    data_start = 8 + header_len
    data_len = size - data_start
    checked = _entries(header)
    if checked is None:  # something is wrong: the checks entry by entry say what
        entries = [_entry(where, name, info) for name, info in header.items()]
        spans = sorted((e.begin, e.begin + _nbytes(e), e.name) for e in entries)
    else:
        entries, spans = checked
    cursor = 0
    for begin, end, name in spans:
        if begin != cursor:
            problem = "overlaps the previous tensor" if begin < cursor else "leaves a gap before it"
            msg = f"{where}: tensor {shown(name)} at byte {begin} {problem}; the file is corrupt"
            raise CheckpointFormatError(msg)
        cursor = end
    if cursor > data_len:
        msg = f"{where}: tensors need {cursor} bytes of data but the file holds {data_len}; it is truncated"
        raise CheckpointFormatError(msg)
    return entries, metadata, data_start


def _entries(header: dict[str, Any]) -> tuple[list[_Entry], list[tuple[int, int, str]]] | None:
    """Every tensor's entry and its sorted byte span, in one pass; None if any entry is wrong.

    Equal shapes share one tuple, and each distinct shape and dtype is sized once.
    """
    dtypes: dict[str, DType] = {}
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
    sizes: dict[tuple[tuple[int, ...], str], int] = {}
    entries: list[_Entry] = []
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if type(info) is not dict:
            return None
        code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(code, str):
            return None
        dtype = dtypes.get(code)
        if dtype is None:
            found = dtype_from_safetensors(code)
            if found is None:
                return None
            dtype = dtypes[code] = found
        if type(shape) is not list or type(offsets) is not list or len(offsets) != 2:
            return None
        for dim in shape:
            if type(dim) is not int or dim < 0:
                return None
        begin, end = offsets
        if type(begin) is not int or type(end) is not int or begin < 0 or end < 0:
            return None
        key = tuple(shape)
        shape_tuple = shapes.setdefault(key, key)
        size = sizes.get((shape_tuple, dtype.name))
        if size is None:
            size = sizes[(shape_tuple, dtype.name)] = math.prod(shape_tuple) * dtype.itemsize
        if end - begin != size:
            return None
        entries.append(_Entry(name, dtype.name, shape_tuple, begin))
        spans.append((begin, end, name))
    spans.sort()
    return entries, spans


def _entry(where: str, name: str, info: Any) -> _Entry:
    if not isinstance(info, dict):
        msg = f"{where}: header entry {shown(name)} is not an object"
        raise CheckpointFormatError(msg)
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    dtype = dtype_from_safetensors(code) if isinstance(code, str) else None
    if dtype is None:
        msg = f"{where}: tensor {shown(name)} has unsupported dtype {brief(code)}"
        raise CheckpointFormatError(msg)
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        msg = f"{where}: tensor {shown(name)} has an invalid shape {brief(shape)}"
        raise CheckpointFormatError(msg)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
        msg = f"{where}: tensor {shown(name)} has invalid data_offsets {brief(offsets)}"
        raise CheckpointFormatError(msg)
    entry = _Entry(name, dtype.name, tuple(shape), offsets[0])
    if offsets[1] - offsets[0] != _nbytes(entry):
        msg = (
            f"{where}: tensor {shown(name)} declares {offsets[1] - offsets[0]} bytes but {dtype.name}{shape} "
            f"needs {_nbytes(entry)}; the file is corrupt"
        )
        raise CheckpointFormatError(msg)
    return entry


def _nbytes(entry: _Entry) -> int:
    return math.prod(entry.shape) * get_dtype(entry.dtype).itemsize


def _framework_from_metadata(metadata: dict[str, str] | None, names: list[str]) -> Framework:
    if metadata and metadata.get("format") == "ms":
        return "mindspore"
    if metadata and metadata.get("format") == "pt":
        return "pytorch"
    return guess_framework(names)
