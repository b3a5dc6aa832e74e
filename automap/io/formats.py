"""The formats automap reads and writes, registered in the order their content is tested.

`FORMATS` is what `load_checkpoint` and `save_checkpoint` dispatch on; `FILE_FORMATS` holds the formats of a
single file, which are what a sharded checkpoint's index may list. Formats whose adapter imports a framework
(torch) go through `load_adapter`, so the framework is imported only when such a file is read or written.

To add a format, write a module with `sniff(path) -> bool` (no framework import) and
`read(path, **options) -> ParamTable` (see `automap.io._registry`), and register it below: a folder layout with
`directory=True` (it is sniffed for folders only), a file format with its `suffixes` and a place in the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import BinaryIO

from automap.records import ParamRecord, ParamTable

from . import _sniff, dcp, fsdp, listing, mindspore, ms_distributed, safetensors, sharded, torch_zip_reader
from ._registry import Format, Registry, load_adapter

__all__ = [
    "DCP",
    "FILE_FORMATS",
    "FORMATS",
    "FSDP",
    "INDEX",
    "LISTING",
    "MINDSPORE",
    "MINDSPORE_DISTRIBUTED",
    "PYTORCH",
    "SAFETENSORS",
]


def _read_pytorch(path: Path, *, key: str | None = None, unsafe_pickle: bool = False, **_: object) -> ParamTable:
    """Plain state dicts in the zip format without torch; torch.load judges every other PyTorch file."""
    if not unsafe_pickle:
        found = torch_zip_reader.read(path, key=key)
        if found is not None:
            return found
    table: ParamTable = load_adapter("automap.io.torch", f"reading {str(path)!r}").read(
        path, key=key, unsafe_pickle=unsafe_pickle
    )
    return table


def _write_pytorch(handle: BinaryIO, records: Sequence[ParamRecord], **_: object) -> None:
    """A plain state dict in torch.save's zip format (its pickle names torch's own classes, hence torch)."""
    load_adapter("automap.io._torch_zip", "writing a PyTorch checkpoint").write_zip(records, handle)


PYTORCH = Format(
    "torch",
    sniff=_sniff.is_pytorch,
    read=_read_pytorch,
    suffixes=(".pth", ".pt", ".bin"),
    description="PyTorch .pth/.pt/.bin",
    framework="pytorch",
    write_to=_write_pytorch,
)
SAFETENSORS = Format(
    "safetensors",
    sniff=_sniff.is_safetensors,
    read=safetensors.read,
    suffixes=(".safetensors",),
    description=".safetensors",
    claims_by_suffix=True,
    write_to=safetensors.write_to,
)
MINDSPORE = Format(
    "mindspore",
    sniff=_sniff.is_mindspore,
    read=mindspore.read,
    suffixes=(".ckpt",),
    description="MindSpore .ckpt",
    framework="mindspore",
    write_to=mindspore.write_to,
    check=mindspore.check_storable,
)
LISTING = Format(
    "listing",
    sniff=_sniff.is_json,
    read=listing.read,
    suffixes=(".json",),
    label="json",
    description="JSON listing",
    claims_by_suffix=True,
    holds_data=False,
    write_to=listing.write_to,
)

FILE_FORMATS = Registry([PYTORCH, SAFETENSORS, MINDSPORE, LISTING])

INDEX = Format(
    "index",
    sniff=_sniff.is_index,  # tried before the listing, which takes any other JSON text
    read=partial(sharded.read_index, shards=FILE_FORMATS),
    label="json",
)

# Folder layouts of distributed training, read as one checkpoint of full tensors. DCP's sniffer also claims the
# `.metadata` file itself, which is a pickle: folder layouts are tried before file formats (see `Registry.detect`).
DCP = Format(
    "dcp",
    sniff=dcp.sniff,
    read=dcp.read,
    description="PyTorch distributed checkpoint (.metadata and *.distcp files)",
    directory=True,
    framework="pytorch",
)
MINDSPORE_DISTRIBUTED = Format(
    "mindspore-distributed",
    sniff=ms_distributed.sniff,
    read=ms_distributed.read,
    description="MindSpore per-rank checkpoints (rank_<n>/ folders with a parallel strategy file)",
    directory=True,
    framework="mindspore",
)
# Its sniffer also claims one rank's file, which the PyTorch format would otherwise take and fail to unpickle.
FSDP = Format(
    "fsdp",
    sniff=fsdp.sniff,
    read=fsdp.read,
    description="FSDP sharded state dict (one torch.save file of DTensors per rank)",
    directory=True,
    framework="pytorch",
)

FORMATS = Registry([PYTORCH, SAFETENSORS, MINDSPORE, INDEX, LISTING, DCP, MINDSPORE_DISTRIBUTED, FSDP])
