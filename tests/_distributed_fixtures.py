"""Distributed checkpoints written by the frameworks' own code, with the frameworks' own merge as the truth.

MindSpore cannot train with model parallelism on a CPU (`semi_auto_parallel` needs Ascend or GPU, and its
dry-run mode refuses the CPU), so the cluster's output is made the way MindSpore reshards a checkpoint for
another cluster: a full checkpoint saved by `mindspore.save_checkpoint` is cut into `rank_<n>/` files by
`mindspore.transform_checkpoints` following a strategy file. The strategy is written with MindSpore's own
protobuf class (`node_strategy_pb2`), field for field as its C++ writer fills it, the stages of a pipeline as
separate files joined by `mindspore.parallel.merge_pipeline_strategys`. The truth is MindSpore merging the rank
files back into one checkpoint (`transform_checkpoints` to no strategy).

PyTorch: two processes (gloo, on the CPU) shard a small model with FSDP2 (`fully_shard`, uneven and empty
shards included) and tensor parallelism (DTensor column/row-wise), train one step with Adam and save with
`torch.distributed.checkpoint.save`. The truth is `dcp_to_torch_save`, torch's own merge into one file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_REPOSITORY = Path(__file__).resolve().parent.parent

# --- MindSpore ------------------------------------------------------------------------------------------------

# name -> (shape, dtype, dev_matrix, tensor_map, opt_weight_shard_size, opt_weight_shard_step), on 4 ranks as
# [data parallel 2, model parallel 2]; device axis 0 is model parallel, axis 1 data parallel.
MS_LAYOUTS: dict[str, tuple[tuple[int, ...], str, list[int], list[Any], int, int]] = {
    "embedding.word_embeddings.embedding_table": ((16, 4), "bfloat16", [2, 2], [[1, 0], -1], 0, 0),
    "layers.0.attention.wq.weight": ((8, 12), "float32", [2, 2], [0, -1], 0, 0),
    "layers.0.attention.wq.bias": ((8,), "float32", [2, 2], [0], 0, 0),
    "layers.0.attention.wo.weight": ((12, 8), "float32", [2, 2], [-1, 0], 2, 2),
    "layers.0.norm.gamma": ((12,), "float32", [2, 2], [-1], -1, 1),
    "layers.0.norm.beta": ((12,), "float32", [2, 2], [-1], 0, 0),
    "head.weight": ((5, 12), "float16", [2, 2], [-1, -1], 0, 0),
    "adam_m.layers.0.attention.wo.weight": ((12, 8), "float32", [2, 2], [-1, 0], 2, 2),
}
# Training state the strategy does not describe: a moment follows its parameter, counters are whole.
MS_UNDESCRIBED = {
    "adam_v.layers.0.attention.wq.weight": ((8, 12), "float32"),
    "global_step": ((1,), "int32"),
}
# Pipeline: 2 stages of 2 ranks (model parallel only). The embedding is shared by both stages (a tied head).
MS_STAGES: dict[int, dict[str, tuple[tuple[int, ...], str, list[int], list[Any], int, int]]] = {
    0: {
        "embedding.word_embeddings.embedding_table": ((16, 4), "float32", [2], [0, -1], 0, 0),
        "layers.0.attention.wq.weight": ((8, 12), "float32", [2], [0, -1], 0, 0),
        "layers.0.norm.gamma": ((12,), "float32", [2], [-1], 0, 0),
    },
    1: {
        "embedding.word_embeddings.embedding_table": ((16, 4), "float32", [2], [0, -1], 0, 0),
        "layers.1.attention.wq.weight": ((8, 12), "float16", [2], [-1, 0], 0, 0),
        "layers.1.norm.gamma": ((12,), "float32", [2], [-1], 2, 1),
    },
}


@dataclass(frozen=True)
class MindSporeCluster:
    """A distributed MindSpore checkpoint and what MindSpore makes of it.

    Attributes:
        checkpoint: the folder holding `rank_<n>/`.
        strategies: the strategy files (the stages' own files for a pipeline).
        joined: the strategy MindSpore's tools were given (for a pipeline: the stages' files joined).
        original: the full tensors before cutting (bfloat16 ones as the float32 values they hold).
        merged: each tensor as MindSpore merges the rank files back, as float32 values for bfloat16.
    """

    checkpoint: Path
    strategies: tuple[Path, ...]
    joined: Path
    original: dict[str, np.ndarray]
    merged: dict[str, np.ndarray]


def strategy_message(
    layouts: dict[str, Any], stage: int, *, split: list[int] | None = None, offsets: list[int] | None = None
) -> Any:
    """A ParallelStrategyMap as MindSpore's C++ writer fills it: an operator strategy, then one layout per parameter.

    `split`/`offsets` give every parameter an uneven cut of axis 0 (`param_split_shape`, `indices_offset`).
    """
    from mindspore.train.node_strategy_pb2 import ParallelStrategyMap

    message = ParallelStrategyMap()
    message.current_stage = stage
    node = message.parallel_strategy_item.add()
    node.node_name = f"Default/network-Net/MatMul-op{stage}"
    node.parallel_strategys.stage = stage
    node.parallel_strategys.parallel_strategy.add().dim.extend([1, 2])
    for name, (_, _, dev_matrix, tensor_map, opt_size, opt_step) in layouts.items():
        item = message.parallel_layout_item.add()
        item.param_name = name
        layout = item.parallel_layouts
        layout.dev_matrix.add().dim.extend(dev_matrix)
        if any(isinstance(axis, list) for axis in tensor_map):  # a Layout: one TensorMap per tensor axis
            for axis in tensor_map:
                layout.tensor_map.add().dim.extend(axis if isinstance(axis, list) else [axis])
            if len(tensor_map) == 1:
                layout.tensor_map.add()
        else:
            layout.tensor_map.add().dim.extend(tensor_map)
        split_sizes = split or []
        layout.param_split_shape.add().dim.extend(split_sizes)
        layout.indices_offset.add().dim.extend(offsets or [sum(split_sizes[:i]) for i in range(len(split_sizes))])
        layout.field = 0
        layout.opt_weight_shard_step = opt_step
        layout.opt_weight_shard_size = opt_size
    return message


def strategy_json(layouts: dict[str, Any], stage: int) -> dict[str, Any]:
    """The same strategy in the JSON form MindSpore writes for a `.json` save_file (flat tensor maps only)."""
    return {
        "current_stage": stage,
        "parallel_strategy_item": {f"Default/MatMul-op{stage}": {"stage": stage, "parallel_strategy": [[1, 2]]}},
        "parallel_layout_item": {
            name: {
                "dev_matrix": dev_matrix,
                "tensor_map": tensor_map,
                "tensor_shape": list(shape),
                "field": 0,
                "opt_weight_shard_step": opt_step,
                "opt_weight_shard_size": opt_size,
            }
            for name, (shape, _, dev_matrix, tensor_map, opt_size, opt_step) in layouts.items()
        },
    }


def _random(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    if dtype.startswith("int"):
        return rng.integers(0, 1000, size=shape).astype(dtype)
    if dtype == "bfloat16":  # values bfloat16 holds exactly (the low 16 bits of float32 cleared)
        return (rng.standard_normal(shape).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
    return rng.standard_normal(shape).astype(dtype)


def _ms_tensor(ms: Any, array: np.ndarray, dtype: str) -> Any:
    tensor = ms.Tensor(array)
    return tensor.astype(ms.bfloat16) if dtype == "bfloat16" else tensor


def _values(ms: Any, tensor: Any) -> np.ndarray:
    """A MindSpore tensor's values; bfloat16 (which numpy lacks) as float32, exactly."""
    if tensor.dtype == ms.bfloat16:
        return tensor.astype(ms.float32).asnumpy()
    return tensor.asnumpy()


