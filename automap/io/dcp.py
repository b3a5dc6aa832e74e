"""Read PyTorch distributed checkpoints (`torch.distributed.checkpoint`) as one checkpoint of full tensors.

`FileSystemWriter` writes a folder: `.metadata`, a pickle of DCP's `Metadata` (per tensor: dtype, full size and
the chunks it was saved in, each an offset and a size; per chunk: which file, byte offset and length), and
`__<rank>_<n>.distcp` files in which every chunk is a complete `torch.save` archive of one tensor, one after
another. FSDP/FSDP2 shards, DTensor placements and replicated tensors all end up as such chunks (replicated
ones are saved once).

Nothing here runs code from the files, and torch is not imported: torch's own reader unpickles `.metadata`
with `pickle.load`, automap with a restricted unpickler that runs nothing (`_dcp_metadata`). Each chunk is
read by automap's torch-free reader of `torch.save` archives (the restricted unpickler `.pth` files get), from
the chunk's window of the `.distcp` file, memory-mapped.

Every declared size is checked before any data is read: chunk files must lie inside the folder, chunk byte
ranges inside their file and apart from each other, and no chunk may claim more bytes than its range holds;
chunks must tile their tensor exactly (`automap.io._slices`). Tensors are assembled only when read, one at a
time. As `torch.load` does for `{"model": ..., "optim": ...}`, the model's tensors are found by the top-level
key they were saved under and named without it; optimizer state is set aside as training state.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import mmap
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from automap._advice import option
from automap._errors import CheckpointFormatError
from automap._text import shown
from automap._types import Array, Framework, StrPath
from automap.dtypes import get_dtype
from automap.records import ParamTable

from . import torch_zip_reader
from ._dcp_metadata import Entry, Item, Metadata, MetadataError, parse
from ._framework import RawRecord, build_table
from ._slices import Slice, loader, plan, region_text
from ._sniff import open_regular
from ._state_dict import _OPTIMIZER_KEYS

__all__ = ["data_files", "read", "sniff"]

METADATA = ".metadata"
_MAX_METADATA = 512 * 1024 * 1024  # bytes; about 150 a chunk: room for 3 million chunks
_MAX_ARCHIVE_PICKLE = 1024 * 1024  # data.pkl of one chunk's torch.save archive (one tensor: ~200 bytes)


def sniff(path: StrPath) -> bool:
    """True for a DCP checkpoint: a folder holding a `.metadata` pickle (or that file itself); never raises."""
    found = Path(path)
    metadata = found / METADATA if found.is_dir() else found
    if metadata.name != METADATA:
        return False
    try:
        with metadata.open("rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def data_files(path: StrPath) -> list[Path]:
    """The files a DCP checkpoint's data lies in (`.metadata` and the `.distcp` files), best effort, never raising.

    For the checks a conversion makes before writing (an output must not replace a file it reads).
    """
    given = Path(path)
    folder = given if given.is_dir() else given.parent
    try:
        return [p for p in (folder / METADATA, *sorted(folder.glob("*.distcp"))) if p.is_file()]
    except OSError:
        return []


def read(path: StrPath, *, key: str | None = None, framework: Framework | None = None, **_: object) -> ParamTable:
    """Read a DCP checkpoint folder; each tensor's chunks are read and joined only when the tensor is read.

    Args:
        path: the checkpoint folder (or its `.metadata` file).
        key: the top-level key of the state dict to take when several hold tensors (`"model"`, `"ema"`).
        framework: whose naming the tensors follow (PyTorch's unless said otherwise).

    Returns:
        The model's tensors as full tensors (names without the top-level key); optimizer state in `excluded`.

    Raises:
        CheckpointFormatError: the metadata is not DCP's, is corrupt or inconsistent with the files; a chunk
            overlaps another, leaves a gap or reaches outside its tensor (the message names the tensor).
    """
    given = Path(path)
    folder = given if given.is_dir() else given.parent
    metadata_file = folder / METADATA
    source = str(folder)
    size = open_regular(metadata_file)
    if size > _MAX_METADATA:
        msg = f"{str(metadata_file)!r}: {size} bytes of metadata is more than any checkpoint writes; refused"
        raise CheckpointFormatError(msg)
    try:
        metadata = parse(metadata_file.read_bytes())
    except MetadataError as error:
        msg = f"{str(metadata_file)!r}: not a readable DCP metadata file: {error}"
        raise CheckpointFormatError(msg) from None
    files = _Files(folder, metadata_file)
    _check_items(files, metadata)
    chosen, names, notes = _choose(metadata, key, source)
    records: list[RawRecord] = []
    excluded: set[str] = set()
    ignored = 0
    for entry in metadata.tensors:
        if not _known(entry.dtype):
            msg = f"{source!r}: tensor {shown(entry.fqn)} has dtype {entry.dtype!r}, which automap does not support"
            raise CheckpointFormatError(msg)
        name = names.get(entry.fqn)
        if name is None and _group(metadata, entry.fqn)[0].lower() in _OPTIMIZER_KEYS:
            name = entry.fqn
            excluded.add(name)
        if name is None:  # a tensor of another state dict (an EMA copy, say): not this model's
            ignored += 1
            continue
        records.append((name, entry.size, entry.dtype, _tensor_loader(source, files, metadata, entry, name)))
    if metadata.skipped:
        notes.append(f"skipped {len(metadata.skipped)} non-tensor entr{'y' if len(metadata.skipped) == 1 else 'ies'}")
    if excluded:
        notes.append(f"{len(excluded)} optimizer tensors set aside")
    if ignored:
        notes.append(f"{ignored} tensors of other state dicts than {chosen!r} left out")
    fmt = "pytorch-dcp"
    return build_table(framework or "pytorch", source, records, notes, fmt, excluded_names=frozenset(excluded))


# --- the files ----------------------------------------------------------------------------------------------


class _Files:
    """The `.distcp` files of one checkpoint: resolved inside its folder, sized once, mapped on first read."""

    def __init__(self, folder: Path, metadata_file: Path) -> None:
        self.folder = folder.resolve()
        self.metadata_file = metadata_file
        self._sizes: dict[str, int] = {}
        self._maps: dict[str, mmap.mmap] = {}

    def size(self, name: str) -> int:
        """The size of a chunk file, after checking that it lies inside the folder."""
        if name not in self._sizes:
            self._sizes[name] = open_regular(self.resolve(name))
        return self._sizes[name]

    def resolve(self, name: str) -> Path:
        where = f"{str(self.metadata_file)!r}: chunk file {shown(name)}"
        if not name or "\0" in name or len(name) > 4096 or Path(name).is_absolute():
            msg = f"{where} is not a file name inside the checkpoint's folder; refused"
            raise CheckpointFormatError(msg)
        try:
            candidate = (self.folder / name).resolve()
        except (OSError, RuntimeError) as error:  # a symlink loop (RuntimeError before Python 3.13)
            msg = f"{where} cannot be opened: {getattr(error, 'strerror', None) or error}"
            raise CheckpointFormatError(msg) from None
        if not candidate.is_relative_to(self.folder) or candidate == self.folder:
            msg = f"{where} points outside the checkpoint's folder; refused"
            raise CheckpointFormatError(msg)
        if not candidate.exists():
            msg = f"{where} is missing; copy the whole checkpoint folder"
            raise CheckpointFormatError(msg)
        return candidate

    def map(self, name: str) -> mmap.mmap:
        if name not in self._maps:
            try:
                with self.resolve(name).open("rb") as handle:
                    self._maps[name] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as error:
                msg = f"{str(self.folder / name)!r}: cannot map the file for reading: {error}"
                raise CheckpointFormatError(msg) from None
        return self._maps[name]


def _check_items(files: _Files, metadata: Metadata) -> None:
    """Every chunk's byte range inside its file and apart from the others; each chunk within its range."""
    where = f"{str(files.metadata_file)!r}"
    by_file: dict[str, list[tuple[int, int, str]]] = {}
    for entry in metadata.tensors:
        itemsize = get_dtype(entry.dtype).itemsize if _known(entry.dtype) else 1
        for offsets, sizes in entry.chunks:
            item = metadata.items.get((entry.fqn, offsets))
            if item is None:
                msg = (
                    f"{where}: the chunk {region_text(offsets, sizes) if len(offsets) == len(sizes) else offsets} "
                    f"of tensor {shown(entry.fqn)} has no storage entry; the metadata is corrupt"
                )
                raise CheckpointFormatError(msg)
            size = files.size(item.path)
            if item.offset + item.length > size:
                msg = (
                    f"{where}: tensor {shown(entry.fqn)} has a chunk at bytes {item.offset}.."
                    f"{item.offset + item.length} of {shown(item.path)}, which holds {size} bytes; "
                    "the file is truncated"
                )
                raise CheckpointFormatError(msg)
            if math.prod(sizes) * itemsize > item.length:
                msg = (
                    f"{where}: tensor {shown(entry.fqn)} declares a chunk of {list(sizes)[:8]} "
                    f"({math.prod(sizes) * itemsize} bytes) stored in {item.length} bytes; the metadata is corrupt"
                )
                raise CheckpointFormatError(msg)
            by_file.setdefault(item.path, []).append((item.offset, item.length, entry.fqn))
    for path, spans in by_file.items():
        spans.sort()
        for (start, length, first), (next_start, _, second) in itertools.pairwise(spans):
            if next_start < start + length:
                msg = (
                    f"{where}: the chunks of {shown(first)} and {shown(second)} share bytes of {shown(path)}; "
                    "the metadata is corrupt"
                )
                raise CheckpointFormatError(msg)


def _known(dtype: str) -> bool:
    try:
        get_dtype(dtype)
    except CheckpointFormatError:
        return False
    return True


# --- naming ---------------------------------------------------------------------------------------------------


def _group(metadata: Metadata, fqn: str) -> tuple[str, str]:
    """The top-level key a tensor was saved under ("" for none) and its name below it."""
    keys = metadata.paths.get(fqn)
    if keys is not None and len(keys) > 1:
        return keys[0], ".".join(keys[1:])
    head = fqn.split(".", 1)[0]
    return (head, fqn) if "." in fqn and head.lower() in _OPTIMIZER_KEYS else ("", fqn)


def _choose(metadata: Metadata, key: str | None, source: str) -> tuple[str, dict[str, str], list[str]]:
    """Which top-level key holds the model, and each of its tensors' names without that key."""
    groups: dict[str, dict[str, str]] = {}
    for entry in metadata.tensors:
        group, name = _group(metadata, entry.fqn)
        groups.setdefault(group, {})[entry.fqn] = name
    if key is not None:
        if key not in groups:
            listed = ", ".join(shown(g) for g in sorted(groups) if g)
            msg = f"{source!r}: no tensors under key {key!r}; keys holding tensors: [{listed}]"
            raise CheckpointFormatError(msg)
        chosen = key
    else:
        candidates = sorted(g for g in groups if g.lower() not in _OPTIMIZER_KEYS)
        if len(candidates) > 1:
            listed = ", ".join(f"{shown(g) if g else '<top level>'} ({len(groups[g])} tensors)" for g in candidates)
            hint = next(g for g in candidates if g)
            msg = f"{source!r} holds several state dicts: {listed}; choose one with {option('key', hint)}"
            raise CheckpointFormatError(msg)
        chosen = candidates[0] if candidates else ""
    notes = [f"state dict taken from key {chosen!r}"] if chosen else []
    names = groups.get(chosen, {})
    if len(set(names.values())) != len(names):  # two tensors would get one name: keep them as stored
        names = {fqn: fqn for fqn in names}
    return chosen, names, notes


# --- reading ------------------------------------------------------------------------------------------------


def _tensor_loader(source: str, files: _Files, metadata: Metadata, entry: Entry, name: str) -> Callable[[], Array]:
    pieces = []
    for offsets, sizes in entry.chunks:
        item = metadata.items[(entry.fqn, offsets)]
        pieces.append(Slice(offsets, sizes, shown(item.path), _chunk_loader(files, entry, item, sizes)))
    return loader(source, name, entry.size, entry.dtype, plan(source, name, entry.size, pieces))


def _chunk_loader(files: _Files, entry: Entry, item: Item, sizes: tuple[int, ...]) -> Callable[[], Array]:
    def load() -> Array:
        data = files.map(item.path)
        tensor = _archive_tensor(files, item, entry.fqn, data)
        if tensor.dtype != entry.dtype or tensor.shape != sizes:
            msg = (
                f"{str(files.folder / item.path)!r}: the chunk of {shown(entry.fqn)} at bytes {item.offset} holds "
                f"{tensor.dtype}{list(tensor.shape)}, the metadata says {entry.dtype}{list(sizes)}; the checkpoint "
                "is corrupt"
            )
            raise CheckpointFormatError(msg)
        storage = np.dtype(get_dtype(tensor.dtype).storage)
        start = item.offset + tensor.storage.start + tensor.offset * storage.itemsize
        if math.prod(sizes) == 0:
            return np.empty(sizes, dtype=storage)
        if tensor.contiguous:
            return np.frombuffer(data, dtype=storage, count=math.prod(sizes), offset=start).reshape(sizes)
        span = torch_zip_reader._span(tensor.shape, tensor.stride)
        base = np.frombuffer(data, dtype=storage, count=span, offset=start)
        steps = tuple(s * storage.itemsize for s in tensor.stride)
        return np.ascontiguousarray(np.lib.stride_tricks.as_strided(base, sizes, steps, writeable=False))

    return load


class _Window(io.RawIOBase):
    """A read-only file over `length` bytes of a memory map from `start`: one chunk's torch.save archive."""

    def __init__(self, data: mmap.mmap, start: int, length: int) -> None:
        super().__init__()
        self._data, self._start, self._length, self._pos = data, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self._length - self._pos))
        begin = self._start + self._pos
        buffer[:count] = self._data[begin : begin + count]
        self._pos += count
        return count


