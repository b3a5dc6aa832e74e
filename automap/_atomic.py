"""Atomic file output: write beside the target, fsync, then give it its name. A failure never leaves a partial file.

Where the platform allows (Linux, most local filesystems), the data goes to an *unnamed* file in the output's
folder (`O_TMPFILE`), which is linked under the output's name only once complete: even a process killed
with SIGKILL mid-write, or a machine that loses power, leaves nothing behind. Elsewhere a hidden temporary
file is used and removed on any exception; only a hard kill can leave that one behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ._advice import option
from ._direct import output_file
from ._errors import ConversionError
from ._phases import timed
from ._types import StrPath


def check_writable(path: StrPath, *, overwrite: bool) -> Path:
    """Refuse, before any work is done, an output that could not be written.

    That is an existing output (unless `overwrite`), a directory, a folder that does not exist or is a file, and
    a folder that takes no new file (read-only, `/proc`, no permission): the last is found by creating a file
    there the way `atomic_output` will, unnamed where the platform allows, and removing it.
    """
    out = Path(path)
    try:
        if out.is_dir():
            msg = f"output {str(out)!r} is a directory; give a file name"
            raise ConversionError(msg)
        if out.exists() and not overwrite:
            msg = f"output {str(out)!r} already exists; pass {option('overwrite')} to overwrite it"
            raise ConversionError(msg)
        folder = out.parent
        if not folder.is_dir():
            above = next((p for p in folder.parents if p.exists()), None) if not folder.exists() else folder
            if above is not None and not above.is_dir():
                msg = f"cannot write {str(out)!r}: {str(above)!r} is not a folder"
                raise ConversionError(msg)
            msg = f"cannot write {str(out)!r}: folder {str(folder)!r} does not exist"
            raise ConversionError(msg)
    except OSError as error:  # a name too long, a permission denied on the way
        msg = f"cannot write {str(out)!r}: {error.strerror or error}"
        raise ConversionError(msg) from None
    try:
        fd, tmp = _open_unnamed(folder)
    except OSError as error:  # read-only, no permission, or a pseudo-filesystem such as /proc
        msg = f"cannot write {str(out)!r}: the folder {str(folder)!r} takes no new file ({error.strerror or error})"
        raise ConversionError(msg) from None
    os.close(fd)
    if tmp is not None:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return out


@contextlib.contextmanager
def atomic_output(path: StrPath, *, overwrite: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only when the block finishes without error.

    The data goes to an unnamed (or hidden temporary) file in the same folder, so the final link or rename is
    atomic; it is flushed and fsynced before it gets the output's name. On any exception, including
    KeyboardInterrupt, nothing is left and `path` is untouched.
    """
    out = check_writable(path, overwrite=overwrite)
    try:
        fd, tmp = _open_unnamed(out.parent)
    except OSError as error:  # the folder stopped taking files since it was checked
        msg = f"cannot write {str(out)!r}: {error.strerror or error}; nothing was written"
        raise ConversionError(msg) from error
    try:
        with output_file(fd) as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            with timed("fsync"):
                os.fsync(handle.fileno())
            if tmp is None:
                tmp = _link_unnamed(handle.fileno(), out, overwrite)
        if tmp is not None:
            if out.exists() and not overwrite:  # appeared while we were writing
                msg = f"output {str(out)!r} appeared while writing; pass {option('overwrite')} to overwrite it"
                raise ConversionError(msg)
            tmp.replace(out)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(error, OSError):
            msg = f"cannot write {str(out)!r}: {error.strerror or error}; nothing was written"
            raise ConversionError(msg) from error
        raise
    _fsync_dir(out.parent)


def _open_unnamed(folder: Path) -> tuple[int, Path | None]:
    """A file descriptor to write to, and the temporary name it has (None: unnamed until linked)."""
    flag = getattr(os, "O_TMPFILE", 0)
    if flag and Path("/proc/self/fd").is_dir():
        try:
            # read and write: what was written can be read back through the same descriptor before it is named
            return os.open(folder, flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600), None
        except OSError:  # the filesystem does not support unnamed files (EOPNOTSUPP, EISDIR, EINVAL)
            pass
    fd, name = tempfile.mkstemp(prefix=".automap-", suffix=".partial", dir=folder)
    return fd, Path(name)


def _link_unnamed(fd: int, out: Path, overwrite: bool) -> Path | None:
    """Name the finished unnamed file: the output itself, or a hidden name returned for the caller to rename.

    Without `overwrite` the link is made straight at the output, which fails if it appeared meanwhile.
    """
    if not overwrite:
        try:
            linked = _link(fd, out)
        except FileExistsError:
            msg = f"output {str(out)!r} appeared while writing; pass {option('overwrite')} to overwrite it"
            raise ConversionError(msg) from None
        if linked:
            return None
    while True:
        tmp = out.parent / f".automap-{secrets.token_hex(6)}.partial"
        try:
            if _link(fd, tmp):
                return tmp
            break
        except FileExistsError:
            continue
    # Neither way of naming an unnamed file works here (a sandbox, an unusual mount): copy it to a named one.
    copy_fd, name = tempfile.mkstemp(prefix=".automap-", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(os.dup(fd), "rb") as source, os.fdopen(copy_fd, "wb") as copy:
            source.seek(0)
            shutil.copyfileobj(source, copy, 16 * 1024 * 1024)
            copy.flush()
            os.fchmod(copy.fileno(), os.fstat(fd).st_mode & 0o777)
            os.fsync(copy.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            Path(name).unlink()
        raise
    return Path(name)


def _link(fd: int, target: Path) -> bool:
    """Link the unnamed file open as `fd` at `target`; False when this system cannot.

    Raises:
        FileExistsError: `target` exists.
    """
    try:
        os.link(f"/proc/self/fd/{fd}", target, follow_symlinks=True)
        return True
    except FileExistsError:
        raise
    except OSError:  # EXDEV behind some bind mounts, ENOENT without /proc
        pass
    if not sys.platform.startswith("linux"):
        return False
    try:  # linkat(fd, "", AT_FDCWD, target, AT_EMPTY_PATH): needs a capability, or Linux >= 6.10 for O_TMPFILE
        libc = ctypes.CDLL(None, use_errno=True)
        status = libc.linkat(fd, b"", _AT_FDCWD, os.fsencode(target), _AT_EMPTY_PATH)
    except (OSError, AttributeError):
        return False
    if status == 0:
        return True
    if ctypes.get_errno() == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    return False


_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000


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
