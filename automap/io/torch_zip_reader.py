"""Read plain state dicts in torch.save's zip format without importing torch (whose import alone takes ~1.5 s).

A file written by `torch.save(state_dict)` is a zip of uncompressed entries: `<archive>/data.pkl`, a pickle of
the containers, and `<archive>/data/<key>`, the raw little-endian bytes of one storage each. The pickle of plain
tensors in plain containers references a handful of globals only: `collections.OrderedDict`, torch's tensor and
parameter rebuild functions, storage classes (`torch.FloatStorage`, ...) and dtypes (`torch.float8_e4m3fn`), and
it names each storage by a persistent id `("storage", storage class, key, location, element count)`.

`read` unpickles `data.pkl` with the standard library's unpickler restricted to exactly those names (the
`find_class` restriction the pickle documentation describes), each replaced by a stand-in that only records what
the tensor would be: a `StoredTensor` knows its storage entry, offset, shape and strides, and its array is a
zero-copy view of the memory-mapped file. Nothing named by the file is ever imported or called, and a stand-in
cannot be altered after its checks (pickle's BUILD opcode is refused on all of them), so every element a view
reaches lies inside its storage entry.

Anything else - another global, tensor metadata or hooks, big-endian data, the legacy format, a damaged zip or
pickle, a tensor reaching outside its storage - makes `read` return None, and the caller goes to
`torch.load(weights_only=True)` (`automap.io.torch`), which reads the file or refuses it with its own, definitive
message. What this reader accepts, it reads to the same names, dtypes, shapes and bits as torch.load (tested
for every dtype and layout), and the same rules pick the state dict (`automap.io._state_dict`).
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from automap._errors import CheckpointFormatError
from automap._text import first_line
from automap._types import Array, StrPath
from automap.dtypes import all_dtype_names, get_dtype
from automap.records import ParamTable

from ._mapped import MappedFile
from ._scattered import ScatteredReads
from ._sniff import open_regular
from ._state_dict import Described, state_dict_table

__all__ = ["StoredTensor", "read", "torchscript_error", "zip_entries"]

# torch's legacy storage classes, by the dtype of their elements (what torch.save still emits for these dtypes)
_STORAGE_CLASSES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then file name and extra field lengths at offset 26
_MAX_PICKLE = 1 << 30  # bytes of data.pkl; a state dict's containers take a few MB even for 100,000 tensors


class _NeedsTorchError(Exception):
    """The file holds something only torch.load can judge."""


def _decline(why: str) -> NoReturn:
    raise _NeedsTorchError(why)


class _StandIn:
    """Base of every object this unpickler creates: pickle's BUILD opcode may not change one afterwards."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        _decline("state set on a stand-in")


class _Callable(_StandIn):
    """A function the pickle may call, shielded from BUILD (which would set attributes on a function)."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self._function = function

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)


class _StorageClass(_StandIn):
    """Stand-in for a storage class (`torch.FloatStorage`; `torch.UntypedStorage` holds bytes)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


class _DType(_StandIn):
    """Stand-in for a torch dtype, as `_rebuild_tensor_v3` receives it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Storage(_StandIn):
    """A storage entry of the zip: where its bytes begin in the file, their dtype and element count."""

    __slots__ = ("dtype", "numel", "start")

    def __init__(self, dtype: str, numel: int, start: int) -> None:
        self.dtype, self.numel, self.start = dtype, numel, start


class StoredTensor(_StandIn):
    """A tensor as a torch zip checkpoint describes it: dtype, shape, strides (elements) and where it lies."""

    __slots__ = ("dtype", "offset", "shape", "storage", "stride")

    def __init__(
        self, storage: _Storage, dtype: str, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage, self.dtype, self.offset, self.shape, self.stride = storage, dtype, offset, shape, stride

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's elements (strides that repeat elements count them each time)."""
        return math.prod(self.shape) * get_dtype(self.dtype).itemsize

    @property
    def contiguous(self) -> bool:
        """True when the elements lie in C order, one after the other."""
        expected = 1
        for size, step in zip(reversed(self.shape), reversed(self.stride), strict=True):
            if size != 1 and step != expected:
                return False
            expected *= size
        return True


def read(path: StrPath, *, key: str | None = None) -> ParamTable | None:
    """Read a plain state dict saved by torch.save in its zip format, or None when torch.load must judge the file.

    Args:
        path: the file.
        key: which state dict to take when the file holds several (`"model"`, or a nested path `"a/b"`).

    Raises:
        CheckpointFormatError: the zip is damaged, compressed or TorchScript (`zip_entries`), or it is readable
            but holds no unique state dict, or a tensor overlapping itself beyond the file's size (the same
            messages as `automap.io.torch.read`).
    """
    file = Path(path)
    size = open_regular(file)
    found = _unpickle(file, size)
    if found is None:
        return None
    obj, mapped = found

    def describe(file: Path, name: str, tensor: StoredTensor) -> Described:
        return tensor.shape, tensor.dtype, tensor.stride, tensor.nbytes, _loader(mapped, tensor)

    return state_dict_table(file, size, obj, key, is_tensor=_is_stored, describe=describe)


