"""Read-back verification: re-open every output file with a loader and compare it with what was written.

Invariants:

- Each output file is re-opened with its framework's own loader where that is installed and able
  (`verifier_for` chooses a `Verifier`), and every tensor's dtype and shape are compared with those of the tensor
  that was written, and its bytes with what the writer kept of them (`_checksums.Expected`): the bytes themselves,
  still in the source file, for a tensor written from a view of it (compared piece by piece with `memcmp`), the
  piece CRC-32s (one per 16 MiB piece) for any other. The pieces are spread over a few threads, with a bounded
  amount in flight, and each piece's pages are handed back as soon as it is compared.
- A loader that reads a whole file into memory (`mindspore.load_checkpoint`) checks files up to
  `FRAMEWORK_CHECK_LIMIT`; larger ones are checked with automap's own lazy reader, and the report says which loader
  was used. So are files whose framework is not installed: converting between formats automap reads and writes
  itself needs neither framework.
- A sharded output's index must list the tensors in the order written.
- When anything differs, every file written (every shard and the index) is removed before the error is raised:
  a conversion that fails its check leaves no output behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from automap._errors import AutomapError, ConversionError
from automap._phases import timed
from automap._text import first_line, human_bytes, shape_text
from automap._types import Array
from automap.dtypes import dtype_from_safetensors
from automap.io import load_checkpoint
from automap.io.formats import FORMATS, MINDSPORE, PYTORCH, SAFETENSORS
from automap.io.mindspore import storage_of
from automap.records import ParamRecord

from ._checksums import Checksum, ChecksumPool, Expected
from ._pages import MappedPages
from ._progress import Progress
from ._writecheck import Place, Written
from .plan import SHOWN, ConversionPlan, installed, quoted_names

__all__ = ["FRAMEWORK_CHECK_LIMIT", "Verifier", "verifier_for", "verify_output"]

FRAMEWORK_CHECK_LIMIT = 1 << 30
"""Largest file verified with a loader that reads a whole file into memory (`mindspore.load_checkpoint`)."""

Reader = Callable[[str], tuple[str, Array] | None]


class _UnreadableError(Exception):
    """The framework's loader refused the file automap wrote."""


def verify_output(
    files: list[tuple[Path, list[ParamRecord]]],
    index: Path | None,
    plan: ConversionPlan,
    written: Written,
    pages: MappedPages,
    *,
    total: int,
    progress: bool,
) -> tuple[int, str]:
    """Re-open every output file with its loader and compare each tensor with what was written.

    Args:
        files: each file written (one, or the shards in order) with the records written into it.
        index: the index of a sharded output, or None.
        plan: the plan that was run.
        written: what every tensor written must read back as, and what was compared right after being written.
        pages: the mapped files whose pages are handed back as the check moves on; the outputs are added to it.
        total: the bytes to check (for the progress bar).
        progress: draw a progress bar on stderr.

    Returns:
        How many tensors were found bit-exact, and a description of the loader(s) used.

    Raises:
        ConversionError: anything differs; every output file has been removed.
    """
    for path, _ in files:
        pages.add(path)
    count = sum(len(records) for _, records in files)
    with timed("verify"), Progress(total, count, label="verifying", enabled=progress) as bar:
        return _verify_files(files, index, plan, written, bar, pages)


def _verify_files(
    files: list[tuple[Path, list[ParamRecord]]],
    index: Path | None,
    plan: ConversionPlan,
    written: Written,
    bar: Progress,
    pages: MappedPages,
) -> tuple[int, str]:
    """`verify_output` under its progress bar: check each file in turn, then the index; remove all on a problem.

    Tensors found different right after being written are the problems, and nothing is read back.
    """
    problems: list[str] = list(written.problems)
    hows: dict[str, int] = {}
    for path, records in files:
        verifier, how = verifier_for(path, plan)
        hows[how] = hows.get(how, 0) + 1
        if problems:
            continue
        where = f"{path.name}: " if index is not None else ""
        found = _verify_file(path, verifier, how, records, written.expected, bar, pages, checked=written.checked)
        problems.extend(where + p for p in found)
    if index is not None and not problems:
        try:
            names = list(load_checkpoint(index).names)
        except AutomapError as error:
            problems.append(f"automap cannot read the index back: {error}")
        else:
            if names != [r.name for _, records in files for r in records]:
                problems.append(f"the index {index.name} does not list the tensors in the order written")
    if index is not None:
        how = "; ".join(f"{h} ({n} shard{'s' if n > 1 else ''})" for h, n in hows.items())
        how += f", and automap reads {index.name} back"
    else:
        how = next(iter(hows))
    if problems:
        outputs = [path for path, _ in files] + ([index] if index is not None else [])
        for output in outputs:
            with contextlib.suppress(OSError):
                output.unlink()
        removed = "the file was" if index is None else "every shard and the index were"
        shown = index if index is not None else files[0][0]
        msg = f"verification of {str(shown)!r} with {how} failed, so {removed} removed: {'; '.join(problems[:SHOWN])}"
        raise ConversionError(msg)
    return sum(len(records) for _, records in files), how


