"""Reading a checkpoint's headers leaves the page cache as it was found: the same bytes as plain reads, a cold file
stays cold where only the reader touched it and a warm one stays warm, so that listing a file reads little of it and
a later streaming copy reads it whole."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _page_cache import PAGE, cached, cold, linux_only, resident

from automap.io import mindspore as ckpt_io
from automap.io import torch_zip_reader
from automap.io._scattered import ScatteredReads


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
    cold(path)
    offsets = [5 * PAGE + 100, 20 * PAGE - 10, 40 * PAGE]
    with path.open("rb") as handle, ScatteredReads(handle) as pieces:
        for offset in offsets:
            pieces.read(offset, 30)
        assert all(cached(path, offset, 30) for offset in offsets)  # read through the page cache
    assert not any(cached(path, offset, 30) for offset in offsets)


@linux_only
def test_pages_cached_before_staycached(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(64 * PAGE))
    cold(path)
    descriptor = os.open(path, os.O_RDONLY)
    try:  # someone read this page before, and nothing around it
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_RANDOM)
        os.pread(descriptor, PAGE, 20 * PAGE)
    finally:
        os.close(descriptor)
    assert resident(path).sum() == 1
    with path.open("rb") as handle, ScatteredReads(handle) as pieces:
        pieces.read(20 * PAGE + 8, 30)
        pieces.read(40 * PAGE + 8, 30)
    assert cached(path, 20 * PAGE + 8, 30)
    assert not cached(path, 40 * PAGE + 8, 30)


@linux_only
def test_reading_a_cold_torch_checkpoint_leaves_no_cached_page_in_front_of_its_tensors(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    headers = _checkpoint(path)
    cold(path)
    table = torch_zip_reader.read(path)
    assert table is not None
    assert len(table) == len(headers) == 6
    # the first header lies among the pages of data.pkl, which the reader reads whole: the file's first pages
    assert not any(cached(path, offset, 30) for offset in headers[1:])
    expected = torch.load(path, weights_only=True)
    for record in table:
        assert torch.equal(torch.from_numpy(record.read().copy()), expected[record.name])


@linux_only
def test_reading_a_warm_torch_checkpoint_keeps_itcached(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    headers = _checkpoint(path)
    path.read_bytes()  # the whole file in the page cache
    assert torch_zip_reader.read(path) is not None
    assert all(cached(path, offset, 30) for offset in headers)


@linux_only
@pytest.mark.mindspore
def test_listing_a_cold_mindspore_checkpoint_reads_only_its_record_headers(mindspore_cpu: Any, tmp_path: Path) -> None:
    ms = mindspore_cpu
    path = tmp_path / "model.ckpt"
    rng = np.random.default_rng(0)
    arrays = {f"layer{i}.weight": rng.standard_normal((1024, 1024)).astype(np.float32) for i in range(6)}
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(a)} for n, a in arrays.items()], str(path), crc_check=True)
    cold(path)
    table = ckpt_io.read(path)
    assert [record.name for record in table] == list(arrays)
    # not the kernel's read-around of each record header, nor the headers themselves: only the trailer's page
    assert resident(path).sum() <= 1
    assert not cached(path, 0, 100)
    for record in table:
        np.testing.assert_array_equal(record.read(), arrays[record.name])  # tensors are read through the map


@linux_only
@pytest.mark.mindspore
def test_listing_a_warm_mindspore_checkpoint_keeps_itcached(mindspore_cpu: Any, tmp_path: Path) -> None:
    ms = mindspore_cpu
    path = tmp_path / "model.ckpt"
    arrays = {f"layer{i}.weight": np.full((256, 1024), i, np.float32) for i in range(4)}
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(a)} for n, a in arrays.items()], str(path))
    path.read_bytes()
    assert len(ckpt_io.read(path)) == 4
    assert resident(path).all()


@linux_only
@pytest.mark.mindspore
def test_listing_a_cold_checkpoint_of_many_small_records_reads_ahead(mindspore_cpu: Any, tmp_path: Path) -> None:
    ms = mindspore_cpu
    path = tmp_path / "many.ckpt"
    tensors = [{"name": f"expert.{i}.bias", "data": ms.Tensor(np.full(256, i, np.float32))} for i in range(3000)]
    ms.save_checkpoint(tensors, str(path))
    cold(path)
    import resource  # POSIX only, as the test

    pages = len(resident(path))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
    table = ckpt_io.read(path)
    waited = resource.getrusage(resource.RUSAGE_SELF).ru_majflt - faults
    assert len(table) == 3000
    assert waited < pages // 10  # not one read from disk for each page of headers