def _archive_tensor(files: _Files, item: Item, fqn: str, data: mmap.mmap) -> torch_zip_reader.StoredTensor:
    """The one tensor of a chunk's torch.save archive, read by the torch-free reader (nothing is run)."""
    where = f"{str(files.folder / item.path)!r}: the chunk of {shown(fqn)} at bytes {item.offset}"
    window = _Window(data, item.offset, item.length)
    try:
        with contextlib.closing(window), zipfile.ZipFile(window) as archive:
            infos = archive.infolist()
        if any(info.compress_type != zipfile.ZIP_STORED for info in infos):
            msg = f"{where} is compressed, which torch.save never does; refused"
            raise CheckpointFormatError(msg)
        tensor = _unpickle_archive(infos, _Window(data, item.offset, item.length), item.length)
    except CheckpointFormatError:
        raise
    except Exception:  # a damaged zip or pickle raises anything; the restricted unpickler declines the same way
        tensor = None
    if not isinstance(tensor, torch_zip_reader.StoredTensor):
        msg = f"{where} is not a torch.save archive of one plain tensor; the file is damaged"
        raise CheckpointFormatError(msg)
    return tensor


def _unpickle_archive(infos: list[zipfile.ZipInfo], window: _Window, size: int) -> object:
    """What the archive's `data.pkl` holds, through the torch-free restricted unpickler; None when unreadable."""
    found = torch_zip_reader._entries(infos, window, size)
    if found is None:
        return None
    prefix, entries = found
    byteorder = entries.get(f"{prefix}/byteorder")
    if byteorder is not None and torch_zip_reader._entry_bytes(window, byteorder, 16) != b"little":
        return None  # big-endian data: numpy would read it wrong
    pickled = torch_zip_reader._entry_bytes(window, entries[f"{prefix}/data.pkl"], _MAX_ARCHIVE_PICKLE)
    return None if pickled is None else torch_zip_reader._Unpickler(pickled, prefix, entries).load()
