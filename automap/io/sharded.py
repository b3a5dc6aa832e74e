"""Sharded checkpoints: one checkpoint split over several files, plus a JSON index naming each tensor's file.

The layout is HuggingFace's, for every format automap writes:

    model.safetensors.index.json      {"metadata": {"total_size": 8000000000},
                                       "weight_map": {"embed.weight": "model-00001-of-00004.safetensors", ...}}
    model-00001-of-00004.safetensors  ...  model-00004-of-00004.safetensors

MindSpore and PyTorch shards are named the same way: `model.ckpt` gives `model-00001-of-00003.ckpt` ... and
`model.ckpt.index.json`; `pytorch_model.bin` gives `pytorch_model-00001-of-00002.bin` ... and
`pytorch_model.bin.index.json` (HuggingFace's names for sharded `.bin` checkpoints). Every shard is a complete
checkpoint of its format that the framework's own loader reads on its own (`mindspore.load_checkpoint`,
`torch.load`, `safetensors.safe_open`); the weight map lists the tensors in the order they were written, and
`total_size` counts tensor bytes. `load_checkpoint` reads every kind of index back.

Shards are planned from tensor sizes alone, before any data is read: tensors go, in order, into the current
shard until the next one would take it over the limit; a tensor larger than the limit gets a shard of its
own. Each shard is streamed into a hidden temporary file beside its final name; only when every shard and the
index are complete are they renamed into place, the index last. Any failure, Ctrl-C included, removes every
temporary file and every shard already renamed, so a partial set never appears.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from automap._advice import option
from automap._atomic import _fsync_dir, _link_unnamed, _open_unnamed, _umask, atomic_output, check_writable
from automap._direct import output_file
from automap._errors import CheckpointFormatError, ConversionError
from automap._phases import timed
from automap._text import shown
from automap._types import Framework, StrPath
from automap.records import ParamRecord, ParamTable

from ._framework import RawRecord, build_table, guess_framework
from ._registry import Registry
from ._sniff import read_json

__all__ = [
    "ShardLayout",
    "base_path",
    "files_of",
    "index_path",
    "layout",
    "parse_size",
    "place",
    "read_index",
    "write",
]

INDEX_SUFFIX = ".index.json"
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")

WriteShard = Callable[[Sequence[ParamRecord], BinaryIO], None]


@dataclass(frozen=True)
class ShardLayout:
    """Where each tensor of a sharded checkpoint goes.

    Attributes:
        index: the index file.
        shards: each shard's file and its records, in writing order.
        max_shard_size: the limit the layout was planned for, in bytes.
    """

    index: Path
    shards: tuple[tuple[Path, tuple[ParamRecord, ...]], ...]
    max_shard_size: int

    @property
    def files(self) -> tuple[Path, ...]:
        """The shard files, in order."""
        return tuple(path for path, _ in self.shards)

    def document(self) -> dict[str, Any]:
        """The index as written: HuggingFace's `{"metadata": {"total_size"}, "weight_map"}`."""
        total = sum(r.nbytes for _, records in self.shards for r in records)
        weight_map = {r.name: path.name for path, records in self.shards for r in records}
        return {"metadata": {"total_size": total}, "weight_map": weight_map}


def parse_size(value: str | int) -> int:
    """A size in bytes from `2GB` (10**9), `500MiB` (2**20), `1.5GiB` or a plain number of bytes.

    Raises:
        ValueError: the text is not a positive size.

    Example:
        >>> parse_size("2GB"), parse_size("1GiB"), parse_size(4096)
        (2000000000, 1073741824, 4096)
    """
    if isinstance(value, int):
        number = value
    else:
        found = _SIZE.fullmatch(value)
        unit = found.group(2).upper() if found else ""
        if found is None or unit not in _UNITS:
            msg = f"{value!r} is not a size; write it like 2GB, 500MB, 1GiB or a number of bytes"
            raise ValueError(msg)
        number = int(float(found.group(1)) * _UNITS[unit])
    if number <= 0:
        msg = f"a shard size must be positive, not {value!r}"
        raise ValueError(msg)
    return number


def index_path(path: StrPath) -> Path:
    """The index file of a sharded output named `path` (`model.safetensors` or the index itself)."""
    file = Path(path)
    return file if file.name.endswith(INDEX_SUFFIX) else file.with_name(file.name + INDEX_SUFFIX)


def base_path(path: StrPath) -> Path:
    """The single-file name a sharded output stands for: `model.safetensors` for either spelling."""
    file = Path(path)
    return file.with_name(file.name[: -len(INDEX_SUFFIX)]) if file.name.endswith(INDEX_SUFFIX) else file