def mindspore_cluster(root: Path, *, pipeline: bool = False) -> MindSporeCluster:
    """Cut a full checkpoint into rank files with MindSpore's tools and merge it back with them (see module doc)."""
    import mindspore as ms
    from mindspore.parallel import merge_pipeline_strategys

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    rng = np.random.default_rng(17)
    strategy_dir = root / "strategy"
    strategy_dir.mkdir(parents=True)
    if pipeline:
        stages = MS_STAGES
        shapes = {name: spec[:2] for layouts in stages.values() for name, spec in layouts.items()}
        files = []
        for stage, layouts in stages.items():
            file = strategy_dir / f"ckpt_strategy_rank_{stage * 2}.ckpt"
            file.write_bytes(strategy_message(layouts, stage).SerializeToString())
            files.append(file)
        joined = root / "joined_strategy.ckpt"
        merge_pipeline_strategys(str(strategy_dir), str(joined))
    else:
        shapes = {name: spec[:2] for name, spec in MS_LAYOUTS.items()} | MS_UNDESCRIBED
        files = [strategy_dir / "strategy.ckpt"]
        files[0].write_bytes(strategy_message(MS_LAYOUTS, 0).SerializeToString())
        joined = files[0]
    original = {name: _random(shape, dtype, rng) for name, (shape, dtype) in shapes.items()}
    whole = root / "whole" / "rank_0"
    whole.mkdir(parents=True)
    tensors = [{"name": n, "data": _ms_tensor(ms, a, shapes[n][1])} for n, a in original.items()]
    ms.save_checkpoint(tensors, str(whole / "whole.ckpt"))
    checkpoint = root / "checkpoint"
    ms.transform_checkpoints(str(whole.parent), str(checkpoint), "net_rank_", None, str(joined))
    merged_dir = root / "merged"
    ms.transform_checkpoints(str(checkpoint), str(merged_dir), "merged", str(joined), None)
    merged = {n: _values(ms, p) for n, p in ms.load_checkpoint(str(merged_dir / "rank_0" / "merged0.ckpt")).items()}
    return MindSporeCluster(checkpoint, tuple(files), joined, original, merged)


