"""Recognise FSDP "sharded state dict" files (one `torch.save` per rank) and read them as one checkpoint.

Under FSDP2 (`fully_shard`), or FSDP1 given a device mesh, `model.state_dict()` holds DTensors, and
`torch.save` on every rank writes files such as `model_rank0.pt`, `model_rank1.pt`. Each DTensor in them
carries what a merge needs: the full shape, its placements (cut along an axis, or replicated) and the device
mesh with this rank's coordinate in it. `torch.load(weights_only=True)` reads them once
`torch.distributed.tensor` is imported (which allows those classes), without any process group; the reading
itself is in `automap.io._fsdp_torch`, which imports torch.

FSDP1's SHARDED_STATE_DICT without a device mesh holds `ShardedTensor`s instead. torch's restricted unpickler
refuses them and the full one needs a live process group, so these files are recognised and refused with what
to do instead. This module never imports torch: the sniffer looks for the class names in the pickle's bytes,
without unpickling.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from automap._errors import CheckpointFormatError
from automap._types import Framework, StrPath
from automap.records import ParamTable

from ._registry import load_adapter
from .torch_zip_reader import _entries, _entry_bytes, zip_entries

__all__ = ["data_files", "read", "sniff"]

_SUFFIXES = (".pt", ".pth", ".bin")
_DTENSOR = b"torch.distributed.tensor\nDTensor\n"  # how a protocol-2 pickle names the class (GLOBAL opcode)
_DTENSOR_OLD = b"torch.distributed._tensor.api\nDTensor\n"  # torch < 2.4
_SHARDED_TENSOR = b"torch.distributed._shard.sharded_tensor.api\nShardedTensor\n"
_MAX_PICKLE = 64 * 1024 * 1024  # the pickle of one rank's state dict: ~700 bytes a tensor
_RANK_NUMBER = re.compile(r"\d+(?=\D*$)")  # the last number in a name: model_rank3.pt, rank_3.pt


def sniff(path: StrPath) -> bool:
    """True for a `torch.save` file of DTensors or ShardedTensors, or a folder holding one (never raises)."""
    found = Path(path)
    try:
        if found.is_dir():
            return any(_kind(child) is not None for child in _candidates(found))
        return found.suffix.lower() in _SUFFIXES and _kind(found) is not None
    except (OSError, CheckpointFormatError):
        return False


def data_files(path: StrPath) -> list[Path]:
    """The rank files of a sharded state dict folder, best effort, never raising.

    For the checks a conversion makes before writing (an output must not replace a file it reads).
    """
    try:
        return _rank_files(path)[1]
    except (CheckpointFormatError, OSError):
        return []


def read(
    path: StrPath | Sequence[StrPath], *, key: str | None = None, framework: Framework | None = None, **_: object
) -> ParamTable:
    """Read the per-rank files of a sharded state dict as one checkpoint of full tensors, read lazily.

    Args:
        path: a folder holding every rank's file, or the rank files themselves.
        key: the key of the state dict inside each file, when the files hold a dict of several (`"model"`).
        framework: whose naming the tensors follow (PyTorch's unless said otherwise).

    Returns:
        The full tensors, in the order rank 0's file holds them.

    Raises:
        CheckpointFormatError: the files hold ShardedTensors (FSDP1 without a device mesh); a rank's file is
            missing or appears twice; a DTensor's placement cannot be merged (partial sums, strided shards);
            the shards overlap, leave a gap or reach outside their tensor (the message names the tensor).
    """
    source, files = _rank_files(path)
    if not files:
        msg = f"{source!r} holds no file of DTensors saved per rank ({', '.join(_SUFFIXES)}); nothing to read"
        raise CheckpointFormatError(msg)
    for file in files:
        if _kind(file) == "sharded-tensor":
            raise CheckpointFormatError(_sharded_tensor_message(file))
    adapter = load_adapter("automap.io._fsdp_torch", f"reading {source!r}")
    table: ParamTable = adapter.read_ranks(source, files, key=key, framework=framework)
    return table


def _sharded_tensor_message(file: Path) -> str:
    return (
        f"{str(file)!r} is an FSDP sharded state dict of ShardedTensors (FSDP1's SHARDED_STATE_DICT without a "
        "device mesh): torch can load it only by running its pickle inside the process group that saved it, "
        "which automap never does. Save the model with torch.distributed.checkpoint (dcp.save), which automap "
        "reads, or gather it with FULL_STATE_DICT and torch.save; FSDP given device_mesh= (or FSDP2) saves "
        "DTensors, which automap also reads"
    )


def _rank_files(path: StrPath | Sequence[StrPath]) -> tuple[str, list[Path]]:
    """The checkpoint's name for messages and its rank files: a folder's one set of them, or the files given."""
    if not isinstance(path, str | os.PathLike):
        files = [Path(p) for p in path]
        return (str(files[0].parent) if files else ""), files
    given = Path(path)
    if not given.is_dir():
        return str(given), [given]
    found = [child for child in _candidates(given) if _kind(child) is not None]
    groups: dict[str, list[Path]] = {}
    for file in found:
        groups.setdefault(_RANK_NUMBER.sub("*", file.name), []).append(file)
    if len(groups) > 1:
        listed = ", ".join(f"{pattern!r} ({len(group)} files)" for pattern, group in sorted(groups.items()))
        msg = (
            f"{str(given)!r} holds several sets of per-rank files: {listed}; give the files of one set, or move "
            "them to a folder of their own"
        )
        raise CheckpointFormatError(msg)
    return str(given), sorted(found, key=_rank_order)


def _rank_order(file: Path) -> tuple[int, str]:
    number = _RANK_NUMBER.search(file.name)
    return (int(number.group()) if number else -1), file.name


def _candidates(folder: Path) -> list[Path]:
    return sorted(c for c in folder.iterdir() if c.suffix.lower() in _SUFFIXES and c.is_file())


def _kind(file: Path) -> str | None:
    """Which sharded tensor class ("dtensor", "sharded-tensor") the file's pickle names; None: none, or unreadable."""
    infos = zip_entries(file)
    if infos is None:
        return None
    with file.open("rb") as handle:
        found = _entries(infos, handle, file.stat().st_size)
        if found is None:
            return None
        prefix, entries = found
        pickled = _entry_bytes(handle, entries[f"{prefix}/data.pkl"], _MAX_PICKLE)
    if pickled is None:
        return None
    if _SHARDED_TENSOR in pickled:
        return "sharded-tensor"
    if _DTENSOR in pickled or _DTENSOR_OLD in pickled:
        return "dtensor"
    return None
