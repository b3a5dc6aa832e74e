"""The read-back right after writing: each tensor's bytes, as the output file holds them, compared with the source's.

A renamed tensor reaches the writer as a view of a memory-mapped source file and goes to the output file by a kernel
copy (`automap.io._copy`). Read back after the whole file is written and synced, its pages may no longer be in the
page cache: on a machine whose memory is full of other files, the oldest pages written are dropped first, and the
read-back reads them from the disk a second time. Read back at once, they cannot be: a page written and not yet on
the disk cannot be dropped. So `WriteCheck` watches every write (`_copy.watching_writes`) and, for the bytes of a
source view, maps the range of the output file just written and the same bytes of the source file, piece by piece,
and compares them (`same_bytes`), on a helper thread while the writer goes on with the next tensors. A map reads
the kernel's pages where they are: reading them with `pread` into buffers instead copies every byte twice more and
took twice the CPU (1.8 s against 0.8 s for 4.4 GB), which the kernel copy of the next tensors needs on a
two-core machine. Each piece is unmapped once compared, so the process holds two pieces at most.

Invariants:

- Only what the kernel holds for the output file is compared: the range is read through the output's own
  descriptor, at the offset the bytes were written to, never from the writer's memory.
- A range found equal is recorded as (file, offset, length); the read-back after the fsync (`readback`) takes a
  tensor as checked only where its loader shows it at exactly such a range of the same file (device and inode).
  A range that could not be read is not recorded, so that tensor is compared in full after the fsync.
- Bytes from memory (transformed tensors) are not checked here: their piece CRC-32s are compared after the fsync.
- The writer is held back only when the ranges not yet compared exceed `BACKLOG_BYTES`, so that they are compared
  while still in the page cache; memory holds two pieces, whatever the tensors' sizes.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from automap._phases import timed
from automap._types import Array

from . import _checksums
from ._checksums import Expected, same_bytes
from ._pages import FileId, MappedPages, file_id

__all__ = ["BACKLOG_BYTES", "Place", "WriteCheck", "Written"]

BACKLOG_BYTES = 512 * 1024 * 1024
"""Bytes written and not yet compared at most: the writer waits beyond this (well within what the kernel keeps)."""

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


@dataclass
class _Range:
    """Bytes just written, to compare: where they are in the output, and where the same bytes are in the source."""

    name: str
    place: Place
    output: int  # a descriptor of our own (duplicated), closed once compared
    source: int  # likewise
    source_offset: int


class WriteCheck:
    """Compare the output's bytes of every source view written with the source's, on a helper thread.

    Use as a context manager around the writing, with `written` installed as the watcher of `write_bytes`, and
    `handing_out(name)` called as each tensor is handed to the writer. Leaving the block without an exception waits
    for the last comparisons; the results are in `result`.
    """

    def __init__(self, pages: MappedPages, result: Written, *, piece: int | None = None) -> None:
        self.result = result
        self._pages = pages
        self._piece = piece or _checksums.PIECE_BYTES
        self._name = ""
        self._changed = threading.Condition()  # guards everything below
        self._queue: deque[_Range] = deque()
        self._queued = 0  # bytes queued or being compared
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="automap-write-check", daemon=True)
        self._thread.start()

    def __enter__(self) -> WriteCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                with timed("waiting for the write check"), self._changed:
                    while self._queued and self._error is None:
                        self._changed.wait()
                if self._error is not None:
                    raise self._error
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            self._thread.join()
            for left in self._queue:
                _close(left)
            self._queue.clear()

    def handing_out(self, name: str) -> None:
        """The tensor whose bytes the next writes hold."""
        self._name = name

    def written(self, handle: BinaryIO, offset: int, data: Array) -> None:
        """Queue the comparison of bytes just written at `offset` of `handle` with `data`, when it is a source view."""
        source = self._pages.locate(data) if data.nbytes else None
        if source is None:
            return  # from memory: compared by its CRC-32s after the fsync
        try:
            handle.flush()
            output = os.dup(handle.fileno())
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return  # not a file: compared in full after the fsync
        try:
            place = (file_id(os.fstat(output)), offset, data.nbytes)
            task = _Range(self._name, place, output, os.dup(source[0]), source[1])
        except OSError:
            os.close(output)
            return
        with timed("waiting for the write check"), self._changed:
            while self._queued > BACKLOG_BYTES and self._error is None:
                self._changed.wait()
            self._queue.append(task)
            self._queued += data.nbytes
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                task = self._queue.popleft()  # still counted in `_queued` until compared
            same: bool | None = None
            try:
                with timed("comparing with the source (threads)"):
                    same = self._compare(task)
            except OSError:
                pass  # could not be read: left to the comparison after the fsync
            except BaseException as error:  # handed to the writer's thread; this one must not die of it
                with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            finally:
                _close(task)
            with self._changed:
                if same is False:
                    self.result.problems.append(
                        f"{task.name!r}: the bytes in the file right after writing differ from the source's"
                    )
                elif same:
                    self.result.checked.add(task.place)
                self._queued -= task.place[2]
                self._changed.notify_all()

    def _compare(self, task: _Range) -> bool:
        """True when the output's range holds the source's bytes, compared piece by piece through maps."""
        _, offset, length = task.place
        for start in range(0, length, self._piece):
            size = min(self._piece, length - start)
            with (
                _mapped(task.output, offset + start, size) as ours,
                _mapped(task.source, task.source_offset + start, size) as theirs,
            ):
                if ours is None or theirs is None or not same_bytes(ours, theirs):
                    return False
        return True


@contextlib.contextmanager
def _mapped(descriptor: int, offset: int, size: int) -> Iterator[memoryview | None]:
    """A read-only view of `size` bytes at `offset` of a file, unmapped on leaving; None when the file is shorter."""
    lead = offset % mmap.ALLOCATIONGRANULARITY
    try:
        mapping = mmap.mmap(descriptor, lead + size, access=mmap.ACCESS_READ, offset=offset - lead)
    except ValueError:  # the range runs past the end of the file
        yield None
        return
    try:
        with memoryview(mapping) as whole, whole[lead : lead + size] as view:
            yield view
    finally:
        mapping.close()


def _close(task: _Range) -> None:
    for descriptor in (task.output, task.source):
        with contextlib.suppress(OSError):
            os.close(descriptor)
