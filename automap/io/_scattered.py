"""Read small pieces scattered over a large file, and leave its page cache as it was.

A torch zip checkpoint keeps a small local header in front of every tensor, and the reader reads them all to find
where each tensor's bytes begin. In a cold file each of those reads leaves a cached page or a few (with the
kernel's read-ahead, ~24 KB) in front of a tensor. A conversion then streams the file, and the kernel's read-ahead
of that stream breaks at every cached piece: on a 4.4 GB checkpoint of 201 tensors the copy issued about 30% more
read requests and took longer (docs/performance.md).

`ScatteredReads` reads without read-ahead and, when done, hands back the pages its reads brought in; pages that
were cached before are kept (a read that may not wait for the disk, `RWF_NOWAIT`, tells which). Where the
platform lacks these calls it reads plainly: all of this is advice to the kernel, the bytes read are the same.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from typing import BinaryIO

__all__ = ["ScatteredReads"]

_PAGE = mmap.PAGESIZE
_NOWAIT = getattr(os, "RWF_NOWAIT", None)


class ScatteredReads:
    """Read pieces of an open file at given offsets; on leaving, drop the pages only these reads brought in.

    Example:
        >>> with path.open("rb") as handle, ScatteredReads(handle) as pieces:  # doctest: +SKIP
        ...     header = pieces.read(offset, 30)
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._descriptor: int | None = None
        self._brought_in: list[tuple[int, int]] = []
        with contextlib.suppress(AttributeError, OSError, ValueError):
            descriptor = handle.fileno()
            if hasattr(os, "pread"):
                self._descriptor = descriptor
        self._advise(0, 0, "POSIX_FADV_RANDOM")  # read what is asked for, nothing around it

    def __enter__(self) -> ScatteredReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer at the end of the file)."""
        descriptor = self._descriptor
        if descriptor is None:
            self._handle.seek(offset)
            return self._handle.read(length)
        cached = _cached(descriptor, offset, length)
        if cached is not None:
            return cached
        self._brought_in.append((offset, length))
        return os.pread(descriptor, length, offset)

    def close(self) -> None:
        """Hand back the pages the reads brought in (whole pages around each piece) and restore normal read-ahead."""
        for offset, length in self._brought_in:
            low = offset - offset % _PAGE
            high = -(-(offset + length) // _PAGE) * _PAGE  # the kernel drops only whole pages
            self._advise(low, high - low, "POSIX_FADV_DONTNEED")
        self._brought_in.clear()
        self._advise(0, 0, "POSIX_FADV_NORMAL")

    def _advise(self, offset: int, length: int, advice: str) -> None:
        if self._descriptor is None or not hasattr(os, advice):
            return
        with contextlib.suppress(OSError):
            os.posix_fadvise(self._descriptor, offset, length, getattr(os, advice))


def _cached(descriptor: int, offset: int, length: int) -> bytes | None:
    """The bytes, when every page under them is in the page cache already; None when that cannot be told."""
    if _NOWAIT is None or length <= 0:
        return None
    buffer = bytearray(length)
    try:
        count = os.preadv(descriptor, [buffer], offset, _NOWAIT)
    except OSError:  # EAGAIN: some page is not cached; EOPNOTSUPP: this file system cannot tell
        return None
    return bytes(buffer) if count == length else None
