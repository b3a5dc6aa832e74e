"""Write PyTorch's zip checkpoint format one tensor at a time, laid out exactly as `torch.save` lays it out.

`torch.save(state_dict, f)` pickles the dict into `archive/data.pkl`, where every tensor is a call to
`torch._utils._rebuild_tensor_v2` (`_v3` with an explicit dtype for float8 and uint16/32/64) on a persistent
reference `("storage", <storage type>, key, "cpu", numel)`, and stores each storage's bytes as an uncompressed
zip entry `archive/data/<key>`. Its zip writer (miniz) pads every entry's local header with an extra field
("FB", then "Z" bytes) so that the data starts on a 64-byte boundary, writes a data descriptor (CRC-32 and
sizes) after each non-empty entry, and always ends with ZIP64 end records; ZIP64 fields appear in an entry
exactly when its size or offset reaches 4 GiB.

The pickle needs only names, shapes and dtypes, so it is written first; then each tensor is read, its CRC-32
computed, its bytes handed to `_copy.write_bytes` (which copies a mapped view file to file), and it is dropped
before the next one is read. Memory holds one tensor at most. Everything up to the `.data/serialization_id`
record, which is left out (torch derives it from hashes of the record names and reads it only for logging), is
byte-identical to `torch.save`'s output; the tests check this for every dtype.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zlib
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np
import torch

from automap.dtypes import get_dtype
from automap.records import ParamRecord

from ._copy import write_bytes

__all__ = ["write_zip"]

_ARCHIVE = "archive"  # the name torch.save gives the folder inside the zip when writing to a file object
_ALIGNMENT = 64
_FORMAT_VERSION = b"1"  # storages are keyed 0, 1, 2, ... in the order their data is written
_FILE_VERSION = b"3\n"
_PROTOCOL = 2  # torch.save's pickle protocol
_CHUNK = 64 * 1024 * 1024  # bytes per CRC call, whatever the tensor's size
_UINT32_MAX = 0xFFFFFFFF
_ZIP64_LIMIT = _UINT32_MAX  # sizes and offsets at or above this need ZIP64 fields (lowered by a test)

# Storage classes of the dtypes torch pickles with _rebuild_tensor_v2; the others go through _v3.
_TYPED_STORAGES = {
    "float64": "DoubleStorage",
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")
_FLAG_UTF8 = 0x0800
_FLAG_DESCRIPTOR = 0x0008


def write_zip(records: Sequence[ParamRecord], handle: BinaryIO) -> None:
    """Write `records` as the state dict `{name: tensor}` in torch's zip format, streaming their data.

    Args:
        records: parameters with data, written in this order.
        handle: a binary file open for writing, positioned at its start.
    """
    zip_file = _ZipWriter(handle)
    zip_file.add("data.pkl", [_pickle(records)])
    zip_file.add(".format_version", [_FORMAT_VERSION])
    zip_file.add(".storage_alignment", [str(_ALIGNMENT).encode()])
    zip_file.add("byteorder", [b"little"])  # automap's storage dtypes are little-endian on every host
    for key, record in enumerate(records):
        zip_file.add_tensor(f"data/{key}", record)
    zip_file.add("version", [_FILE_VERSION])
    zip_file.finish()


class _StorageRef:
    """Stands for a storage in the pickle; the pickler writes its persistent id instead of the object."""

    __slots__ = ("pid",)

    def __init__(self, pid: tuple[Any, ...]) -> None:
        self.pid = pid


class _TensorRef:
    """Stands for a tensor in the pickle: reduces to the call torch makes to rebuild it."""

    __slots__ = ("reduced",)

    def __init__(self, reduced: tuple[Any, ...]) -> None:
        self.reduced = reduced

    def __reduce__(self) -> tuple[Any, ...]:
        return self.reduced


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, _StorageRef) else None


def _pickle(records: Sequence[ParamRecord]) -> bytes:
    """The pickled `OrderedDict` of tensors, each a persistent reference to storage `str(position)`."""
    state: collections.OrderedDict[str, _TensorRef] = collections.OrderedDict()
    for key, record in enumerate(records):
        state[record.name] = _tensor_ref(str(key), record)
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=_PROTOCOL).dump(state)
    return buffer.getvalue()


def _tensor_ref(key: str, record: ParamRecord) -> _TensorRef:
    # Fresh tuples for every tensor, as torch builds them: the pickle memoizes by identity, and shared
    # tuples would turn into memo references where torch.save writes the values.
    shape = tuple(int(d) for d in record.shape)
    stride = _contiguous_strides(shape)
    hooks: collections.OrderedDict[str, Any] = collections.OrderedDict()
    typed = _TYPED_STORAGES.get(record.dtype)
    if typed is not None:
        storage = _StorageRef(("storage", getattr(torch, typed), key, "cpu", math.prod(shape)))
        return _TensorRef((torch._utils._rebuild_tensor_v2, (storage, 0, shape, stride, False, hooks)))
    storage = _StorageRef(("storage", torch.storage.UntypedStorage, key, "cpu", record.nbytes))
    dtype = getattr(torch, record.dtype)
    return _TensorRef((torch._utils._rebuild_tensor_v3, (storage, 0, shape, stride, False, hooks, dtype)))


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides as torch computes them (a length-0 axis counts as 1)."""
    strides = []
    step = 1
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