def layout(path: StrPath, records: Sequence[ParamRecord], max_shard_size: int) -> ShardLayout:
    """Plan the shards of `records` for an output named `path`, from their sizes alone.

    Example:
        >>> [p.name for p in layout("m.ckpt", table.params, 2 * 10**9).files]  # doctest: +SKIP
        ['m-00001-of-00002.ckpt', 'm-00002-of-00002.ckpt']
    """
    base = base_path(path)
    groups: list[list[ParamRecord]] = [[]]
    size = 0
    for record in records:
        if groups[-1] and size + record.nbytes > max_shard_size:
            groups.append([])
            size = 0
        groups[-1].append(record)
        size += record.nbytes
    count = len(groups)
    stem, suffix = (base.name[: -len(base.suffix)], base.suffix) if base.suffix else (base.name, "")
    shards = tuple(
        (base.with_name(f"{stem}-{i:05d}-of-{count:05d}{suffix}"), tuple(group)) for i, group in enumerate(groups, 1)
    )
    return ShardLayout(index_path(base), shards, max_shard_size)


def write(
    records: Sequence[ParamRecord],
    path: StrPath,
    *,
    max_shard_size: int,
    write_shard: WriteShard,
    overwrite: bool = False,
) -> ShardLayout:
    """Write `records` as shards plus an index; all files appear together or none does.

    Args:
        records: the tensors, in order.
        path: the output as one file would be named (`model.safetensors`), or its index.
        max_shard_size: bytes of tensor data per shard at most (a larger tensor gets a shard of its own).
        write_shard: writes some records into an open binary file (a format adapter's `write_to`).
        overwrite: replace existing files; shards an older index listed that the new set lacks are removed.

    Returns:
        The layout written.

    Raises:
        ConversionError: an output exists (without `overwrite`) or cannot be written.
    """
    plan = layout(path, records, max_shard_size)
    finals = [*plan.files, plan.index]
    for final in finals:
        check_writable(final, overwrite=overwrite)
    stale = _stale_shards(plan) if overwrite else []
    existed = {final for final in finals if final.exists()}
    pending: list[tuple[Path, int]] = []  # each finished file's final name and open descriptor
    named: dict[int, Path] = {}  # hidden names of finished files (by descriptor), removed on failure
    placed: list[Path] = []
    try:
        for final, group in plan.shards:

            def fill(handle: BinaryIO, group: Sequence[ParamRecord] = group) -> None:
                write_shard(group, handle)

            pending.append((final, _finished(final, fill, named)))
        index = (json.dumps(plan.document(), indent=2, ensure_ascii=False) + "\n").encode()
        pending.append((plan.index, _finished(plan.index, lambda handle: handle.write(index), named)))
        for final, fd in pending:
            temporary = named.get(fd)
            if temporary is None:
                temporary = _link_unnamed(fd, final, overwrite)  # None: linked at `final` already
                if temporary is not None:
                    named[fd] = temporary
            if temporary is not None:
                if final.exists() and not overwrite:
                    msg = f"output {str(final)!r} appeared while writing; pass {option('overwrite')} to overwrite it"
                    raise ConversionError(msg)
                temporary.replace(final)
                del named[fd]
            placed.append(final)
        _fsync_dir(plan.index.parent)
    except BaseException as error:
        for leftover in [*named.values(), *(final for final in placed if final not in existed)]:
            with contextlib.suppress(OSError):
                leftover.unlink()
        if isinstance(error, OSError):
            msg = f"cannot write the shards of {str(plan.index)!r}: {error.strerror or error}; nothing was written"
            raise ConversionError(msg) from error
        raise
    finally:
        for _, fd in pending:
            with contextlib.suppress(OSError):
                os.close(fd)
    for old in stale:
        with contextlib.suppress(OSError):
            old.unlink()
    return plan


def place(plan: ShardLayout, written: Sequence[Path], *, overwrite: bool = False) -> None:
    """Give shards written complete under hidden names their final names, then write the index; all or nothing.

    For shards written elsewhere (by worker processes, `automap.conversion`): `written` holds each shard's hidden
    file, in the layout's order, each complete and synced (as `automap._atomic.atomic_output` leaves a file). The
    index is written last, atomically. Any failure removes every hidden file and every shard already placed.

    Raises:
        ConversionError: an output exists (without `overwrite`), appeared meanwhile, or cannot be written.
    """
    finals = [*plan.files, plan.index]
    for final in finals:
        check_writable(final, overwrite=overwrite)
    stale = _stale_shards(plan) if overwrite else []
    existed = {final for final in finals if final.exists()}
    placed: list[Path] = []
    try:
        for temporary, final in zip(written, plan.files, strict=True):
            if final.exists() and not overwrite:
                msg = f"output {str(final)!r} appeared while writing; pass {option('overwrite')} to overwrite it"
                raise ConversionError(msg)
            temporary.replace(final)
            placed.append(final)
        index = (json.dumps(plan.document(), indent=2, ensure_ascii=False) + "\n").encode()
        with atomic_output(plan.index, overwrite=overwrite) as handle:
            handle.write(index)
    except BaseException as error:
        for leftover in [*written, *(final for final in placed if final not in existed)]:
            with contextlib.suppress(OSError):
                leftover.unlink()
        if isinstance(error, OSError):
            msg = f"cannot place the shards of {str(plan.index)!r}: {error.strerror or error}; nothing was written"
            raise ConversionError(msg) from error
        raise
    for old in stale:
        with contextlib.suppress(OSError):
            old.unlink()


