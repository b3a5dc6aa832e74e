"""MindSpore `.ckpt`: automap's reader and writer checked against mindspore.save_checkpoint / load_checkpoint.

Covers real network checkpoints, sliced tensors (both writers, with the slice size shrunk so that tiny tensors
are cut), the CRC trailer, MindSpore's safetensors flavour, encrypted files, non-tensor entries, corrupt files
and lazy reading.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import automap.io.mindspore as ckpt_io
from automap import CheckpointFormatError, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.mindspore


@pytest.fixture
def ms(mindspore_cpu: Any) -> Any:
    return mindspore_cpu


def _net(ms: Any) -> Any:
    nn = ms.nn

    class Net(nn.Cell):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, has_bias=True)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Dense(4, 2)

        def construct(self, x: Any) -> Any:
            return self.fc(self.bn(self.conv(x)).mean(axis=(2, 3)))

    return Net()


def _slices(path: Path) -> dict[str, int]:
    """How many records each name has, counted by MindSpore's own protobuf class."""
    from mindspore.train.checkpoint_pb2 import Checkpoint

    checkpoint = Checkpoint()
    raw = path.read_bytes()
    checkpoint.ParseFromString(raw[:-17] if raw[-17:-10] == b"crc_num" else raw)
    counts: dict[str, int] = {}
    for value in checkpoint.value:
        counts[value.tag] = counts.get(value.tag, 0) + 1
    return counts


def _tensors(ms: Any, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    return [{"name": name, "data": ms.Tensor(array)} for name, array in arrays.items()]


def test_reads_a_network_checkpoint_in_file_order(ms: Any, tmp_path: Path) -> None:
    net = _net(ms)
    ms.save_checkpoint(net, str(tmp_path / "net.ckpt"))
    expected = [(name, p.asnumpy()) for name, p in net.parameters_and_names()]

    table = load_checkpoint(tmp_path / "net.ckpt")

    assert table.framework == "mindspore"
    assert table.format == "mindspore-ckpt"
    assert table.names == tuple(name for name, _ in expected)
    assert [r.index for r in table] == list(range(len(expected)))
    for record, (name, array) in zip(table, expected, strict=True):
        assert record.shape == array.shape, name
        assert record.dtype == "float32"
        np.testing.assert_array_equal(record.read(), array)
    assert table.excluded == ()


def test_automap_writes_the_bytes_mindspore_writes_and_mindspore_loads_them(ms: Any, tmp_path: Path) -> None:
    net = _net(ms)
    ms.save_checkpoint(net, str(tmp_path / "ms.ckpt"))
    save_checkpoint(load_checkpoint(tmp_path / "ms.ckpt"), tmp_path / "automap.ckpt")
    assert (tmp_path / "automap.ckpt").read_bytes() == (tmp_path / "ms.ckpt").read_bytes()

    fresh = _net(ms)
    not_loaded, _ = ms.load_param_into_net(fresh, ms.load_checkpoint(str(tmp_path / "automap.ckpt")))
    assert not_loaded == []
    for (name, a), (_, b) in zip(net.parameters_and_names(), fresh.parameters_and_names(), strict=True):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=name)


