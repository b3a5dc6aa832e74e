"""Read and write MindSpore `.ckpt` files by their protobuf wire format, without importing MindSpore.

A `.ckpt` is a serialized `Checkpoint` message: a stream of `Value{tag, TensorProto{dims, tensor_type,
tensor_content}}` records. `mindspore.save_checkpoint` splits the bytes of tensors larger than 512 MB into
several consecutive records with the same tag, each holding a slice of at most 512 MB, and may append a CRC trailer
(`b"crc_num"` + 10 bytes, big-endian CRC32 of everything before it). Reading records where each tensor's
bytes lie in the file and maps them lazily; writing streams one tensor at a time. Both are checked against
MindSpore's own `save_checkpoint`/`load_checkpoint` in the tests.

`storage_of` turns a tensor that MindSpore loaded or holds into automap's numpy storage array, bit-exact, for every
room that meets MindSpore tensors (the conversion's read-back, the network backend); it reads the tensor through
its methods, so this module still never imports MindSpore.
"""

from __future__ import annotations

import binascii
import contextlib
import math
import mmap
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from automap._advice import option
from automap._errors import CheckpointFormatError, ConversionError
from automap._text import shown
from automap._types import Array, Framework, StrPath
from automap.dtypes import dtype_from_mindspore, get_dtype
from automap.records import ParamRecord, ParamTable

from ._copy import write_bytes
from ._framework import RawRecord, build_table
from ._scattered import MappedWalk, ScatteredReads, advise_map
from ._sniff import open_regular

__all__ = ["MindSporeTensor", "check_storable", "read", "storage_of", "write_to"]

_CRC_MARK = b"crc_num"
_CRC_TRAILER = len(_CRC_MARK) + 10
SLICE_BYTES = 512 * 1024 * 1024  # MindSpore cuts tensor data into records of at most this many bytes
_MAX_NAME = 64 * 1024


class _CorruptError(Exception):
    """Raised inside the parser; turned into one CheckpointFormatError naming the file and offset."""


