"""Kernel copies of mapped views: the bytes written are the view's, with or without copy_file_range."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automap import ParamRecord, load_checkpoint, save_checkpoint
from automap.conversion._pages import MappedPages
from automap.io._copy import copying_from, write_bytes

pytestmark = pytest.mark.skipif(not hasattr(os, "copy_file_range"), reason="needs os.copy_file_range (Linux)")

RNG = np.random.default_rng(5)
BIG = RNG.standard_normal((1024, 600)).astype(np.float32)  # 2.4 MB: above the size worth a kernel copy
SMALL = RNG.standard_normal((3, 4)).astype(np.float32)


def _source(tmp_path: Path, suffix: str) -> Path:
    path = tmp_path / f"source{suffix}"
    records = [
        ParamRecord("small", SMALL.shape, "float32", 0, lambda: SMALL),
        ParamRecord("big", BIG.shape, "float32", 1, lambda: BIG),
    ]
    save_checkpoint(records, path)
    return path


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.copy_file_range

    def counting(*args: Any) -> int:
        moved = real(*args)
        calls.append(moved)
        return moved

    monkeypatch.setattr(os, "copy_file_range", counting)
    return calls


@pytest.mark.parametrize("source_suffix", [".safetensors", ".ckpt", ".pth"])
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_mapped_views_are_copied_file_to_file(
    source_suffix: str, suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if source_suffix == ".pth":
        pytest.importorskip("torch")
    source = _source(tmp_path, source_suffix)
    calls = _spy(monkeypatch)
    table = load_checkpoint(source)
    with MappedPages([source]) as pages, copying_from(pages.locate):
        save_checkpoint(table, tmp_path / f"out{suffix}")
    assert sum(calls) == BIG.nbytes  # the big tensor went through the kernel, the small one was written
    out = load_checkpoint(tmp_path / f"out{suffix}")
    np.testing.assert_array_equal(out["big"].read(), BIG)
    np.testing.assert_array_equal(out["small"].read(), SMALL)


def test_without_a_locator_or_for_ordinary_memory_bytes_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy(monkeypatch)
    source = _source(tmp_path, ".safetensors")
    save_checkpoint(load_checkpoint(source), tmp_path / "plain.ckpt")  # no locator installed
    with MappedPages([source]) as pages, copying_from(pages.locate), (tmp_path / "copy.bin").open("wb") as handle:
        write_bytes(handle, BIG.copy())  # ordinary memory: nothing to copy from
        write_bytes(handle, load_checkpoint(source)["big"].read()[:, :300])  # not contiguous: no location
    assert calls == []
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "plain.ckpt")["big"].read(), BIG)


def test_a_kernel_that_cannot_copy_falls_back_to_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> int:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    source = _source(tmp_path, ".safetensors")
    with MappedPages([source]) as pages, copying_from(pages.locate):
        save_checkpoint(load_checkpoint(source), tmp_path / "out.safetensors")
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "out.safetensors")["big"].read(), BIG)


def test_a_short_copy_is_completed_from_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.copy_file_range

    def partial(source: int, target: int, count: int, offset: int) -> int:
        if offset % 2 == 0 and count > 1000:
            return real(source, target, 1000, offset)  # a little, then "end of file"
        return 0

    monkeypatch.setattr(os, "copy_file_range", partial)
    source = _source(tmp_path, ".safetensors")
    with MappedPages([source]) as pages, copying_from(pages.locate):
        save_checkpoint(load_checkpoint(source), tmp_path / "out.ckpt")
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "out.ckpt")["big"].read(), BIG)


def test_a_failure_after_part_of_a_copy_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from automap import ConversionError

    real = os.copy_file_range
    state = {"calls": 0}

    def failing(source: int, target: int, count: int, offset: int) -> int:
        state["calls"] += 1
        if state["calls"] > 1:
            raise OSError(28, "No space left on device")
        return real(source, target, min(count, 4096), offset)

    monkeypatch.setattr(os, "copy_file_range", failing)
    source = _source(tmp_path, ".safetensors")
    with (
        MappedPages([source]) as pages,
        copying_from(pages.locate),
        pytest.raises(ConversionError, match="No space left on device"),
    ):
        save_checkpoint(load_checkpoint(source), tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.safetensors"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_conversion_copies_renamed_tensors_in_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from automap.conversion import convert
    from automap.mapping import load_mapping

    source = _source(tmp_path, ".safetensors")
    mapping = tmp_path / "flat.json"
    mapping.write_text('{"layer.big": "big", "layer.small": "small"}')
    calls = _spy(monkeypatch)
    report = convert(source, load_mapping(mapping), tmp_path / "out.ckpt")
    assert report.verified == 2
    assert sum(calls) == BIG.nbytes
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "out.ckpt")["layer.big"].read(), BIG)
