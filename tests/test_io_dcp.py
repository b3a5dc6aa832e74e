"""PyTorch DCP checkpoints: automap's reader against torch's own merge (`dcp_to_torch_save`).

The checkpoint is saved by real `torch.distributed.checkpoint` from 2 gloo processes sharding a model with
FSDP2 and tensor parallelism (`tests/_distributed_fixtures.py`). Hostile variants edit its metadata (overlapping,
missing, out-of-range chunks, claimed sizes, paths, a pickle that would run code) or its chunk files.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automap import CheckpointFormatError
from automap.io import dcp
from tests._distributed_fixtures import DcpCluster, dcp_cluster

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> DcpCluster:
    return dcp_cluster(tmp_path_factory.mktemp("dcp"))


@pytest.fixture
def copy(cluster: DcpCluster, tmp_path: Path) -> Path:
    """A copy of the checkpoint a test may damage."""
    return Path(shutil.copytree(cluster.checkpoint, tmp_path / "dcp"))


def _bits(tensor: Any) -> np.ndarray:
    """A torch tensor as automap carries it: numpy, bfloat16 as its raw 16 bits."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy()


def test_every_tensor_equals_torch_merge(cluster: DcpCluster) -> None:
    table = dcp.read(cluster.checkpoint)
    assert table.format == "pytorch-dcp" and table.framework == "pytorch"
    model = {f"model.{r.name}": r for r in table.params}
    state = {r.name: r for r in table.excluded}
    assert set(model) | set(state) == set(cluster.merged)
    assert all(name.startswith("optim.") for name in state) and len(state) == 24
    assert "state dict taken from key 'model'" in table.notes
    for name, expected in cluster.merged.items():
        record = model.get(name) or state[name]
        array = record.read()
        truth = _bits(expected)
        assert record.dtype == str(expected.dtype).removeprefix("torch."), name
        assert array.shape == truth.shape and array.dtype == truth.dtype, name
        assert array.tobytes() == truth.tobytes(), name


def test_shards_of_every_kind_are_present(cluster: DcpCluster) -> None:
    """The fixture really holds uneven, empty, column and replicated chunks (else the test above proves less)."""
    metadata = pickle.loads((cluster.checkpoint / ".metadata").read_bytes())  # our own file: trusted
    chunks = {
        n: [(tuple(c.offsets), tuple(c.sizes)) for c in m.chunks]
        for n, m in metadata.state_dict_metadata.items()
        if hasattr(m, "chunks")
    }
    assert chunks["model.emb.weight"] == [((0, 0), (6, 6)), ((6, 0), (5, 6))]  # FSDP2, uneven
    assert chunks["model.head.weight"] == [((0, 0), (1, 6)), ((1, 0), (0, 6))]  # FSDP2, one rank empty
    assert chunks["model.ffn.1.weight"] == [((0, 0), (6, 4)), ((0, 4), (6, 4))]  # tensor parallel, by column
    assert chunks["model.norm.weight"] == [((0,), (6,))]  # replicated, saved once
    assert len({info.relative_path for info in metadata.storage_data.values()}) == 2


@pytest.mark.slow  # 4 processes importing torch and meeting over gloo: 10-15 s on 2 cores
def test_fsdp_over_tensor_parallel_equals_torch_merge(tmp_path: Path) -> None:
    cluster = dcp_cluster(tmp_path, mesh_2d=True)
    metadata = pickle.loads((cluster.checkpoint / ".metadata").read_bytes())
    chunks = [(tuple(c.offsets), tuple(c.sizes)) for c in metadata.state_dict_metadata["model.0.weight"].chunks]
    assert chunks == [((0, 0), (4, 10)), ((7, 0), (4, 10)), ((4, 0), (3, 10)), ((11, 0), (3, 10))]  # interleaved
    table = dcp.read(cluster.checkpoint)
    assert {f"model.{name}" for name in table.names} == set(cluster.merged)
    for record in table.params:
        assert record.read().tobytes() == _bits(cluster.merged[f"model.{record.name}"]).tobytes(), record.name


