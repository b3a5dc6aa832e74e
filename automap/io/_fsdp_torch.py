"""Join the DTensor shards of per-rank `torch.save` files into full tensors (see `automap.io.fsdp`).

Each file is loaded with `torch.load(weights_only=True, mmap=True)`, so no tensor data is read until its tensor
is. From a DTensor's placements, the mesh's shape and this rank's coordinate follows the block the rank holds,
as DTensor itself cuts: `Shard(d)` on a mesh axis of n devices splits axis d into n chunks of ceil(size / n)
(the last ones shorter or empty), `Replicate()` keeps it whole. The block must have the shape the rank's local
tensor has; the blocks of every rank must then tile the full tensor (`automap.io._slices`). Placements whose
blocks are not plain chunks (partial sums, strided shards of FSDP2 over tensor parallelism, one axis cut by
two mesh axes) are refused rather than guessed. Plain tensors (buffers FSDP leaves whole) are taken from the
first rank holding them.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed.tensor  # allows DTensor, its placements and DeviceMesh in torch.load(weights_only=True)
from torch.distributed.tensor import DTensor, Replicate, Shard

from automap._errors import CheckpointFormatError
from automap._text import first_line, shown
from automap._types import Array, Framework
from automap.records import ParamTable

from ._framework import RawRecord, build_table
from ._slices import Slice, loader, plan
from ._sniff import open_regular
from .torch import _TORCH_DTYPES, to_numpy

_Block = tuple[tuple[int, ...], tuple[int, ...]]  # offsets, shape


def read_ranks(source: str, files: Sequence[Path], *, key: str | None, framework: Framework | None) -> ParamTable:
    """The rank files as one table of full tensors (see `automap.io.fsdp.read`)."""
    ranks: dict[int, Path] = {}
    mesh_ranks: set[int] = set()
    pieces: dict[str, list[Slice]] = {}
    described: dict[str, tuple[tuple[int, ...], str]] = {}
    skipped = 0
    for file in files:
        state = _state_dict(file, key)
        rank = None
        for name, value in state.items():
            if not isinstance(value, torch.Tensor):
                skipped += 1
                continue
            dtype = _dtype(file, name, value)
            if isinstance(value, DTensor):
                offsets, local, value_rank, everyone = _placed(file, name, value)
                if rank is not None and value_rank != rank:
                    msg = f"{str(file)!r}: tensor {shown(name)} is rank {value_rank}'s, the others rank {rank}'s"
                    raise CheckpointFormatError(msg)
                rank = value_rank
                mesh_ranks |= everyone
                where = f"rank {rank} ({file.name})"
                piece = Slice(offsets, tuple(local.shape), where, _local_loader(local))
            else:
                where = file.name
                piece = Slice((0,) * value.dim(), tuple(value.shape), where, _local_loader(value))
            shape = tuple(value.shape)
            if described.setdefault(name, (shape, dtype)) != (shape, dtype):
                first = described[name]
                msg = (
                    f"{source!r}: tensor {shown(name)} is {first[1]}{list(first[0])} in one rank's file and "
                    f"{dtype}{list(shape)} in {str(file)!r}; the files are not of one checkpoint"
                )
                raise CheckpointFormatError(msg)
            pieces.setdefault(name, []).append(piece)
        if rank is not None:
            if rank in ranks:
                msg = f"{str(file)!r} and {str(ranks[rank])!r} both hold rank {rank}'s shards; give each rank once"
                raise CheckpointFormatError(msg)
            ranks[rank] = file
    missing = sorted(mesh_ranks - set(ranks))
    if missing:
        shown_missing = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        msg = (
            f"{source!r}: the shards of rank(s) {shown_missing} of the {len(mesh_ranks)}-rank mesh are missing "
            f"(found ranks {sorted(ranks)}); give the folder holding every rank's file"
        )
        raise CheckpointFormatError(msg)
    records: list[RawRecord] = []
    for name, slices in pieces.items():
        shape, dtype = described[name]
        records.append((name, shape, dtype, loader(source, name, shape, dtype, plan(source, name, shape, slices))))
    notes = [f"FSDP sharded state dict: {len(files)} rank files, DTensor shards joined"]
    if skipped:
        notes.append(f"skipped {skipped} non-tensor entr{'y' if skipped == 1 else 'ies'}")
    return build_table(framework or "pytorch", source, records, notes, "pytorch-fsdp")


def _state_dict(file: Path, key: str | None) -> dict[str, Any]:
    """The file's state dict: its top level, or the dict under `key`."""
    size = open_regular(file)
    device_mesh_log = logging.getLogger("torch.distributed.device_mesh")
    level = device_mesh_log.level
    device_mesh_log.setLevel(logging.ERROR)  # it warns that a mesh unpickled without a process group cannot compile
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        msg = (
            f"{str(file)!r}: torch's restricted unpickler refuses this {size}-byte file "
            f"({first_line(str(error).split('WeightsUnpickler error:', 1)[-1].strip())}); automap loads tensors only"
        )
        raise CheckpointFormatError(msg) from None
    except Exception as error:  # torch's parsers raise many kinds on bad bytes
        msg = f"{str(file)!r}: not a readable PyTorch checkpoint ({type(error).__name__}: {first_line(str(error))})"
        raise CheckpointFormatError(msg) from None
    finally:
        device_mesh_log.setLevel(level)
    if key is not None:
        if not isinstance(obj, dict) or not isinstance(obj.get(key), dict):
            msg = f"{str(file)!r}: no state dict under key {key!r}"
            raise CheckpointFormatError(msg)
        obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        msg = f"{str(file)!r} does not hold a state dict (a dict of names to tensors); give the key holding one"
        raise CheckpointFormatError(msg)
    return obj


