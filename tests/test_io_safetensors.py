"""`.safetensors`: files written by safetensors.torch / safetensors.numpy, automap's writer read back by both,
sharded checkpoints through a Hugging Face style `*.index.json`, corrupt headers, and lazy reading."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

from automap import CheckpointFormatError, load_checkpoint, save_checkpoint


def _state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_reads_a_file_written_by_safetensors_torch(tmp_path: Path) -> None:
    state = _state_dict()
    safetensors.torch.save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    table = load_checkpoint(tmp_path / "model.safetensors")
    assert table.framework == "pytorch"
    assert table.format == "safetensors"
    assert "safetensors metadata format='pt'" in table.notes
    assert set(table.names) == set(state)
    for record in table:
        tensor = state[record.name]
        assert record.shape == tuple(tensor.shape)
        assert record.dtype == str(tensor.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(record.read(), tensor.numpy())


def test_reads_a_file_written_by_safetensors_numpy(tmp_path: Path) -> None:
    arrays = {
        "bn.gamma": np.ones(3, np.float32),
        "bn.beta": np.zeros(3, np.float32),
        "bn.moving_mean": np.arange(3, dtype=np.float32),
        "fc.weight": np.arange(6, dtype=np.float64).reshape(2, 3),
    }
    safetensors.numpy.save_file(arrays, tmp_path / "model.safetensors")  # no metadata: framework from names
    table = load_checkpoint(tmp_path / "model.safetensors")
    assert table.framework == "mindspore"
    for name, array in arrays.items():
        assert table[name].dtype == str(array.dtype)
        np.testing.assert_array_equal(table[name].read(), array)
    assert load_checkpoint(tmp_path / "model.safetensors", framework="pytorch").framework == "pytorch"


def test_automap_output_reads_in_both_safetensors_readers_and_keeps_order(tmp_path: Path) -> None:
    arrays = {"z.last": np.arange(5, dtype=np.int32), "a.first": np.eye(3, dtype=np.float16), "m": np.ones((), bool)}
    safetensors.numpy.save_file(arrays, tmp_path / "in.safetensors")
    records = [load_checkpoint(tmp_path / "in.safetensors")[n] for n in arrays]  # z.last, a.first, m
    save_checkpoint([r.with_index(i) for i, r in enumerate(records)], tmp_path / "out.safetensors")

    by_numpy = safetensors.numpy.load_file(tmp_path / "out.safetensors")
    by_torch = safetensors.torch.load_file(tmp_path / "out.safetensors")
    for name, array in arrays.items():
        assert by_numpy[name].dtype == array.dtype
        np.testing.assert_array_equal(by_numpy[name], array)
        np.testing.assert_array_equal(by_torch[name].numpy(), array)
    with safetensors.safe_open(tmp_path / "out.safetensors", "np") as handle:
        assert handle.metadata() == {"format": "pt"}
    # automap lays tensors out in the order it was given, and reads them back in file order.
    assert load_checkpoint(tmp_path / "out.safetensors").names == ("z.last", "a.first", "m")


def test_mindspore_flavour_is_written_on_request(tmp_path: Path) -> None:
    safetensors.numpy.save_file({"w": np.ones(2, np.float32)}, tmp_path / "in.safetensors")
    save_checkpoint(load_checkpoint(tmp_path / "in.safetensors"), tmp_path / "ms.safetensors", framework="mindspore")
    with safetensors.safe_open(tmp_path / "ms.safetensors", "np") as handle:
        assert handle.metadata() == {"format": "ms"}
    assert load_checkpoint(tmp_path / "ms.safetensors").framework == "mindspore"


def _sharded(folder: Path) -> dict[str, torch.Tensor]:
    """A Hugging Face style sharded checkpoint: two shards and the index that maps names to them."""
    torch.manual_seed(1)
    first = {"embed.weight": torch.randn(6, 4), "layers.0.weight": torch.randn(4, 4)}
    second = {"layers.1.weight": torch.randn(4, 4), "head.bias": torch.randn(6).to(torch.bfloat16)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    safetensors.torch.save_file(first, folder / names[0], metadata={"format": "pt"})
    safetensors.torch.save_file(second, folder / names[1], metadata={"format": "pt"})
    weight_map = dict.fromkeys(first, names[0]) | dict.fromkeys(second, names[1])
    total = sum(t.numel() * t.element_size() for t in (*first.values(), *second.values()))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return first | second


def test_sharded_checkpoint_through_its_index(tmp_path: Path) -> None:
    tensors = _sharded(tmp_path)
    table = load_checkpoint(tmp_path / "model.safetensors.index.json")
    assert table.format == "safetensors-sharded"
    assert table.framework == "pytorch"
    assert any("2 shard file(s)" in note for note in table.notes)
    assert set(table.names) == set(tensors)
    # Shard by shard, each in its file order.
    shard_of = {n: 0 if n in ("embed.weight", "layers.0.weight") else 1 for n in tensors}
    assert [shard_of[n] for n in table.names] == sorted(shard_of[n] for n in table.names)
    for name, tensor in tensors.items():
        assert table[name].shape == tuple(tensor.shape)
        assert table[name].read().tobytes() == tensor.contiguous().view(torch.uint8).numpy().tobytes()
    assert table["head.bias"].dtype == "bfloat16"


def test_sharded_checkpoint_converts_to_one_file(tmp_path: Path) -> None:
    tensors = _sharded(tmp_path)
    save_checkpoint(load_checkpoint(tmp_path / "model.safetensors.index.json"), tmp_path / "merged.safetensors")
    merged = safetensors.torch.load_file(tmp_path / "merged.safetensors")
    assert set(merged) == set(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(merged[name], tensor)


def _write_index(folder: Path, weight_map: Any) -> Path:
    path = folder / "bad.safetensors.index.json"
    path.write_text(json.dumps({"weight_map": weight_map}))
    return path


def test_index_pointing_at_a_missing_shard(tmp_path: Path) -> None:
    _sharded(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointFormatError, match=r"index\.json.*shard 'model-00002-of-00002\.safetensors' is miss"):
        load_checkpoint(tmp_path / "model.safetensors.index.json")


@pytest.mark.parametrize("shard", ["../outside.safetensors", "sub/../../outside.safetensors", "ABSOLUTE"])
def test_index_pointing_outside_its_folder_is_refused(shard: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    outside = tmp_path / "outside.safetensors"
    safetensors.numpy.save_file({"x": np.ones(2, np.float32)}, outside)  # it exists: refused, not just missing
    index = _write_index(folder, {"x": str(outside) if shard == "ABSOLUTE" else shard})
    with pytest.raises(CheckpointFormatError, match=r"bad\.safetensors\.index\.json.*outside the index's folder"):
        load_checkpoint(index)


def test_index_naming_a_tensor_its_shard_lacks(tmp_path: Path) -> None:
    _sharded(tmp_path)
    index = _write_index(tmp_path, {"nowhere.weight": "model-00001-of-00002.safetensors"})
    with pytest.raises(CheckpointFormatError, match=r"'nowhere\.weight' is listed in shard .* does not contain it"):
        load_checkpoint(index)


@pytest.mark.parametrize("weight_map", [["a", "b"], {"x": 3}])
def test_index_with_a_malformed_weight_map(weight_map: Any, tmp_path: Path) -> None:
    with pytest.raises(CheckpointFormatError, match=r"bad\.safetensors\.index\.json.*'weight_map' must map"):
        load_checkpoint(_write_index(tmp_path, weight_map))


def _raw_file(header: dict[str, Any] | bytes, data: bytes = b"", header_len: int | None = None) -> bytes:
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded) if header_len is None else header_len) + encoded + data


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
CORRUPT = {
    "header longer than file": (_raw_file({"x": F32x2}, b"\0" * 8, header_len=4000), "header claims 4000 bytes"),
    "header not json": (_raw_file(b"{not json at all", b""), "not valid UTF-8 JSON"),
    "header not an object": (_raw_file(b'["x"]    ', b""), "must be a JSON object"),
    "unknown dtype": (_raw_file({"x": {**F32x2, "dtype": "F128"}}, b"\0" * 8), "unsupported dtype 'F128'"),
    "negative dim": (_raw_file({"x": {**F32x2, "shape": [-2]}}, b"\0" * 8), "invalid shape"),
    "size disagrees with shape": (_raw_file({"x": {**F32x2, "shape": [3]}}, b"\0" * 8), "declares 8 bytes"),
    "truncated data": (_raw_file({"x": F32x2}, b"\0" * 5), "it is truncated"),
    "overlap": (
        _raw_file({"x": F32x2, "y": {**F32x2, "data_offsets": [4, 12]}}, b"\0" * 12),
        "overlaps the previous tensor",
    ),
    "gap": (_raw_file({"x": {**F32x2, "data_offsets": [4, 12]}}, b"\0" * 12), "leaves a gap"),
    "metadata not strings": (_raw_file({"__metadata__": {"format": 1}, "x": F32x2}, b"\0" * 8), "__metadata__"),
    "huge header": (_raw_file(b"{}", b"", header_len=200 * 1024 * 1024), "header claims"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_file_is_reported(case: str, tmp_path: Path) -> None:
    raw, message = CORRUPT[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(Exception):  # noqa: B017 - the reference reader refuses it too, with its own error types
        safetensors.numpy.load_file(path)
    with pytest.raises(CheckpointFormatError, match=r"bad\.safetensors.*" + message):
        load_checkpoint(path)


def test_truncated_file_written_by_safetensors(tmp_path: Path) -> None:
    safetensors.torch.save_file(_state_dict(), tmp_path / "full.safetensors")
    raw = (tmp_path / "full.safetensors").read_bytes()
    for keep in (4, 20, len(raw) - 1):
        (tmp_path / "cut.safetensors").write_bytes(raw[:keep])
        with pytest.raises(CheckpointFormatError, match=r"cut\.safetensors"):
            load_checkpoint(tmp_path / "cut.safetensors")


def test_listing_does_not_read_tensor_data(tmp_path: Path) -> None:
    """Records read the file when asked, not when listed: bytes changed after listing show up in read()."""
    original = np.arange(16, dtype=np.float32)
    safetensors.numpy.save_file({"w": original, "b": np.ones(3, np.float32)}, tmp_path / "m.safetensors")
    table = load_checkpoint(tmp_path / "m.safetensors")
    at = (tmp_path / "m.safetensors").read_bytes().find(original.tobytes())
    replacement = np.full(16, -1.0, np.float32)
    with (tmp_path / "m.safetensors").open("r+b") as handle:
        handle.seek(at)
        handle.write(replacement.tobytes())
    np.testing.assert_array_equal(table["w"].read(), replacement)


def test_listing_a_large_file_allocates_far_less_than_its_size(tmp_path: Path) -> None:
    size = 32 * 1024 * 1024
    safetensors.numpy.save_file({"huge": np.ones(size // 4, np.float32)}, tmp_path / "huge.safetensors")
    tracemalloc.start()
    try:
        table = load_checkpoint(tmp_path / "huge.safetensors")
        _, listing_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        copy = np.array(table["huge"].read())  # control: reading the data is measured
        _, reading_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert table.total_nbytes == size
    assert listing_peak < size // 16
    assert reading_peak >= size
    assert copy[0] == 1.0
