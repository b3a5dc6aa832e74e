"""The streaming writer: each output tensor is read, transformed and written before the next one is read.

Invariants:

- Each output record's loader reads and transforms one source tensor (or one group of parts) when the writer asks
  for it, and every writer streams (`automap.io.save_checkpoint`, sharded or not), so memory holds about one tensor
  at a time, whatever the checkpoint's size.
- Pages of memory-mapped source files are read ahead as a tensor is handed out and handed back once it is on its
  way to disk (`_pages`), so they do not pile up either. A tensor that needs no transform is copied file to file
  by the kernel where the writer can (`automap.io._copy`).
- Without the read-back nothing reads the output again soon, so it is written past the page cache, and renamed
  tensors are read from the source past it too (`automap._direct`); nothing is read ahead through the cache then.
  Not into a `.pth`: its writer reads every tensor for the zip's CRC-32, which leaves the source's pages cached for
  the kernel copy.
- dtypes are kept bit-exact unless the plan asks for a cast; casts involving bfloat16 or float8, which numpy
  lacks, go through torch (the plan has checked that it is installed).
- What the read-back compares against (`_checksums.Expected`) is taken of each tensor as it is handed to the
  writer: a tensor handed over as a view of a memory-mapped source file (renamed, not transformed) is kept as that
  view, since its bytes stay in the source file, and its bytes in the output are compared with the source's right
  after being written (`_writecheck`); any other tensor gets its piece CRC-32s taken on a second thread while it is
  written, so the source is read once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from automap._direct import bypassing_cache
from automap._phases import timed
from automap._types import Array, Framework
from automap.dtypes import get_dtype
from automap.io import save_checkpoint
from automap.io._copy import copying_from, watching_writes
from automap.io.formats import FORMATS, PYTORCH
from automap.io.sharded import base_path
from automap.records import ParamRecord, ParamTable
from automap.transforms import apply_steps

from ._checksums import Checksum, piece_crcs
from ._pages import MappedPages
from ._progress import Progress
from ._writecheck import WriteCheck, Written
from .plan import ConversionPlan, PlannedTensor, needs_torch_to_cast

__all__ = ["Written", "output_records", "write_output"]


def output_records(source: ParamTable, plan: ConversionPlan) -> list[ParamRecord]:
    """One record per planned tensor, in output order; its `read()` reads, transforms and casts the source(s)."""
    return [ParamRecord(t.target, t.shape, t.dtype, i, _loader(source, t)) for i, t in enumerate(plan.tensors)]


def write_output(
    records: list[ParamRecord],
    out: Path,
    *,
    framework: Framework,
    pages: MappedPages,
    total: int,
    checksums: bool,
    progress: bool,
    overwrite: bool,
    max_shard_size: int | None,
) -> Written:
    """Stream the records into `out` (or its shards), atomically; what the read-back after the fsync needs.

    `pages` holds the source's files; `total` is the bytes to write (for the progress bar). A tensor handed to the
    writer as a view of a source file is expected as that view, and its bytes in the output are compared with it
    right after being written (`_writecheck`); any other is expected by its piece CRC-32s. Without `checksums`
    nothing is kept or compared and the result is empty, and the output is written past the page cache.
    """
    result = Written()
    direct = not checksums and FORMATS.for_suffix(base_path(out) if max_shard_size else out) is not PYTORCH
    with (
        _Digests(pages if checksums else None, result) as digests,
        Progress(total, len(records), label="writing", enabled=progress) as bar,
        copying_from(pages.locate),  # untransformed tensors go file to file, as cp copies
        bypassing_cache() if direct else contextlib.nullcontext(),
        timed("write"),
    ):
        save_checkpoint(
            _streamed(records, bar, pages, digests, read_ahead=not direct),
            out,
            framework=framework,
            overwrite=overwrite,
            max_shard_size=max_shard_size,
        )
    return result


def _loader(source: ParamTable, tensor: PlannedTensor) -> Callable[[], Array]:
    records = [source[n] for n in tensor.sources]

    def load() -> Array:
        with timed("read"):
            arrays = [r.read() for r in records]
        with timed("transform"):
            array = apply_steps(arrays, tensor.steps) if tensor.steps else arrays[0]
            if tensor.shape == () and array.shape == (1,):  # np.ascontiguousarray turns a 0-d scalar into (1,)
                array = array.reshape(())
            return _cast(array, tensor.source_dtype, tensor.dtype)

    return load


class _Digests:
    """What each tensor handed to the writer must read back as (`_checksums.Expected`).

    A view of one of the source files (`pages.holds`) is kept as it is: the read-back compares with the source's
    bytes. Any other tensor's piece CRC-32s are taken on a second thread while the writer writes it: both only
    read the array, and both release the GIL on large buffers (zlib, file writes), so the checksum costs no time
    where writing waits for the disk. One thread, one tensor at a time (the main thread is busy writing): `wait()`
    collects the previous checksum before the next tensor is read. Without `pages`, nothing is kept.
    """

    def __init__(self, pages: MappedPages | None, result: Written) -> None:
        self.values = result.expected
        self._pages = pages
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="automap-crc") if pages is not None else None
        self._pending: tuple[str, Future[Checksum]] | None = None
        self._check = WriteCheck(pages, result) if pages is not None else None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> _Digests:
        if self._check is not None:
            self._stack.enter_context(self._check)
            self._stack.enter_context(watching_writes(self._check.written))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                with timed("waiting for the crc thread"):
                    self.wait()
        finally:
            try:
                with timed("waiting for the write check"):
                    self._stack.__exit__(*exc)  # type: ignore[arg-type]
            finally:
                if self._pool is not None:
                    self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, name: str, array: Array) -> None:
        if self._pool is None or self._pages is None or self._check is None:
            return
        self.wait()
        self._check.handing_out(name)
        if self._pages.holds(array):  # its bytes stay in the source file: the read-back is compared with them
            self.values[name] = array
            return
        holder = [array]  # emptied by the worker, so that no reference outlives the checksum
        self._pending = (name, self._pool.submit(_crc32_of, holder))

    def wait(self) -> None:
        if self._pending is not None:
            name, future = self._pending
            self._pending = None
            self.values[name] = future.result()


def _crc32_of(holder: list[Array]) -> Checksum:
    with timed("crc of the written tensors (thread)"):
        return piece_crcs(holder.pop())


def _streamed(
    records: list[ParamRecord], bar: Progress, pages: MappedPages, digests: _Digests, *, read_ahead: bool
) -> list[ParamRecord]:
    """The same records, as the writer should consume them: contiguous, digested, counted, pages released.

    Each loader hands over a C-contiguous array (so the writer copies nothing more), has the source's pages read
    ahead, has what the verification needs of it kept (`_Digests`), and advances the progress bar. Writers ask for
    tensors in order and finish one before asking for the next, so when a loader runs the previous tensor is on its
    way to disk and the pages it was read from may be handed back.
    """
    handed_out = [0]  # bytes of the tensor handed out last

    def wrap(record: ParamRecord) -> ParamRecord:
        inner = record.read

        def load() -> Array:
            with timed("waiting for the crc thread"):
                digests.wait()  # the previous tensor's checksum reads its pages too
            pages.used(handed_out[0])
            handed_out[0] = 0
            array = inner()
            if read_ahead:  # a view of a mapped source: let the disk stream while earlier data is written
                with timed("read"):
                    pages.prefetch(array)
            if not array.flags.c_contiguous:
                with timed("transform"):
                    array = np.ascontiguousarray(array).reshape(array.shape)  # keeps a 0-d scalar 0-d
            digests.add(record.name, array)
            bar.advance(record.nbytes)
            handed_out[0] = record.nbytes
            return array

        return ParamRecord(record.name, record.shape, record.dtype, record.index, load)

    return [wrap(r) for r in records]


def _cast(array: Array, source: str, target: str) -> Array:
    if not needs_torch_to_cast(source, target):
        return array if source == target else array.astype(get_dtype(target).storage)  # C-ordered, 0-d kept 0-d
    # numpy has no bfloat16 or float8; torch rounds them the way the frameworks do (checked installed in the plan)
    import torch

    from automap.io.torch import to_numpy, to_torch

    return to_numpy(to_torch(array, source).to(getattr(torch, target)))
