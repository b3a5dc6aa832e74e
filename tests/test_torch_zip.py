"""The streaming `.pth` writer: torch.save's layout byte for byte, read back by torch.load with and without mmap
for every dtype, ZIP64 records, and never more than one tensor in memory."""

from __future__ import annotations

import collections
import io
import weakref
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from automap import ParamRecord, load_checkpoint, save_checkpoint  # noqa: E402
from automap.dtypes import all_dtype_names  # noqa: E402
from automap.io import _torch_zip  # noqa: E402
from automap.io._torch_zip import write_zip  # noqa: E402
from automap.io.torch import to_numpy  # noqa: E402

RNG = np.random.default_rng(3)


def _tensor(dtype: str, shape: tuple[int, ...]) -> Any:
    """A tensor of `dtype` whose bits are random (NaN patterns included for floats)."""
    target = getattr(torch, dtype)
    if dtype == "bool":
        return torch.from_numpy(RNG.integers(0, 2, shape).astype(bool))
    raw = RNG.integers(0, 256, (*shape, target.itemsize), dtype=np.uint8)
    return torch.from_numpy(raw).view(target).reshape(shape)


def _state(dtypes: list[str]) -> collections.OrderedDict[str, Any]:
    state: collections.OrderedDict[str, Any] = collections.OrderedDict()
    for i, dtype in enumerate(dtypes):
        state[f"layer{i}.{dtype}"] = _tensor(dtype, (3, 5))
    state["scalar"] = torch.tensor(2.5)
    state["empty"] = torch.zeros(0)
    state["zero_axis"] = torch.zeros(2, 0, 3)
    state["long.row"] = torch.arange(1000, dtype=torch.int64)
    return state


def _records(state: dict[str, Any]) -> list[ParamRecord]:
    def loader(tensor: Any) -> Any:
        return lambda: to_numpy(tensor)

    names = {v: k for k, v in _torch_dtypes().items()}
    return [
        ParamRecord(name, tuple(t.shape), names[t.dtype], i, loader(t)) for i, (name, t) in enumerate(state.items())
    ]


def _torch_dtypes() -> dict[str, Any]:
    return {name: getattr(torch, name) for name in all_dtype_names()}


def _bits(tensor: Any) -> Any:
    """The raw bits of a tensor, so NaN payloads and float8 compare exactly."""
    if tensor.dtype == torch.bool:
        return tensor
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def _assert_same(loaded: dict[str, Any], state: dict[str, Any]) -> None:
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        got = loaded[name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape, name
        assert torch.equal(_bits(got), _bits(tensor)), name


def test_the_output_is_torch_saves_byte_for_byte(tmp_path: Path) -> None:
    """Every record up to torch's serialization id (left out by design) matches torch.save's bytes."""
    state = _state(list(all_dtype_names()))
    reference = io.BytesIO()
    torch.save(state, reference)
    expected = reference.getvalue()
    ours = io.BytesIO()
    write_zip(_records(state), ours)
    written = ours.getvalue()

    cut = zipfile.ZipFile(io.BytesIO(expected)).getinfo("archive/.data/serialization_id").header_offset
    assert written[:cut] == expected[:cut]
    assert cut > 6000  # the comparison covers the pickle and every tensor's entry
    names = [i.filename for i in zipfile.ZipFile(io.BytesIO(written)).infolist()]
    assert names == [i.filename for i in zipfile.ZipFile(io.BytesIO(expected)).infolist()][:-1]


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
@pytest.mark.parametrize("dtype", list(all_dtype_names()))
def test_every_dtype_loads_bit_exact_in_torch(dtype: str, mmap: bool, tmp_path: Path) -> None:
    state = collections.OrderedDict(
        [("weight", _tensor(dtype, (4, 7))), ("bias", _tensor(dtype, (7,))), ("scalar", _tensor(dtype, ()))]
    )
    out = tmp_path / "out.pth"
    save_checkpoint(_records(state), out)
    _assert_same(torch.load(out, weights_only=True, mmap=mmap), state)
    assert zipfile.ZipFile(out).testzip() is None  # every CRC-32 is right


def test_torch_computes_the_same_storage_offsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch can locate storages without reading zip headers; its debug mode checks that against the headers."""
    from torch.utils.serialization import config

    state = _state(["float32", "bfloat16", "int8", "float8_e5m2", "bool"])
    out = tmp_path / "out.pth"
    save_checkpoint(_records(state), out)
    monkeypatch.setenv("TORCH_SERIALIZATION_DEBUG", "1")
    before = config.load.calculate_storage_offsets
    config.load.calculate_storage_offsets = True
    try:
        for mmap in (False, True):
            _assert_same(torch.load(out, weights_only=True, mmap=mmap), state)
    finally:
        config.load.calculate_storage_offsets = before


def test_zip64_records_are_read_by_torch_and_zipfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files over 4 GiB need ZIP64 fields; lowering the threshold exercises them on a small file."""
    state = _state(["float32", "float16", "uint16", "bool"])
    monkeypatch.setattr(_torch_zip, "_ZIP64_LIMIT", 200)
    out = tmp_path / "out.pth"
    save_checkpoint(_records(state), out)
    infos = zipfile.ZipFile(out).infolist()
    assert any(i.header_offset >= 200 and i.file_size >= 200 for i in infos)  # both kinds of ZIP64 field
    assert zipfile.ZipFile(out).testzip() is None
    for mmap in (False, True):
        _assert_same(torch.load(out, weights_only=True, mmap=mmap), state)


def test_non_contiguous_sources_and_the_automap_reader(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    records = [
        ParamRecord("transposed", (6, 4), "float32", 0, lambda: base.numpy().T),
        ParamRecord("strided", (4, 3), "float32", 1, lambda: base.numpy()[:, ::2]),
    ]
    out = tmp_path / "out.pth"
    save_checkpoint(records, out)
    loaded = torch.load(out, weights_only=True)
    assert torch.equal(loaded["transposed"], base.T) and torch.equal(loaded["strided"], base[:, ::2])
    table = load_checkpoint(out)
    assert table.names == ("transposed", "strided")
    np.testing.assert_array_equal(table["transposed"].read(), base.numpy().T)


def test_the_writer_holds_one_tensor_at_a_time(tmp_path: Path) -> None:
    alive: list[weakref.ref[np.ndarray]] = []
    held: list[int] = []

    def loader(i: int) -> Any:
        def load() -> np.ndarray:
            held.append(sum(ref() is not None for ref in alive))
            array = np.full((256, 256), i, np.float32)
            alive.append(weakref.ref(array))
            return array

        return load

    records = [ParamRecord(f"t{i}", (256, 256), "float32", i, loader(i)) for i in range(6)]
    save_checkpoint(records, tmp_path / "out.pth")
    assert held == [0] * 6  # when a tensor is read, no earlier one is still alive
    assert all(ref() is None for ref in alive)
    loaded = torch.load(tmp_path / "out.pth", weights_only=True, mmap=True)
    assert [float(t[0, 0]) for t in loaded.values()] == [float(i) for i in range(6)]
