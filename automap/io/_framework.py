"""Helpers every reader shares: which framework's conventions a name list follows, and table assembly.

Every table passes through `build_table`, which is also where untrusted names and shapes are bounded: a name
must be printable text of sane length (no control characters, no lone surrogates, no bidirectional overrides
that could disguise it on screen or in a mapping file), and a shape must have at most 32 axes and fewer than
2**63 bytes, so that everything downstream (numpy, printing, JSON) can handle it.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Iterable

from automap._errors import CheckpointFormatError
from automap._types import Array, Framework
from automap.dtypes import get_dtype
from automap.records import ParamRecord, ParamTable
from automap.training_state import is_training_state

_MINDSPORE_LEAVES = frozenset({"gamma", "beta", "moving_mean", "moving_variance", "embedding_table"})
_TORCH_LEAVES = frozenset({"running_mean", "running_var", "num_batches_tracked"})

RawRecord = tuple[str, tuple[int, ...], str, "Callable[[], Array] | None"]

MAX_NAME = 64 * 1024  # characters; real parameter names are well under 1000
MAX_NDIM = 32  # numpy's limit (numpy < 2): an array with more axes cannot exist
MAX_NBYTES = 2**63  # bytes of one tensor; beyond this no file or machine could hold it
# C0/C1 controls (newlines, terminal escapes), lone surrogates (not encodable), and the bidirectional
# overrides/isolates that let text display in another order than it is stored ("Trojan Source").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def guess_framework(names: Iterable[str]) -> Framework:
    """Guess the framework from leaf-name conventions; PyTorch unless MindSpore's names dominate."""
    mindspore = torch = 0
    for name in names:
        leaf = name.rsplit(".", 1)[-1]
        mindspore += leaf in _MINDSPORE_LEAVES
        torch += leaf in _TORCH_LEAVES
    return "mindspore" if mindspore > torch else "pytorch"


def build_table(
    framework: Framework,
    source: str,
    records: Iterable[RawRecord],
    notes: Iterable[str],
    fmt: str,
    *,
    excluded_names: frozenset[str] = frozenset(),
) -> ParamTable:
    """Number records in order, setting training state (MindSpore's, or named by the caller) aside."""
    params: list[ParamRecord] = []
    excluded: list[ParamRecord] = []
    seen: set[str] = set()
    for name, shape, dtype, loader in records:
        check_record(source, name, shape, dtype)
        if name in seen:
            msg = f"{source!r}: parameter {shown(name)} occurs twice; the file is corrupt"
            raise CheckpointFormatError(msg)
        seen.add(name)
        if name in excluded_names or (framework == "mindspore" and is_training_state(name)):
            excluded.append(ParamRecord(name, shape, dtype, len(excluded), loader))
        else:
            params.append(ParamRecord(name, shape, dtype, len(params), loader))
    return ParamTable(framework, source, tuple(params), tuple(excluded), tuple(notes), fmt)


def first_line(text: str) -> str:
    """The first line of a library's error text, cut to 200 characters, for a one-line message."""
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    return line[:200]


def shown(name: str, limit: int = 80) -> str:
    """A name quoted for a one-line message: escaped, and cut when long."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}... ({len(name)} characters)"


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxstring, _BRIEF.maxother = 3, 8, 4, 60, 60
_BRIEF.maxlong = 40


def brief(value: object) -> str:
    """Any untrusted value (a decoded JSON field, say) rendered short, on one line, without deep recursion."""
    return _BRIEF.repr(value)


def unsafe_character(text: str) -> str | None:
    """The first character of `text` that must not appear in a name (see the module docstring), or None."""
    found = _UNSAFE.search(text)
    return found.group() if found else None


def printable(text: str) -> str:
    """`text` with every character a name may not hold replaced by U+FFFD (for file paths shown or saved).

    A path from the command line can carry undecodable bytes (as lone surrogates) or control characters; it
    is only a label in a mapping file, so it is made printable rather than refused.
    """
    return _UNSAFE.sub("\ufffd", text)


def check_name(source: str, name: object, what: str = "parameter") -> None:
    """Refuse a name that is not printable text of sane length.

    Raises:
        CheckpointFormatError: naming the file and the offending name.
    """
    if not isinstance(name, str):
        msg = f"{source!r}: a {what} name is a {type(name).__name__}, not text; the file is corrupt"
        raise CheckpointFormatError(msg)
    if not name:
        msg = f"{source!r}: a {what} has an empty name; the file is corrupt or was not written by a framework"
        raise CheckpointFormatError(msg)
    if len(name) > MAX_NAME:
        msg = f"{source!r}: {what} name {shown(name, 40)} is longer than {MAX_NAME} characters; refused"
        raise CheckpointFormatError(msg)
    bad = unsafe_character(name)
    if bad is not None:
        msg = (
            f"{source!r}: {what} name {shown(name)} contains the unprintable character {bad!r}; refused, "
            "since such a name can disguise itself on screen or break the files automap writes"
        )
        raise CheckpointFormatError(msg)


def check_record(source: str, name: str, shape: tuple[int, ...], dtype: str) -> None:
    """Refuse a name or shape that nothing downstream could handle (see the module docstring).

    Raises:
        CheckpointFormatError: naming the file, the parameter and the limit.
    """
    check_name(source, name)
    if len(shape) > MAX_NDIM:
        msg = f"{source!r}: parameter {shown(name)} has {len(shape)} axes; automap handles at most {MAX_NDIM}"
        raise CheckpointFormatError(msg)
    nbytes = math.prod(shape) * get_dtype(dtype).itemsize
    if nbytes >= MAX_NBYTES:
        dims = ", ".join(str(d) for d in shape[:6]) + (", ..." if len(shape) > 6 else "")
        msg = f"{source!r}: parameter {shown(name)} declares shape [{dims}], over 2**63 bytes; the file is corrupt"
        raise CheckpointFormatError(msg)
