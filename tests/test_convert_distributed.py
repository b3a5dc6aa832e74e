"""Distributed checkpoints converted end to end on the command line, into the other framework's network.

PyTorch: the conversion tests' network sharded with FSDP2 over 2 gloo processes and saved by
`torch.distributed.checkpoint`, converted with `--like` into MindSpore shards (by 2 workers), which
`mindspore.load_checkpoint` loads into a fresh MindSpore network. MindSpore: the same network's MindSpore twin
cut into 4 rank files by MindSpore's `transform_checkpoints` following a strategy file, converted into torch
safetensors, loaded into a fresh PyTorch network. Both must compute what the source network computes. Bad
distributed inputs give one line on stderr, exit status 1 and no file.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

import _convert_nets as nets  # noqa: E402  # after the skips: it builds networks of both frameworks
import safetensors.torch  # noqa: E402

from automap import CheckpointFormatError, cli, convert, infer_mapping  # noqa: E402
from automap.io import load_checkpoint  # noqa: E402
from tests._distributed_fixtures import DcpCluster, dcp_cluster, fsdp_ranks, mindspore_net_cluster  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.mindspore]

NET_INPUT = np.random.default_rng(11).standard_normal((2, nets.C_IN, 5, 5)).astype(np.float32)


@pytest.fixture(scope="module")
def dcp_net(tmp_path_factory: pytest.TempPathFactory) -> DcpCluster:
    return dcp_cluster(tmp_path_factory.mktemp("dcp-net"), kind="net")


@pytest.fixture(scope="module")
def ms_net(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return mindspore_net_cluster(tmp_path_factory.mktemp("ms-net"))


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each framework's network saved by its own API: the targets' names, shapes and order (values unused)."""
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    folder = tmp_path_factory.mktemp("templates")
    ms.save_checkpoint(nets.mindspore_net(), str(folder / "net.ckpt"))
    torch.save(nets.torch_net().state_dict(), folder / "net.pth")
    return {"ckpt": folder / "net.ckpt", "pth": folder / "net.pth"}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = cli.main([*args, "--quiet"] if args[0] == "convert" else list(args))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _fails(capsys: pytest.CaptureFixture[str], folder: Path, args: list[str], expected: str) -> None:
    """Exit 1, one line on stderr containing `expected`, no traceback, and no file added to `folder`."""
    before = sorted(folder.rglob("*"))
    code = cli.main(args)
    captured = capsys.readouterr()
    assert code == 1, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("automap: error: "), captured.err
    assert expected in lines[0], lines[0]
    assert sorted(folder.rglob("*")) == before


def _torch_output(module: Any) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(NET_INPUT)).numpy()


def _mindspore_output(cell: Any) -> np.ndarray:
    cell.set_train(False)
    return cell(ms.Tensor(NET_INPUT)).asnumpy()


# --- PyTorch DCP -> MindSpore ---------------------------------------------------------------------------------


