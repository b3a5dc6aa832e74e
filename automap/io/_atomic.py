"""Atomic file output: write beside the target, fsync, rename. A failure never leaves a partial file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from automap._errors import ConversionError
from automap._types import StrPath


def check_writable(path: StrPath, *, overwrite: bool) -> Path:
    """Refuse an existing output (unless `overwrite`) or a missing folder before any work is done."""
    out = Path(path)
    if out.is_dir():
        msg = f"output {str(out)!r} is a directory; give a file name"
        raise ConversionError(msg)
    if out.exists() and not overwrite:
        msg = f"output {str(out)!r} already exists; pass --force to overwrite it"
        raise ConversionError(msg)
    if not out.parent.is_dir():
        msg = f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist"
        raise ConversionError(msg)
    return out


@contextlib.contextmanager
def atomic_output(path: StrPath, *, overwrite: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only when the block finishes without error.

    The data goes to a hidden temporary file in the same folder (same filesystem, so the final rename is
    atomic), is flushed and fsynced, then renamed over `path`. On any exception, including KeyboardInterrupt,
    the temporary file is removed and `path` is untouched.
    """
    out = check_writable(path, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if out.exists() and not overwrite:  # appeared while we were writing
            msg = f"output {str(out)!r} appeared while writing; pass --force to overwrite it"
            raise ConversionError(msg)
        tmp.chmod(0o666 & ~_umask())
        tmp.replace(out)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(error, OSError):
            msg = f"cannot write {str(out)!r}: {error.strerror or error}; nothing was written"
            raise ConversionError(msg) from error
        raise
    _fsync_dir(out.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; best effort where the platform cannot open folders."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