def _finished(final: Path, fill: Callable[[BinaryIO], object], named: dict[int, Path]) -> int:
    """Write one file, unnamed where the platform allows, flushed and synced; return its open descriptor.

    An unnamed file lives only while its descriptor is open, so a crash at any point leaves nothing; where
    unnamed files are not available the file gets a hidden temporary name, recorded in `named`.
    """
    fd, temporary = _open_unnamed(final.parent)
    if temporary is not None:
        named[fd] = temporary
    try:
        with output_file(os.dup(fd)) as handle:
            fill(handle)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            with timed("fsync"):
                os.fsync(handle.fileno())
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_index(path: StrPath, *, shards: Registry, framework: Framework | None = None, **_: object) -> ParamTable:
    """Read a sharded checkpoint through its HuggingFace-style index; tensors stay on disk until read.

    This is the one reader of `*.index.json` files, whatever the shards hold: each shard is read by the format
    its content shows (one of `shards`), and all must be of one format.

    Args:
        path: the index.
        shards: the formats a shard may be in (single files; `automap.io.formats.FILE_FORMATS`).
        framework: whose naming the checkpoint follows; by default what the shards say, else guessed from names.
        _: other load options, which the shards do not get.

    Raises:
        CheckpointFormatError: the index is malformed, a shard is missing, outside the index's folder, of
            another kind, or lacks a tensor the index places in it.
    """
    file = Path(path)
    document = read_json(file)
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        msg = f"{str(file)!r}: 'weight_map' must map parameter names to shard file names"
        raise CheckpointFormatError(msg)
    folder = file.parent.resolve()
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    records: list[RawRecord] = []
    formats: set[str] = set()
    frameworks: set[Framework] = set()
    for shard in sorted(by_shard):
        shard_path = _inside(folder, shard, file)
        if not shards.detect(shard_path).holds_data:
            msg = f"{str(file)!r}: shard {shown(shard)} is JSON, not a checkpoint; an index must list checkpoint files"
            raise CheckpointFormatError(msg)
        table = shards.load(shard_path, framework=framework)
        formats.add(table.format)
        frameworks.add(table.framework)
        everything = {r.name: r for r in (*table.params, *table.excluded)}
        wanted = set(by_shard[shard])
        missing = [n for n in by_shard[shard] if n not in everything]
        if missing:
            msg = f"{str(file)!r}: {shown(missing[0])} is listed in shard {shown(shard)}, which does not contain it"
            raise CheckpointFormatError(msg)
        in_file_order = sorted((r for n, r in everything.items() if n in wanted), key=_file_position(table))
        records.extend((r.name, r.shape, r.dtype, r.loader) for r in in_file_order)
    if len(formats) > 1:
        msg = f"{str(file)!r}: its shards are of different formats ({', '.join(sorted(formats))}); refused"
        raise CheckpointFormatError(msg)
    if framework is None:  # the shards agree (by their format or metadata), or the names decide
        framework = frameworks.pop() if len(frameworks) == 1 else guess_framework(r[0] for r in records)
    fmt = f"{formats.pop() if formats else 'empty'}-sharded"
    notes = [f"sharded: {len(by_shard)} shard file(s) listed in {file.name}"]
    return build_table(framework, str(file), records, notes, fmt)


def files_of(path: StrPath) -> list[Path]:
    """The files holding a checkpoint's data: the file itself, or the shards an index lists (best effort)."""
    file = Path(path)
    if not file.name.endswith(".json"):
        return [file] if file.exists() else []
    try:
        document = read_json(file)
    except CheckpointFormatError:
        return []
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict):
        return []
    folder = file.parent
    return [folder / shard for shard in sorted({v for v in weight_map.values() if isinstance(v, str)})]


def _file_position(table: ParamTable) -> Callable[[ParamRecord], tuple[int, int]]:
    """Order records as the shard holds them: parameters, then training state, each by index."""
    params = {r.name for r in table.params}
    return lambda r: (0 if r.name in params else 1, r.index)


def _stale_shards(plan: ShardLayout) -> list[Path]:
    """Shards an existing index at the same place lists that the new set does not reuse."""
    if not plan.index.exists():
        return []
    pattern = re.compile(r".+-\d{5}-of-\d{5}" + re.escape(plan.files[0].suffix) + "$") if plan.files else None
    new = set(plan.files)
    return [
        old
        for old in files_of(plan.index)
        if old not in new and old.parent == plan.index.parent and pattern is not None and pattern.match(old.name)
    ]


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
