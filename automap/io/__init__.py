"""Load and save checkpoints of either framework as `ParamTable`s.

Formats are identified by content, not by name (a name that disagrees is reported in the table's notes).
Framework adapters are imported only when a matching file arrives, so listing a `.ckpt` or a safetensors file
never imports torch, and nothing here ever imports MindSpore. Plain state dicts saved by torch.save are read
without torch too (`torch_zip_reader`); torch.load judges every other PyTorch file.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

from automap._errors import CheckpointFormatError, ConversionError, MissingDependencyError
from automap._json import loads
from automap._types import Framework, StrPath
from automap.records import ParamRecord, ParamTable

from . import _sniff

__all__ = ["load_checkpoint", "save_checkpoint"]

_MAX_JSON = 512 * 1024 * 1024


def load_checkpoint(
    path: StrPath,
    *,
    key: str | None = None,
    framework: Framework | None = None,
    unsafe_pickle: bool = False,
    verify_crc: bool = False,
) -> ParamTable:
    """Read a checkpoint or listing into an ordered parameter table; tensor data is read lazily.

    Args:
        path: a PyTorch `.pth`/`.pt`/`.bin`, a `.safetensors` file or a sharded `*.index.json`, a MindSpore
            `.ckpt`, or a JSON listing of names and shapes.
        key: for PyTorch files holding several state dicts, which one to take (`"model"`, `"ema/model"`).
        framework: whose naming conventions the file follows, when its format does not say (safetensors,
            listings); guessed from the names when omitted.
        unsafe_pickle: let PyTorch files run code while loading. Never use this on files you do not trust.
        verify_crc: check a MindSpore checkpoint's CRC trailer (reads the whole file).

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
    file = Path(path)
    found = _sniff.sniff(file)
    expected = _sniff.format_for_suffix(file)
    table: ParamTable
    try:
        if found == _sniff.TORCH:
            table = _read_torch(file, key, unsafe_pickle)
        elif found == _sniff.SAFETENSORS:
            table = _adapter("safetensors").read(file, framework=framework)
        elif found == _sniff.MINDSPORE:
            table = _adapter("mindspore").read(file, verify_crc=verify_crc, framework=framework or "mindspore")
        else:
            table = _read_json(file, framework)
    except MemoryError:
        # What the file declares is checked against its size first, so this is a real shortage (or an
        # address-space limit) while building the table of a very large file.
        size = file.stat().st_size
        msg = f"{str(file)!r}: ran out of memory while reading this {size}-byte file; free memory or raise the limit"
        raise CheckpointFormatError(msg) from None
    if framework is not None and table.framework != framework:
        table = ParamTable(framework, table.source, table.params, table.excluded, table.notes, table.format)
    if (
        expected is not None
        and expected != found
        and not (expected == _sniff.JSON and table.format.endswith("sharded"))
    ):
        note = f"the name says {expected} but the content is {found}; read as {found}"
        table = ParamTable(
            table.framework, table.source, table.params, table.excluded, (*table.notes, note), table.format
        )
    return table


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
    kind = _sniff.format_for_suffix(file)
    if kind is None:
        msg = f"cannot tell what format to write for {file.name!r}; use one of {_sniff.known_suffixes()}"
        raise CheckpointFormatError(msg)
    _check_records(records, file, with_data=kind != _sniff.JSON)
    if kind == _sniff.TORCH:
        _adapter("torch").write(records, file, overwrite=overwrite)
    elif kind == _sniff.SAFETENSORS:
        _adapter("safetensors").write(records, file, framework=framework, overwrite=overwrite)
    elif kind == _sniff.MINDSPORE:
        _adapter("mindspore").write(records, file, crc=crc, overwrite=overwrite)
    else:
        _adapter("listing").write(records, file, framework=framework, overwrite=overwrite)


def _save_sharded(
    records: list[ParamRecord], file: Path, framework: Framework, overwrite: bool, crc: bool, max_shard_size: int | str
) -> None:
    from . import sharded

    size = sharded.parse_size(max_shard_size)
    base = sharded.base_path(file)
    kind = _sniff.format_for_suffix(base)
    if kind is None or kind == _sniff.JSON:
        msg = f"cannot tell what format to shard {file.name!r} into; name it .safetensors, .ckpt, .pth or .bin"
        raise CheckpointFormatError(msg)
    _check_records(records, base, with_data=True)
    adapter = _adapter({_sniff.TORCH: "_torch_zip", _sniff.SAFETENSORS: "safetensors"}.get(kind, "mindspore"))
    if kind == _sniff.MINDSPORE:
        adapter._check_storable(records)  # before any shard is written

    def write_to(group: Sequence[ParamRecord], handle: BinaryIO) -> None:
        if kind == _sniff.TORCH:
            adapter.write_zip(group, handle)
        elif kind == _sniff.SAFETENSORS:
            adapter.write_to(handle, group, framework=framework)
        else:
            adapter.write_to(handle, group, crc=crc)

    sharded.write(records, base, max_shard_size=size, write_shard=write_to, overwrite=overwrite)


def _check_records(records: Sequence[ParamRecord], file: Path, *, with_data: bool) -> None:
    """Refuse, before anything is written, records that no format could store faithfully."""
    seen: set[str] = set()
    for record in records:
        if record.name in seen:
            msg = f"cannot write {str(file)!r}: parameter {record.name!r} occurs twice; names must be unique"
            raise ConversionError(msg)
        seen.add(record.name)
        if with_data and not record.has_data:
            msg = (
                f"cannot write {str(file)!r}: parameter {record.name!r} has no tensor data (it comes from a "
                "listing of names and shapes); a listing can only be saved as .json"
            )
            raise ConversionError(msg)


def _adapter(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"automap.io.{name}")
    except ModuleNotFoundError as error:
        if error.name not in {"torch", "safetensors"}:  # a bug inside the adapter, not a missing framework
            raise
        msg = f"this file needs {error.name}, which is not installed; run: pip install {error.name}"
        raise MissingDependencyError(msg) from error


def _read_torch(file: Path, key: str | None, unsafe_pickle: bool) -> ParamTable:
    """A PyTorch file: plain state dicts in the zip format without torch, everything else through torch.load."""
    if not unsafe_pickle:
        table: ParamTable | None = _adapter("torch_zip_reader").read(file, key=key)
        if table is not None:
            return table
    return _adapter("torch").read(file, key=key, unsafe_pickle=unsafe_pickle)  # type: ignore[no-any-return]


def _read_json(file: Path, framework: Framework | None) -> ParamTable:
    size = file.stat().st_size
    if size > _MAX_JSON:
        msg = f"{str(file)!r}: a {size}-byte JSON file is too large for a listing or index"
        raise CheckpointFormatError(msg)
    try:
        document: Any = loads(file.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        detail = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:120]
        msg = f"{str(file)!r}: not valid JSON ({detail})"
        raise CheckpointFormatError(msg) from None
    if isinstance(document, dict) and "weight_map" in document:
        if _adapter("sharded").reads(document):  # shards of .ckpt or PyTorch files
            return _adapter("sharded").read_index(file, document, framework=framework)  # type: ignore[no-any-return]
        return _adapter("safetensors").read_index(file, document, framework=framework)  # type: ignore[no-any-return]
    if isinstance(document, dict) and document.get("format") == "automap.mapping":
        msg = f"{str(file)!r} is a mapping file, not a checkpoint or listing"
        raise CheckpointFormatError(msg)
    return _adapter("listing").read(file, document, framework=framework)  # type: ignore[no-any-return]