class _ZipWriter:
    """Append-only zip writer reproducing the records of PyTorch's miniz-based writer."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.offset = 0
        self.central: list[bytes] = []
        self._entry_offset = 0

    def add(self, name: str, chunks: Sequence[bytes]) -> None:
        size = sum(len(c) for c in chunks)
        self._begin(name, size)
        crc = 0
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            self._write(chunk)
        self._end(name, size, crc)

    def add_tensor(self, name: str, record: ParamRecord) -> None:
        size = record.nbytes
        array = np.ascontiguousarray(record.read())
        data = array.reshape(-1).view(np.uint8).data
        if len(data) != size:  # ParamRecord.read already checked dtype and shape; this is a safety net
            msg = f"{record.name!r}: {len(data)} bytes of data for {get_dtype(record.dtype).name}{list(record.shape)}"
            raise ValueError(msg)
        self._begin(name, size)
        crc = 0
        for start in range(0, size, _CHUNK):
            crc = zlib.crc32(data[start : start + _CHUNK], crc)
        write_bytes(self.handle, array)  # copied file to file when it is a mapped view
        self.offset += size
        del data, array
        self._end(name, size, crc)

    def finish(self) -> None:
        directory_offset = self.offset
        for entry in self.central:
            self._write(entry)
        directory_size = self.offset - directory_offset
        count = len(self.central)
        zip64_end_offset = self.offset
        self._write(
            _ZIP64_END.pack(
                0x06064B50, _ZIP64_END.size - 12, 0x031E, 0x002D, 0, 0, count, count, directory_size, directory_offset
            )
        )
        self._write(_ZIP64_LOCATOR.pack(0x07064B50, 0, zip64_end_offset, 1))
        self._write(
            _END.pack(
                0x06054B50,
                0,
                0,
                min(count, 0xFFFF),
                min(count, 0xFFFF),
                min(directory_size, _UINT32_MAX),
                min(directory_offset, _UINT32_MAX),
                0,
            )
        )

    # --- one entry --------------------------------------------------------------------------------------------

    def _begin(self, name: str, size: int) -> None:
        self._entry_offset = self.offset
        full = f"{_ARCHIVE}/{name}".encode()
        zip64 = _zip64_extra(size, self.offset)
        start = self.offset + _LOCAL_HEADER.size + len(full) + len(zip64) + 4
        padding = -start % _ALIGNMENT
        extra = zip64 + b"FB" + struct.pack("<H", padding) + b"Z" * padding
        flags = _FLAG_UTF8 | (_FLAG_DESCRIPTOR if size else 0)
        self._write(_LOCAL_HEADER.pack(0x04034B50, 0, flags, 0, 0, 0, 0, 0, 0, len(full), len(extra)))
        self._write(full)
        self._write(extra)

    def _end(self, name: str, size: int, crc: int) -> None:
        header_offset = self._entry_offset
        zip64 = _zip64_extra(size, header_offset)
        if size:
            if zip64:
                self._write(struct.pack("<IIQQ", 0x08074B50, crc, size, size))
            else:
                self._write(struct.pack("<IIII", 0x08074B50, crc, size, size))
        full = f"{_ARCHIVE}/{name}".encode()
        flags = _FLAG_UTF8 | (_FLAG_DESCRIPTOR if size else 0)
        small = size if size < _ZIP64_LIMIT else _UINT32_MAX
        where = header_offset if header_offset < _ZIP64_LIMIT else _UINT32_MAX
        self.central.append(
            _CENTRAL_HEADER.pack(
                0x02014B50, 0, 0, flags, 0, 0, 0, crc, small, small, len(full), len(zip64), 0, 0, 0, 0, where
            )
            + full
            + zip64
        )

    def _write(self, data: bytes | memoryview) -> None:
        self.handle.write(data)
        self.offset += len(data)


def _zip64_extra(size: int, header_offset: int) -> bytes:
    """The ZIP64 extra field miniz adds when an entry's size or its header's offset reaches 4 GiB."""
    values = []
    if size >= _ZIP64_LIMIT:
        values += [size, size]  # uncompressed, then compressed
    if header_offset >= _ZIP64_LIMIT:
        values.append(header_offset)
    if not values:
        return b""
    return struct.pack(f"<HH{len(values)}Q", 0x0001, 8 * len(values), *values)
