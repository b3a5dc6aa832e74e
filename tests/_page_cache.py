"""Probes of the page cache for tests: which pages of a file are cached (`mincore`), and making a file cold."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="probes the page cache on Linux")


def resident(path: Path) -> np.ndarray:
    """One flag per page of the file: in the page cache or not (`mincore`, which reads nothing itself)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    flags = np.zeros(-(-size // PAGE), np.uint8)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    try:
        view = np.frombuffer(mapping, np.uint8)
        status = libc.mincore(view.__array_interface__["data"][0], size, flags.ctypes.data)
        del view  # the map closes only when no view of it is left
    finally:
        mapping.close()
    assert status == 0, f"mincore failed: errno {ctypes.get_errno()}"
    return flags & 1 == 1


def cached(path: Path, offset: int, length: int) -> bool:
    """Whether every page under the bytes is in the page cache."""
    return bool(resident(path)[offset // PAGE : -(-(offset + length) // PAGE)].all())


def cold(path: Path) -> None:
    """Write the file out and drop its pages; skip where the file system keeps them (tmpfs).

    The kernel may hold on to a page a moment longer (a page still in a per-CPU batch): asked again until none is
    left, as a cold file on disk would be.
    """
    for _ in range(20):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)
        if not resident(path).any():
            return
        time.sleep(0.05)
    pytest.skip("this file system keeps the pages of a file in memory")
