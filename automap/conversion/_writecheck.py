"""The read-back right after writing: each tensor's bytes, as the output file holds them, compared with the source's.

A renamed tensor reaches the writer as a view of a memory-mapped source file and goes to the output file by a kernel
copy (`automap.io._copy`). Read back after the whole file is written and synced, its pages may no longer be in the
page cache: on a machine whose memory is full of other files, the oldest pages written are dropped first, and the
read-back reads them from the disk a second time. Read back at once, they cannot be: a page written and not yet on
the disk cannot be dropped. So `WriteCheck` watches every write (`_copy.watching_writes`) and, for the bytes of a
source view, maps the range of the output file just written and compares it with the source's bytes, piece by
piece on a helper thread (`ChecksumPool` with a reference), while the writer goes on with the next tensors.

Invariants:

- Only what the kernel holds for the output file is compared: the range is read through a new read-only mapping
  of the output's own descriptor, at the offset the bytes were written to, never from the writer's memory.
- A range found equal is recorded as (file, offset, length); the read-back after the fsync (`readback`) takes a
  tensor as checked only where its loader shows it at exactly such a range of the same file (device and inode).
- Bytes from memory (transformed tensors) are not checked here: their piece CRC-32s are compared after the fsync.
- Memory stays bounded: the pieces in flight are limited by the pool's window, and each piece's pages, in the
  output and in the source, are handed back as soon as it is compared.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from automap._phases import timed
from automap._types import Array

from ._checksums import Checksum, ChecksumPool, Expected
from ._pages import FileId, MappedPages, file_id

__all__ = ["WriteCheck", "Written"]

Place = tuple[FileId, int, int]
"""A range of a file: the file (device and inode), the offset of its first byte, its length."""


@dataclass
class Written:
    """What the writer knows of the tensors it wrote, for the read-back after the fsync.

    Attributes:
        expected: what each tensor must read back as, by name (`_checksums.Expected`).
        checked: ranges of output files compared with their source's bytes right after being written, and equal.
        problems: tensors whose bytes differed right after being written.
    """

    expected: dict[str, Expected] = field(default_factory=dict)
    checked: set[Place] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


_Tag = tuple[str, Place, mmap.mmap]  # tensor name, the range written, the mapping it is read back through


class WriteCheck:
    """Compare the output's bytes of every source view written with the source's, on a helper thread.

    Use as a context manager around the writing, with `written` installed as the watcher of `write_bytes`, and
    `handing_out(name)` called as each tensor is handed to the writer. Leaving the block without an exception waits
    for the last comparisons; the results are in `result`.
    """

    def __init__(self, pages: MappedPages, result: Written) -> None:
        self.result = result
        self._pages = pages
        self._name = ""
        # one thread: it outruns the disk, and a second one would only take CPU from the writer's kernel copy
        self._pool = ChecksumPool[_Tag](self._compared, release=self._release, workers=1)

    def __enter__(self) -> WriteCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._pool.drain()
        finally:
            self._pool.close()

    def handing_out(self, name: str) -> None:
        """The tensor whose bytes the next writes hold."""
        self._name = name

    def written(self, handle: BinaryIO, offset: int, data: Array) -> None:
        """Queue the comparison of bytes just written at `offset` of `handle` with `data`, when it is a source view."""
        if data.nbytes == 0 or not self._pages.holds(data):
            return  # from memory: compared by its CRC-32s after the fsync
        try:
            handle.flush()
            descriptor = handle.fileno()
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            mapped = mmap.mmap(descriptor, offset + data.nbytes - start, access=mmap.ACCESS_READ, offset=start)
            place = (file_id(os.fstat(descriptor)), offset, data.nbytes)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return  # not a file that can be mapped: compared in full after the fsync
        view = np.frombuffer(mapped, np.uint8, count=data.nbytes, offset=offset - start)
        with timed("waiting for the write check"):  # the pool holds the writer while it is a window behind
            self._pool.submit((self._name, place, mapped), view, reference=data)

    def _compared(self, tag: _Tag, values: Checksum) -> None:
        name, place, mapped = tag
        if any(values):
            self.result.problems.append(f"{name!r}: the bytes in the file right after writing differ from the source's")
        else:
            self.result.checked.add(place)
        with contextlib.suppress(BufferError):  # a view still held elsewhere: the mapping goes with it
            mapped.close()

    def _release(self, data: memoryview, reference: memoryview | None) -> None:
        self._pages.forget(data)  # the output's own read-only mapping
        if reference is not None:
            self._pages.drop(reference)
