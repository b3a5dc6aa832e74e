"""Parallel conversion on one host: the shards of a sharded output written and verified by worker processes.

Each worker is a fork of this process, so it has the source table and the plan without reading anything again.
It takes the next shard no worker has taken, streams it into a hidden file beside the shard's final name (written
atomically, as every output is), re-reads and compares that file as the serial path does, and reports. A worker
holds what the serial path holds, about one tensor, so memory grows with the number of workers, not with the
checkpoint.

Invariants:

- Nothing gets a final name until every worker has finished without a problem; then the shards are renamed into
  place and the index is written last (`automap.io.sharded.place`).
- On any failure (a worker's error, a worker that died, Ctrl-C) the other workers are stopped and every hidden
  file is removed: neither a half-written file nor a partial set of shards appears.
- A worker's error reaches the caller as the same `AutomapError` class with the same message; anything else a
  worker raises is a bug and keeps its traceback text.
"""

from __future__ import annotations

import multiprocessing
import resource
import secrets
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from automap import _errors
from automap._errors import AutomapError, ConversionError
from automap._text import human_bytes
from automap._types import Framework
from automap.io import load_checkpoint
from automap.io.sharded import ShardLayout, place
from automap.records import ParamRecord

from ._pages import MappedPages
from ._progress import Progress
from .plan import ConversionPlan, installed
from .readback import verify_output
from .writer import write_output

__all__ = ["WorkerReport", "WorkersResult", "can_fork", "write_in_workers"]


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did.

    Attributes:
        worker: its number, from 1.
        shards: how many shards it wrote (and verified).
        nbytes: the tensor bytes it wrote.
        seconds: its wall time, from its start to its last shard verified.
        peak_rss: its peak resident memory in bytes (a fork starts with what its parent held).
    """

    worker: int
    shards: int
    nbytes: int
    seconds: float
    peak_rss: int

    @property
    def throughput(self) -> float:
        """Bytes written (and verified) per second."""
        return self.nbytes / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One line for the conversion report."""
        plural = "" if self.shards == 1 else "s"
        return (
            f"worker {self.worker}: {self.shards} shard{plural}, {human_bytes(self.nbytes)} in {self.seconds:.1f} s "
            f"({human_bytes(int(self.throughput))}/s), peak memory {human_bytes(self.peak_rss)}"
        )


@dataclass(frozen=True)
class WorkersResult:
    """The workers' reports, how many tensors were verified and with what."""

    reports: tuple[WorkerReport, ...]
    verified: int
    how: str


def can_fork() -> bool:
    """Whether this platform starts workers by forking (Linux, macOS); elsewhere conversion runs in one process."""
    return "fork" in multiprocessing.get_all_start_methods()


def write_in_workers(
    shards: ShardLayout,
    files: Sequence[tuple[Path, list[ParamRecord]]],
    plan: ConversionPlan,
    *,
    framework: Framework,
    source_files: Sequence[Path],
    workers: int,
    verify: bool,
    overwrite: bool,
    progress: bool,
) -> WorkersResult:
    """Write (and verify) the shards of `files` in `workers` processes, then place them and the index.

    Raises:
        AutomapError: a worker's error (its class and message), or the index does not read back as written.
    """
    hidden = [path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}") for path, _ in files]
    context = multiprocessing.get_context("fork")
    taken = context.Value("l", 0)
    started: list[tuple[Any, Connection]] = []
    total = sum(r.nbytes for _, records in files for r in records)
    if verify and installed("torch") and files[0][0].suffix in (".safetensors", ".pth", ".pt", ".bin"):
        import torch  # noqa: F401  # imported once here rather than by every worker's read-back; starts no thread
    try:
        for number in range(1, workers + 1):
            receiver, sender = context.Pipe(duplex=False)
            task = _Task(number, files, hidden, plan, framework, source_files, verify)
            process = context.Process(target=task.run, args=(taken, sender), name=f"automap-worker-{number}")
            process.start()
            sender.close()  # the worker holds the other end: end of file once it is gone
            started.append((process, receiver))
        with Progress(total, len(files), label=f"converting ({workers} workers)", enabled=progress) as bar:
            reports, verified, hows = _collect(started, bar)
        place(shards, hidden, overwrite=overwrite)
    except BaseException:
        for process, _ in started:
            if process.is_alive():
                process.terminate()
        for process, _ in started:
            process.join()
        for path in hidden:
            path.unlink(missing_ok=True)
        raise
    finally:
        for _, receiver in started:
            receiver.close()
    how = "; ".join(f"{h} ({n} shard{'s' if n > 1 else ''})" for h, n in hows.items())
    if verify:
        _check_index(shards, files)
        how += f", and automap reads {shards.index.name} back"
    return WorkersResult(tuple(sorted(reports, key=lambda r: r.worker)), verified, how)