# The conversion tests' MindSpore network (`_convert_nets.mindspore_net`) on the same 4 ranks: output channels,
# input channels and a Dense layer's input features cut; what the strategy leaves out is whole on every rank.
NET_LAYOUTS: dict[str, tuple[list[int], list[int]]] = {
    "stem.conv.weight": ([2, 2], [0, -1, -1, -1]),
    "stem.conv.bias": ([2, 2], [0]),
    "mixer.weight": ([2, 2], [-1, 0, -1, -1]),
    "norm.gamma": ([2, 2], [0]),
    "head.weight": ([2, 2], [-1, 0]),
}


def mindspore_net_cluster(root: Path) -> tuple[Path, Path]:
    """The MindSpore network's checkpoint cut into `rank_<n>/` files by MindSpore; (checkpoint folder, strategy).

    The strategy is in `root/strategy/`, where automap finds it from the checkpoint folder `root/checkpoint`.
    """
    import mindspore as ms

    sys.path.insert(0, str(_REPOSITORY / "tests"))
    import _convert_nets as nets

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    net = nets.mindspore_net()
    shapes = {name: tuple(param.shape) for name, param in net.parameters_and_names()}
    layouts = {
        name: (shapes[name], "float32", dev, tensor_map, 0, 0) for name, (dev, tensor_map) in NET_LAYOUTS.items()
    }
    strategy = root / "strategy" / "strategy.ckpt"
    strategy.parent.mkdir(parents=True)
    strategy.write_bytes(strategy_message(layouts, 0).SerializeToString())
    whole = root / "whole" / "rank_0"
    whole.mkdir(parents=True)
    ms.save_checkpoint(net, str(whole / "net.ckpt"))
    checkpoint = root / "checkpoint"
    ms.transform_checkpoints(str(whole.parent), str(checkpoint), "net_rank_", None, str(strategy))
    return checkpoint, strategy


