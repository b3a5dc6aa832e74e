"""Where a conversion may write, checked before any work is done.

The output must be a format automap writes, in a place that takes the file, and never one of the source's own
files (streaming would read what it overwrites).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from automap._atomic import check_writable
from automap._errors import ConversionError, MissingDependencyError
from automap._types import StrPath
from automap.io import dcp, fsdp, ms_distributed
from automap.io.formats import FORMATS, PYTORCH
from automap.io.sharded import base_path, files_of, index_path
from automap.records import ParamTable

from .plan import installed

__all__ = ["check_not_source", "check_output", "refuse_writing_over", "source_files"]


def check_output(output: StrPath, *, sharded: bool = False, overwrite: bool = False) -> Path:
    """Refuse an output that cannot be written, before any work is done.

    Args:
        output: the output file (for a sharded output, the name one file would have, or the index's name).
        sharded: the output will be split into shards plus an index.
        overwrite: an existing output may be replaced.

    Returns:
        The output as one file would be named (`model.safetensors` also for `model.safetensors.index.json`).

    Raises:
        ConversionError: the output's name says no checkpoint format automap writes, or the output (or, sharded,
            its index) exists without `overwrite`, is a directory, or its folder does not exist or takes no file.
        MissingDependencyError: the output is a PyTorch file and torch is not installed.

    Example:
        >>> check_output("model.ckpt", sharded=True)  # doctest: +SKIP
        PosixPath('model.ckpt')
    """
    _check_output_kind(base_path(output) if sharded else Path(output))
    # automap's .pth writer refers to torch's own tensor-rebuilding functions, so it needs torch
    if FORMATS.for_suffix(base_path(output) if sharded else Path(output)) is PYTORCH and not installed("torch"):
        msg = (
            f"writing {Path(output).name!r} (PyTorch's format) needs torch, which is not installed; run: pip install "
            "'automap[torch]', or write .safetensors, which needs no framework"
        )
        raise MissingDependencyError(msg)
    if sharded:
        base = base_path(output)
        check_writable(index_path(base), overwrite=overwrite)
        return base
    return check_writable(output, overwrite=overwrite)


def _check_output_kind(out: Path) -> None:
    fmt = FORMATS.for_suffix(out)
    if fmt is None or fmt.write_to is None or not fmt.holds_data:
        msg = (
            f"cannot tell what to write for {out.name!r}: name the output .ckpt (MindSpore), .pth (PyTorch) "
            "or .safetensors"
        )
        raise ConversionError(msg)


def source_files(table: ParamTable) -> list[Path]:
    """The files holding the source's data (an index's shards, a distributed folder's files): pages, overwrites."""
    with contextlib.suppress(OSError, ValueError):
        source = Path(table.source)
        if source.is_file():
            return [source, *(f for f in files_of(source) if f != source)]
        if source.is_dir():
            readers = {"pytorch-dcp": dcp.data_files, "pytorch-fsdp": fsdp.data_files}
            return readers.get(table.format, ms_distributed.data_files)(source)
    return []


def check_not_source(source: ParamTable, outputs: Sequence[StrPath]) -> None:
    """Refuse an output that is one of the source checkpoint's files, before any work is done.

    Args:
        source: the source checkpoint's table.
        outputs: every file the command will write.

    Raises:
        ConversionError: an output is one of the source's files (a shard of it included).
    """
    refuse_writing_over(source_files(source), [Path(o) for o in outputs])


def refuse_writing_over(sources: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Refuse an output that is one of the source's files (streaming would read what it overwrites)."""
    resolved = {s.resolve() for s in sources if s.exists()}
    for output in outputs:
        if output.exists() and output.resolve() in resolved:
            msg = f"output {str(output)!r} is the source checkpoint; write to another file"
            raise ConversionError(msg)