_Check = tuple[ParamRecord, str, tuple[int, ...], bool, bool]
"""A tensor read back: record, dtype, shape, of the right kind, its bytes already compared right after writing."""


def _verify_file(
    path: Path,
    verifier: Verifier,
    how: str,
    records: list[ParamRecord],
    digests: Mapping[str, Expected],
    bar: Progress,
    pages: MappedPages,
    *,
    checked: AbstractSet[Place] = frozenset(),
) -> list[str]:
    """Compare every tensor of one output file with what was written; the problems found (the first `SHOWN`).

    A tensor the loader shows as a view of exactly a range in `checked` (the same file, offset and length) had its
    bytes compared right after they were written, and only its dtype and shape are compared here. Every other tensor
    goes to a `ChecksumPool`, whose threads checksum its pieces (or compare them with the bytes written) while the
    next ones are read; results come back in order, and the pages of each piece are handed back as soon as it is
    done.
    """
    problems: list[str] = []

    def compare(check: _Check, values: Checksum) -> None:
        record, dtype, shape, same_kind, already = check
        if len(problems) >= SHOWN:
            return
        if not same_kind or not (already or _matches(values, digests[record.name])):
            detail = " (values differ)" if same_kind else ""
            problems.append(
                f"{record.name!r}: read back as {dtype}{shape_text(shape)}, expected "
                f"{record.dtype}{shape_text(record.shape)}{detail}"
            )
        pages.used(record.nbytes)

    try:
        with _framework_reader(path, verifier) as (names, read), ChecksumPool(compare, release=pages.drop_both) as pool:
            pages.rescan()  # the loader has just mapped the file, maybe where an earlier file's mapping was
            expected_names = [r.name for r in records]
            wanted, present = set(expected_names), set(names)
            if present != wanted:
                extra = [n for n in names if n not in wanted]
                absent = [n for n in expected_names if n not in present]
                problems.append(
                    f"the file holds {quoted_names(extra) or 'nothing more'} "
                    f"and lacks {quoted_names(absent) or 'nothing'}"
                )
            elif names != expected_names and FORMATS.for_suffix(path) is not SAFETENSORS:
                problems.append("the tensors are not in the target's order")
            for record in records:
                found = read(record.name)
                bar.advance(record.nbytes)
                if found is None:
                    continue
                dtype, array = found
                shape = tuple(array.shape)
                same_kind = dtype == record.dtype and shape == record.shape
                place = pages.where(array) if same_kind and checked else None
                if place is not None and (*place, record.nbytes) in checked:
                    pool.submit((record, dtype, shape, same_kind, True), None)
                    continue
                pages.prefetch(array)
                expected = digests[record.name]
                reference = expected if isinstance(expected, np.ndarray) and same_kind else None
                if reference is not None:
                    pages.prefetch(reference)
                # a tensor of the wrong kind is reported without a checksum, in its turn
                check = (record, dtype, shape, same_kind, False)
                pool.submit(check, array if same_kind else None, reference=reference)
                del found, array, expected, reference  # the pool holds them until the tensor is checked, no longer
                if len(problems) >= SHOWN:
                    break
            else:
                pool.drain()
    except _UnreadableError as error:
        problems.append(f"{how} cannot read it: {error}")
    return problems


def _matches(values: Checksum, expected: Expected) -> bool:
    """A tensor's values from the pool against what was written: the same CRCs, or no piece unlike its bytes."""
    if isinstance(expected, np.ndarray):
        return not any(values)
    return values == expected


class Verifier(Enum):
    """The loader that re-reads an output file to check it; the value is its name in the report."""

    TORCH_LOADER = "torch.load(weights_only=True)"
    MINDSPORE_LOADER = "mindspore.load_checkpoint"
    MINDSPORE_SAFETENSORS_LOADER = "mindspore.load_checkpoint(format='safetensors')"
    SAFETENSORS = "safetensors.safe_open"
    SAFETENSORS_HEADER = "safetensors.safe_open (names, dtypes, shapes) and automap's reader"
    AUTOMAP_READER = "automap's reader"

    def describe(self, why: str = "") -> str:
        """The loader's name for the report, with why it was chosen where the framework's own was not."""
        return f"{self.value} ({why})" if why else self.value


