"""Assemble a full tensor from the slices a distributed checkpoint keeps of it, after checking they tile it.

Distributed checkpoints store each tensor as rectangular slices (a block of rows on one rank, of columns on
another). A reader describes every slice by where it lies in the full tensor and how to load it; `plan` then
refuses, naming the parameter, a slice that reaches outside the tensor, two slices that overlap without being
identical, and any part of the tensor no slice covers. Identical slices (a replicated parameter held by several
ranks) are kept once, so each is read once. The check runs on the grid that the slice boundaries cut the tensor
into: for every real layout that grid has one cell per distinct slice, so it costs nothing next to the reading.

`loader` returns a function that reads the slices only when called and copies them into one new array, so
memory holds one full tensor at a time (a tensor kept whole in one slice is returned as read, without a copy);
a slice read from a memory-mapped file hands its pages back as soon as it is copied.
"""

from __future__ import annotations

import contextlib
import math
import mmap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from automap._errors import CheckpointFormatError
from automap._text import shown
from automap._types import Array
from automap.dtypes import get_dtype

__all__ = ["Slice", "loader", "plan", "region_text"]

# Cells of the grid the slice boundaries form. A real layout has one cell per slice; a tiling this fine
# could only come from a file built to make the check itself expensive.
_MAX_CELLS = 1 << 22


@dataclass(frozen=True)
class Slice:
    """One stored block of a tensor.

    Attributes:
        offsets: where the block starts in the full tensor, per axis.
        shape: the block's shape.
        where: who holds it, for messages (`"rank 3"`, `"'__1_0.distcp'"`).
        load: reads the block as an array of `shape` in the dtype's storage type.
    """

    offsets: tuple[int, ...]
    shape: tuple[int, ...]
    where: str
    load: Callable[[], Array]

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Where the block lies: two slices with the same key hold the same elements."""
        return self.offsets, self.shape


def region_text(offsets: Sequence[int], shape: Sequence[int]) -> str:
    """`(4, 0), (4, 6)` -> `"[4:8, 0:6]"`, the numpy spelling of a block."""
    return "[" + ", ".join(f"{o}:{o + n}" for o, n in zip(offsets, shape, strict=True)) + "]"


def plan(source: str, name: str, shape: tuple[int, ...], slices: Sequence[Slice]) -> tuple[Slice, ...]:
    """The slices to read for a tensor of `shape`: each distinct block once, after checking they tile it.

    Args:
        source: the checkpoint, for messages.
        name: the parameter, for messages.
        shape: the full tensor's shape.
        slices: every block the checkpoint holds of it, in the order to prefer among identical ones.

    Raises:
        CheckpointFormatError: a block has the wrong number of axes, reaches outside the tensor, overlaps
            another, or part of the tensor is in no block; the message names the parameter and the blocks.
    """
    where = f"{source!r}: parameter {shown(name)}"
    kept: dict[tuple[tuple[int, ...], tuple[int, ...]], Slice] = {}
    for piece in slices:
        if len(piece.offsets) != len(shape) or len(piece.shape) != len(shape):
            msg = (
                f"{where} has {len(shape)} axes but {piece.where} holds a slice with {len(piece.shape)}; "
                "the checkpoint is corrupt"
            )
            raise CheckpointFormatError(msg)
        if any(o < 0 or n < 0 or o + n > d for o, n, d in zip(piece.offsets, piece.shape, shape, strict=True)):
            msg = (
                f"{where}: the slice {region_text(piece.offsets, piece.shape)} held by {piece.where} reaches "
                f"outside the tensor's shape {list(shape)}; the checkpoint is corrupt"
            )
            raise CheckpointFormatError(msg)
        if math.prod(piece.shape) and piece.key not in kept:
            kept[piece.key] = piece
    distinct = tuple(kept.values())
    if math.prod(shape):
        _check_tiling(where, shape, distinct)
    return distinct


def _check_tiling(where: str, shape: tuple[int, ...], slices: tuple[Slice, ...]) -> None:
    """Refuse overlaps and gaps, by marking each slice's cells of the grid the slice boundaries form."""
    cuts = [
        sorted({0, size, *(s.offsets[a] for s in slices), *(s.offsets[a] + s.shape[a] for s in slices)})
        for a, size in enumerate(shape)
    ]
    grid = tuple(len(c) - 1 for c in cuts)
    position = [{cut: i for i, cut in enumerate(c)} for c in cuts]
    if math.prod(grid) > _MAX_CELLS:
        msg = (
            f"{where}: its {len(slices)} slices cut it into {math.prod(grid)} irregular pieces, more than any "
            "distributed layout makes; refused as corrupt"
        )
        raise CheckpointFormatError(msg)
    owner = np.zeros(grid, dtype=np.int32)  # 1 + the index of the slice covering each cell, 0 for none
    for number, piece in enumerate(slices, 1):
        cells = tuple(slice(p[o], p[o + n]) for p, o, n in zip(position, piece.offsets, piece.shape, strict=True))
        taken = owner[cells]
        if taken.any():
            other = slices[int(taken[taken != 0].flat[0]) - 1]
            msg = (
                f"{where}: the slices {region_text(other.offsets, other.shape)} ({other.where}) and "
                f"{region_text(piece.offsets, piece.shape)} ({piece.where}) overlap; the checkpoint is corrupt: "
                "copy it again from the machine that saved it"
            )
            raise CheckpointFormatError(msg)
        owner[cells] = number
    empty = np.argwhere(owner == 0)
    if len(empty):
        cell = empty[0]
        offsets = [cuts[a][i] for a, i in enumerate(cell)]
        sizes = [cuts[a][i + 1] - cuts[a][i] for a, i in enumerate(cell)]
        msg = (
            f"{where}: no slice holds its part {region_text(offsets, sizes)} (of {list(shape)}); a rank's "
            "checkpoint is missing or the checkpoint is corrupt: copy every rank's files again"
        )
        raise CheckpointFormatError(msg)