def _is_stored(value: Any) -> bool:
    return isinstance(value, StoredTensor)


def _loader(mapped: MappedFile, tensor: StoredTensor) -> Callable[[], Array]:
    itemsize = get_dtype(tensor.dtype).itemsize
    start = tensor.storage.start + tensor.offset * itemsize
    if math.prod(tensor.shape) == 0:
        storage, shape = np.dtype(get_dtype(tensor.dtype).storage), tensor.shape
        return lambda: np.empty(shape, dtype=storage)
    if tensor.contiguous:
        return mapped.loader(start, tensor.dtype, tensor.shape)
    span = _span(tensor.shape, tensor.stride)
    return mapped.strided_loader(start, tensor.dtype, tensor.shape, tensor.stride, span)


def zip_entries(file: Path) -> list[zipfile.ZipInfo] | None:
    """The entries of a PyTorch zip checkpoint, or None for the legacy format (not a zip).

    Like torch, the first bytes decide (a legacy file's tensor data may well contain a zip end marker).

    Raises:
        CheckpointFormatError: the zip directory is damaged, an entry is compressed (torch.save never compresses,
            and inflating an entry of untrusted size is unbounded), or the file is a TorchScript archive.
    """
    with file.open("rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            return None
    try:
        with zipfile.ZipFile(file) as archive:
            infos = archive.infolist()
    except Exception as error:  # zipfile raises BadZipFile, struct.error, ValueError, ... on a damaged directory
        msg = (
            f"{str(file)!r}: not a readable PyTorch checkpoint (its zip directory is damaged: "
            f"{first_line(str(error))}); the file is truncated or corrupt"
        )
        raise CheckpointFormatError(msg) from None
    if any(info.filename.endswith("/constants.pkl") or "/code/" in info.filename for info in infos):
        raise torchscript_error(file)
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            msg = (
                f"{str(file)!r}: zip entry {info.filename!r} is compressed, which torch.save never does; refused, "
                "since inflating an entry of untrusted size is unbounded. Re-save the weights with torch.save"
            )
            raise CheckpointFormatError(msg)
    return infos


def torchscript_error(file: Path) -> CheckpointFormatError:
    """The error for a TorchScript archive given where a state dict was expected."""
    msg = (
        f"{str(file)!r} is a TorchScript archive, not a state dict; load it with torch.jit.load and save "
        "its weights with torch.save(module.state_dict(), ...)"
    )
    return CheckpointFormatError(msg)


def _unpickle(file: Path, size: int) -> tuple[Any, MappedFile] | None:
    """The unpickled object with `StoredTensor` leaves, or None when only torch can read the file."""
    infos = zip_entries(file)
    if infos is None or file.name.endswith(".safetensors"):  # the legacy format, or a name torch treats apart
        return None
    with file.open("rb") as handle:
        try:
            found = _entries(infos, handle, size)
            if found is None:
                return None
            prefix, entries = found
            data = _entry_bytes(handle, entries[f"{prefix}/data.pkl"], _MAX_PICKLE)
            byteorder = entries.get(f"{prefix}/byteorder")
            if data is None or (byteorder is not None and _entry_bytes(handle, byteorder, 16) != b"little"):
                return None
        except OSError:
            return None
    unpickler = _Unpickler(data, prefix, entries)
    try:
        obj = unpickler.load()
    except Exception:  # a damaged pickle raises anything (UnpicklingError, EOFError, IndexError, ...); so does ours
        return None
    return obj, MappedFile(file)


_Entry = tuple[int, int, int]  # where an entry's data begins in the file, its size, its CRC-32


def _entries(infos: list[zipfile.ZipInfo], handle: Any, size: int) -> tuple[str, dict[str, _Entry]] | None:
    """The archive's name and each entry's data, when every entry lies in the file as torch.save writes it."""
    if not infos or "/" not in infos[0].filename:
        return None
    prefix = infos[0].filename.split("/", 1)[0]
    entries: dict[str, _Entry] = {}
    with ScatteredReads(handle) as pieces:  # one in front of each tensor: leave no cached pages there
        for info in infos:
            if info.flag_bits & 0x1:  # encrypted
                return None
            name = info.filename.encode("utf-8")
            header = pieces.read(info.header_offset, _LOCAL_HEADER.size + len(name))
            if len(header) != _LOCAL_HEADER.size + len(name):
                return None
            signature, name_length, extra_length = _LOCAL_HEADER.unpack_from(header)
            if signature != b"PK\x03\x04" or name_length != len(name) or header[_LOCAL_HEADER.size :] != name:
                return None
            start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            if start + info.file_size > size:
                return None
            entries[info.filename] = (start, info.file_size, info.CRC)
    if f"{prefix}/data.pkl" not in entries:
        return None
    return prefix, entries


def _entry_bytes(handle: Any, entry: _Entry, limit: int) -> bytes | None:
    """A small entry's bytes, if it holds at most `limit` bytes and its CRC-32 is right."""
    start, length, crc = entry
    if length > limit:
        return None
    handle.seek(start)
    data: bytes = handle.read(length)
    return data if len(data) == length and zlib.crc32(data) == crc else None


class _Unpickler(pickle.Unpickler):
    """The standard unpickler, allowed only the globals and persistent ids of plain tensors (see module docstring)."""

    def __init__(self, data: bytes, prefix: str, entries: Mapping[str, _Entry]) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._prefix = prefix
        self._entries = entries
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            _decline(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            _decline("persistent id")
        _, kind, key, location, numel = pid
        if not (isinstance(kind, _StorageClass) and isinstance(key, str) and isinstance(location, str)):
            _decline("persistent id")
        if type(numel) is not int or numel < 0:
            _decline("storage size")
        storage = self._storages.get(key)
        if storage is None:
            entry = self._entries.get(f"{self._prefix}/data/{key}")
            if entry is None or numel * get_dtype(kind.dtype).itemsize > entry[1]:
                _decline("storage entry")
            storage = self._storages[key] = _Storage(kind.dtype, numel, entry[0])
        if storage.dtype != kind.dtype or storage.numel != numel:
            _decline("one storage seen as two")
        return storage


def _rebuild_tensor_v2(
    storage: Any, offset: Any, shape: Any, stride: Any, requires_grad: Any, hooks: Any, metadata: Any = None
) -> StoredTensor:
    if not isinstance(storage, _Storage):
        _decline("storage")
    return _tensor(storage, storage.dtype, storage.numel, offset, shape, stride, requires_grad, hooks, metadata)


def _rebuild_tensor_v3(
    storage: Any,
    offset: Any,
    shape: Any,
    stride: Any,
    requires_grad: Any,
    hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> StoredTensor:
    if not isinstance(storage, _Storage) or storage.dtype != "uint8" or not isinstance(dtype, _DType):
        _decline("storage")
    numel = storage.numel // get_dtype(dtype.name).itemsize
    return _tensor(storage, dtype.name, numel, offset, shape, stride, requires_grad, hooks, metadata)


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any) -> StoredTensor:
    if not isinstance(data, StoredTensor) or not isinstance(requires_grad, bool) or not _no_hooks(hooks):
        _decline("parameter")
    return data


def _tensor(
    storage: _Storage,
    dtype: str,
    numel: int,
    offset: Any,
    shape: Any,
    stride: Any,
    requires_grad: Any,
    hooks: Any,
    metadata: Any,
) -> StoredTensor:
    """A tensor whose every element lies inside its storage, or declines."""
    if not isinstance(requires_grad, bool) or not _no_hooks(hooks) or metadata:
        _decline("tensor state")
    if not (_naturals(shape) and _naturals(stride) and len(shape) == len(stride)) or type(offset) is not int:
        _decline("layout")
    if offset < 0:
        _decline("layout")
    if math.prod(shape) and offset + _span(shape, stride) > numel:
        _decline("out of its storage")  # torch refuses it, with its own message
    return StoredTensor(storage, dtype, offset, tuple(shape), tuple(stride))


def _span(shape: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Elements from a non-empty tensor's first to its last one, both included."""
    return 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))


def _naturals(values: Any) -> bool:
    return isinstance(values, tuple) and all(type(v) is int and v >= 0 for v in values)


def _no_hooks(hooks: Any) -> bool:
    return isinstance(hooks, dict) and not hooks


_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _Callable(collections.OrderedDict),
    ("torch._utils", "_rebuild_tensor_v2"): _Callable(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor_v3"): _Callable(_rebuild_tensor_v3),
    ("torch._utils", "_rebuild_parameter"): _Callable(_rebuild_parameter),
    ("torch", "UntypedStorage"): _StorageClass("uint8"),
    ("torch.storage", "UntypedStorage"): _StorageClass("uint8"),
    **{("torch", name): _StorageClass(dtype) for name, dtype in _STORAGE_CLASSES.items()},
    **{("torch", name): _DType(name) for name in all_dtype_names()},
}
