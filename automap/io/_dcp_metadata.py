"""DCP's `.metadata` file, read without running it and checked: which tensors, their chunks, where each lies.

`FileSystemWriter` pickles a `Metadata` dataclass: per tensor (`state_dict_metadata`) its dtype, full size and
chunks (offset and size of each), and per chunk (`storage_data`) the file, byte offset and length of its
`torch.save` archive. torch reads this file with `pickle.load`, which runs whatever it names. Here the standard
unpickler is allowed only the names such a file holds: DCP's metadata dataclasses, `torch.Size`, dtype and
layout names and paths. Each is replaced by an inert stand-in that records the fields pickle gives it (once);
nothing the file names is imported or called, and any other name refuses the file. The stand-ins are then
checked field by field into plain, typed records.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from automap._text import shown

from ._framework import MAX_NDIM

__all__ = ["Entry", "Item", "Metadata", "MetadataError", "parse"]

_DCP = "torch.distributed.checkpoint"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LIMIT = 1 << 62  # sizes, offsets and byte counts; anything larger is no real checkpoint's


class MetadataError(Exception):
    """Raised while parsing the metadata; turned into one CheckpointFormatError naming the file."""


class _Inert:
    """Base of every stand-in: records the state pickle's BUILD gives it, once, and does nothing else."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        if hasattr(self, "state"):
            msg = "an object's state is set twice"
            raise MetadataError(msg)
        self.state = state


class _MetadataObject(_Inert):
    __slots__ = ()


class _TensorStorage(_Inert):
    __slots__ = ()


class _BytesStorage(_Inert):
    __slots__ = ()


class _Chunk(_Inert):
    __slots__ = ()


class _Properties(_Inert):
    __slots__ = ()


class _StorageMeta(_Inert):
    __slots__ = ()


class _Index(_Inert):
    __slots__ = ()


class _StorageInfo(_Inert):
    __slots__ = ()


class _DType:
    """A torch dtype, by name (`torch.float32` in the pickle)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __setstate__(self, state: Any) -> None:
        msg = "state set on a dtype"
        raise MetadataError(msg)


class _Function:
    """A function the pickle may call (REDUCE), shielded from BUILD."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self._function = function

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __setstate__(self, state: Any) -> None:
        msg = "state set on a function"
        raise MetadataError(msg)


def _size(values: Any = ()) -> tuple[int, ...]:
    if not isinstance(values, tuple | list) or not all(_small(v) for v in values):
        msg = "a torch.Size holds something other than natural numbers"
        raise MetadataError(msg)
    return tuple(values)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        msg = "a layout or path is not text"
        raise MetadataError(msg)
    return value


def _path(*parts: Any) -> str:
    return "/".join(_text(p) for p in parts)


def _natural(value: Any) -> int:
    if not _small(value):
        msg = "an enumeration value is not a natural number"
        raise MetadataError(msg)
    return value


_GLOBALS: dict[tuple[str, str], Any] = {
    (f"{_DCP}.metadata", "Metadata"): _MetadataObject,
    (f"{_DCP}.metadata", "TensorStorageMetadata"): _TensorStorage,
    (f"{_DCP}.metadata", "BytesStorageMetadata"): _BytesStorage,
    (f"{_DCP}.metadata", "ChunkStorageMetadata"): _Chunk,
    (f"{_DCP}.metadata", "TensorProperties"): _Properties,
    (f"{_DCP}.metadata", "StorageMeta"): _StorageMeta,
    (f"{_DCP}.metadata", "MetadataIndex"): _Index,
    (f"{_DCP}.metadata", "_MEM_FORMAT_ENCODING"): _Function(_natural),
    (f"{_DCP}.filesystem", "_StorageInfo"): _StorageInfo,
    ("torch", "Size"): _Function(_size),
    ("torch.serialization", "_get_layout"): _Function(_text),
    ("collections", "OrderedDict"): _Function(collections.OrderedDict),
    **{
        ("pathlib", kind): _Function(_path) for kind in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")
    },
}


class _Unpickler(pickle.Unpickler):
    """The standard unpickler, allowed only the names a DCP metadata file holds (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is not None:
            return found
        if module == "torch" and _NAME.fullmatch(name) and name[0].islower():
            return _DType(name)  # torch.float32, torch.strided, ...: inert, judged when a tensor uses it
        msg = f"it names {module}.{name}, which DCP metadata never holds; refused without running it"
        raise MetadataError(msg)

    def persistent_load(self, pid: Any) -> Any:
        msg = "it refers to persistent objects, which DCP metadata never does"
        raise MetadataError(msg)


def _unpickle(data: bytes) -> Any:
    try:
        return _Unpickler(io.BytesIO(data)).load()
    except MetadataError:
        raise
    except RecursionError:
        msg = "it is nested too deeply"
        raise MetadataError(msg) from None
    except Exception as error:  # a damaged pickle raises anything (UnpicklingError, EOFError, TypeError, ...)
        msg = f"the pickle is damaged ({type(error).__name__})"
        raise MetadataError(msg) from None


@dataclass(frozen=True)
class Item:
    """Where one chunk's torch.save archive lies."""

    path: str
    offset: int
    length: int