def test_dcp_converts_into_a_mindspore_network(
    dcp_net: DcpCluster, templates: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = _run(capsys, "inspect", str(dcp_net.checkpoint))
    assert "pytorch-dcp" in listing and "conv.weight" in listing
    out = tmp_path / "net.ckpt"
    report = _run(
        capsys,
        *("convert", str(dcp_net.checkpoint), "--like", str(templates["ckpt"]), "-o", str(out)),
        *("--max-shard-size", "200B", "--workers", "2"),
    )
    assert "worker 1: " in report and "worker 2: " in report, report
    assert "with mindspore.load_checkpoint" in report
    index = tmp_path / "net.ckpt.index.json"
    shards = sorted(tmp_path.glob("net-*-of-*.ckpt"))
    assert len(shards) > 2 and index.is_file()
    assert not list(tmp_path.glob(".*partial*"))
    cell = nets.mindspore_net()
    params: dict[str, Any] = {}
    for shard in shards:
        params.update(ms.load_checkpoint(str(shard)))
    assert ms.load_param_into_net(cell, params, strict_load=True) == ([], [])

    torch_net = nets.torch_net()  # the weights torch's own merge gives back
    merged = {name.removeprefix("model."): tensor for name, tensor in dcp_net.merged.items()}
    torch_net.load_state_dict(merged, strict=True)
    np.testing.assert_allclose(_mindspore_output(cell), _torch_output(torch_net), rtol=1e-5, atol=1e-5)
    verified = cli.main([
        "verify", "--torch-model", "_convert_nets:torch_net", "--mindspore-model", "_convert_nets:mindspore_net",
        "--torch-weights", str(dcp_net.checkpoint), "--mindspore-weights", str(index), "--input", "2x3x5x5:float32",
    ])  # fmt: skip
    assert verified == 0, capsys.readouterr()


def test_a_worker_that_meets_a_damaged_chunk_leaves_no_file(
    dcp_net: DcpCluster, templates: dict[str, Path], tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(dcp_net.checkpoint, tmp_path / "dcp"))
    table = load_checkpoint(copy)
    mapping = infer_mapping(table, templates["ckpt"])
    for chunks in copy.glob("*.distcp"):  # damaged after it was listed: found only when a worker reads it
        chunks.write_bytes(b"\0" * chunks.stat().st_size)
    out = tmp_path / "out" / "net.ckpt"
    out.parent.mkdir()
    with pytest.raises(CheckpointFormatError, match=r"\.distcp"):
        convert(table, mapping, out, target=templates["ckpt"], max_shard_size="200B", workers=2)
    assert list(out.parent.iterdir()) == []


def test_dcp_metadata_file_reads_as_its_folder(dcp_net: DcpCluster) -> None:
    table = load_checkpoint(dcp_net.checkpoint / ".metadata")
    assert table.format == "pytorch-dcp" and table.source == str(dcp_net.checkpoint)
    assert "conv.weight" in table.names


def test_dcp_as_a_target_of_infer(dcp_net: DcpCluster, templates: dict[str, Path], capsys: Any) -> None:
    out = _run(capsys, "infer", str(templates["ckpt"]), str(dcp_net.checkpoint))
    assert f"target: {dcp_net.checkpoint} (pytorch, 13 parameters)" in out
    assert "confident (>= 0.90)           12" in out  # every parameter; torch restores num_batches_tracked


# --- FSDP sharded state dicts (torch.save per rank) -> MindSpore ----------------------------------------------


def test_fsdp_rank_files_convert_into_a_mindspore_network(
    templates: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = fsdp_ranks(tmp_path_factory.mktemp("fsdp-net")) / "net"
    listing = _run(capsys, "inspect", str(folder))
    assert "pytorch-fsdp" in listing and "conv.weight" in listing
    out = tmp_path_factory.mktemp("fsdp-out") / "net.ckpt"
    report = _run(capsys, "convert", str(folder), "--like", str(templates["ckpt"]), "-o", str(out), "--workers", "2")
    assert "with mindspore.load_checkpoint" in report
    cell = nets.mindspore_net()
    assert ms.load_param_into_net(cell, ms.load_checkpoint(str(out)), strict_load=True) == ([], [])
    np.testing.assert_allclose(_mindspore_output(cell), _torch_output(nets.torch_net()), rtol=1e-5, atol=1e-5)


# --- MindSpore per-rank checkpoints -> PyTorch ----------------------------------------------------------------


def test_mindspore_ranks_convert_into_a_torch_network(
    ms_net: tuple[Path, Path], templates: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, strategy = ms_net
    moved = tmp_path / "elsewhere.ckpt"  # given on the command line rather than found beside the ranks
    shutil.copy(strategy, moved)
    out = tmp_path / "net.safetensors"
    report = _run(
        capsys,
        *("convert", str(checkpoint), "--like", str(templates["pth"]), "-o", str(out), "--strategy", str(moved)),
    )
    assert "verified" in report
    module = nets.torch_net()
    state = safetensors.torch.load_file(out)
    module.load_state_dict(state, strict=True)
    np.testing.assert_allclose(_torch_output(module), _mindspore_output(nets.mindspore_net()), rtol=1e-5, atol=1e-5)


def test_mindspore_ranks_are_cut_and_listed_as_full_tensors(ms_net: tuple[Path, Path], capsys: Any) -> None:
    checkpoint, _ = ms_net
    cut = ms.load_checkpoint(str(next((checkpoint / "rank_1").glob("*.ckpt"))))
    assert tuple(cut["head.weight"].shape) == (nets.N_OUT, nets.C_CONV1D // 2)  # really a slice on the rank
    listing = _run(capsys, "inspect", str(checkpoint))
    assert "mindspore-distributed" in listing and "12 parameters" in listing
    assert load_checkpoint(checkpoint)["head.weight"].shape == (nets.N_OUT, nets.C_CONV1D)


# --- bad distributed input: one line, exit 1, nothing written -------------------------------------------------


@pytest.fixture
def ms_copy(ms_net: tuple[Path, Path], tmp_path: Path) -> Path:
    checkpoint, strategy = ms_net
    shutil.copytree(strategy.parent, tmp_path / "strategy")
    return Path(shutil.copytree(checkpoint, tmp_path / "checkpoint"))


def test_missing_strategy_says_which_flag(ms_copy: Path, templates: dict[str, Path], capsys: Any) -> None:
    shutil.rmtree(ms_copy.parent / "strategy")
    args = ["convert", str(ms_copy), "--like", str(templates["pth"]), "-o", str(ms_copy.parent / "o.safetensors")]
    _fails(capsys, ms_copy.parent, args, "no parallel strategy file found")
    _fails(capsys, ms_copy.parent, ["inspect", str(ms_copy)], "--strategy FILE")


def test_missing_rank_is_named(ms_copy: Path, capsys: Any) -> None:
    shutil.rmtree(ms_copy / "rank_2")
    _fails(capsys, ms_copy.parent, ["inspect", str(ms_copy)], "rank 2 has no checkpoint")


def test_parameter_in_no_rank_is_named(ms_copy: Path, ms_net: tuple[Path, Path], capsys: Any) -> None:
    from tests._distributed_fixtures import NET_LAYOUTS, strategy_message

    layouts = {n: ((4, 4), "float32", dev, tmap, 0, 0) for n, (dev, tmap) in NET_LAYOUTS.items()}
    layouts["extra.weight"] = ((4, 4), "float32", [2, 2], [0, -1], 0, 0)
    (ms_copy.parent / "strategy" / "strategy.ckpt").write_bytes(strategy_message(layouts, 0).SerializeToString())
    _fails(capsys, ms_copy.parent, ["inspect", str(ms_copy)], "'extra.weight' is described by the strategy")


@pytest.mark.parametrize("damage", ["overlap", "gap"])
def test_overlapping_or_missing_slices_are_named(
    dcp_net: DcpCluster, tmp_path: Path, templates: dict[str, Path], capsys: Any, damage: str
) -> None:
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex

    copy = Path(shutil.copytree(dcp_net.checkpoint, tmp_path / "dcp"))
    metadata = pickle.loads((copy / ".metadata").read_bytes())  # our own file: unpickling it here is safe
    entry = metadata.state_dict_metadata["model.fc.weight"]
    if damage == "gap":
        del entry.chunks[1]
        expected = "'fc.weight': no slice holds its part [3:5, 0:6]"
    else:
        chunk = entry.chunks[1]
        info = metadata.storage_data.pop(MetadataIndex("model.fc.weight", chunk.offsets))
        entry.chunks[1] = ChunkStorageMetadata(torch.Size([1, 0]), chunk.sizes)
        metadata.storage_data[MetadataIndex("model.fc.weight", [1, 0])] = info
        expected = "overlap; the checkpoint is corrupt"
    (copy / ".metadata").write_bytes(pickle.dumps(metadata))
    args = ["convert", str(copy), "--like", str(templates["ckpt"]), "-o", str(tmp_path / "out.ckpt"), "--quiet"]
    _fails(capsys, tmp_path, args, expected)
