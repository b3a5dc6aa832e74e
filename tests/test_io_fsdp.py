"""FSDP sharded state dicts saved per rank with torch.save: joined against the full state dict torch gathers.

The files are saved by 2 real gloo processes (`tests/_distributed_fixtures.py`): FSDP2 beside tensor
parallelism (DTensors), FSDP1 given a device mesh (DTensors) and FSDP1 without one (ShardedTensors, refused).
Hostile variants are real rank files edited in this process and saved again with torch.save.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automap import CheckpointFormatError, cli
from automap.io import fsdp, load_checkpoint
from tests._distributed_fixtures import fsdp_ranks

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fsdp_ranks(tmp_path_factory.mktemp("fsdp"))


@pytest.fixture
def copy(ranks: Path, tmp_path: Path) -> Path:
    """A copy of the FSDP2 rank files a test may damage."""
    return Path(shutil.copytree(ranks / "fsdp2", tmp_path / "fsdp2"))


def _bits(tensor: Any) -> np.ndarray:
    """A torch tensor as automap carries it: numpy, bfloat16 as its raw 16 bits."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy()


def _load_rank(file: Path) -> dict[str, Any]:
    import torch.distributed.tensor  # allows DTensor in weights_only loading

    loaded: dict[str, Any] = torch.load(file, weights_only=True)
    return loaded


@pytest.mark.parametrize("kind", ["fsdp2", "fsdp1_mesh"])
def test_every_tensor_equals_the_full_state_dict(ranks: Path, kind: str) -> None:
    table = load_checkpoint(ranks / kind)
    full = torch.load(ranks / f"{kind.split('_')[0]}_full.pt", weights_only=True)
    assert table.format == "pytorch-fsdp" and table.framework == "pytorch"
    assert [r.name for r in table.params] == list(full)
    for record in table.params:
        expected = _bits(full[record.name])
        assert record.shape == expected.shape and record.dtype == str(full[record.name].dtype).removeprefix("torch.")
        array = record.read()
        assert array.dtype == expected.dtype and np.array_equal(array, expected), record.name


def test_the_files_hold_shards_of_every_kind(ranks: Path) -> None:
    """Guards the fixture: cuts along both axes, an uneven and an empty shard, a plain tensor."""
    state = _load_rank(ranks / "fsdp2" / "model_rank1.pt")
    placements = {name: str(value.placements) for name, value in state.items() if hasattr(value, "placements")}
    assert placements["ffn.1.weight"] == "(Shard(dim=1),)" and placements["emb.weight"] == "(Shard(dim=0),)"
    assert tuple(state["emb.weight"].to_local().shape) == (5, 6)  # 11 rows: 6 on rank 0, 5 on rank 1
    assert tuple(state["head.weight"].to_local().shape) == (0, 6)
    assert type(state["positions"]) is torch.Tensor


def test_sharded_tensors_are_refused_saying_what_to_do(ranks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fsdp.sniff(ranks / "fsdp1") and fsdp.sniff(ranks / "fsdp1" / "model_rank0.pt")
    assert cli.main(["inspect", str(ranks / "fsdp1")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "ShardedTensors" in err and "torch.distributed.checkpoint" in err and "model_rank0.pt" in err


def test_sniff_claims_rank_files_only(ranks: Path, tmp_path: Path) -> None:
    assert fsdp.sniff(ranks / "fsdp2") and fsdp.sniff(ranks / "fsdp2" / "model_rank0.pt")
    assert not fsdp.sniff(ranks / "fsdp2_full.pt")
    assert not fsdp.sniff(tmp_path)
    assert load_checkpoint(ranks / "fsdp2_full.pt").format != "pytorch-fsdp"
    assert fsdp.data_files(ranks / "fsdp2") == [ranks / "fsdp2" / f"model_rank{r}.pt" for r in (0, 1)]


def test_sniffing_imports_no_torch(ranks: Path) -> None:
    code = (
        "import sys; from automap.io import fsdp; "
        f"assert fsdp.sniff({str(ranks / 'fsdp2')!r}); assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_one_rank_file_names_the_missing_rank(ranks: Path) -> None:
    with pytest.raises(CheckpointFormatError, match=r"rank\(s\) 1 of the 2-rank mesh are missing"):
        load_checkpoint(ranks / "fsdp2" / "model_rank0.pt")


def test_a_missing_rank_file_is_named(copy: Path) -> None:
    (copy / "model_rank0.pt").unlink()
    with pytest.raises(CheckpointFormatError, match=r"rank\(s\) 0 of the 2-rank mesh are missing"):
        load_checkpoint(copy)


def test_a_rank_given_twice_is_refused(copy: Path) -> None:
    shutil.copy(copy / "model_rank0.pt", copy / "model_rank1.pt")
    with pytest.raises(CheckpointFormatError, match="both hold rank 0's shards"):
        load_checkpoint(copy)


def test_a_tensor_missing_from_one_rank_is_a_named_gap(copy: Path) -> None:
    state = _load_rank(copy / "model_rank1.pt")
    del state["ffn.0.weight"]
    torch.save(state, copy / "model_rank1.pt")
    with pytest.raises(CheckpointFormatError, match=r"parameter 'ffn.0.weight'.*no slice holds its part \[4:8, 0:6\]"):
        load_checkpoint(copy)


def test_a_shard_of_the_wrong_shape_is_refused(copy: Path) -> None:
    state = _load_rank(copy / "model_rank1.pt")
    state["emb.weight"]._local_tensor = torch.zeros(6, 6, dtype=torch.bfloat16)
    torch.save(state, copy / "model_rank1.pt")
    with pytest.raises(CheckpointFormatError, match=r"'emb.weight': the shard saved is \[6, 6\].* says \[5, 6\]"):
        load_checkpoint(copy)


def test_partial_sums_are_refused(copy: Path) -> None:
    from torch.distributed.tensor._dtensor_spec import DTensorSpec
    from torch.distributed.tensor.placement_types import Partial

    state = _load_rank(copy / "model_rank1.pt")
    spec = state["ffn.0.weight"]._spec
    state["ffn.0.weight"]._spec = DTensorSpec(spec.mesh, (Partial(),), tensor_meta=spec.tensor_meta)
    torch.save(state, copy / "model_rank1.pt")
    with pytest.raises(CheckpointFormatError, match=r"'ffn.0.weight' is placed as Partial.*dcp.save"):
        load_checkpoint(copy)


def test_files_of_another_checkpoint_are_refused(copy: Path, ranks: Path) -> None:
    shutil.copy(ranks / "net" / "net_rank1.pt", copy / "model_rank1.pt")
    with pytest.raises(CheckpointFormatError):
        load_checkpoint(copy)


def test_two_sets_of_rank_files_need_choosing(copy: Path) -> None:
    shutil.copy(copy / "model_rank0.pt", copy / "ema_rank0.pt")
    with pytest.raises(CheckpointFormatError, match=r"several sets of per-rank files: 'ema_rank\*.pt' \(1 files\)"):
        load_checkpoint(copy)
    table = fsdp.read([copy / "model_rank0.pt", copy / "model_rank1.pt"])
    assert len(table.params) == 7