@dataclass(frozen=True)
class Entry:
    fqn: str
    dtype: str
    size: tuple[int, ...]
    chunks: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]


@dataclass(frozen=True)
class Metadata:
    tensors: tuple[Entry, ...]
    items: Mapping[tuple[str, tuple[int, ...]], Item]
    paths: Mapping[str, tuple[str, ...]]  # flattened name -> the keys it was nested under (planner data)
    skipped: tuple[str, ...]


def _fields(obj: Any, kind: type[_Inert], what: str) -> dict[str, Any]:
    if not isinstance(obj, kind) or not isinstance(getattr(obj, "state", None), dict):
        msg = f"{what} is not what DCP writes"
        raise MetadataError(msg)
    state: dict[str, Any] = obj.state
    return state


def _parse(obj: Any) -> Metadata:
    fields = _fields(obj, _MetadataObject, "the top-level object")
    described = fields.get("state_dict_metadata")
    storage = fields.get("storage_data")
    if not isinstance(described, dict) or not isinstance(storage, dict):
        msg = "it lacks the tensor index or the storage index (a custom planner or storage layer wrote it?)"
        raise MetadataError(msg)
    tensors: list[Entry] = []
    skipped: list[str] = []
    for fqn, value in described.items():
        if not isinstance(fqn, str):
            msg = "a state dict key is not text"
            raise MetadataError(msg)
        if isinstance(value, _BytesStorage):
            skipped.append(fqn)
            continue
        tensors.append(_entry(fqn, value))
    return Metadata(tuple(tensors), _items(storage), _paths(fields.get("planner_data")), tuple(skipped))


def _entry(fqn: str, value: Any) -> Entry:
    what = f"the entry of {shown(fqn)}"
    fields = _fields(value, _TensorStorage, what)
    properties, size, chunks = fields.get("properties"), fields.get("size"), fields.get("chunks")
    if not isinstance(properties, _Properties) or not isinstance(chunks, list):
        msg = f"{what} lacks its properties or chunks"
        raise MetadataError(msg)
    state = getattr(properties, "state", None)
    dtype = state[0] if isinstance(state, tuple) and state else state.get("dtype") if isinstance(state, dict) else None
    if not isinstance(dtype, _DType):
        msg = f"{what} has no dtype"
        raise MetadataError(msg)
    shape = _shape(size, what)
    listed: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for chunk in chunks:
        chunk_fields = _fields(chunk, _Chunk, f"a chunk of {shown(fqn)}")
        offsets, sizes = _shape(chunk_fields.get("offsets"), what), _shape(chunk_fields.get("sizes"), what)
        listed.append((offsets, sizes))
    return Entry(fqn, dtype.name, shape, tuple(listed))


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > MAX_NDIM or not all(_small(v) for v in value):
        msg = f"{what} has a malformed size or offset"
        raise MetadataError(msg)
    return value


def _small(value: Any) -> TypeGuard[int]:
    """A natural number small enough to compute with and print (Python refuses to print huge integers)."""
    return type(value) is int and 0 <= value < _LIMIT


def _items(storage: dict[Any, Any]) -> dict[tuple[str, tuple[int, ...]], Item]:
    items: dict[tuple[str, tuple[int, ...]], Item] = {}
    for index, info in storage.items():
        key = _fields(index, _Index, "a storage key")
        fqn, offset = key.get("fqn"), key.get("offset")
        where = _fields(info, _StorageInfo, "a storage entry")
        path, start, length = where.get("relative_path"), where.get("offset"), where.get("length")
        if offset is None and isinstance(fqn, str):
            continue  # a non-tensor entry's bytes (DCP saves those too): never read
        if not isinstance(fqn, str) or not isinstance(offset, tuple) or not isinstance(path, str):
            msg = "a storage entry lacks its tensor name, offsets or file"
            raise MetadataError(msg)
        if not _small(start) or not _small(length):
            msg = f"the storage entry of {shown(fqn)} has a malformed byte range"
            raise MetadataError(msg)
        if where.get("transform_descriptors"):
            msg = (
                f"the chunks of {shown(fqn)} were written through stream transforms "
                f"({', '.join(map(str, where['transform_descriptors']))[:100]}), which automap does not read"
            )
            raise MetadataError(msg)
        items[(fqn, offset)] = Item(path, start, length)
    return items


def _paths(planner: Any) -> dict[str, tuple[str, ...]]:
    """DCP's default planner keeps, per flattened name, the keys the tensor was nested under."""
    paths: dict[str, tuple[str, ...]] = {}
    if isinstance(planner, dict):
        for fqn, keys in planner.items():
            if (
                isinstance(fqn, str)
                and isinstance(keys, tuple)
                and keys
                and all(isinstance(k, str) or _small(k) for k in keys)
            ):
                paths[fqn] = tuple(str(k) for k in keys)
    return paths


def parse(data: bytes) -> Metadata:
    """The tensors, chunks and storage entries a `.metadata` pickle describes.

    Raises:
        MetadataError: the pickle names anything but DCP's metadata, is damaged, or its fields are malformed.
    """
    return _parse(_unpickle(data))