def _dtype(file: Path, name: str, value: torch.Tensor) -> str:
    dtype = _TORCH_DTYPES.get(value.dtype)
    if dtype is None:
        msg = f"{str(file)!r}: tensor {shown(name)} has dtype {value.dtype}, which automap does not support"
        raise CheckpointFormatError(msg)
    return dtype


def _placed(file: Path, name: str, value: DTensor) -> tuple[tuple[int, ...], torch.Tensor, int, set[int]]:
    """Where this rank's shard lies in the full tensor, the shard, the rank, and every rank of the mesh."""
    where = f"{str(file)!r}: tensor {shown(name)}"
    mesh = value.device_mesh
    coordinate = mesh.get_coordinate()
    placements = value.placements
    if coordinate is None or len(coordinate) != mesh.ndim or len(placements) != mesh.ndim:
        msg = f"{where}: its device mesh does not place this rank; the file is corrupt"
        raise CheckpointFormatError(msg)
    offsets, sizes = [0] * value.dim(), list(value.shape)
    cut: set[int] = set()
    for axis, placement in enumerate(placements):
        if type(placement) is Replicate:
            continue
        if type(placement) is not Shard or not 0 <= placement.dim < value.dim() or placement.dim in cut:
            msg = (
                f"{where} is placed as {placement!r} on mesh axis {axis} (of {list(placements)}), whose shards automap "
                "does not join (only whole chunks of one cut per axis, or replicas); save the model with "
                "torch.distributed.checkpoint (dcp.save), which automap reads"
            )
            raise CheckpointFormatError(msg)
        dim, devices = placement.dim, mesh.size(axis)
        cut.add(dim)
        chunk = math.ceil(sizes[dim] / devices) if devices else 0
        start = min(coordinate[axis] * chunk, sizes[dim])
        offsets[dim] += start
        sizes[dim] = min(sizes[dim], start + chunk) - start
    local = value.to_local()
    if tuple(local.shape) != tuple(sizes):
        msg = (
            f"{where}: the shard saved is {list(local.shape)}, its placement {list(placements)} on a mesh of "
            f"{list(mesh.shape)} says {sizes}; the file is corrupt"
        )
        raise CheckpointFormatError(msg)
    everyone = {int(r) for r in mesh.mesh.flatten().tolist()}
    rank = int(mesh.mesh[tuple(coordinate)].item())
    return tuple(offsets), local, rank, everyone


def _local_loader(tensor: torch.Tensor) -> Callable[[], Array]:
    return lambda: to_numpy(tensor)