def _collect(started: list[tuple[Any, Connection]], bar: Progress) -> tuple[list[WorkerReport], int, dict[str, int]]:
    """Wait for every worker's messages until each has reported; raise the first failure."""
    reports: list[WorkerReport] = []
    verified = 0
    hows: dict[str, int] = {}
    waiting = {receiver: process for process, receiver in started}
    while waiting:
        for ready in wait(list(waiting)):
            assert isinstance(ready, Connection)
            try:
                message = ready.recv()
            except EOFError:  # the worker is gone without a word: killed, or out of memory
                process = waiting.pop(ready)
                process.join()
                msg = (
                    f"worker {process.name} stopped (exit status {process.exitcode}) before finishing its shards; "
                    "nothing was written"
                )
                raise ConversionError(msg) from None
            kind = message[0]
            if kind == "shard":
                bar.advance(message[1])
            elif kind == "done":
                report, count, worker_hows = message[1:]
                reports.append(report)
                verified += count
                for how, n in worker_hows.items():
                    hows[how] = hows.get(how, 0) + n
                waiting.pop(ready).join()
            elif kind == "error":
                error_class = getattr(_errors, message[1], ConversionError)
                raise error_class(message[2])
            else:
                msg = f"a conversion worker failed:\n{message[1]}"
                raise RuntimeError(msg)
    return reports, verified, hows


def _check_index(shards: ShardLayout, files: Sequence[tuple[Path, list[ParamRecord]]]) -> None:
    """The index must read back listing every tensor in the order written; otherwise everything is removed."""
    problem = ""
    try:
        names = list(load_checkpoint(shards.index).names)
    except AutomapError as error:
        problem = f"automap cannot read the index back: {error}"
    else:
        if names != [r.name for _, records in files for r in records]:
            problem = f"the index {shards.index.name} does not list the tensors in the order written"
    if problem:
        for path in [*shards.files, shards.index]:
            path.unlink(missing_ok=True)
        msg = f"verification of {str(shards.index)!r} failed, so every shard and the index were removed: {problem}"
        raise ConversionError(msg)


@dataclass(frozen=True)
class _Task:
    """What a worker needs; it reaches the worker by fork, never pickled (the records' loaders are closures)."""

    number: int
    files: Sequence[tuple[Path, list[ParamRecord]]]
    hidden: Sequence[Path]
    plan: ConversionPlan
    framework: Framework
    source_files: Sequence[Path]
    verify: bool

    def run(self, taken: Any, sender: Connection) -> None:
        """The worker's body: shards until none is left, then a report; an error is sent, never raised."""
        try:
            sender.send(("done", *self._shards(taken, sender)))
        except AutomapError as error:
            sender.send(("error", type(error).__name__, str(error)))
        except BaseException:
            sender.send(("bug", traceback.format_exc()))
        finally:
            sender.close()

    def _shards(self, taken: Any, sender: Connection) -> tuple[WorkerReport, int, dict[str, int]]:
        if "torch" in sys.modules:  # as torch's own data-loading workers do: a fork's thread pool starts afresh
            sys.modules["torch"].set_num_threads(1)
        start = time.perf_counter()
        count = verified = nbytes = 0
        hows: dict[str, int] = {}
        with MappedPages(self.source_files) as pages:
            while True:
                with taken.get_lock():
                    shard = int(taken.value)
                    taken.value += 1
                if shard >= len(self.files):
                    break
                records, hidden = self.files[shard][1], self.hidden[shard]
                size = sum(r.nbytes for r in records)
                written = write_output(
                    records,
                    hidden,
                    framework=self.framework,
                    pages=pages,
                    total=size,
                    checksums=self.verify,
                    progress=False,
                    overwrite=False,
                    max_shard_size=None,
                )
                pages.release()
                if self.verify:
                    n, how = verify_output(
                        [(hidden, records)], None, self.plan, written, pages, total=size, progress=False
                    )
                    pages.release()
                    verified += n
                    hows[how] = hows.get(how, 0) + 1
                count += 1
                nbytes += size
                sender.send(("shard", size))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        report = WorkerReport(self.number, count, nbytes, time.perf_counter() - start, peak)
        return report, verified, hows
