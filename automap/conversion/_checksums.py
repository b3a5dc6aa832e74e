"""Checksums of tensors as CRC-32s of fixed-size pieces, so that one large tensor can be checked on several threads.

A conversion checks its output by comparing what it wrote with what the output's loader reads back. A CRC-32 of
a whole tensor runs on one thread, and one tensor can hold a quarter of a checkpoint, so here a tensor's checksum
is the tuple of the CRC-32s of its raw bytes cut into `PIECE_BYTES` pieces (an empty tensor: one CRC of b"").
Pieces are independent, so they can go to any thread and no CRC-combining arithmetic is needed; the checksum of
the same bytes is the same tuple wherever it was computed. `zlib.crc32` releases the GIL on large buffers, so
threads really run in parallel.

A tensor whose bytes are still at hand needs no checksum: a tensor the writer got as a view of a memory-mapped
source file (a renamed tensor, most of a conversion) is compared with those bytes themselves, piece by piece
(`memcmp`, which also releases the GIL and runs several times faster than a CRC-32). `Expected` is either.

`ChecksumPool` spreads the pieces of a stream of tensors over a few threads and hands finished tensors back in
the order they were submitted, on the caller's thread. Memory stays bounded for a caller that hands a tensor's
pages back as its checksum is handed over (a page of a memory-mapped file stays resident once read): besides
the oldest tensor not handed over, at most `window` bytes of later tensors are read at any time, and the caller
is kept at most `window` bytes beyond the tensor it submitted last. No reference to an array outlives its
checksum.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import traceback
import zlib
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

from automap._phases import timed
from automap._types import Array

__all__ = [
    "PIECE_BYTES",
    "WINDOW_BYTES",
    "Checksum",
    "ChecksumPool",
    "Expected",
    "default_workers",
    "piece_crcs",
    "same_bytes",
]

PIECE_BYTES = 16 * 1024 * 1024
"""Bytes per checksummed piece: enough that handing a piece to a thread costs nothing in comparison."""
WINDOW_BYTES = 48 * 1024 * 1024
"""Bytes of tensors after the oldest one out that a `ChecksumPool` reads ahead.

Three pieces keep two to four threads busy across tensor boundaries and small tensors, while a caller that hands
pages back per tensor holds at most this much more of a memory-mapped file than one checking one tensor at a time.
"""
_INLINE_BYTES = 256 * 1024  # below this, a checksum costs less than handing the tensor to a thread
_MAX_WORKERS = 4

Checksum = tuple[int, ...]
"""CRC-32 of each `PIECE_BYTES` piece of a tensor's raw bytes, in order; () for a tensor not checksummed."""
Expected = Checksum | Array
"""What a tensor read back must match: the piece CRC-32s of the bytes written, or those bytes themselves (an array
that stays readable, such as a view of a memory-mapped source file)."""
PieceChecksum = Callable[[memoryview], int]

T = TypeVar("T")


def piece_crcs(array: Array, *, piece: int | None = None) -> Checksum:
    """The CRC-32 of each piece of an array's raw bytes in C order (a copy is made if it is not C-contiguous).

    Args:
        array: any numpy array; 0-d and empty ones included.
        piece: bytes per piece (default `PIECE_BYTES`).

    Returns:
        One CRC per piece; an empty array gives the one CRC of b"".
    """
    return _checksum_here(array, _piece_size(piece), zlib.crc32)


def same_bytes(data: memoryview, reference: memoryview) -> bool:
    """True when two flat byte views hold the same bytes (compared with `memcmp`, without holding the GIL)."""
    if len(data) != len(reference):
        return False
    if not len(data):
        return True
    if _MEMCMP is None:
        return bool(np.array_equal(np.frombuffer(data, np.uint8), np.frombuffer(reference, np.uint8)))
    return _MEMCMP(_address(data), _address(reference), len(data)) == 0


def _address(view: memoryview) -> int:
    return int(np.frombuffer(view, np.uint8).__array_interface__["data"][0])


def _libc_memcmp() -> Callable[[int, int, int], int] | None:
    if sys.platform.startswith("win"):
        return None
    try:
        function = ctypes.CDLL(None).memcmp  # a CDLL call releases the GIL
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


_MEMCMP = _libc_memcmp()


def default_workers() -> int:
    """Threads a `ChecksumPool` uses unless told: one per CPU, at most four."""
    return max(1, min(_MAX_WORKERS, os.cpu_count() or 1))


