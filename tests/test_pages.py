"""Mapped pages: read-ahead is harmless advice; released pages leave the resident set with the data intact, and
nothing that could lose data (a private mapping with pages of its own, a file not named) is touched."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from automap.conversion._pages import MappedPages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status and maps")

SIZE = 32 * 1024 * 1024


def _rss_file() -> int:
    """Bytes of file-backed pages in this process's resident set."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    msg = "no RssFile line in /proc/self/status"
    raise AssertionError(msg)


def _file(path: Path, value: int) -> Path:
    path.write_bytes(np.full(SIZE, value, np.uint8).tobytes())
    return path


def _mapped(path: Path) -> tuple[mmap.mmap, np.ndarray]:
    with path.open("rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return mapping, np.frombuffer(mapping, np.uint8)


def test_pages_of_a_shared_mapping_are_released_and_read_back(tmp_path: Path) -> None:
    pages = MappedPages([_file(tmp_path / "a.bin", 7)])
    assert pages.active
    mapping, array = _mapped(tmp_path / "a.bin")
    before = _rss_file()
    assert int(array.sum(dtype=np.int64)) == 7 * SIZE
    touched = _rss_file()
    assert touched - before > SIZE // 2  # reading the mapping made its pages resident
    pages.release()
    assert touched - _rss_file() > SIZE // 2
    assert int(array.sum(dtype=np.int64)) == 7 * SIZE  # the data is read back from the file
    del array
    mapping.close()


def test_release_happens_every_so_many_bytes(tmp_path: Path) -> None:
    pages = MappedPages([_file(tmp_path / "a.bin", 1)], every=SIZE)
    mapping, array = _mapped(tmp_path / "a.bin")
    array.sum(dtype=np.int64)
    touched = _rss_file()
    pages.used(SIZE // 2)
    assert touched - _rss_file() < SIZE // 4  # not yet
    pages.used(SIZE // 2)
    assert touched - _rss_file() > SIZE // 2
    del array
    mapping.close()


def test_other_files_are_left_alone(tmp_path: Path) -> None:
    pages = MappedPages([_file(tmp_path / "named.bin", 1)])
    mapping, array = _mapped(_file(tmp_path / "other.bin", 2))
    array.sum(dtype=np.int64)
    touched = _rss_file()
    pages.release()
    assert touched - _rss_file() < SIZE // 4
    del array
    mapping.close()


def test_a_private_mapping_keeps_pages_it_wrote(tmp_path: Path) -> None:
    """Dropping a copy-on-write page would silently bring back the file's bytes: such a mapping is skipped."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(SIZE // 4)}, path)
    state = torch.load(path, weights_only=True, mmap=True)  # a private (copy-on-write) mapping of the file
    pages = MappedPages([path])
    float(state["w"].sum())
    touched = _rss_file()
    pages.release()
    assert touched - _rss_file() > SIZE // 2  # clean: released
    state["w"][123] = 5.0  # one copy-on-write page
    pages.release()
    assert float(state["w"][123]) == 5.0
    assert float(state["w"].sum()) == 5.0


def test_a_missing_file_is_ignored(tmp_path: Path) -> None:
    pages = MappedPages([tmp_path / "missing.bin"])
    pages.release()
    pages.used(10**12)
    pages.prefetch(np.ones(10))


def test_read_ahead_is_only_advice(tmp_path: Path) -> None:
    """Prefetching views of a named file, of another file, and of ordinary memory changes no data."""
    pages = MappedPages([_file(tmp_path / "named.bin", 3)], every=1)
    mapping, array = _mapped(tmp_path / "named.bin")
    other_mapping, other = _mapped(_file(tmp_path / "other.bin", 4))
    ordinary = np.full(1000, 5, np.uint8)
    for view in (array[SIZE // 2 :], array[: SIZE // 4], other, ordinary, array[-1:]):
        pages.prefetch(view)
    assert int(array.sum(dtype=np.int64)) == 3 * SIZE
    assert int(other.sum(dtype=np.int64)) == 4 * SIZE
    assert int(ordinary.sum()) == 5000
    del array, other, view
    mapping.close()
    other_mapping.close()