def test_reads_without_torch(cluster: DcpCluster) -> None:
    script = (
        "import sys; from automap.io import dcp; t = dcp.read(sys.argv[1]); "
        "[r.read() for r in (*t.params, *t.excluded)]; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(cluster.checkpoint)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_data_files(cluster: DcpCluster, tmp_path: Path) -> None:
    assert [p.name for p in dcp.data_files(cluster.checkpoint)] == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert dcp.data_files(tmp_path) == []


def test_sniff(cluster: DcpCluster, tmp_path: Path) -> None:
    assert dcp.sniff(cluster.checkpoint)
    assert dcp.sniff(cluster.checkpoint / ".metadata")
    assert not dcp.sniff(tmp_path)
    assert not dcp.sniff(next(cluster.checkpoint.glob("*.distcp")))
    (tmp_path / ".metadata").write_text("{}")
    assert not dcp.sniff(tmp_path)


def test_listing_reads_no_tensor_and_each_tensor_only_its_chunks(copy: Path, cluster: DcpCluster) -> None:
    table = dcp.read(copy)
    metadata = pickle.loads((copy / ".metadata").read_bytes())
    for index, info in metadata.storage_data.items():
        if index.fqn == "model.ffn.0.weight":  # damage every chunk of one tensor, after listing
            with (copy / info.relative_path).open("r+b") as handle:
                handle.seek(info.offset)
                handle.write(b"\xff" * info.length)
    assert table["norm.weight"].read().tobytes() == _bits(cluster.merged["model.norm.weight"]).tobytes()
    with pytest.raises(CheckpointFormatError, match=r"'model\.ffn\.0\.weight'.*not a torch\.save archive"):
        table["ffn.0.weight"].read()


def test_reading_one_tensor_holds_one_tensor(cluster: DcpCluster) -> None:
    table = dcp.read(cluster.checkpoint)
    record = table["big.weight"]
    tracemalloc.start()
    try:
        array = record.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert array.nbytes == record.nbytes == 2 * 1024 * 1024
    assert peak < record.nbytes + 256 * 1024


def _resident_kib(folder: Path) -> int:
    """Kilobytes of this process's mappings of the folder's `.distcp` files that are resident (Linux smaps)."""
    total, counting = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line: address range first
            counting = (
                len(fields) >= 6 and fields[-1].startswith(str(folder.resolve())) and fields[-1].endswith(".distcp")
            )
        elif counting and fields[:1] == ["Rss:"]:
            total += int(fields[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")
def test_a_joined_tensor_leaves_no_chunk_page_resident(copy: Path) -> None:
    table = dcp.read(copy)
    array = table["big.weight"].read()  # two chunks of 1 MiB, copied into one new array
    assert array.nbytes == 2 * 1024 * 1024
    assert _resident_kib(copy) < 512  # archive headers only; without handing the chunks back: over 2048


# --- hostile metadata and files -------------------------------------------------------------------------------


def _edit(folder: Path, change: Callable[[Any], None]) -> None:
    """Rewrite the metadata through torch's own classes (the file is ours, so unpickling it here is safe)."""
    path = folder / ".metadata"
    metadata = pickle.loads(path.read_bytes())
    change(metadata)
    path.write_bytes(pickle.dumps(metadata))


def _move_chunk(name: str, index: int, offsets: list[int]) -> Callable[[Any], None]:
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex

    def change(metadata: Any) -> None:
        chunk = metadata.state_dict_metadata[name].chunks[index]
        info = metadata.storage_data.pop(MetadataIndex(name, chunk.offsets))
        metadata.state_dict_metadata[name].chunks[index] = ChunkStorageMetadata(torch.Size(offsets), chunk.sizes)
        metadata.storage_data[MetadataIndex(name, offsets)] = info

    return change


def _drop_chunk(metadata: Any) -> None:
    del metadata.state_dict_metadata["model.emb.weight"].chunks[1]


def _shrink(metadata: Any) -> None:
    metadata.state_dict_metadata["model.emb.weight"].size = torch.Size([10, 6])


def _huge(metadata: Any) -> None:
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata

    entry = metadata.state_dict_metadata["model.ffn.0.bias"]
    entry.size = torch.Size([2**40])
    entry.chunks[1] = ChunkStorageMetadata(torch.Size([4]), torch.Size([2**40 - 4]))
    metadata.storage_data = {
        (type(k)(k.fqn, [4]) if k.fqn == "model.ffn.0.bias" and list(k.offset) == [4] else k): v
        for k, v in metadata.storage_data.items()
    }


def _forget_storage(metadata: Any) -> None:
    metadata.storage_data = {k: v for k, v in metadata.storage_data.items() if k.fqn != "model.ffn.1.weight"}


def _escape(metadata: Any) -> None:
    for key, info in metadata.storage_data.items():
        if key.fqn == "model.norm.bias":
            info.relative_path = "../../outside.distcp"


_HOSTILE: dict[str, tuple[Callable[[Any], None], str]] = {
    "overlap": (_move_chunk("model.ffn.0.weight", 1, [2, 0]), r"'ffn\.0\.weight'.*\[0:4, 0:6\].*\[2:6, 0:6\].*overlap"),
    "gap": (_drop_chunk, r"'emb\.weight'.*no slice holds its part \[6:11, 0:6\]"),
    "out of range": (_shrink, r"'emb\.weight'.*\[6:11, 0:6\].*reaches outside.*\[10, 6\]"),
    "huge claim": (_huge, r"'model\.ffn\.0\.bias' declares a chunk of \[1099511627772\].*stored in \d+ bytes"),
    "no storage entry": (_forget_storage, r"'model\.ffn\.1\.weight' has no storage entry"),
    "path escape": (_escape, r"'\.\./\.\./outside\.distcp' points outside the checkpoint's folder"),
}


@pytest.mark.parametrize("case", list(_HOSTILE))
def test_hostile_metadata_is_refused_naming_the_tensor(copy: Path, case: str) -> None:
    change, message = _HOSTILE[case]
    _edit(copy, change)
    (copy.parent / "outside.distcp").write_bytes(b"\0" * 4096)
    with pytest.raises(CheckpointFormatError, match=message):
        dcp.read(copy)


def test_truncated_chunk_file_is_refused(copy: Path) -> None:
    last = copy / "__1_0.distcp"
    last.write_bytes(last.read_bytes()[:-100])
    with pytest.raises(CheckpointFormatError, match=r"__1_0\.distcp', which holds \d+ bytes; the file is truncated"):
        dcp.read(copy)


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch ran",))


def test_metadata_that_would_run_code_is_refused(copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (copy / ".metadata").write_bytes(pickle.dumps({"state_dict_metadata": _Payload()}))
    with pytest.raises(CheckpointFormatError, match=r"names (posix|os|nt)\.system.*refused without running it"):
        dcp.read(copy)
    assert not (tmp_path / "ran").exists()


def test_damaged_metadata_is_refused(copy: Path) -> None:
    raw = (copy / ".metadata").read_bytes()
    (copy / ".metadata").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointFormatError, match=r"\.metadata': not a readable DCP metadata file"):
        dcp.read(copy)


# --- several state dicts, saved in one process ------------------------------------------------------------------


def test_several_state_dicts_need_a_key(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as torch_dcp

    model = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    ema = {"w": torch.full((2, 3), 0.5), "b": torch.zeros(2)}
    with pytest.warns(UserWarning):  # torch: no process group, "assuming the intent is to save in a single process"
        torch_dcp.save({"model": model, "ema": ema, "optimizer": {"m": torch.zeros(3)}}, checkpoint_id=tmp_path)
    with pytest.raises(
        CheckpointFormatError,
        match=r"several state dicts: 'ema' \(2 tensors\), 'model' \(2 tensors\); choose one with key='ema'",
    ):
        dcp.read(tmp_path)
    table = dcp.read(tmp_path, key="ema")
    assert table.names == ("w", "b")
    assert np.array_equal(table["w"].read(), ema["w"].numpy())
    assert [r.name for r in table.excluded] == ["optimizer.m"]
    with pytest.raises(CheckpointFormatError, match=r"no tensors under key 'emma'"):
        dcp.read(tmp_path, key="emma")
