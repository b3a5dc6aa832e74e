"""Reading a checkpoint's headers leaves the page cache as it was found: the same bytes as plain reads, a cold file
stays cold where only the reader touched it and a warm one stays warm, so that listing a file reads little of it and
a later streaming copy reads it whole."""

from __future__ import annotations

import ctypes
import io
import mmap
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automap.io import mindspore as ckpt_io
from automap.io import torch_zip_reader
from automap.io._scattered import ScatteredReads

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="probes the page cache on Linux")


def _resident(path: Path) -> np.ndarray:
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


def _cached(path: Path, offset: int, length: int) -> bool:
    """Whether every page under the bytes is in the page cache."""
    return bool(_resident(path)[offset // PAGE : -(-(offset + length) // PAGE)].all())


def _cold(path: Path) -> None:
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
        if not _resident(path).any():
            return
        time.sleep(0.05)
    pytest.skip("this file system keeps the pages of a file in memory")


def _checkpoint(path: Path) -> list[int]:
    """A torch.save file whose tensors lie pages apart; the offsets of the zip's local headers of its tensors."""
    generator = torch.Generator().manual_seed(0)
    torch.save({f"layer{i}.weight": torch.randn(256, 1024, generator=generator) for i in range(6)}, path)
    with zipfile.ZipFile(path) as archive:
        return [info.header_offset for info in archive.infolist() if "/data/" in info.filename]


def test_reads_the_same_bytes_as_plain_reads_and_short_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    content = os.urandom(5 * PAGE + 123)
    path.write_bytes(content)
    with path.open("rb") as handle, ScatteredReads(handle) as pieces:
        assert pieces.read(3 * PAGE - 7, 40) == content[3 * PAGE - 7 : 3 * PAGE + 33]
        assert pieces.read(0, 10) == content[:10]
        assert pieces.read(len(content) - 5, 40) == content[-5:]
        assert pieces.read(len(content) + 10, 8) == b""


def test_reads_from_a_handle_without_a_descriptor() -> None:
    content = bytes(range(256)) * 4
    with ScatteredReads(io.BytesIO(content)) as pieces:
        assert pieces.read(300, 20) == content[300:320]
        assert pieces.read(1020, 10) == content[1020:]


@linux_only
def test_the_pages_the_reads_brought_in_are_handed_back(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(64 * PAGE))
    _cold(path)
    offsets = [5 * PAGE + 100, 20 * PAGE - 10, 40 * PAGE]
    with path.open("rb") as handle, ScatteredReads(handle) as pieces:
        for offset in offsets:
            pieces.read(offset, 30)
        assert all(_cached(path, offset, 30) for offset in offsets)  # read through the page cache
    assert not any(_cached(path, offset, 30) for offset in offsets)


@linux_only
def test_pages_cached_before_stay_cached(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(64 * PAGE))
    _cold(path)
    descriptor = os.open(path, os.O_RDONLY)
    try:  # someone read this page before, and nothing around it
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_RANDOM)
        os.pread(descriptor, PAGE, 20 * PAGE)
    finally:
        os.close(descriptor)
    assert _resident(path).sum() == 1
    with path.open("rb") as handle, ScatteredReads(handle) as pieces:
        pieces.read(20 * PAGE + 8, 30)
        pieces.read(40 * PAGE + 8, 30)
    assert _cached(path, 20 * PAGE + 8, 30)
    assert not _cached(path, 40 * PAGE + 8, 30)


@linux_only
def test_reading_a_cold_torch_checkpoint_leaves_no_cached_page_in_front_of_its_tensors(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    headers = _checkpoint(path)
    _cold(path)
    table = torch_zip_reader.read(path)
    assert table is not None
    assert len(table) == len(headers) == 6
    # the first header lies among the pages of data.pkl, which the reader reads whole: the file's first pages
    assert not any(_cached(path, offset, 30) for offset in headers[1:])
    expected = torch.load(path, weights_only=True)
    for record in table:
        assert torch.equal(torch.from_numpy(record.read().copy()), expected[record.name])


@linux_only
def test_reading_a_warm_torch_checkpoint_keeps_it_cached(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    headers = _checkpoint(path)
    path.read_bytes()  # the whole file in the page cache
    assert torch_zip_reader.read(path) is not None
    assert all(_cached(path, offset, 30) for offset in headers)


@linux_only
@pytest.mark.mindspore
def test_listing_a_cold_mindspore_checkpoint_reads_only_its_record_headers(mindspore_cpu: Any, tmp_path: Path) -> None:
    ms = mindspore_cpu
    path = tmp_path / "model.ckpt"
    rng = np.random.default_rng(0)
    arrays = {f"layer{i}.weight": rng.standard_normal((1024, 1024)).astype(np.float32) for i in range(6)}
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(a)} for n, a in arrays.items()], str(path), crc_check=True)
    _cold(path)
    table = ckpt_io.read(path)
    assert [record.name for record in table] == list(arrays)
    # not the kernel's read-around of each record header, nor the headers themselves: only the trailer's page
    assert _resident(path).sum() <= 1
    assert not _cached(path, 0, 100)
    for record in table:
        np.testing.assert_array_equal(record.read(), arrays[record.name])  # tensors are read through the map


@linux_only
@pytest.mark.mindspore
def test_listing_a_warm_mindspore_checkpoint_keeps_it_cached(mindspore_cpu: Any, tmp_path: Path) -> None:
    ms = mindspore_cpu
    path = tmp_path / "model.ckpt"
    arrays = {f"layer{i}.weight": np.full((256, 1024), i, np.float32) for i in range(4)}
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(a)} for n, a in arrays.items()], str(path))
    path.read_bytes()
    assert len(ckpt_io.read(path)) == 4
    assert _resident(path).all()


@linux_only
@pytest.mark.mindspore
def test_listing_a_cold_checkpoint_of_many_small_records_reads_ahead(mindspore_cpu: Any, tmp_path: Path) -> None:
    ms = mindspore_cpu
    path = tmp_path / "many.ckpt"
    tensors = [{"name": f"expert.{i}.bias", "data": ms.Tensor(np.full(256, i, np.float32))} for i in range(3000)]
    ms.save_checkpoint(tensors, str(path))
    _cold(path)
    import resource  # POSIX only, as the test

    pages = len(_resident(path))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
    table = ckpt_io.read(path)
    waited = resource.getrusage(resource.RUSAGE_SELF).ru_majflt - faults
    assert len(table) == 3000
    assert waited < pages // 10  # not one read from disk for each page of headers