# --- PyTorch DCP ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DcpCluster:
    """A DCP checkpoint saved by 2 processes and torch's own merge of it.

    Attributes:
        checkpoint: the DCP folder.
        merged: every tensor of `dcp_to_torch_save`'s file, by its flattened DCP name (`model.ffn.0.weight`).
    """

    checkpoint: Path
    merged: dict[str, Any]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _dcp_worker(rank: int, world: int, folder: str, port: int) -> None:
    warnings.simplefilter("ignore")  # the child inherits pytest's "error" filter; torch warns on its own
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch import nn
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    class Net(nn.Module):
        """Embedding (FSDP2, bfloat16, 11 rows on 2 ranks), MLP (tensor parallel), norm (whole), head (FSDP2, 1 row).

        `big` (FSDP2) is not used in `forward`: Adam keeps no state for it.
        """

        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(11, 6).to(torch.bfloat16)
            self.ffn = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 6, bias=False))
            self.norm = nn.LayerNorm(6)
            self.head = nn.Linear(6, 1)
            self.big = nn.Linear(1024, 512, bias=False)  # 2 MiB: enough to see what reading one tensor costs
            self.register_buffer("positions", torch.arange(5))

        def forward(self, ids: Any) -> Any:
            return self.head(self.norm(self.ffn(self.emb(ids).float())))

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = Net()
        mesh = init_device_mesh("cpu", (world,))
        parallelize_module(model.ffn, mesh, {"0": ColwiseParallel(), "1": RowwiseParallel()})
        fully_shard(model.emb, mesh=mesh)
        fully_shard(model.head, mesh=mesh)
        fully_shard(model.big, mesh=mesh)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1, foreach=False)
        model(torch.arange(8).reshape(2, 4) % 11).float().pow(2).sum().backward()
        optimizer.step()
        model_state, optimizer_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optim": optimizer_state, "step": 1}, checkpoint_id=folder)
    finally:
        dist.destroy_process_group()


def _dcp_worker_2d(rank: int, world: int, folder: str, port: int) -> None:
    """FSDP2 over tensor parallelism on a 2 x 2 mesh: both cut axis 0 of a weight, in interleaved chunks."""
    warnings.simplefilter("ignore")
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch import nn
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 14), nn.ReLU(), nn.Linear(14, 6))
        mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
        parallelize_module(model, mesh["tp"], {"0": ColwiseParallel(), "2": RowwiseParallel()})
        fully_shard(model, mesh=mesh["dp"])
        dcp.save({"model": get_model_state_dict(model)}, checkpoint_id=folder)
    finally:
        dist.destroy_process_group()


def _dcp_worker_net(rank: int, world: int, folder: str, port: int) -> None:
    """The conversion tests' network (`_convert_nets.torch_net`), FSDP2-sharded over the ranks, as saved to resume.

    Every parameter is a DTensor cut along axis 0 (uneven: 5 output rows on 2 ranks); BatchNorm's buffers are
    whole on every rank, and DCP saves them once.
    """
    warnings.simplefilter("ignore")
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    sys.path.insert(0, str(_REPOSITORY / "tests"))
    import _convert_nets as nets

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = nets.torch_net()  # seeded: the same weights on every rank
        fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
        dcp.save({"model": get_model_state_dict(model)}, checkpoint_id=folder)
    finally:
        dist.destroy_process_group()


def _fsdp_worker(rank: int, world: int, folder: str, port: int) -> None:
    """Sharded state dicts saved per rank with torch.save, and the full state dict torch gathers of each.

    `fsdp2/`: FSDP2 (uneven, bfloat16 and empty shards) beside tensor parallelism (DTensors cut along axis 0 and
    axis 1) and a buffer kept whole, after one Adam step. `fsdp1_mesh/`: FSDP1's SHARDED_STATE_DICT given a
    device mesh (DTensors), of the model before training in float32 (FSDP1 flattens one dtype only). `fsdp1/`: the
    same without a mesh (ShardedTensors). `net/`: the conversion tests' network (`_convert_nets.torch_net`) under
    FSDP2, untrained.
    """
    warnings.simplefilter("ignore")
    import copy

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel, StateDictType, fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(11, 6).to(torch.bfloat16)
            self.ffn = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 6, bias=False))
            self.head = nn.Linear(6, 1)
            self.register_buffer("positions", torch.arange(5))

        def forward(self, ids: Any) -> Any:
            return self.head(self.ffn(self.emb(ids).float()))

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    root = Path(folder)
    try:
        torch.manual_seed(0)
        model = Net()
        plain = copy.deepcopy(model)
        mesh = init_device_mesh("cpu", (world,))
        parallelize_module(model.ffn, mesh, {"0": ColwiseParallel(), "1": RowwiseParallel()})
        fully_shard(model.emb, mesh=mesh)
        fully_shard(model.head, mesh=mesh)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1, foreach=False)
        model(torch.arange(8).reshape(2, 4) % 11).float().pow(2).sum().backward()
        optimizer.step()
        for name in ("fsdp2", "fsdp1", "fsdp1_mesh", "net"):
            (root / name).mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(_REPOSITORY / "tests"))
        import _convert_nets as nets

        network = nets.torch_net()  # seeded: the same weights on every rank
        fully_shard(network, mesh=mesh)
        torch.save(network.state_dict(), root / "net" / f"net_rank{rank}.pt")
        torch.save(model.state_dict(), root / "fsdp2" / f"model_rank{rank}.pt")
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
        if rank == 0:
            torch.save(full, root / "fsdp2_full.pt")
            torch.save(plain.float().state_dict(), root / "fsdp1_full.pt")
        for kind, extra in (("fsdp1", {}), ("fsdp1_mesh", {"device_mesh": mesh})):
            wrapped = FullyShardedDataParallel(
                copy.deepcopy(plain).float(), use_orig_params=True, device_id=torch.device("cpu"), **extra
            )
            with FullyShardedDataParallel.state_dict_type(wrapped, StateDictType.SHARDED_STATE_DICT):
                torch.save(wrapped.state_dict(), root / kind / f"model_rank{rank}.pt")
    finally:
        dist.destroy_process_group()


