"""Writers are atomic: a failure at any point (an error, Ctrl-C) leaves neither a partial output nor a temporary
file, and an existing output survives unless overwriting was asked for."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from automap import CheckpointFormatError, ConversionError, ParamRecord, load_checkpoint, save_checkpoint
from automap._atomic import atomic_output

SUFFIXES = [".pth", ".safetensors", ".ckpt"]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _record(name: str, index: int, value: float = 1.0) -> ParamRecord:
    array = np.full((4, 3), value, np.float32)
    return ParamRecord(name, (4, 3), "float32", index, lambda: array)


def _failing(name: str, index: int, error: BaseException) -> ParamRecord:
    def load() -> np.ndarray:
        raise error

    return ParamRecord(name, (4, 3), "float32", index, load)


def test_a_clean_write_leaves_only_the_output(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "out.bin") as handle:
        handle.write(b"payload")
        assert _names(tmp_path) != ["out.bin"]  # still a temporary file while writing
    assert _names(tmp_path) == ["out.bin"]
    assert (tmp_path / "out.bin").read_bytes() == b"payload"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "KeyboardInterrupt"])
def test_a_failure_inside_the_block_leaves_nothing(error: BaseException, tmp_path: Path) -> None:
    with pytest.raises(type(error)), atomic_output(tmp_path / "out.bin") as handle:
        handle.write(b"half of it")
        raise error
    assert _names(tmp_path) == []


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(
    "error", [CheckpointFormatError("source is corrupt"), KeyboardInterrupt()], ids=["error", "KeyboardInterrupt"]
)
def test_a_record_failing_mid_write_leaves_nothing(suffix: str, error: BaseException, tmp_path: Path) -> None:
    records = [_record("a", 0), _record("b", 1), _failing("c", 2, error), _record("d", 3)]
    with pytest.raises(type(error)):
        save_checkpoint(records, tmp_path / f"out{suffix}")
    assert _names(tmp_path) == []


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_failed_write_keeps_the_previous_output(suffix: str, tmp_path: Path) -> None:
    out = tmp_path / f"out{suffix}"
    save_checkpoint([_record("a", 0, 1.0)], out)
    before = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint([_record("a", 0, 2.0), _failing("b", 1, KeyboardInterrupt())], out, overwrite=True)
    assert out.read_bytes() == before
    assert _names(tmp_path) == [out.name]


@pytest.mark.parametrize("suffix", [*SUFFIXES, ".json"])
def test_an_existing_output_needs_overwrite(suffix: str, tmp_path: Path) -> None:
    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"precious")
    with pytest.raises(ConversionError, match=r"out\..* already exists; pass overwrite=True to overwrite it"):
        save_checkpoint([_record("a", 0, 2.0)], out)
    assert out.read_bytes() == b"precious"

    save_checkpoint([_record("a", 0, 2.0)], out, overwrite=True)
    table = load_checkpoint(out)
    assert table.names == ("a",)
    if suffix != ".json":
        np.testing.assert_array_equal(table["a"].read(), np.full((4, 3), 2.0, np.float32))
    assert _names(tmp_path) == [out.name]


def test_an_os_error_while_writing_becomes_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"cannot write .*out\.bin.*: disk full; nothing was written"):
        with atomic_output(tmp_path / "out.bin") as handle:
            handle.write(b"some")
            raise OSError(28, "disk full")
    assert _names(tmp_path) == []


def test_the_existing_output_is_checked_before_any_data_is_read(tmp_path: Path) -> None:
    (tmp_path / "out.pth").write_bytes(b"precious")
    calls = []

    def load() -> np.ndarray:
        calls.append(1)
        return np.zeros(3, np.float32)

    with pytest.raises(ConversionError, match="already exists"):
        save_checkpoint([ParamRecord("a", (3,), "float32", 0, load)], tmp_path / "out.pth")
    assert calls == []


def test_output_into_a_missing_folder_or_onto_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"folder .*missing.* does not exist"):
        save_checkpoint([_record("a", 0)], tmp_path / "missing" / "out.ckpt")
    (tmp_path / "taken.ckpt").mkdir()
    with pytest.raises(ConversionError, match=r"taken\.ckpt.* is a directory"):
        save_checkpoint([_record("a", 0)], tmp_path / "taken.ckpt", overwrite=True)
