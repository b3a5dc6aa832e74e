"""Sharded checkpoints: planning, writing every format with a HuggingFace-style index, reading back through automap
and through each framework's own loader, and all-or-nothing writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automap import CheckpointFormatError, ConversionError, ParamRecord, load_checkpoint, save_checkpoint
from automap.io.sharded import layout, parse_size

RNG = np.random.default_rng(11)
ARRAYS = {f"layers.{i}.weight": RNG.standard_normal((i + 1, 50)).astype(np.float32) for i in range(6)}
# bytes: 200, 400, 600, 800, 1000, 1200


def _records(arrays: dict[str, np.ndarray] = ARRAYS) -> list[ParamRecord]:
    def loader(array: np.ndarray) -> Any:
        return lambda: array

    return [ParamRecord(n, a.shape, "float32", i, loader(a)) for i, (n, a) in enumerate(arrays.items())]


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2GB", 2 * 10**9),
        ("500MB", 5 * 10**8),
        ("1GiB", 2**30),
        ("1.5 GiB", 3 * 2**29),
        ("4096", 4096),
        ("10kb", 10**4),
    ],
)
def test_sizes_are_parsed_like_huggingface(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "2 GX", "-1GB", "0", "GB", "1e9"])
def test_a_bad_size_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_tensors_fill_shards_in_order_and_a_large_one_gets_its_own() -> None:
    plan = layout(Path("out/model.safetensors"), _records(), max_shard_size=1000)
    assert [[r.name.split(".")[1] for r in group] for _, group in plan.shards] == [
        ["0", "1"],  # 200 + 400 (+ 600 would exceed 1000)
        ["2"],  # 600 (+ 800 would exceed)
        ["3"],
        ["4"],  # exactly 1000
        ["5"],  # 1200: over the limit on its own
    ]
    assert [p.name for p in plan.files] == [f"model-0000{i}-of-00005.safetensors" for i in range(1, 6)]
    assert plan.index == Path("out/model.safetensors.index.json")
    same = layout(Path("out/model.safetensors.index.json"), _records(), max_shard_size=1000)
    assert same.files == plan.files and same.index == plan.index  # the index may name the output too


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt", ".pth", ".bin"])
def test_round_trip_through_the_index(suffix: str, tmp_path: Path) -> None:
    save_checkpoint(_records(), tmp_path / f"model{suffix}", max_shard_size=1000)
    assert _files(tmp_path) == sorted(
        [*(f"model-0000{i}-of-00005{suffix}" for i in range(1, 6)), f"model{suffix}.index.json"]
    )
    index = json.loads((tmp_path / f"model{suffix}.index.json").read_text())
    assert index["metadata"] == {"total_size": sum(a.nbytes for a in ARRAYS.values())}
    assert list(index["weight_map"]) == list(ARRAYS)
    assert index["weight_map"]["layers.1.weight"] == f"model-00001-of-00005{suffix}"

    table = load_checkpoint(tmp_path / f"model{suffix}.index.json")
    assert table.names == tuple(ARRAYS)
    assert table.format.endswith("-sharded")
    for record in table:
        np.testing.assert_array_equal(record.read(), ARRAYS[record.name])


def test_safetensors_shards_load_the_way_huggingface_loads_them(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    save_checkpoint(_records(), tmp_path / "model.safetensors", max_shard_size=1000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    state: dict[str, np.ndarray] = {}
    for shard in sorted(set(index["weight_map"].values())):  # transformers' load_sharded_checkpoint does this
        state.update(load_file(tmp_path / shard))
    assert set(state) == set(ARRAYS)
    for name, array in ARRAYS.items():
        np.testing.assert_array_equal(state[name], array)


def test_ckpt_shards_each_load_in_mindspore(tmp_path: Path, mindspore_cpu: Any) -> None:
    ms = mindspore_cpu
    save_checkpoint(_records(), tmp_path / "model.ckpt", max_shard_size=1000)
    index = json.loads((tmp_path / "model.ckpt.index.json").read_text())
    seen: list[str] = []
    for shard in sorted(set(index["weight_map"].values())):
        params = ms.load_checkpoint(str(tmp_path / shard))
        assert all(index["weight_map"][name] == shard for name in params)
        for name, param in params.items():
            np.testing.assert_array_equal(param.asnumpy(), ARRAYS[name])
        seen.extend(params)
    assert seen == list(ARRAYS)


def test_pth_shards_each_load_in_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    save_checkpoint(_records(), tmp_path / "pytorch_model.bin", max_shard_size=1000)
    index = json.loads((tmp_path / "pytorch_model.bin.index.json").read_text())
    state: dict[str, Any] = {}
    for shard in sorted(set(index["weight_map"].values())):
        assert shard.startswith("pytorch_model-") and shard.endswith(".bin")
        state.update(torch.load(tmp_path / shard, weights_only=True, mmap=True))
    assert list(state) == list(ARRAYS)
    for name, array in ARRAYS.items():
        np.testing.assert_array_equal(state[name].numpy(), array)


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt", ".pth"])
@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()], ids=["error", "Ctrl-C"])
def test_a_failure_in_a_later_shard_leaves_nothing(suffix: str, error: BaseException, tmp_path: Path) -> None:
    records = _records()

    def failing() -> np.ndarray:
        raise error

    broken = [*records[:4], ParamRecord(records[4].name, records[4].shape, "float32", 4, failing), records[5]]
    with pytest.raises(type(error)):
        save_checkpoint(broken, tmp_path / f"model{suffix}", max_shard_size=1000)
    assert _files(tmp_path) == []  # neither the three finished shards, nor the index, nor temporary files


def test_an_existing_set_is_kept_unless_overwriting_and_stale_shards_go(tmp_path: Path) -> None:
    save_checkpoint(_records(), tmp_path / "model.ckpt", max_shard_size=1000)  # 5 shards
    with pytest.raises(ConversionError, match=r"model.ckpt.index.json' already exists; pass overwrite=True"):
        save_checkpoint(_records(), tmp_path / "model.ckpt", max_shard_size=2000)
    assert len(_files(tmp_path)) == 6
    (tmp_path / "notes.txt").write_text("not a shard")
    save_checkpoint(_records(), tmp_path / "model.ckpt", max_shard_size=2000, overwrite=True)  # now 3 shards
    assert _files(tmp_path) == [
        *(f"model-0000{i}-of-00003.ckpt" for i in (1, 2, 3)),
        "model.ckpt.index.json",
        "notes.txt",
    ]
    assert load_checkpoint(tmp_path / "model.ckpt.index.json").names == tuple(ARRAYS)


def test_an_existing_shard_name_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "model-00002-of-00005.safetensors").write_bytes(b"someone else's")
    with pytest.raises(ConversionError, match=r"model-00002-of-00005\.safetensors' already exists"):
        save_checkpoint(_records(), tmp_path / "model.safetensors", max_shard_size=1000)
    assert _files(tmp_path) == ["model-00002-of-00005.safetensors"]


def test_a_ckpt_shard_set_refuses_empty_tensors_before_writing(tmp_path: Path) -> None:
    arrays = {**ARRAYS, "empty": np.zeros((0, 3), np.float32)}
    with pytest.raises(CheckpointFormatError, match="no elements"):
        save_checkpoint(_records(arrays), tmp_path / "model.ckpt", max_shard_size=1000)
    assert _files(tmp_path) == []


def test_the_index_must_match_its_shards(tmp_path: Path) -> None:
    save_checkpoint(_records(), tmp_path / "model.ckpt", max_shard_size=1000)
    index_file = tmp_path / "model.ckpt.index.json"
    index = json.loads(index_file.read_text())
    index["weight_map"]["layers.0.weight"] = "model-00002-of-00005.ckpt"
    index_file.write_text(json.dumps(index))
    with pytest.raises(
        CheckpointFormatError, match=r"'layers\.0\.weight' is listed in shard 'model-00002-of-00005\.ckpt'"
    ):
        load_checkpoint(index_file)
    index["weight_map"]["layers.0.weight"] = "../elsewhere.ckpt"
    index_file.write_text(json.dumps(index))
    with pytest.raises(CheckpointFormatError, match="outside the index's folder"):
        load_checkpoint(index_file)
    (tmp_path / "model-00003-of-00005.ckpt").unlink()
    index["weight_map"]["layers.0.weight"] = "model-00001-of-00005.ckpt"
    index_file.write_text(json.dumps(index))
    with pytest.raises(CheckpointFormatError, match=r"'model-00003-of-00005\.ckpt' is missing"):
        load_checkpoint(index_file)