_WORKERS = {
    "cluster": (_dcp_worker, 2),
    "mesh_2d": (_dcp_worker_2d, 4),
    "net": (_dcp_worker_net, 2),
    "fsdp": (_fsdp_worker, 2),
}


def save_dcp(folder: str, *, mesh_2d: bool = False, kind: str = "") -> None:
    """Run the ranks (in a fresh interpreter, see `dcp_cluster`): forked, torch imported but not yet run."""
    import torch.multiprocessing as mp

    worker, processes = _WORKERS[kind or ("mesh_2d" if mesh_2d else "cluster")]
    args = (processes, folder, _free_port())
    mp.start_processes(worker, args=args, nprocs=processes, join=True, start_method="fork")


def dcp_cluster(root: Path, *, mesh_2d: bool = False, kind: str = "") -> DcpCluster:
    """Save a DCP checkpoint from gloo processes and merge it with torch's `dcp_to_torch_save`.

    By default 2 processes (FSDP2 and tensor parallelism on separate layers, Adam state); with `mesh_2d`, 4
    processes sharding the same weights both ways; with `kind="net"`, 2 processes sharding the conversion tests'
    network with FSDP2.
    """
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    folder = root / "dcp"
    # A fresh interpreter forks the ranks: forking this process, where torch may have run (and started OpenMP's
    # threads), can hang the children; spawning each rank anew would import torch once per rank.
    code = (
        f"from tests._distributed_fixtures import save_dcp; save_dcp({str(folder)!r}, mesh_2d={mesh_2d}, kind={kind!r})"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=_REPOSITORY, capture_output=True, text=True, timeout=600)
    if done.returncode:
        msg = f"saving the DCP checkpoint failed:\n{done.stderr[-3000:]}"
        raise RuntimeError(msg)
    merged_file = root / "merged.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp_to_torch_save(folder, merged_file)
    merged: dict[str, Any] = {}

    def flatten(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(value, torch.Tensor):
            merged[prefix] = value

    flatten(torch.load(merged_file, weights_only=True), "")
    return DcpCluster(folder, merged)


# --- FSDP sharded state dicts (torch.save per rank) -----------------------------------------------------------


def fsdp_ranks(root: Path) -> Path:
    """Per-rank sharded state dicts saved by 2 gloo processes (see `_fsdp_worker`), under `root/ranks`.

    Holds `fsdp2/`, `fsdp1_mesh/` and `fsdp1/` (each `model_rank0.pt`, `model_rank1.pt`) and the truth torch
    gathers: `fsdp2_full.pt` (`get_model_state_dict` with `full_state_dict=True`) and `fsdp1_full.pt` (the
    model before FSDP1 wrapped it; FSDP1's state dict holds its values unchanged).
    """
    folder = root / "ranks"
    code = f"from tests._distributed_fixtures import save_dcp; save_dcp({str(folder)!r}, kind='fsdp')"
    done = subprocess.run([sys.executable, "-c", code], cwd=_REPOSITORY, capture_output=True, text=True, timeout=600)
    if done.returncode:
        msg = f"saving the sharded state dicts failed:\n{done.stderr[-3000:]}"
        raise RuntimeError(msg)
    return folder