def test_pytorch_weights_written_as_ckpt_load_in_mindspore(ms: Any, tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    save_checkpoint(load_checkpoint(tmp_path / "model.pth"), tmp_path / "model.ckpt")

    loaded = ms.load_checkpoint(str(tmp_path / "model.ckpt"))
    assert list(loaded) == list(model.state_dict())
    for name, tensor in model.state_dict().items():
        np.testing.assert_array_equal(loaded[name].asnumpy(), tensor.numpy(), err_msg=name)


def test_scalars_and_non_tensor_entries(ms: Any, tmp_path: Path) -> None:
    net = ms.nn.Dense(3, 2)
    ms.save_checkpoint(net, str(tmp_path / "net.ckpt"), append_dict={"note": "trained on cats", "temperature": 0.5})
    table = load_checkpoint(tmp_path / "net.ckpt")
    assert table.names == ("weight", "bias", "temperature")
    assert table["temperature"].shape == ()
    assert table["temperature"].read().item() == pytest.approx(0.5)
    assert any("skipped 1 non-tensor entry" in note and "'note'" in note for note in table.notes)


def test_sliced_tensor_written_by_mindspore(ms: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mindspore.train.serialization as serialization

    monkeypatch.setattr(serialization, "SLICE_SIZE", 1)  # in KB: every tensor above 1024 bytes is cut
    rng = np.random.default_rng(0)
    # 30x11 float32 is 1320 bytes: two slices, the cut falling inside a row. 700 int64 is 5600 bytes: six slices.
    arrays = {
        "big": rng.standard_normal((30, 11)).astype(np.float32),
        "small": rng.standard_normal((4,)).astype(np.float32),
        "count": rng.integers(-(2**60), 2**60, (700,)),
    }
    ms.save_checkpoint(_tensors(ms, arrays), str(tmp_path / "sliced.ckpt"))
    assert _slices(tmp_path / "sliced.ckpt") == {"big": 2, "small": 1, "count": 6}

    table = load_checkpoint(tmp_path / "sliced.ckpt")
    assert table.names == tuple(arrays)
    for name, array in arrays.items():
        assert table[name].shape == array.shape
        assert table[name].read().tobytes() == array.tobytes(), name


def test_sliced_tensor_written_by_automap(ms: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mindspore.train.serialization as serialization

    rng = np.random.default_rng(1)
    arrays = {
        "big": rng.standard_normal((30, 11)).astype(np.float32),
        "small": rng.standard_normal((4,)).astype(np.float32),
        "count": rng.integers(-(2**60), 2**60, (700,)),
    }
    ms.save_checkpoint(_tensors(ms, arrays), str(tmp_path / "whole.ckpt"))
    monkeypatch.setattr(ckpt_io, "SLICE_BYTES", 1024)
    save_checkpoint(load_checkpoint(tmp_path / "whole.ckpt"), tmp_path / "automap.ckpt")
    assert _slices(tmp_path / "automap.ckpt") == {"big": 2, "small": 1, "count": 6}

    loaded = ms.load_checkpoint(str(tmp_path / "automap.ckpt"))
    for name, array in arrays.items():
        assert loaded[name].asnumpy().tobytes() == array.tobytes(), name
    # Cut exactly where MindSpore cuts: the files are identical.
    monkeypatch.setattr(serialization, "SLICE_SIZE", 1)
    ms.save_checkpoint(_tensors(ms, arrays), str(tmp_path / "ms_sliced.ckpt"))
    assert (tmp_path / "automap.ckpt").read_bytes() == (tmp_path / "ms_sliced.ckpt").read_bytes()


def test_crc_trailer_both_ways(ms: Any, tmp_path: Path) -> None:
    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3, np.float16)}
    ms.save_checkpoint(_tensors(ms, arrays), str(tmp_path / "ms.ckpt"), crc_check=True)
    assert (tmp_path / "ms.ckpt").read_bytes()[-17:-10] == b"crc_num"

    table = load_checkpoint(tmp_path / "ms.ckpt", verify_crc=True)
    assert "CRC trailer present and verified" in table.notes
    assert table.names == ("w", "b")
    np.testing.assert_array_equal(table["w"].read(), arrays["w"])
    assert "CRC trailer present (not verified)" in load_checkpoint(tmp_path / "ms.ckpt").notes
    ms.save_checkpoint(_tensors(ms, arrays), str(tmp_path / "plain.ckpt"))
    assert any("no CRC trailer" in note for note in load_checkpoint(tmp_path / "plain.ckpt", verify_crc=True).notes)

    save_checkpoint(table, tmp_path / "automap.ckpt", crc=True)
    assert (tmp_path / "automap.ckpt").read_bytes() == (tmp_path / "ms.ckpt").read_bytes()
    loaded = ms.load_checkpoint(str(tmp_path / "automap.ckpt"), crc_check=True)
    np.testing.assert_array_equal(loaded["b"].asnumpy(), arrays["b"])


@pytest.mark.parametrize("writer", ["mindspore", "automap"])
def test_damaged_file_fails_the_crc_check(writer: str, ms: Any, tmp_path: Path) -> None:
    arrays = {"w": np.arange(64, dtype=np.float32)}
    path = tmp_path / "model.ckpt"
    if writer == "mindspore":
        ms.save_checkpoint(_tensors(ms, arrays), str(path), crc_check=True)
    else:
        ms.save_checkpoint(_tensors(ms, arrays), str(tmp_path / "plain.ckpt"))
        save_checkpoint(load_checkpoint(tmp_path / "plain.ckpt"), path, crc=True)
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(arrays["w"].tobytes()) + 40
    raw[at] ^= 0x01  # one flipped bit inside the tensor data
    path.write_bytes(bytes(raw))

    with pytest.raises(ValueError) as mindspore_error:  # MindSpore agrees that the file is damaged
        ms.load_checkpoint(str(path), crc_check=True)
    assert "crc check is failed" in str(mindspore_error.value.__cause__)
    with pytest.raises(CheckpointFormatError, match=r"model\.ckpt.*CRC check failed"):
        load_checkpoint(path, verify_crc=True)
    # Without the check the file reads, and the damage is visible.
    table = load_checkpoint(path)
    assert "CRC trailer present (not verified)" in table.notes
    assert table["w"].read().tobytes() != arrays["w"].tobytes()


def test_mindspore_safetensors_flavour_both_ways(ms: Any, tmp_path: Path) -> None:
    net = _net(ms)
    ms.save_checkpoint(net, str(tmp_path / "ms.safetensors"), format="safetensors")
    expected = {name: p.asnumpy() for name, p in net.parameters_and_names()}

    table = load_checkpoint(tmp_path / "ms.safetensors")
    assert table.framework == "mindspore"
    assert table.format == "safetensors"
    assert "safetensors metadata format='ms'" in table.notes
    assert set(table.names) == set(expected)
    for record in table:
        np.testing.assert_array_equal(record.read(), expected[record.name])

    save_checkpoint(table, tmp_path / "automap.safetensors")
    loaded = ms.load_checkpoint(str(tmp_path / "automap.safetensors"), format="safetensors")
    assert set(loaded) == set(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(loaded[name].asnumpy(), array)
    assert load_checkpoint(tmp_path / "automap.safetensors").framework == "mindspore"  # flavour kept


@pytest.mark.parametrize("mode", ["AES-GCM", "AES-CBC", "SM4-CBC"])
def test_encrypted_checkpoint_is_refused_with_advice(mode: str, ms: Any, tmp_path: Path) -> None:
    path = tmp_path / "secret.ckpt"
    ms.save_checkpoint(ms.nn.Dense(3, 2), str(path), enc_key=b"0123456789abcdef", enc_mode=mode)
    assert ms.load_checkpoint(str(path), dec_key=b"0123456789abcdef", dec_mode=mode)  # a real encrypted file
    with pytest.raises(CheckpointFormatError, match=r"secret\.ckpt.* encrypted MindSpore checkpoint.*dec_key"):
        load_checkpoint(path)


def _plain_ckpt(ms: Any, path: Path) -> dict[str, np.ndarray]:
    arrays = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "conv.bias": np.ones(2, np.float32)}
    ms.save_checkpoint(_tensors(ms, arrays), str(path))
    return arrays


@pytest.mark.parametrize("keep", [3, 20, -30, -1])
def test_truncated_ckpt_is_reported(keep: int, ms: Any, tmp_path: Path) -> None:
    _plain_ckpt(ms, tmp_path / "full.ckpt")
    raw = (tmp_path / "full.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(raw[:keep])
    with pytest.raises(ValueError, match="Failed to read"):  # MindSpore cannot read it either
        ms.load_checkpoint(str(tmp_path / "cut.ckpt"))
    with pytest.raises(CheckpointFormatError, match=r"cut\.ckpt.*truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.ckpt")


def test_unknown_tensor_type_is_reported(ms: Any, tmp_path: Path) -> None:
    _plain_ckpt(ms, tmp_path / "model.ckpt")
    raw = (tmp_path / "model.ckpt").read_bytes().replace(b"Float32", b"Float99")
    (tmp_path / "model.ckpt").write_bytes(raw)
    with pytest.raises(CheckpointFormatError, match=r"'conv\.weight' has tensor type 'Float99'"):
        load_checkpoint(tmp_path / "model.ckpt")


def test_shape_that_disagrees_with_the_data_is_reported(ms: Any, tmp_path: Path) -> None:
    _plain_ckpt(ms, tmp_path / "model.ckpt")
    raw = bytearray((tmp_path / "model.ckpt").read_bytes())
    dims = bytes([0x08, 2, 0x08, 3, 0x08, 4])  # TensorProto.dims of conv.weight
    at = bytes(raw).find(dims)
    raw[at + 5] = 5  # claims 2x3x5 over 2x3x4 elements
    (tmp_path / "model.ckpt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError, match=r"'conv\.weight': float32\[2, 3, 5\] needs 120 bytes.* 96"):
        load_checkpoint(tmp_path / "model.ckpt")


def test_repeated_name_is_reported(ms: Any, tmp_path: Path) -> None:
    _plain_ckpt(ms, tmp_path / "a.ckpt")
    raw = (tmp_path / "a.ckpt").read_bytes()
    (tmp_path / "twice.ckpt").write_bytes(raw + raw)  # conv.weight, conv.bias, conv.weight, conv.bias
    with pytest.raises(CheckpointFormatError, match=r"'conv\.weight' occurs twice"):
        load_checkpoint(tmp_path / "twice.ckpt")


def test_listing_does_not_read_tensor_data(ms: Any, tmp_path: Path) -> None:
    """Records read the file when asked, not when listed: bytes changed after listing show up in read()."""
    arrays = _plain_ckpt(ms, tmp_path / "model.ckpt")
    table = load_checkpoint(tmp_path / "model.ckpt")
    raw = (tmp_path / "model.ckpt").read_bytes()
    at = raw.find(arrays["conv.weight"].tobytes())
    replacement = np.full(24, 7.0, np.float32)
    with (tmp_path / "model.ckpt").open("r+b") as handle:  # in place: the same file, not a new one
        handle.seek(at)
        handle.write(replacement.tobytes())
    np.testing.assert_array_equal(table["conv.weight"].read().reshape(-1), replacement)


def test_listing_a_large_ckpt_allocates_far_less_than_its_size(ms: Any, tmp_path: Path) -> None:
    size = 32 * 1024 * 1024
    array = np.ones(size // 4, np.float32)
    ms.save_checkpoint([{"name": "huge", "data": ms.Tensor(array)}], str(tmp_path / "huge.ckpt"))
    del array
    tracemalloc.start()
    try:
        table = load_checkpoint(tmp_path / "huge.ckpt")
        _, listing_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        copy = np.array(table["huge"].read())  # control: reading the data is measured
        _, reading_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert table["huge"].nbytes == size
    assert listing_peak < size // 16
    assert reading_peak >= size
    assert copy[-1] == 1.0
