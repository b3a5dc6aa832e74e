"""Write an output straight to the disk, past the page cache (`O_DIRECT`), when nothing will read it back soon.

A conversion without verification reads each tensor once and writes it once: the page cache holds nothing it will
use again, and on the machines automap is measured on (2 cores, a virtual disk) going through the cache costs
more than the disk itself: a 4.4 GB conversion written past it ran at 1.17-1.22x the throughput of `cp + sync` of
the same file (medians of 12 rounds), where the kernel copy through the cache runs at 0.9-0.95x. `DirectOutput`
writes past it:

- what a writer writes (headers, tensors from memory) is gathered into a block buffer of `BLOCK` bytes aligned
  to the page size, and each full block is written at its place in the file by a helper thread while the next
  one fills;
- a tensor that is a view of a source file is read straight from the disk into an aligned buffer
  (`copy_from`, in place of the kernel copy) and placed in the block buffer; where small tensors follow one
  another in the file, each read reaches further ahead (doubling up to a block), so that the next ones come from
  the buffer;
- `flush()` writes the block being filled as well, padded to a whole page, and cuts the file back to the bytes
  written, so that after a flush the file holds exactly what was written, as with a buffered file.

The file's bytes are the same as through a buffered file; only the way there differs. Where the filesystem
refuses direct writes (the flag, or a write's alignment), the same blocks are written through the cache instead;
where a source cannot be read directly, it is read through the cache into the block buffer.

Only writers that append use it (every checkpoint writer does): `seek` is not offered. It is used inside
`bypassing_cache()` (see `automap.conversion.writer`), by the places that open output files (`output_file`).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import BinaryIO, cast

__all__ = ["BLOCK", "DirectOutput", "bypassing_cache", "output_file"]

BLOCK = 8 * 1024 * 1024
"""Bytes per write, and per read of a source: large enough for the disk, small enough to overlap the two."""
_NEAR = 64 * 1024  # a tensor starting this close after the last one read counts as the next one in the file
_ALIGN = 4096  # the offsets, lengths and addresses of direct I/O are multiples of this (every common device)
_O_DIRECT = getattr(os, "O_DIRECT", 0)

_File = tuple[int, int]  # device and inode

_BYPASS: ContextVar[bool] = ContextVar("automap_bypass_cache", default=False)


@contextlib.contextmanager
def bypassing_cache() -> Iterator[None]:
    """Within the block, output files opened by `output_file` are written past the page cache where possible."""
    token = _BYPASS.set(True)
    try:
        yield
    finally:
        _BYPASS.reset(token)


def output_file(fd: int) -> BinaryIO:
    """A binary file to write `fd` through: a `DirectOutput` inside `bypassing_cache()` where possible.

    The returned file owns `fd` and closes it.
    """
    if _BYPASS.get() and _O_DIRECT and hasattr(os, "preadv") and hasattr(os, "pwritev"):
        with contextlib.suppress(OSError, ValueError, RuntimeError):  # no direct I/O there, no thread to spare
            return cast("BinaryIO", DirectOutput(fd))
    return os.fdopen(fd, "wb")


class DirectOutput:
    """An append-only binary file written in aligned blocks with `O_DIRECT` by a helper thread (see the module).

    Use as a context manager (as `os.fdopen`'s file): leaving it without an error writes what is left; leaving it
    in any case waits for the helper thread, gives the descriptor its flags back and closes it. An error of the
    helper thread (a full disk) is raised by the next `write`, `copy_from` or `flush`.
    """

    def __init__(self, fd: int, *, block: int = BLOCK) -> None:
        if block <= 0 or block % _ALIGN:
            msg = f"block must be a positive multiple of {_ALIGN}, not {block}"
            raise ValueError(msg)
        self._fd = fd
        self._size = block
        self._blocks = [mmap.mmap(-1, block), mmap.mmap(-1, block)]  # anonymous maps are page-aligned
        self._reading = mmap.mmap(-1, block + _ALIGN)
        self._flags = _status_flags(fd)
        self._direct = True  # False once a direct write was refused: the rest goes through the cache
        self._current = 0  # the block being filled
        self._fill = 0  # bytes in it
        self._start = 0  # the file offset of its first byte
        self._sources: dict[int, tuple[_File | None, int | None]] = {}  # descriptor -> its file, a direct descriptor
        self._window: tuple[_File | None, int, int] = (None, 0, 0)  # the reading buffer holds: file, offset, bytes
        self._next: tuple[_File | None, int] = (None, 0)  # where the last bytes read from a source ended
        self._ahead = 0  # bytes the next read reaches beyond what is asked for
        self._changed = threading.Condition()  # guards the job and the error
        self._job: tuple[int, int, int] | None = None  # (block, length, file offset) for the thread to write
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="automap-direct-writer", daemon=True)
        _status_flags(fd, self._flags | _O_DIRECT)  # EINVAL where the filesystem has no direct I/O
        try:
            self._thread.start()
        except BaseException:
            _status_flags(fd, self._flags)  # the caller writes through the cache instead
            raise

    # --- the file interface the writers use ---------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append `data`; returns its length."""
        self._raise_error()
        with memoryview(data) as view, view.cast("B") as flat:
            done = 0
            while done < len(flat):
                take = min(self._size - self._fill, len(flat) - done)
                self._blocks[self._current][self._fill : self._fill + take] = flat[done : done + take]
                self._advance(take)
                done += take
            return len(flat)

    def copy_from(self, source: int, offset: int, count: int) -> int:
        """Append `count` bytes of the open file `source` from `offset`; returns the bytes copied (short at its end)."""
        self._raise_error()
        done = 0
        while done < count:
            got = self._append_from(source, offset + done, count - done)
            if got == 0:  # the file ended early
                break
            done += got
        return done

    def tell(self) -> int:
        """The offset the next byte goes to."""
        return self._start + self._fill

    def flush(self) -> None:
        """Write everything appended so far; the file then holds exactly those bytes."""
        self._raise_error()
        if self._fill:
            self._submit(self._current, _round_up(self._fill))  # padded; cut back below
        self._wait_idle()
        os.ftruncate(self._fd, self._start + self._fill)

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        """Stop the helper thread, give the descriptor its flags back and close it (nothing more is written)."""
        if self._closed:
            return
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join()
        try:
            with contextlib.suppress(OSError):
                _status_flags(self._fd, self._flags)
            for _, direct in self._sources.values():
                if direct is not None:
                    with contextlib.suppress(OSError):
                        os.close(direct)
        finally:
            os.close(self._fd)

    def __enter__(self) -> DirectOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self.close()

    # --- filling the blocks ---------------------------------------------------------------------------------

    def _append_from(self, source: int, first: int, want: int) -> int:
        """Append up to `want` bytes of `source` from `first` (at most a block's worth); the bytes appended."""
        file, direct = self._direct_source(source)
        if direct is not None:
            try:
                held = self._read_ahead(file, direct, first, want)
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                self._sources[source] = (file, None)  # this file takes no direct read of this shape
                os.close(direct)
            else:
                got = min(want, held)
                with memoryview(self._reading) as reading:
                    start = first - self._window[1]
                    self.write(reading[start : start + got])
                self._next = (file, first + got)
                return got
        take = min(self._size - self._fill, want)
        with memoryview(self._blocks[self._current]) as block:
            got = os.preadv(source, [block[self._fill : self._fill + take]], first)
        self._advance(got)
        return got

    def _read_ahead(self, file: _File | None, direct: int, first: int, want: int) -> int:
        """Have the reading buffer hold the file's bytes from `first`; how many it holds from there (0: the end).

        Small tensors lie close together: where one starts just after the last one read, the read reaches further
        ahead, doubling up to a block, so that the ones after it come from the buffer and not from a read each.
        """
        held_file, held_start, held_length = self._window
        if held_file == file and held_start <= first < held_start + held_length:
            return held_start + held_length - first
        next_file, next_offset = self._next
        close_after = next_file == file and 0 <= first - next_offset <= _NEAR
        self._ahead = min(self._size, max(_NEAR, 2 * self._ahead)) if close_after else 0
        lead = first % _ALIGN
        span = min(self._size, lead + max(want, self._ahead))
        self._window = (file, first - lead, 0)  # what the buffer holds, should the read fail half-way
        with memoryview(self._reading) as reading:
            got = os.preadv(direct, [reading[: _round_up(span)]], first - lead)
        self._window = (file, first - lead, got)
        return max(0, got - lead)

    def _advance(self, count: int) -> None:
        """`count` more bytes are in the current block; hand it over when full."""
        self._fill += count
        if self._fill < self._size:
            return
        self._submit(self._current, self._size)
        self._current = 1 - self._current  # not the block being written: `_submit` waited for the one before
        self._start += self._size
        self._fill = 0

    # --- the helper thread ----------------------------------------------------------------------------------

    def _submit(self, block: int, length: int) -> None:
        """Have the thread write `length` bytes of `block` at its place, once the block before is written."""
        with self._changed:
            while self._job is not None and self._error is None:
                self._changed.wait()
            self._raise_error()
            self._job = (block, length, self._start)
            self._changed.notify_all()

    def _wait_idle(self) -> None:
        with self._changed:
            while self._job is not None and self._error is None:
                self._changed.wait()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            with self._changed:
                while self._job is None and not self._closed:
                    self._changed.wait()
                if self._job is None:
                    return
                block, length, offset = self._job
            error: BaseException | None = None
            try:
                self._write_block(block, length, offset)
            except BaseException as failed:  # handed to the writer's thread; this one must not die of it
                error = failed
            with self._changed:
                self._error = self._error or error
                self._job = None
                self._changed.notify_all()

    def _write_block(self, block: int, length: int, offset: int) -> None:
        with memoryview(self._blocks[block]) as view:
            done = 0
            while done < length:
                try:
                    done += os.pwritev(self._fd, [view[done:length]], offset + done)
                except OSError as error:
                    if not self._direct or error.errno != errno.EINVAL:
                        raise
                    self._through_cache()  # the filesystem takes no direct write of this shape: write it as usual

    def _through_cache(self) -> None:
        _status_flags(self._fd, self._flags)
        self._direct = False

    # --- sources --------------------------------------------------------------------------------------------

    def _direct_source(self, source: int) -> tuple[_File | None, int | None]:
        """`source`'s file (device and inode), and a descriptor reading it past the cache (None: through the cache)."""
        try:
            info = os.fstat(source)
        except OSError:
            return None, None
        file = (info.st_dev, info.st_ino)
        known = self._sources.get(source)
        if known is not None and known[0] == file:
            return known
        if known is not None and known[1] is not None:  # the descriptor number now names another file
            os.close(known[1])
        direct: int | None
        try:
            direct = os.open(f"/proc/self/fd/{source}", os.O_RDONLY | _O_DIRECT | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            direct = None
        self._sources[source] = (file, direct)
        return file, direct


def _status_flags(fd: int, flags: int | None = None) -> int:
    """The descriptor's status flags (`O_DIRECT` among them), set to `flags` first when given."""
    import fcntl  # POSIX only, as direct I/O is

    if flags is not None:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return fcntl.fcntl(fd, fcntl.F_GETFL)


def _round_up(count: int) -> int:
    return -(-count // _ALIGN) * _ALIGN
