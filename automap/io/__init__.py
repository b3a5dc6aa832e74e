"""Load and save checkpoints of either framework as `ParamTable`s.

Formats are identified by content, not by name (a name that disagrees is reported in the table's notes), and
dispatched through one registry (`automap.io.formats`): each format sniffs, reads lazily and writes by
streaming. Adapters that need a framework are imported only when a matching file arrives, so listing a `.ckpt`
or a safetensors file never imports torch, and nothing here ever imports MindSpore. Plain state dicts saved by
torch.save are read without torch too (`torch_zip_reader`); torch.load judges every other PyTorch file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from automap._atomic import atomic_output
from automap._errors import CheckpointFormatError, ConversionError
from automap._types import Framework, StrPath
from automap.records import ParamRecord, ParamTable

from . import sharded
from ._registry import Format
from .formats import FORMATS

__all__ = ["load_checkpoint", "save_checkpoint"]


def load_checkpoint(
    path: StrPath,
    *,
    key: str | None = None,
    framework: Framework | None = None,
    unsafe_pickle: bool = False,
    verify_crc: bool = False,
    strategy: StrPath | None = None,
) -> ParamTable:
    """Read a checkpoint or listing into an ordered parameter table; tensor data is read lazily.

    Args:
        path: a PyTorch `.pth`/`.pt`/`.bin`, a `.safetensors` file or a sharded `*.index.json`, a MindSpore
            `.ckpt`, or a JSON listing of names and shapes (a format of `automap.io.formats.FORMATS`); or a
            folder of a distributed checkpoint, read as one checkpoint of full tensors: PyTorch's
            `torch.distributed.checkpoint` (`.metadata` and `*.distcp` files) or MindSpore's per-rank checkpoints
            (`rank_0/`, `rank_1/`, ... with the parallel strategy file).
        key: for PyTorch files holding several state dicts, which one to take (`"model"`, `"ema/model"`).
        framework: whose naming conventions the file follows, when its format does not say (safetensors,
            listings); guessed from the names when omitted.
        unsafe_pickle: let PyTorch files run code while loading. Never use this on files you do not trust.
        verify_crc: check a MindSpore checkpoint's CRC trailer (reads the whole file).
        strategy: for MindSpore per-rank checkpoints, the parallel strategy file (or a folder of the pipeline
            stages' files), when it is not in the checkpoint folder, its `strategy/` subfolder or `../strategy/`.

    Returns:
        The model parameters in file order; training state is set aside in `excluded`.

    Raises:
        CheckpointFormatError: the file is missing, unreadable, corrupt or ambiguous; the message says why.
        MissingDependencyError: reading this file needs a framework that is not installed.

    Example:
        >>> table = load_checkpoint("model.ckpt")  # doctest: +SKIP
        >>> [(p.name, p.shape) for p in table][:2]  # doctest: +SKIP
        [('conv1.weight', (64, 3, 7, 7)), ('bn1.moving_mean', (64,))]
    """
    return FORMATS.load(
        Path(path),
        key=key,
        framework=framework,
        unsafe_pickle=unsafe_pickle,
        verify_crc=verify_crc,
        strategy=strategy,
    )


def save_checkpoint(
    params: ParamTable | Sequence[ParamRecord],
    path: StrPath,
    *,
    framework: Framework | None = None,
    overwrite: bool = False,
    crc: bool = False,
    max_shard_size: int | str | None = None,
) -> None:
    """Write parameters (with data) to a checkpoint whose format follows the file name.

    `.pth`/`.pt`/`.bin` are written in `torch.save`'s zip format; `.safetensors` in the PyTorch or MindSpore
    flavour (by `framework`); `.ckpt` as MindSpore's protobuf format; `.json` as a listing without data. Tensor
    data is streamed, one tensor at a time. The output is replaced atomically: a failure never leaves a
    partial file. With `max_shard_size` the checkpoint is split into shards plus a HuggingFace-style
    `*.index.json` (see `automap.io.sharded`), and either the whole set appears or nothing does.

    Args:
        params: a table or records, written in this order; data is read one tensor at a time.
        path: the output file (with `max_shard_size`: the name one file would have, or the index's name).
        framework: the flavour for `.safetensors` and listings; defaults to the table's, else PyTorch.
        overwrite: replace an existing file.
        crc: append MindSpore's CRC trailer to a `.ckpt`.
        max_shard_size: split into shards of at most this many bytes of tensor data (`"2GB"`, `"500MiB"`).

    Raises:
        CheckpointFormatError: the suffix names no format automap writes.
        ConversionError: the output exists (without `overwrite`) or cannot be written, a name occurs twice, or
            records without data (a listing) go to a format that stores data.
        ValueError: `max_shard_size` is not a size.

    Example:
        >>> save_checkpoint(load_checkpoint("model.pth"), "model.safetensors")  # doctest: +SKIP
        >>> save_checkpoint(load_checkpoint("model.pth"), "model.ckpt", max_shard_size="2GB")  # doctest: +SKIP
    """
    records = list(params.params if isinstance(params, ParamTable) else params)
    if framework is None:
        framework = params.framework if isinstance(params, ParamTable) else "pytorch"
    file = Path(path)
    if max_shard_size is not None:
        _save_sharded(records, file, framework, overwrite, crc, max_shard_size)
        return
    fmt = FORMATS.for_suffix(file)
    if fmt is None or fmt.write_to is None:
        msg = f"cannot tell what format to write for {file.name!r}; use one of {FORMATS.suffixes(writable=True)}"
        raise CheckpointFormatError(msg)
    _check_records(records, file, fmt)
    with atomic_output(file, overwrite=overwrite) as handle:
        fmt.write_to(handle, records, framework=framework, crc=crc, path=file)


def _save_sharded(
    records: list[ParamRecord], file: Path, framework: Framework, overwrite: bool, crc: bool, max_shard_size: int | str
) -> None:
    size = sharded.parse_size(max_shard_size)
    base = sharded.base_path(file)
    fmt = FORMATS.for_suffix(base)
    write_to = fmt.write_to if fmt is not None and fmt.holds_data else None
    if fmt is None or write_to is None:
        msg = f"cannot tell what format to shard {file.name!r} into; name it .safetensors, .ckpt, .pth or .bin"
        raise CheckpointFormatError(msg)
    _check_records(records, base, fmt)  # before any shard is written

    def write_shard(group: Sequence[ParamRecord], handle: BinaryIO) -> None:
        write_to(handle, group, framework=framework, crc=crc, path=base)

    sharded.write(records, base, max_shard_size=size, write_shard=write_shard, overwrite=overwrite)


def _check_records(records: Sequence[ParamRecord], file: Path, fmt: Format) -> None:
    """Refuse, before anything is written, records that `fmt` could not store faithfully."""
    seen: set[str] = set()
    for record in records:
        if record.name in seen:
            msg = f"cannot write {str(file)!r}: parameter {record.name!r} occurs twice; names must be unique"
            raise ConversionError(msg)
        seen.add(record.name)
        if fmt.holds_data and not record.has_data:
            msg = (
                f"cannot write {str(file)!r}: parameter {record.name!r} has no tensor data (it comes from a "
                "listing of names and shapes); a listing can only be saved as .json"
            )
            raise ConversionError(msg)
    if fmt.check is not None:
        fmt.check(records)