class _Tensor(Generic[T]):
    """A submitted tensor: its tag, its size and its pieces' values as they come in."""

    __slots__ = ("ahead", "error", "nbytes", "remaining", "tag", "values")

    def __init__(self, tag: T, nbytes: int, values: list[int]) -> None:
        self.tag = tag
        self.nbytes = nbytes
        self.values = values
        self.remaining = 0  # pieces not yet checksummed
        self.ahead = 0  # bytes of its pieces started while an older tensor was still out
        self.error: BaseException | None = None


class _Piece(Generic[T]):
    """A piece waiting for a thread; it holds the array (through `data`) until it is checksummed.

    With a `reference` (the same piece of the bytes expected), the piece is compared with it instead.
    """

    __slots__ = ("data", "index", "reference", "tensor")

    def __init__(self, tensor: _Tensor[T], index: int, data: memoryview, reference: memoryview | None) -> None:
        self.tensor = tensor
        self.index = index
        self.data = data
        self.reference = reference


class ChecksumPool(Generic[T]):
    """Checksum a stream of arrays on a few threads; results are handed over in submission order.

    `submit(tag, array)` queues an array's pieces; threads take pieces in that order. Each finished tensor is
    handed to `on_result(tag, checksum)` on the caller's thread, from within `submit` or `drain`, oldest first:
    `submit` hands over those already finished at the head, after waiting for as many as it takes to bring the
    bytes submitted and not handed over within `window` beyond the array just submitted; `drain` waits for the
    rest. Pieces of the oldest tensor not handed over start at once; those of later tensors only while the
    pieces started ahead of it total at most `window` bytes. So a caller that drops a tensor's pages in
    `on_result` holds at most `window` bytes more than one checking one tensor at a time: the next tensor is
    read beyond the window only once `on_result` has returned. A `release` callback gets every piece (and its
    reference) as soon as it is done with, so that its pages can be handed back at once. Leaving the `with` block
    (normally or by an exception) drops the pieces not started and joins the threads; a piece's exception is
    raised by the call that would have handed its tensor over.

    Example:
        >>> with ChecksumPool[str](check) as pool:  # doctest: +SKIP
        ...     for name, array in tensors:
        ...         pool.submit(name, array)
        ...     pool.drain()
    """

    def __init__(
        self,
        on_result: Callable[[T, Checksum], None],
        *,
        workers: int | None = None,
        piece: int | None = None,
        window: int = WINDOW_BYTES,
        checksum: PieceChecksum = zlib.crc32,
        release: Callable[[memoryview, memoryview | None], None] | None = None,
    ) -> None:
        """Start the threads.

        Args:
            on_result: called with each tensor's tag and checksum, in submission order, on the caller's thread.
            workers: how many threads (default `default_workers()`).
            piece: bytes per piece (default `PIECE_BYTES`).
            window: bytes read ahead of the oldest tensor not handed over, and submitted beyond the newest one.
            checksum: each piece's value (`zlib.crc32`, which `piece_crcs` uses).
            release: called on a thread with each piece's bytes and its reference's (or None) once done with.
        """
        count = default_workers() if workers is None else workers
        if count < 1 or window < 0:
            msg = f"a ChecksumPool needs at least one worker and a window of at least 0 bytes, not {count}, {window}"
            raise ValueError(msg)
        self._on_result = on_result
        self._piece = _piece_size(piece)
        self._window = window
        self._checksum = checksum
        self._release = release
        self._changed = threading.Condition()  # guards everything below; notified when a thread may go on
        self._waiting: deque[_Piece[T]] = deque()  # pieces not started, in order
        self._out: deque[_Tensor[T]] = deque()  # tensors not handed over, in order
        self._out_bytes = 0
        self._ahead = 0  # bytes of pieces started of tensors other than the oldest one out
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"automap-crc-{i}", daemon=True) for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> ChecksumPool[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, tag: T, array: Array | None, *, reference: Array | None = None) -> None:
        """Queue an array's pieces (None: the tag alone, handed over in its turn with the checksum ()).

        With a `reference`, each piece is compared with the same piece of the reference's bytes instead of
        checksummed: its value is 0 where they are the same, 1 where they differ (`same_bytes`).

        Hands over the finished tensors at the head of the queue, and waits for as many as it takes to bring the
        bytes out within the window beyond this array.
        """
        if self._closed:
            msg = "this ChecksumPool is closed"
            raise ValueError(msg)
        if array is None or array.nbytes < _INLINE_BYTES:
            values = list(self._values_here(array, reference)) if array is not None else []
            with self._changed:
                self._out.append(_Tensor(tag, 0, values))
            self._hand_over(self._window)
            return
        data = _raw_bytes(array)
        other = _raw_bytes(reference) if reference is not None else None
        if other is not None and len(other) != len(data):
            other = other[:0]  # every piece differs from it
        starts = range(0, len(data), self._piece)
        tensor = _Tensor(tag, len(data), [0] * len(starts))
        tensor.remaining = len(starts)
        with self._changed:
            self._out.append(tensor)
            self._out_bytes += tensor.nbytes
            self._waiting.extend(
                _Piece(tensor, i, data[start : start + self._piece], _slice(other, start, self._piece))
                for i, start in enumerate(starts)
            )
            self._changed.notify_all()
        del data, other, array, reference  # from now on only the pieces hold the arrays, each until it is done
        self._hand_over(self._window + tensor.nbytes)

    def _values_here(self, array: Array, reference: Array | None) -> Checksum:
        if reference is None:
            return _checksum_here(array, self._piece, self._checksum)
        return (0 if same_bytes(_raw_bytes(array), _raw_bytes(reference)) else 1,)

    def drain(self) -> None:
        """Wait for every tensor out and hand each over, in submission order."""
        self._hand_over(-1)

    def close(self) -> None:
        """Drop the pieces not started, let the running ones finish and stop the threads (idempotent)."""
        with self._changed:
            self._closed = True
            self._waiting.clear()
            self._out.clear()
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()

    def _hand_over(self, limit: int) -> None:
        """Hand over the finished tensors at the head, waiting for more while more than `limit` bytes are out."""
        while True:
            with self._changed:
                if not self._out or (self._out_bytes <= limit and self._out[0].remaining):
                    return
                head = self._out[0]
                while head.remaining:
                    self._changed.wait()
            if head.error is not None:
                raise head.error
            self._on_result(head.tag, tuple(head.values))  # the next tensor waits for this: pages can be dropped
            with self._changed:
                self._out.popleft()
                self._out_bytes -= head.nbytes
                if self._out:  # the next tensor is now the oldest: its pieces no longer count as read ahead
                    self._ahead -= self._out[0].ahead
                    self._out[0].ahead = 0
                self._changed.notify_all()

    def _value(self, data: memoryview, reference: memoryview | None) -> int:
        """A piece's checksum, or (with a reference) 0 when it holds the reference's bytes and 1 when not."""
        if reference is None:
            with timed("crc of the read-back tensors (threads)"):
                value = self._checksum(data)
        else:
            with timed("comparing with the source (threads)"):
                value = 0 if same_bytes(data, reference) else 1
        if self._release is not None:
            self._release(data, reference)
        return value

    def _startable(self) -> bool:
        if not self._waiting:
            return False
        piece = self._waiting[0]
        return piece.tensor is self._out[0] or self._ahead + len(piece.data) <= self._window

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._closed and not self._startable():
                    self._changed.wait()
                if self._closed:
                    return
                piece = self._waiting.popleft()
                tensor, index, data, reference = piece.tensor, piece.index, piece.data, piece.reference
                del piece
                if tensor is not self._out[0]:
                    tensor.ahead += len(data)
                    self._ahead += len(data)
            error: BaseException | None = None
            try:
                value = self._value(data, reference)
            except BaseException as caught:  # handed to the caller with its tensor; a thread must not die of it
                traceback.clear_frames(caught.__traceback__)  # their locals hold the piece, so the array
                value, error = 0, caught
            del data, reference  # no reference to the arrays once the piece is done
            with self._changed:
                tensor.values[index] = value
                if error is not None and tensor.error is None:
                    tensor.error = error
                tensor.remaining -= 1
                if not tensor.remaining:
                    self._changed.notify_all()
            del tensor, error


def _checksum_here(array: Array, piece: int, checksum: PieceChecksum) -> Checksum:
    """An array's checksum, computed on this thread."""
    data = _raw_bytes(array)
    if not len(data):
        return (checksum(data),)
    return tuple(checksum(data[start : start + piece]) for start in range(0, len(data), piece))


def _slice(data: memoryview | None, start: int, size: int) -> memoryview | None:
    return None if data is None else data[start : start + size]


def _raw_bytes(array: Array) -> memoryview:
    """The array's bytes as a flat memoryview, C order (copied only when the array is not C-contiguous)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _piece_size(piece: int | None) -> int:
    size = PIECE_BYTES if piece is None else piece
    if size < 1:
        msg = f"a checksum piece must hold at least one byte, not {size}"
        raise ValueError(msg)
    return size
