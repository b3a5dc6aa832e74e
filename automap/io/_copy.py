"""Write a tensor's bytes into an output file, copied inside the kernel when they are a view of another file.

Conversions mostly rename: a tensor leaves the source file untouched, as a zero-copy view of its memory map.
Writing such a view through user space faults each source page into the process and copies it once more;
`os.copy_file_range` moves the same bytes from file to file inside the kernel, as `cp` does. The writers call
`write_bytes`; a caller that knows where views come from installs a locator with `copying_from` (conversion
uses `automap.conversion._pages.MappedPages.locate`). Without a locator, or when the kernel cannot copy between these
files, the bytes are written as usual. An output written past the page cache (`automap._direct.DirectOutput`) reads
such bytes from the source file itself, past the cache too (`copy_from`).

Every writer hands each tensor's bytes to `write_bytes`, so it is also where a caller can watch them land: a watcher
installed with `watching_writes` is told the file, the offset and the bytes of each write once it is done (the
conversion reads them back from there at once, while they are still in the page cache).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import BinaryIO

import numpy as np

from automap._types import Array

__all__ = ["copying_from", "watching_writes", "write_bytes"]

Locator = Callable[[Array], "tuple[int, int] | None"]  # array -> (open source file, offset of its bytes)
Watcher = Callable[[BinaryIO, int, Array], None]  # the file written, the offset of the bytes in it, the bytes (uint8)

_LOCATOR: ContextVar[Locator | None] = ContextVar("automap_copy_locator", default=None)
_WATCHER: ContextVar[Watcher | None] = ContextVar("automap_copy_watcher", default=None)
_MIN_COPY = 1024 * 1024  # smaller pieces are cheaper to write than to flush and copy
_STEP = 1 << 30  # bytes per copy_file_range call


@contextlib.contextmanager
def copying_from(locator: Locator) -> Iterator[None]:
    """Within the block, `write_bytes` copies arrays `locator` can place in a file inside the kernel."""
    token = _LOCATOR.set(locator)
    try:
        yield
    finally:
        _LOCATOR.reset(token)


@contextlib.contextmanager
def watching_writes(watcher: Watcher) -> Iterator[None]:
    """Within the block, `write_bytes` tells `watcher` about every write once it is done."""
    token = _WATCHER.set(watcher)
    try:
        yield
    finally:
        _WATCHER.reset(token)


def write_bytes(handle: BinaryIO, array: Array) -> None:
    """Append a C-contiguous array's bytes to `handle`."""
    data = array.reshape(-1).view(np.uint8)
    watcher = _WATCHER.get()
    start = _position(handle) if watcher is not None else None
    locator = _LOCATOR.get()
    # an output written past the page cache reads views from their file past it too, small ones included: touching
    # a view's page reads the disk's whole read-ahead window around it into the cache
    direct = getattr(handle, "copy_from", None)
    copied = direct is not None or (data.nbytes >= _MIN_COPY and hasattr(os, "copy_file_range"))
    where = locator(array) if locator is not None and data.nbytes and copied else None
    done = 0
    if where is not None:
        done = direct(*where, data.nbytes) if direct is not None else _copied(handle, *where, data.nbytes)
    if done < data.nbytes:
        handle.write(data[done:].data)
    if watcher is not None and start is not None:
        watcher(handle, start, data)


def _position(handle: BinaryIO) -> int | None:
    """Where the next byte written to `handle` goes, or None for a stream without positions."""
    try:
        return handle.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _copied(handle: BinaryIO, source: int, offset: int, count: int) -> int:
    """Bytes copied from `source` at `offset` to the end of `handle` (0 when the kernel cannot copy them)."""
    try:
        handle.flush()
        target = handle.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return 0
    done = 0
    while done < count:
        try:
            moved = os.copy_file_range(source, target, min(count - done, _STEP), offset + done)
        except OSError:
            if done:  # the output now holds part of the tensor: a real failure (a full disk, say)
                raise
            return 0  # not possible between these files (another filesystem, an old kernel): write instead
        if moved == 0:  # the source file ended early; the rest comes from memory
            break
        done += moved
    return done