def verifier_for(out: Path, plan: ConversionPlan) -> tuple[Verifier, str]:
    """The loader that verifies an output file (which must exist, for its size), and its description.

    The framework's own loader where it is installed; otherwise automap's reader, and the description says why.
    """
    fmt = FORMATS.for_suffix(out)
    reader = Verifier.AUTOMAP_READER
    if fmt is PYTORCH:
        if not installed("torch"):
            return reader, reader.describe("torch is not installed")
        return Verifier.TORCH_LOADER, Verifier.TORCH_LOADER.describe()
    size = out.stat().st_size if out.exists() else 0
    too_big = size > FRAMEWORK_CHECK_LIMIT
    limit, found = human_bytes(FRAMEWORK_CHECK_LIMIT), human_bytes(size)
    header = Verifier.SAFETENSORS_HEADER
    if fmt is MINDSPORE:
        if _has_float8(plan):
            return reader, reader.describe("MindSpore cannot load float8")
        if too_big:
            why = f"mindspore.load_checkpoint reads a whole file into memory, so it checks files up to {limit}"
            return reader, reader.describe(f"{why}; this one has {found}")
        if not installed("mindspore"):
            return reader, reader.describe("MindSpore is not installed")
        return Verifier.MINDSPORE_LOADER, Verifier.MINDSPORE_LOADER.describe()
    if too_big:
        why = f"data: safe_open copies every tensor into new memory, so it reads files up to {limit} whole"
        return header, header.describe(f"{why}; this one has {found}")
    if plan.framework == "mindspore" and not _has_float8(plan) and installed("mindspore"):
        return Verifier.MINDSPORE_SAFETENSORS_LOADER, Verifier.MINDSPORE_SAFETENSORS_LOADER.describe()
    if not installed("torch"):  # safe_open gives numpy arrays without torch, and numpy has no bfloat16 or float8
        return header, header.describe("data: torch is not installed")
    return Verifier.SAFETENSORS, Verifier.SAFETENSORS.describe()


def _has_float8(plan: ConversionPlan) -> bool:
    return any(t.dtype.startswith("float8") for t in plan.tensors)


def _loaded(what: Callable[[], Any]) -> Any:
    """Run a framework's loader; any failure means the file is not what the framework expects."""
    try:
        return what()
    except Exception as error:  # the frameworks raise RuntimeError, ValueError, OSError, ... for a bad file
        msg = f"{type(error).__name__}: {first_line(str(error))}"
        raise _UnreadableError(msg) from error


@contextlib.contextmanager
def _framework_reader(out: Path, verifier: Verifier) -> Iterator[tuple[list[str], Reader]]:
    if verifier is Verifier.TORCH_LOADER:
        import torch

        from automap.io.torch import to_numpy

        state = _loaded(lambda: torch.load(out, map_location="cpu", weights_only=True, mmap=True))

        def read_torch(name: str) -> tuple[str, Array] | None:
            tensor = state.get(name)
            if tensor is None:
                return None
            return str(tensor.dtype).removeprefix("torch."), to_numpy(tensor)

        yield list(state), read_torch
    elif verifier in (Verifier.MINDSPORE_LOADER, Verifier.MINDSPORE_SAFETENSORS_LOADER):
        with _quiet_mindspore():
            import mindspore

            options = {} if verifier is Verifier.MINDSPORE_LOADER else {"format": "safetensors"}
            params = _loaded(lambda: mindspore.load_checkpoint(str(out), **options))

        def read_mindspore(name: str) -> tuple[str, Array] | None:
            param = params.get(name)
            return None if param is None else storage_of(param)

        yield list(params), read_mindspore
    elif verifier is Verifier.SAFETENSORS_HEADER:
        from safetensors import safe_open

        header = _loaded(lambda: safe_open(str(out), framework="numpy"))  # no tensor is created
        declared = {}
        for key in header.keys():
            piece = header.get_slice(key)
            found = dtype_from_safetensors(piece.get_dtype())
            declared[key] = (found.name if found else piece.get_dtype(), tuple(piece.get_shape()))
        table = load_checkpoint(out)

        def read_checked(name: str) -> tuple[str, Array] | None:
            if name not in declared:
                return None
            record = table.get(name)
            if record is None or (record.dtype, record.shape) != declared[name]:
                msg = f"safetensors.safe_open and automap's reader disagree about {name!r}"
                raise _UnreadableError(msg)
            return declared[name][0], record.read()

        yield list(declared), read_checked
    elif verifier is Verifier.SAFETENSORS:
        from safetensors import safe_open

        from automap.io.torch import to_numpy

        handle = _loaded(lambda: safe_open(str(out), framework="pt"))  # torch tensors: bfloat16, float8 too
        keys = list(handle.keys())
        known = set(keys)

        def read_safetensors(name: str) -> tuple[str, Array] | None:
            if name not in known:
                return None
            tensor = handle.get_tensor(name)
            return str(tensor.dtype).removeprefix("torch."), to_numpy(tensor)

        yield keys, read_safetensors
    else:  # AUTOMAP_READER: float8 (MindSpore's loader has no float8 type), too large for it, or no framework
        table = _loaded(lambda: load_checkpoint(out))

        def read_automap(name: str) -> tuple[str, Array] | None:
            record = table.get(name)
            return None if record is None else (record.dtype, record.read())

        yield list(table.names), read_automap


@contextlib.contextmanager
def _quiet_mindspore() -> Iterator[None]:
    """MindSpore logs warnings through glog on import; keep the command's output readable."""
    previous = os.environ.get("GLOG_v")
    os.environ["GLOG_v"] = previous or "3"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GLOG_v", None)