def loader(source: str, name: str, shape: tuple[int, ...], dtype: str, slices: Sequence[Slice]) -> Callable[[], Array]:
    """A function reading the planned `slices` of a tensor and returning the full array (see module docstring).

    Each slice is checked against its declared shape and dtype when read, since a file can disagree with the
    index that described it.
    """
    storage = np.dtype(get_dtype(dtype).storage)
    pieces = tuple(slices)

    def read_piece(piece: Slice) -> Array:
        array = piece.load()
        if array.dtype != storage or tuple(array.shape) != piece.shape:
            msg = (
                f"{source!r}: parameter {shown(name)}: {piece.where} holds its slice as "
                f"{array.dtype}{list(array.shape)}, the index says {dtype}{list(piece.shape)}; "
                "the checkpoint is corrupt"
            )
            raise CheckpointFormatError(msg)
        return array

    if len(pieces) == 1 and pieces[0].shape == shape:
        return lambda: read_piece(pieces[0])

    def load() -> Array:
        out = np.empty(shape, dtype=storage)
        for piece in pieces:
            block = tuple(slice(o, o + n) for o, n in zip(piece.offsets, piece.shape, strict=True))
            array = read_piece(piece)
            out[block] = array
            _hand_back(array)
        return out

    return load


def _hand_back(array: Array) -> None:
    """Drop the resident pages of a view of a read-only memory map once it is copied (the page cache keeps them).

    Without this a joined tensor and the mapped pages it was read from are resident together until the conversion
    hands pages back (every 256 MB), twice the tensor. Dropping a read-only shared mapping's pages loses nothing:
    a later read faults them in again from the page cache. Anything else (a copy, a writable map) is left alone.
    """
    base: object = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):  # what np.frombuffer keeps of the map
        base = base.obj
    if not isinstance(base, mmap.mmap) or not hasattr(base, "madvise") or not array.flags.c_contiguous:
        return
    with contextlib.suppress(OSError, ValueError, TypeError):  # advice only: a refusal changes nothing
        if not memoryview(base).readonly:
            return
        offset = array.ctypes.data - np.frombuffer(base, dtype=np.uint8, count=1).ctypes.data
        start = offset - offset % mmap.PAGESIZE
        end = min(offset + array.nbytes, len(base))
        if 0 <= start < end:
            base.madvise(mmap.MADV_DONTNEED, start, end - start)
