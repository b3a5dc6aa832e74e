"""Stream memory-mapped checkpoint files: read ahead of the reader, give pages back behind it, copy in the kernel.

Readers map checkpoint files (safetensors, `.ckpt`, `torch.load(mmap=True)`) and hand out zero-copy views, so a
conversion reads a file by touching its pages. `MappedPages` deals with what follows:

- Touching pages one fault at a time reads a cold file in small pieces. `prefetch(array)` asks the kernel to
  read the whole tensor, and a little beyond it, in the background (`madvise(MADV_WILLNEED)`), so the disk
  streams while the previous tensor is written; on a cold cache this about halves the reading time.
- Every touched page stays in the process's resident set until the mapping is closed: streaming a 100 GB
  checkpoint would show 100 GB of RSS, although those pages are clean copies of the file that the kernel may
  drop at any time. `used(nbytes)` hands them back (`madvise(MADV_DONTNEED)`) every so many bytes. The page
  cache keeps the data, and a page touched again is read back from the file, so nothing a caller holds is
  invalidated.
- Copying a view's bytes through user space faults every page into the process and copies it once more.
  `locate(array)` says which file and offset a view shows, so that a writer can have the kernel copy the
  bytes file to file (`os.copy_file_range`, what `cp` does); see `automap.io._copy`.

A verification reads the output and the source once more, piece by piece: `drop(view)` hands a piece's pages back
as soon as it is compared (from a helper thread), `holds(array)` and `where(array)` tell whether an array is a view
of one of the files and where in it, and `rescan()` looks the mappings up again after a loader maps a file.

Only mappings of the files given are touched, and pages are dropped only where that cannot lose data: shared
mappings (their pages are the file's), and private mappings that own no page of their own (no copy-on-write
copy, checked in `/proc/self/smaps`). Read-ahead is advice and never changes data. Where this cannot be
checked (not Linux, no libc, no /proc) nothing is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from automap._types import Array, StrPath

__all__ = ["FileId", "MappedPages", "file_id"]

_EVERY = 256 * 1024 * 1024  # bytes used between two releases: bounds the mapped pages held at once
_AHEAD = 64 * 1024 * 1024  # read this far beyond the tensor being read: the next one, usually
_MADV_WILLNEED = getattr(mmap, "MADV_WILLNEED", 3)
_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", 4)
_PAGE = mmap.PAGESIZE

FileId = tuple[int, int, int]  # device major, device minor, inode: how /proc/self/maps names a file
Region = tuple[int, int, bool, FileId, int]  # start, end, shared, file, offset in the file of `start`


class MappedPages:
    """Read ahead in, and drop the resident pages of, some memory-mapped files.

    Example:
        >>> pages = MappedPages(["model.safetensors"])  # doctest: +SKIP
        >>> for record in table:  # doctest: +SKIP
        ...     array = record.read()
        ...     pages.prefetch(array)
        ...     write(array)
        ...     pages.used(record.nbytes)
        >>> pages.release()  # doctest: +SKIP
    """

    def __init__(self, files: Iterable[StrPath] = (), *, every: int = _EVERY, ahead: int = _AHEAD) -> None:
        self._files: dict[FileId, Path] = {}
        self._descriptors: dict[FileId, int] = {}
        self._clean: set[tuple[int, int]] = set()  # private mappings found without copy-on-write pages
        self._every = every
        self._ahead = ahead
        self._pending = 0
        self._regions: list[Region] = []
        self._since_lookup = every  # bytes prefetched since /proc/self/maps was last read
        self._madvise = _madvise_function()
        for file in files:
            self.add(file)

    @property
    def active(self) -> bool:
        """True when this platform lets pages be advised on."""
        return self._madvise is not None

    def add(self, file: StrPath) -> None:
        """Also handle the mappings of `file` (ignored when it does not exist)."""
        with contextlib.suppress(OSError):
            info = Path(file).stat()
            self._files[file_id(info)] = Path(file)
            self._since_lookup = self._every

    def rescan(self) -> None:
        """Look the files' mappings up now and on the next miss (a file was opened or closed; addresses are reused).

        `drop` and `where` trust the mappings last looked up: a caller that maps and unmaps files (a loader per
        output file) rescans after each one is opened, so that no address is taken for a mapping that is gone.
        """
        if self._madvise is None or not self._files:
            return
        with contextlib.suppress(OSError, ValueError):
            self._regions = _regions(set(self._files))
            self._clean = set()  # a private mapping at the same addresses may be a new one: checked again
        self._since_lookup = self._every  # a file mapped lazily, on its first read, is looked up on the first miss

    def prefetch(self, array: Array) -> None:
        """Start reading an array's pages (and what follows in its file) if it is a view of one of the files."""
        madvise = self._madvise
        if madvise is None or array.nbytes == 0 or not self._files:
            return
        start = int(array.__array_interface__["data"][0])
        region = self._find(start, array.nbytes)
        if region is not None:
            low = start - start % _PAGE
            madvise(low, min(region[1], start + array.nbytes + self._ahead) - low, _MADV_WILLNEED)

    def locate(self, array: Array) -> tuple[int, int] | None:
        """The open file and offset whose bytes a C-contiguous view of one of the files shows, or None.

        A private mapping qualifies only while it holds no copy-on-write page (checked once per mapping), so
        the file's bytes are the view's bytes.
        """
        region = self._file_region(array)
        if region is None:
            return None
        low, _, _, file, offset = region
        start = int(array.__array_interface__["data"][0])
        descriptor = self._descriptors.get(file)
        if descriptor is None:
            try:
                descriptor = os.open(self._files[file], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return None
            if file_id(os.fstat(descriptor)) != file:  # replaced since it was mapped
                os.close(descriptor)
                return None
            with contextlib.suppress(OSError, AttributeError):  # larger read-ahead, as cp asks for
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            self._descriptors[file] = descriptor
        return descriptor, offset + (start - low)

    def holds(self, array: Array) -> bool:
        """True when a C-contiguous array is a view of one of the files, showing the file's own bytes (`locate`)."""
        return self._file_region(array) is not None

    def drop(self, view: memoryview) -> None:
        """Hand back the resident pages under a view of one of the files at once (from any thread).

        Only mappings already found (by `prefetch`, `locate`, `release` or `rescan`) whose pages are the file's are
        touched, so the caller must not have unmapped any of them since (see `rescan`); pages shared with
        neighbouring bytes are dropped too, and read back from the page cache when touched.
        """
        madvise = self._madvise
        if madvise is None or not len(view):
            return
        start = int(np.frombuffer(view, np.uint8).__array_interface__["data"][0])
        region = self._region_of(start)  # no look-up here: this may run on a helper thread
        if region is None or not (region[2] or (region[0], region[1]) in self._clean):
            return
        low = start - start % _PAGE
        madvise(low, min(region[1], start + len(view)) - low, _MADV_DONTNEED)

    def drop_both(self, view: memoryview, other: memoryview | None) -> None:
        """`drop` a view and, when there is one, another (a piece and its reference, from a `ChecksumPool`)."""
        self.drop(view)
        if other is not None:
            self.drop(other)

    def where(self, array: Array) -> tuple[FileId, int] | None:
        """Which of the files (by device and inode) a view shows, and the offset of its first byte there (`locate`)."""
        region = self._file_region(array)
        if region is None:
            return None
        return region[3], region[4] + int(array.__array_interface__["data"][0]) - region[0]

    def _file_region(self, array: Array) -> Region | None:
        """The mapping a C-contiguous array lies in whole, when its pages are the file's; else None."""
        if self._madvise is None or array.nbytes == 0 or not array.flags.c_contiguous or not self._files:
            return None
        start = int(array.__array_interface__["data"][0])
        region = self._find(start, array.nbytes)
        if region is None or start + array.nbytes > region[1]:
            return None
        low, high, shared, _, _ = region
        if not shared and (low, high) not in self._clean:
            with contextlib.suppress(OSError, ValueError):
                self._clean = self._clean | _without_own_pages({(low, high)})
            if (low, high) not in self._clean:
                return None
        return region

    def close(self) -> None:
        """Close the files `locate` opened."""
        for descriptor in self._descriptors.values():
            with contextlib.suppress(OSError):
                os.close(descriptor)
        self._descriptors.clear()

    def __enter__(self) -> MappedPages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _find(self, start: int, nbytes: int) -> Region | None:
        """The mapping of one of the files holding `start`; /proc/self/maps is read again only now and then."""
        region = self._region_of(start)
        if region is None:
            self._since_lookup += nbytes
            if self._since_lookup < self._every:  # an array in ordinary memory: do not read /proc each time
                return None
            self._since_lookup = 0
            with contextlib.suppress(OSError, ValueError):
                self._regions = _regions(set(self._files))
            region = self._region_of(start)
        return region

    def used(self, nbytes: int) -> None:
        """Count bytes read from the files; release their pages once `every` bytes have been used."""
        self._pending += nbytes
        if self._pending >= self._every:
            self.release()

    def release(self) -> None:
        """Drop every resident page of the files' mappings that can be dropped without losing data."""
        self._pending = 0
        madvise = self._madvise
        if madvise is None or not self._files:
            return
        try:
            regions = _regions(set(self._files))
            private = {(start, end) for start, end, shared, _, _ in regions if not shared}
            clean = _without_own_pages(private) if private else set()
        except (OSError, ValueError):
            return
        self._regions = regions
        self._clean = clean
        for start, end, shared, _, _ in regions:
            if shared or (start, end) in clean:
                madvise(start, end - start, _MADV_DONTNEED)

    def _region_of(self, address: int) -> Region | None:
        regions = self._regions  # replaced whole, never changed in place: safe to read from another thread
        return next((r for r in regions if r[0] <= address < r[1]), None)


def _madvise_function() -> Callable[[int, int, int], None] | None:
    if not sys.platform.startswith("linux") or not Path("/proc/self/maps").exists():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int

    def call(start: int, length: int, advice: int) -> None:
        function(start, length, advice)  # advice: a failure only means nothing changes

    return call


def _regions(files: set[FileId]) -> list[Region]:
    """The mappings of `files` in this process, from /proc/self/maps."""
    found: list[Region] = []
    with Path("/proc/self/maps").open(encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 5 or fields[4] == "0":
                continue
            major, minor = (int(part, 16) for part in fields[3].split(":"))
            if (major, minor, int(fields[4])) not in files:
                continue
            low, high = (int(part, 16) for part in fields[0].split("-"))
            found.append((low, high, fields[1][3:4] == "s", (major, minor, int(fields[4])), int(fields[2], 16)))
    return found


def file_id(info: os.stat_result) -> FileId:
    """A file's identity as /proc/self/maps names it: device major, minor and inode."""
    return os.major(info.st_dev), os.minor(info.st_dev), info.st_ino


def _without_own_pages(wanted: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those private mappings in `wanted` that hold no copy-on-write page (`Anonymous: 0 kB` in smaps)."""
    clean: set[tuple[int, int]] = set()
    seen = 0
    current: tuple[int, int] | None = None
    # The kernel builds smaps as it is read, walking each mapping's pages: stop once every wanted one is seen.
    with Path("/proc/self/smaps").open("rb") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0] if line.strip() else b""
            if b"-" in head and not head.endswith(b":"):
                low, high = (int(part, 16) for part in head.split(b"-"))
                current = (low, high) if (low, high) in wanted else None
            elif current is not None and head == b"Anonymous:":
                if int(line.split()[1]) == 0:
                    clean.add(current)
                current = None
                seen += 1
                if seen == len(wanted):
                    break
    return clean