def read(path: StrPath, *, verify_crc: bool = False, framework: Framework | None = None, **_: object) -> ParamTable:
    """Read a `.ckpt`; tensor bytes stay on disk until a record's `read()` is called.

    Args:
        path: the checkpoint.
        verify_crc: when the file has a CRC trailer, check it (reads the whole file once).
        framework: whose naming the checkpoint follows (MindSpore unless the caller knows better).
        _: other load options, which do not apply to a `.ckpt`.
    """
    file = Path(path)
    size = open_regular(file)
    with file.open("rb") as handle:
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    end = size
    notes: list[str] = []
    with _page_by_page(data):
        trailer = data[size - _CRC_TRAILER : size] if size >= _CRC_TRAILER else b""
    if trailer.startswith(_CRC_MARK):
        end = size - _CRC_TRAILER
        stored = int.from_bytes(trailer[len(_CRC_MARK) :], "big")
        if verify_crc:
            if _crc32(data, end) != stored:
                msg = (
                    f"{str(file)!r}: CRC check failed: the checkpoint is damaged; save or download it again "
                    f"(or read it anyway, without {option('verify_crc')})"
                )
                raise CheckpointFormatError(msg)
            notes.append("CRC trailer present and verified")
        else:
            notes.append("CRC trailer present (not verified)")
    elif verify_crc:
        notes.append("no CRC trailer: the file was saved without crc_check, so there is nothing to verify")
    try:
        chunks = _parse_headers(file, data, end)
    except _CorruptError as error:
        msg = f"{str(file)!r}: not a valid MindSpore checkpoint: {error}; the file is truncated or corrupt"
        raise CheckpointFormatError(msg) from None
    records, skipped = _assemble(file, data, chunks)
    if skipped:
        listed = ", ".join(shown(tag, 60) for tag in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        notes.append(f"skipped {len(skipped)} non-tensor entr{'y' if len(skipped) == 1 else 'ies'}: [{listed}]")
    return build_table(framework or "mindspore", str(file), records, notes, "mindspore-ckpt")


def write_to(handle: BinaryIO, records: Sequence[ParamRecord], *, crc: bool = False, **_: object) -> None:
    """Write records as a `.ckpt` that `mindspore.load_checkpoint` reads into an open file, one tensor at a time.

    Args:
        handle: the output, open for binary writing.
        records: parameters with data, written in this order.
        crc: append MindSpore's CRC trailer, as `save_checkpoint(..., crc_check=True)` does.
        _: other write options, which do not apply to a `.ckpt`.
    """
    check_storable(records)
    sink = _CrcSink(handle, enabled=crc)
    for record in records:
        _write_record(sink, record)
    if crc:
        handle.write(_CRC_MARK + sink.crc.to_bytes(10, "big"))


def check_storable(records: Sequence[ParamRecord]) -> None:
    """Refuse, before anything is written, a tensor with no elements (a `.ckpt` cannot store one).

    Raises:
        CheckpointFormatError: naming the tensor and its shape.
    """
    for record in records:
        if record.numel == 0:
            msg = f"{record.name!r} has shape {list(record.shape)} with no elements, which .ckpt cannot store"
            raise CheckpointFormatError(msg)


class MindSporeTensor(Protocol):
    """What `storage_of` uses of a `mindspore.Tensor` or `mindspore.Parameter`."""

    @property
    def name(self) -> str:
        """The parameter's name (for messages)."""
        ...

    @property
    def dtype(self) -> object:
        """MindSpore's dtype object; its `str()` is MindSpore's name for it (`Float32`)."""
        ...

    @property
    def shape(self) -> Sequence[int]:
        """The tensor's shape."""
        ...

    def asnumpy(self) -> Array:
        """The values as a numpy array (numpy's own dtypes only)."""
        ...

    def get_bytes(self) -> bytes:
        """The raw bytes of the tensor's data."""
        ...


def storage_of(tensor: MindSporeTensor) -> tuple[str, Array]:
    """A MindSpore tensor's dtype name and its storage array (the raw bits for bfloat16 and float8), bit-exact.

    Args:
        tensor: a tensor or parameter, as `mindspore.load_checkpoint` returns them or a network holds them.

    Returns:
        automap's name for the dtype (`"bfloat16"`) and an array of its storage dtype (`uint16` for bfloat16).

    Raises:
        ConversionError: MindSpore's dtype is one automap does not carry.

    Example:
        >>> storage_of(mindspore.Tensor(np.ones(2, np.float32)))  # doctest: +SKIP
        ('float32', array([1., 1.], dtype=float32))
    """
    found = dtype_from_mindspore(str(tensor.dtype))
    if found is None:
        msg = f"{tensor.name}: MindSpore dtype {tensor.dtype} is not supported"
        raise ConversionError(msg)
    if found.numpy_native:
        return found.name, np.asarray(tensor.asnumpy())
    raw = bytes(tensor.get_bytes())
    return found.name, np.frombuffer(raw, dtype=found.storage).reshape(tuple(tensor.shape))


class _CrcSink:
    """A file wrapper that keeps the running CRC32 of everything written (when a trailer will need it)."""

    def __init__(self, handle: BinaryIO, *, enabled: bool = True) -> None:
        self.handle = handle
        self.crc = 0
        self.enabled = enabled

    def write(self, data: bytes | memoryview) -> None:
        if self.enabled:  # a checksum costs a pass over the data: only when the trailer is asked for
            self.crc = binascii.crc32(data, self.crc)
        self.handle.write(data)

    def write_array(self, data: Array) -> None:
        """Write a contiguous uint8 array (copied file to file when it is a mapped view), keeping the CRC32."""
        if self.enabled:
            self.crc = binascii.crc32(data.data, self.crc)
        write_bytes(self.handle, data)


def _write_record(sink: _CrcSink, record: ParamRecord) -> None:
    array = np.ascontiguousarray(record.read())
    raw = array.reshape(-1).view(np.uint8)
    type_name = get_dtype(record.dtype).mindspore.encode()
    name = record.name.encode("utf-8")
    tensor = b"".join(_field_varint(1, d) for d in record.shape)
    tensor += _field_bytes_header(2, len(type_name)) + type_name
    # Cut the bytes into SLICE_BYTES pieces, one record each, exactly as save_checkpoint does for a Tensor: a
    # protobuf bytes field cannot exceed 2 GB, and a reader joins consecutive records of one name.
    for start in range(0, len(raw), SLICE_BYTES):
        content = raw[start : start + SLICE_BYTES]
        tensor_head = tensor + _field_bytes_header(3, len(content))
        tensor_len = len(tensor_head) + len(content)
        value_head = _field_bytes_header(1, len(name)) + name + _field_bytes_header(2, tensor_len)
        value_len = len(value_head) + tensor_len
        sink.write(_field_bytes_header(1, value_len) + value_head + tensor_head)
        sink.write_array(content)


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _field_bytes_header(field: int, length: int) -> bytes:
    return _varint(field << 3 | 2) + _varint(length)


def _parse_headers(file: Path, data: mmap.mmap, end: int) -> list[_Chunk]:
    """Parse the records' headers through the map, and leave the file's page cache as it was (`ScatteredReads`).

    The headers lie in front of the tensors: pages cached there would break a later streaming copy's read-ahead.
    """
    with file.open("rb") as handle, ScatteredReads(handle) as pieces, _page_by_page(data):
        try:
            return _parse(data, end, MappedWalk(data, pieces).at)
        finally:
            advise_map(data, "MADV_DONTNEED")  # unmap the touched pages, so that they can be handed back


@contextlib.contextmanager
def _page_by_page(data: mmap.mmap) -> Iterator[None]:
    """Fault in only the pages touched, not the kernel's read-around (the disk's read-ahead size, often megabytes).

    Parsing touches a few bytes in front of each tensor (and the trailer at the end). With read-around, listing a
    cold 4.4 GB checkpoint of 201 tensors read 1.2 GB of it (read-ahead 8 MB); page by page (and `MappedWalk`'s
    stretches between small tensors), 2 MB. Advice only: the bytes are the same.
    """
    advise_map(data, "MADV_RANDOM")
    try:
        yield
    finally:
        advise_map(data, "MADV_NORMAL")  # the loaders read tensors through the same map: read-ahead helps them


def _crc32(data: mmap.mmap, end: int) -> int:
    crc, step = 0, 64 * 1024 * 1024
    for start in range(0, end, step):
        crc = zlib.crc32(data[start : min(end, start + step)], crc)
    return crc


class _Chunk:
    __slots__ = ("dims", "length", "offset", "tag", "type_name")

    def __init__(self, tag: str, dims: tuple[int, ...], type_name: str | None, offset: int, length: int) -> None:
        self.tag, self.dims, self.type_name, self.offset, self.length = tag, dims, type_name, offset, length


def _read_varint(data: mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    if pos < end and data[pos] < 0x80:  # the common one-byte case, kept fast for files of many small records
        return data[pos], pos + 1
    result = shift = 0
    while True:
        if pos >= end:
            msg = f"truncated varint at byte {pos}"
            raise _CorruptError(msg)
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            msg = f"overlong varint at byte {pos}"
            raise _CorruptError(msg)


def _read_key(data: mmap.mmap, pos: int, end: int) -> tuple[int, int, int]:
    key, pos = _read_varint(data, pos, end)
    return key >> 3, key & 7, pos


def _read_length(data: mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    length, pos = _read_varint(data, pos, end)
    if length > end - pos:
        msg = f"a field at byte {pos} declares {length} bytes but only {end - pos} remain"
        raise _CorruptError(msg)
    return length, pos


def _skip(data: mmap.mmap, wire: int, pos: int, end: int) -> int:
    if wire == 0:
        return _read_varint(data, pos, end)[1]
    if wire == 2:
        length, pos = _read_length(data, pos, end)
        return pos + length
    if wire in (1, 5):
        step = 8 if wire == 1 else 4
        if pos + step > end:
            msg = f"truncated fixed-width field at byte {pos}"
            raise _CorruptError(msg)
        return pos + step
    msg = f"unsupported protobuf wire type {wire} at byte {pos}"
    raise _CorruptError(msg)


def _parse(data: mmap.mmap, end: int, walk: Callable[[int, int], None]) -> list[_Chunk]:
    chunks: list[_Chunk] = []
    pos = 0
    while pos < end:
        walk(pos, end)
        field, wire, pos = _read_key(data, pos, end)
        if field == 1 and wire == 2:
            length, pos = _read_length(data, pos, end)
            chunks.append(_parse_value(data, pos, pos + length))
            pos += length
        elif field == 0:
            msg = f"invalid field number 0 at byte {pos}"
            raise _CorruptError(msg)
        else:
            pos = _skip(data, wire, pos, end)
    return chunks


def _parse_value(data: mmap.mmap, pos: int, end: int) -> _Chunk:
    start = pos
    tag: str | None = None
    dims: list[int] = []
    type_name: str | None = None
    offset = length = -1
    while pos < end:
        field, wire, pos = _read_key(data, pos, end)
        if field == 1 and wire == 2:
            size, pos = _read_length(data, pos, end)
            if size > _MAX_NAME:
                msg = f"a parameter name at byte {pos} is {size} bytes long"
                raise _CorruptError(msg)
            try:
                tag = bytes(data[pos : pos + size]).decode("utf-8")
            except UnicodeDecodeError:
                msg = f"a parameter name at byte {pos} is not valid UTF-8"
                raise _CorruptError(msg) from None
            pos += size
        elif field == 2 and wire == 2:
            size, pos = _read_length(data, pos, end)
            dims, type_name, offset, length = _parse_tensor(data, pos, pos + size)
            pos += size
        else:  # a map tensor (field 3) or an unknown field: skipped, reported as non-tensor
            pos = _skip(data, wire, pos, end)
    if tag is None:
        msg = f"an entry at byte {start} has no name"
        raise _CorruptError(msg)
    return _Chunk(tag, tuple(dims), type_name, offset, length)


def _parse_tensor(data: mmap.mmap, pos: int, end: int) -> tuple[list[int], str, int, int]:
    dims: list[int] = []
    type_name: str | None = None
    offset = length = -1
    while pos < end:
        field, wire, pos = _read_key(data, pos, end)
        if field == 1 and wire == 0:
            value, pos = _read_varint(data, pos, end)
            dims.append(value)
        elif field == 1 and wire == 2:  # packed dims
            size, pos = _read_length(data, pos, end)
            stop = pos + size
            while pos < stop:
                value, pos = _read_varint(data, pos, stop)
                dims.append(value)
        elif field == 2 and wire == 2:
            size, pos = _read_length(data, pos, end)
            type_name = bytes(data[pos : pos + min(size, 64)]).decode("ascii", "replace")
            pos += size
        elif field == 3 and wire == 2:
            length, pos = _read_length(data, pos, end)
            offset = pos
            pos += length
        else:
            pos = _skip(data, wire, pos, end)
    if any(d >= 1 << 63 for d in dims):
        msg = "a negative dimension"
        raise _CorruptError(msg)
    if type_name is None or offset < 0:
        msg = f"a tensor ending at byte {end} lacks its type or content"
        raise _CorruptError(msg)
    return dims, type_name, offset, length


def _assemble(file: Path, data: mmap.mmap, chunks: list[_Chunk]) -> tuple[list[RawRecord], list[str]]:
    """Join consecutive slices of one tag into records; check each against its declared shape and type."""
    records: list[RawRecord] = []
    skipped: list[str] = []
    seen: set[str] = set()
    count = len(chunks)
    i = 0
    while i < count:
        first = chunks[i]
        j = i + 1
        while j < count and chunks[j].tag == first.tag:
            j += 1
        group = chunks[i:j]
        i = j
        if first.tag in seen:
            msg = f"{_where(file, first.tag)} occurs twice; the file is corrupt"
            raise CheckpointFormatError(msg)
        seen.add(first.tag)
        if first.type_name is None or first.type_name == "str" or first.offset < 0:
            skipped.append(first.tag)
            continue
        dtype = dtype_from_mindspore(first.type_name)
        if dtype is None:
            msg = f"{_where(file, first.tag)} has tensor type {first.type_name!r}, which automap does not support"
            raise CheckpointFormatError(msg)
        if len(group) > 1 and any(c.dims != first.dims or c.type_name != first.type_name for c in group):
            msg = f"{_where(file, first.tag)}: its slices disagree on shape or type; the file is corrupt"
            raise CheckpointFormatError(msg)
        shape = () if first.dims == (0,) else first.dims  # MindSpore writes scalars as dims [0] or []
        expected = math.prod(shape) * dtype.itemsize
        actual = sum(c.length for c in group)
        if actual != expected:
            dims = "[" + ", ".join(str(d) for d in shape[:8]) + (", ...]" if len(shape) > 8 else "]")
            msg = (
                f"{_where(file, first.tag)}: {dtype.name}{dims} needs {expected} bytes but the file holds {actual}; "
                "the file is corrupt"
            )
            raise CheckpointFormatError(msg)
        spans = [(c.offset, c.length) for c in group]
        records.append((first.tag, shape, dtype.name, _loader(data, spans, dtype.storage, shape)))
    return records, skipped


def _where(file: Path, tag: str) -> str:
    return f"{str(file)!r}: parameter {shown(tag)}"


def _loader(data: mmap.mmap, spans: list[tuple[int, int]], storage: str, shape: tuple[int, ...]) -> Callable[[], Array]:
    def load() -> Array:
        if len(spans) == 1:
            offset, length = spans[0]
            flat = np.frombuffer(data, dtype=np.uint8, count=length, offset=offset)
        else:
            flat = np.concatenate([np.frombuffer(data, np.uint8, count=n, offset=o) for o, n in spans])
        return flat.view(storage).reshape(shape)

    return load
