"""Every dtype survives every writer/reader pair bit-exact: torch, safetensors (torch and numpy), MindSpore.

Data is random *bits* (not values), so a reader that converts through floats, drops NaN payloads or swaps bytes
fails. Each framework writes and reads with its own functions; automap is only ever one side of a pair.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from automap import load_checkpoint, save_checkpoint

SHAPE = (3, 5)
# (automap name, numpy storage dtype used to hold the bits)
DTYPES = [
    ("float64", "<f8"),
    ("float32", "<f4"),
    ("float16", "<f2"),
    ("bfloat16", "<u2"),
    ("float8_e4m3fn", "u1"),
    ("float8_e5m2", "u1"),
    ("int64", "<i8"),
    ("int32", "<i4"),
    ("int16", "<i2"),
    ("int8", "i1"),
    ("uint64", "<u8"),
    ("uint32", "<u4"),
    ("uint16", "<u2"),
    ("uint8", "u1"),
    ("bool", "|b1"),
]
NAMES = [name for name, _ in DTYPES]
NUMPY_NATIVE = [name for name in NAMES if name not in {"bfloat16", "float8_e4m3fn", "float8_e5m2"}]
FLOAT8 = {"float8_e4m3fn", "float8_e5m2"}


def _bits(name: str, seed: int = 0) -> np.ndarray:
    """Random bits of one dtype in its storage type; bools are 0/1 (other byte values are not bools)."""
    storage = np.dtype(dict(DTYPES)[name])
    rng = np.random.default_rng(seed + NAMES.index(name))
    if name == "bool":
        return rng.integers(0, 2, SHAPE).astype(bool)
    raw = rng.integers(0, 256, int(np.prod(SHAPE)) * storage.itemsize, dtype=np.uint8)
    return raw.view(storage).reshape(SHAPE)


def _torch_tensor(bits: np.ndarray, name: str) -> torch.Tensor:
    flat = torch.from_numpy(bits.reshape(-1).view(np.uint8).copy())
    return flat.view(torch.bool if name == "bool" else getattr(torch, name)).reshape(SHAPE)


def _torch_bytes(tensor: torch.Tensor) -> bytes:
    return bytes(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def _ms_dtype(ms: Any, name: str) -> Any:
    return ms.bool_ if name == "bool" else getattr(ms, name)


def _ms_tensor(ms: Any, bits: np.ndarray, name: str) -> Any:
    from mindspore._c_expression import TensorPy

    return ms.Tensor(TensorPy.convert_bytes_to_tensor(bits.tobytes(), SHAPE, _ms_dtype(ms, name)))


def _automap_bits(path: Path, name: str = "x") -> tuple[str, tuple[int, ...], bytes]:
    record = load_checkpoint(path)[name]
    return record.dtype, record.shape, record.read().tobytes()


@pytest.mark.parametrize("name", NAMES)
def test_torch_save_and_torch_load(name: str, tmp_path: Path) -> None:
    bits = _bits(name)
    torch.save({"x": _torch_tensor(bits, name)}, tmp_path / "torch.pth")
    assert _automap_bits(tmp_path / "torch.pth") == (name, SHAPE, bits.tobytes())

    save_checkpoint(load_checkpoint(tmp_path / "torch.pth"), tmp_path / "automap.pth")
    loaded = torch.load(tmp_path / "automap.pth", weights_only=True)["x"]
    assert loaded.dtype == (torch.bool if name == "bool" else getattr(torch, name))
    assert tuple(loaded.shape) == SHAPE
    assert _torch_bytes(loaded) == bits.tobytes()


@pytest.mark.parametrize("name", NAMES)
def test_safetensors_torch_writer_and_reader(name: str, tmp_path: Path) -> None:
    bits = _bits(name)
    safetensors.torch.save_file({"x": _torch_tensor(bits, name)}, tmp_path / "st.safetensors")
    assert _automap_bits(tmp_path / "st.safetensors") == (name, SHAPE, bits.tobytes())

    save_checkpoint(load_checkpoint(tmp_path / "st.safetensors"), tmp_path / "automap.safetensors")
    loaded = safetensors.torch.load_file(tmp_path / "automap.safetensors")["x"]
    assert loaded.dtype == (torch.bool if name == "bool" else getattr(torch, name))
    assert _torch_bytes(loaded) == bits.tobytes()


@pytest.mark.parametrize("name", NUMPY_NATIVE)
def test_safetensors_numpy_writer_and_reader(name: str, tmp_path: Path) -> None:
    bits = _bits(name)
    safetensors.numpy.save_file({"x": bits}, tmp_path / "np.safetensors")
    assert _automap_bits(tmp_path / "np.safetensors") == (name, SHAPE, bits.tobytes())

    save_checkpoint(load_checkpoint(tmp_path / "np.safetensors"), tmp_path / "automap.safetensors")
    loaded = safetensors.numpy.load_file(tmp_path / "automap.safetensors")["x"]
    assert loaded.dtype == bits.dtype
    assert loaded.tobytes() == bits.tobytes()


@pytest.mark.mindspore
@pytest.mark.parametrize("name", NAMES)
def test_mindspore_ckpt_both_ways(name: str, tmp_path: Path, mindspore_cpu: Any) -> None:
    ms = mindspore_cpu
    bits = _bits(name)
    ms.save_checkpoint([{"name": "x", "data": _ms_tensor(ms, bits, name)}], str(tmp_path / "ms.ckpt"))
    assert _automap_bits(tmp_path / "ms.ckpt") == (name, SHAPE, bits.tobytes())

    save_checkpoint(load_checkpoint(tmp_path / "ms.ckpt"), tmp_path / "automap.ckpt")
    # The same bytes MindSpore itself writes: this holds for float8 too, which MindSpore cannot read back.
    assert (tmp_path / "automap.ckpt").read_bytes() == (tmp_path / "ms.ckpt").read_bytes()
    if name in FLOAT8:
        # Known MindSpore 2.10 limitation (README, Formats): its .ckpt loader has no float8 type.
        with pytest.raises(ValueError, match="Float8"):
            ms.load_checkpoint(str(tmp_path / "automap.ckpt"))
        return
    loaded = ms.load_checkpoint(str(tmp_path / "automap.ckpt"))["x"]
    assert loaded.dtype == _ms_dtype(ms, name)
    assert tuple(loaded.shape) == SHAPE
    assert bytes(loaded.get_bytes()) == bits.tobytes()


@pytest.mark.mindspore
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # MindSpore's unclosed file
@pytest.mark.parametrize("name", NAMES)
def test_mindspore_safetensors_both_ways(name: str, tmp_path: Path, mindspore_cpu: Any) -> None:
    ms = mindspore_cpu
    bits = _bits(name)
    source = [{"name": "x", "data": _ms_tensor(ms, bits, name)}]
    if name in FLOAT8:
        # Known MindSpore 2.10 limitation (README, Formats): its safetensors flavour has no float8 either way.
        with pytest.raises(Exception, match="dtype"):
            ms.save_checkpoint(source, str(tmp_path / "ms.safetensors"), format="safetensors")
        torch_written = tmp_path / "torch.safetensors"
        safetensors.torch.save_file({"x": _torch_tensor(bits, name)}, torch_written)
        save_checkpoint(load_checkpoint(torch_written), tmp_path / "automap.safetensors", framework="mindspore")
        with pytest.raises(KeyError):
            ms.load_checkpoint(str(tmp_path / "automap.safetensors"), format="safetensors")
        gc.collect()  # MindSpore leaves the file open on this error; close it within this test
        return
    ms.save_checkpoint(source, str(tmp_path / "ms.safetensors"), format="safetensors")
    table = load_checkpoint(tmp_path / "ms.safetensors")
    assert table.framework == "mindspore"
    assert _automap_bits(tmp_path / "ms.safetensors") == (name, SHAPE, bits.tobytes())

    save_checkpoint(table, tmp_path / "automap.safetensors")
    loaded = ms.load_checkpoint(str(tmp_path / "automap.safetensors"), format="safetensors")["x"]
    assert loaded.dtype == _ms_dtype(ms, name)
    assert bytes(loaded.get_bytes()) == bits.tobytes()


@pytest.mark.mindspore
@pytest.mark.parametrize("name", NAMES)
def test_torch_to_mindspore_and_back_through_automap(name: str, tmp_path: Path, mindspore_cpu: Any) -> None:
    """The conversion path users take: torch.save -> automap .ckpt -> MindSpore, and the reverse."""
    ms = mindspore_cpu
    bits = _bits(name, seed=100)
    torch.save({"x": _torch_tensor(bits, name)}, tmp_path / "torch.pth")
    save_checkpoint(load_checkpoint(tmp_path / "torch.pth"), tmp_path / "converted.ckpt")
    if name not in FLOAT8:
        assert bytes(ms.load_checkpoint(str(tmp_path / "converted.ckpt"))["x"].get_bytes()) == bits.tobytes()

    ms.save_checkpoint([{"name": "x", "data": _ms_tensor(ms, bits, name)}], str(tmp_path / "ms.ckpt"))
    save_checkpoint(load_checkpoint(tmp_path / "ms.ckpt"), tmp_path / "converted.pth")
    assert _torch_bytes(torch.load(tmp_path / "converted.pth", weights_only=True)["x"]) == bits.tobytes()
