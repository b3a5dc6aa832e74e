"""Read and write `.safetensors` files (PyTorch's and MindSpore's flavour) without any framework.

The header is parsed and checked here, before any tensor is touched: every declared size must fit the real
file, offsets must tile the data region exactly, and tensors are mapped lazily from disk. Writing streams one
tensor at a time, so memory stays bounded by the largest tensor. Sharded checkpoints are read through their
`*.index.json`, whose shard paths must stay inside the index's folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from automap._atomic import atomic_output
from automap._errors import CheckpointFormatError
from automap._json import loads
from automap._text import brief, shown
from automap._types import Array, Framework, StrPath
from automap.dtypes import dtype_from_safetensors, get_dtype
from automap.records import ParamRecord, ParamTable

from ._copy import write_bytes
from ._framework import build_table, guess_framework
from ._mapped import MappedFile
from ._sniff import open_regular

__all__ = ["read", "read_index", "write", "write_to"]

_MAX_HEADER = 100 * 1024 * 1024  # the limit the reference implementation enforces
_ALIGN = 8


def read(path: StrPath, *, framework: Framework | None = None) -> ParamTable:
    """Read a single `.safetensors` file; tensors are mapped from disk only when read."""
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


def read_index(path: StrPath, index: dict[str, Any], *, framework: Framework | None = None) -> ParamTable:
    """Read a sharded checkpoint from its parsed `*.index.json`."""
    file = Path(path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        msg = f"{str(file)!r}: 'weight_map' must map parameter names to shard file names"
        raise CheckpointFormatError(msg)
    folder = file.parent.resolve()
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(shard, []).append(name)
    records: list[tuple[str, tuple[int, ...], str, Callable[[], Array]]] = []
    flavours: set[str] = set()
    for shard in sorted(shards):
        shard_path = _inside(folder, shard, file)
        entries, metadata, data_start = _parse(shard_path)
        if metadata and metadata.get("format"):
            flavours.add(metadata["format"])
        found = {e.name for e in entries}
        missing = [n for n in shards[shard] if n not in found]
        if missing:
            msg = f"{str(file)!r}: {missing[0]!r} is listed in shard {shard!r} but that shard does not contain it"
            raise CheckpointFormatError(msg)
        buffer = MappedFile(shard_path)
        wanted = set(shards[shard])
        records.extend(
            (e.name, e.shape, e.dtype, buffer.loader(data_start + e.begin, e.dtype, e.shape))
            for e in sorted(entries, key=lambda e: e.begin)
            if e.name in wanted
        )
    if framework is None:
        flavour_metadata = {"format": "ms"} if flavours == {"ms"} else None
        framework = _framework_from_metadata(flavour_metadata, [r[0] for r in records])
    notes = [f"sharded: {len(shards)} shard file(s) listed in {file.name}"]
    return build_table(framework, str(file), records, notes, "safetensors-sharded")


def write(records: Sequence[ParamRecord], path: StrPath, *, framework: Framework, overwrite: bool = False) -> None:
    """Write records to one `.safetensors` file, streaming tensor data in the records' order.

    MindSpore's flavour carries the metadata `{"format": "ms"}`, PyTorch's `{"format": "pt"}`.
    """
    with atomic_output(path, overwrite=overwrite) as handle:
        write_to(handle, records, framework=framework)


def write_to(handle: BinaryIO, records: Sequence[ParamRecord], *, framework: Framework) -> None:
    """Write records as `.safetensors` into an open binary file, one tensor at a time (see `write`)."""
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
        detail = "nested too deeply" if isinstance(error, RecursionError) else _first_line(error)
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
    entries = [_entry(where, name, info) for name, info in header.items()]
    spans = sorted((e.begin, e.begin + _nbytes(e), e.name) for e in entries)
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


def _first_line(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:160]


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


def _inside(folder: Path, shard: str, index_file: Path) -> Path:
    """Resolve a shard name from an index, refusing anything that leaves the index's folder."""
    where = f"{str(index_file)!r}: shard path {shown(shard)}"
    if not shard or "\0" in shard or len(shard) > 4096:
        msg = f"{where} is not a usable file name; the index is corrupt"
        raise CheckpointFormatError(msg)
    try:
        candidate = (folder / shard).resolve()
        if Path(shard).is_absolute() or not candidate.is_relative_to(folder):
            msg = f"{where} points outside the index's folder; refused"
            raise CheckpointFormatError(msg)
        if candidate == folder:
            msg = f"{where} names the index's folder, not a file; the index is corrupt"
            raise CheckpointFormatError(msg)
        exists = candidate.exists()
    except (OSError, RuntimeError) as error:  # a name too long, a symlink loop (RuntimeError before Python 3.13)
        msg = f"{where} cannot be opened: {getattr(error, 'strerror', None) or error}"
        raise CheckpointFormatError(msg) from None
    if not exists:
        msg = f"{str(index_file)!r}: shard {shown(shard)} is missing; put it beside the index file"
        raise CheckpointFormatError(msg)
    return candidate


def _framework_from_metadata(metadata: dict[str, str] | None, names: list[str]) -> Framework:
    if metadata and metadata.get("format") == "ms":
        return "mindspore"
    if metadata and metadata.get("format") == "pt":
        return "pytorch"
    return guess_framework(names)
