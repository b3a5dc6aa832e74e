"""Helpers every reader shares: which framework's conventions a name list follows, and table assembly.

Every table passes through `build_table`, which is also where untrusted names and shapes are bounded: a name
must be printable text of sane length (no control characters, no lone surrogates, no bidirectional overrides
that could disguise it on screen or in a mapping file), and a shape must have at most 32 axes and fewer than
2**63 bytes, so that everything downstream (numpy, printing, JSON) can handle it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from automap._errors import CheckpointFormatError
from automap._text import MAX_NAME, shown, unsafe_character
from automap._types import Array, Framework
from automap.dtypes import get_dtype
from automap.records import ParamRecord, ParamTable

from .training_state import is_training_state

_MINDSPORE_LEAVES = frozenset({"gamma", "beta", "moving_mean", "moving_variance", "embedding_table"})
_TORCH_LEAVES = frozenset({"running_mean", "running_var", "num_batches_tracked"})

RawRecord = tuple[str, tuple[int, ...], str, "Callable[[], Array] | None"]

MAX_NDIM = 32  # numpy's limit (numpy < 2): an array with more axes cannot exist
MAX_NBYTES = 2**63  # bytes of one tensor; beyond this no file or machine could hold it


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
    records = list(records)
    if not _all_bounded(records):
        _refuse_first(source, records)
    params: list[ParamRecord] = []
    excluded: list[ParamRecord] = []
    mindspore = framework == "mindspore"
    for name, shape, dtype, loader in records:
        if name in excluded_names or (mindspore and is_training_state(name)):
            excluded.append(ParamRecord(name, shape, dtype, len(excluded), loader))
        else:
            params.append(ParamRecord(name, shape, dtype, len(params), loader))
    return ParamTable(framework, source, tuple(params), tuple(excluded), tuple(notes), fmt)


def _all_bounded(records: list[RawRecord]) -> bool:
    """Whether every record passes `check_record` and no name repeats, checked in bulk.

    Names are checked all at once (one search through all of them), shapes once per distinct shape and dtype.
    """
    try:
        names = [r[0] for r in records]
        if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            return False
        if names and (not min(map(len, names)) or max(map(len, names)) > MAX_NAME):
            return False
        if unsafe_character(" ".join(names)) is not None:  # a space is safe, so no match spans two names
            return False
        for shape, dtype in {(r[1], r[2]) for r in records}:
            if len(shape) > MAX_NDIM or math.prod(shape) * get_dtype(dtype).itemsize >= MAX_NBYTES:
                return False
    except (TypeError, CheckpointFormatError):  # an unhashable shape, an unknown dtype
        return False
    return True


def _refuse_first(source: str, records: list[RawRecord]) -> None:
    """Raise the error of the first record that fails `check_record` or repeats a name."""
    seen: set[str] = set()
    for name, shape, dtype, _ in records:
        check_record(source, name, shape, dtype)
        if name in seen:
            msg = f"{source!r}: parameter {shown(name)} occurs twice; the file is corrupt"
            raise CheckpointFormatError(msg)
        seen.add(name)


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
