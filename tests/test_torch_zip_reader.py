"""The torch-free reader of torch.save's zip format: the same tables as torch.load for plain state dicts, and a
refusal to judge (None, so torch.load decides) for everything else, without running anything from the file."""

from __future__ import annotations

import collections
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automap import CheckpointFormatError, UnsafeCheckpointError, load_checkpoint
from automap.io import torch as torch_adapter
from automap.io import torch_zip_reader
from tests.hostile import formats as fmt

_DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint64,
    torch.uint32,
    torch.uint16,
    torch.uint8,
    torch.bool,
]


def _random(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Random bits of any dtype (every bit pattern, NaNs included, must survive)."""
    generator = torch.Generator().manual_seed(seed)
    size = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (*shape, size), dtype=torch.uint8, generator=generator)
    if dtype == torch.bool:
        return raw[..., 0] % 2 == 1
    return raw.view(dtype).reshape(shape)


def _bits(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _layouts() -> dict[str, torch.Tensor]:
    base = _random((6, 8), torch.float32, 99)
    shared = _random((10,), torch.int16, 98)
    return {
        **{f"dtype.{str(d).removeprefix('torch.')}": _random((3, 5), d, i) for i, d in enumerate(_DTYPES)},
        "layout.transposed": base.t(),
        "layout.columns": base[:, 2:5],
        "layout.offset_slice": base[2:4],
        "layout.expanded": torch.arange(4.0).reshape(1, 4).expand(3, 4),
        "layout.scalar": torch.tensor(2.5),
        "layout.empty": torch.zeros(0, 3),
        "tied.first": shared[2:6],
        "tied.second": shared,
        "param": torch.nn.Parameter(_random((2, 2), torch.bfloat16, 97)),
    }


def _assert_like_torch(path: Path, key: str | None = None, *, found_at: str | None = None) -> None:
    """Compare with torch.load's state dict (at `found_at` in the container, when the reader must find it)."""
    table = torch_zip_reader.read(path, key=key)
    assert table is not None, "the torch-free reader declined a plain torch.save file"
    loaded = torch.load(path, weights_only=True)
    where = key or found_at
    state = loaded[where] if where else loaded
    assert table.names == tuple(state)
    for record, (name, tensor) in zip(table, state.items(), strict=True):
        assert record.dtype == str(tensor.dtype).removeprefix("torch."), name
        assert record.shape == tuple(tensor.shape), name
        array = record.read()
        assert array.shape == tuple(tensor.shape), name
        assert np.ascontiguousarray(array).tobytes() == _bits(tensor), name
    reference = torch_adapter.read(path, key=key)  # torch.load's route through the same container rules
    assert table.notes == reference.notes
    assert [(r.name, r.dtype, r.shape) for r in table.excluded] == [
        (r.name, r.dtype, r.shape) for r in reference.excluded
    ]
    for mine, theirs in zip(table.excluded, reference.excluded, strict=True):
        assert mine.read().tobytes() == theirs.read().tobytes(), mine.name


def test_reads_every_dtype_and_layout_bit_exact_like_torch_load(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(_layouts(), path)
    _assert_like_torch(path)


def test_reads_containers_optimizer_state_and_prefixes_like_torch_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.DataParallel(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(5, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}, path)
    _assert_like_torch(path, found_at="model")
    _assert_like_torch(path, key="model")
    table = load_checkpoint(path)
    assert any("module." in note for note in table.notes)
    assert any("optimizer" in note for note in table.notes)


def test_a_plain_checkpoint_is_listed_and_read_without_importing_torch(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(_layouts(), path)
    script = textwrap.dedent(
        f"""
        import sys
        import automap
        table = automap.load_checkpoint({str(path)!r})
        print(len(table), sum(record.read().nbytes for record in table))
        assert "torch" not in sys.modules
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    expected = _layouts()
    assert result.stdout.split() == [
        str(len(expected)),
        str(sum(t.numel() * t.element_size() for t in expected.values())),
    ]


def _crafted(folder: Path, obj: Any, storages: dict[str, bytes]) -> Path:
    return fmt.torch_zip(folder / "crafted.pth", fmt.dumps(obj), storages)


class _WithState(fmt.Call):
    """Pickles as `func(*args)` followed by BUILD with `state`: an attempt to alter the object afterwards."""

    def __init__(self, call: fmt.Call, state: Any) -> None:
        super().__init__(call.func, *call.args)
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args, self.state)


def test_declines_a_tensor_reaching_past_its_storage_and_torch_refuses_it(tmp_path: Path) -> None:
    inside = _crafted(tmp_path, {"w": fmt.tensor(fmt.Storage("0", 4), 1, [3], [1])}, {"0": bytes(16)})
    assert torch_zip_reader.read(inside) is not None  # elements 1..3 of 4: the last one exactly fits
    outside = _crafted(tmp_path, {"w": fmt.tensor(fmt.Storage("0", 4), 2, [3], [1])}, {"0": bytes(16)})
    assert torch_zip_reader.read(outside) is None
    with pytest.raises(CheckpointFormatError, match=r"crafted\.pth"):
        load_checkpoint(outside)


def test_declines_a_storage_larger_than_its_entry(tmp_path: Path) -> None:
    path = _crafted(tmp_path, {"w": fmt.tensor(fmt.Storage("0", 8), 0, [8], [1])}, {"0": bytes(16)})
    assert torch_zip_reader.read(path) is None


def test_declines_pickle_build_on_a_tensor_so_checked_layouts_stay_checked(tmp_path: Path) -> None:
    tensor = fmt.tensor(fmt.Storage("0", 4), 0, [4], [1])
    altered = _WithState(tensor, (None, {"shape": (1 << 20,), "stride": (1,)}))
    path = _crafted(tmp_path, {"w": altered}, {"0": bytes(16)})
    assert torch_zip_reader.read(path) is None


def test_declines_globals_beyond_plain_tensors_and_runs_none(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = fmt.Call(subprocess.call, ["touch", str(marker)])
    path = _crafted(tmp_path, {"w": fmt.tensor(fmt.Storage("0", 4), 0, [4], [1]), "x": payload}, {"0": bytes(16)})
    assert torch_zip_reader.read(path) is None
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_files_it_declines_are_still_read_through_torch_load(tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}
    with_size = tmp_path / "with_size.pth"  # torch.Size is a global torch's own restricted unpickler allows
    torch.save({"model": state, "input_shape": torch.Size([1, 3])}, with_size)
    legacy = tmp_path / "legacy.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    for path in (with_size, legacy):
        assert torch_zip_reader.read(path, key="model" if path == with_size else None) is None
        table = load_checkpoint(path, key="model" if path == with_size else None)
        assert table.names == ("w", "b")
        np.testing.assert_array_equal(table["w"].read(), state["w"].numpy())


def test_declines_a_big_endian_archive(tmp_path: Path) -> None:
    source = tmp_path / "little.pth"
    torch.save({"w": torch.arange(4, dtype=torch.int32)}, source)
    assert torch_zip_reader.read(source) is not None
    big = fmt.replace_zip_entry(source, tmp_path / "big.pth", "/byteorder", b"big")
    assert torch_zip_reader.read(big) is None


def test_refuses_a_compressed_entry_without_inflating_it(tmp_path: Path) -> None:
    storage = np.arange(4, dtype=np.float32).tobytes()
    entries = [
        ("archive/data.pkl", fmt.dumps({"w": fmt.tensor(fmt.Storage("0", 4), 0, [4], [1])}), False),
        ("archive/data/0", storage, True),
    ]
    path = fmt.write_zip(tmp_path / "deflated.pth", entries)
    for read in (torch_zip_reader.read, load_checkpoint):
        with pytest.raises(CheckpointFormatError, match="'archive/data/0' is compressed"):
            read(path)


def test_one_storage_seen_with_two_dtypes_is_declined(tmp_path: Path) -> None:
    obj = collections.OrderedDict(
        a=fmt.tensor(fmt.Storage("0", 4), 0, [4], [1]),
        b=fmt.tensor(fmt.Storage("0", 8, kind="HalfStorage"), 0, [8], [1]),
    )
    assert torch_zip_reader.read(_crafted(tmp_path, obj, {"0": bytes(16)})) is None
