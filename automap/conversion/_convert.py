"""`convert` and its `ConversionReport`: check everything first, then stream, write atomically and verify.

This module runs the steps in turn and checks the output path; each step is a module of its own:

1. the output path is checked here: its format and that it can be written (`check_output`) before the source is
   read, then that it is none of the source's files;
2. `plan` checks the mapping against the checkpoints and works out every output tensor;
3. `writer` streams the tensors into the output, one at a time;
4. `readback` re-opens the output and compares every tensor with what was written.

Invariants:

- Nothing is written until the output path and the whole mapping have been checked, and every problem found in
  the mapping is reported at once.
- The output appears atomically (never a partial file; with `max_shard_size`, never a partial set of shards),
  and an output that fails its check is removed.
- The mapped source (and then output) files are handed back page by page as the conversion moves on (`_pages`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from automap._advice import option, option_name
from automap._errors import ConversionError
from automap._text import human_bytes, shape_text
from automap._types import Framework, StrPath
from automap.dtypes import get_dtype
from automap.io import load_checkpoint
from automap.io.formats import FORMATS
from automap.io.sharded import index_path, layout, parse_size
from automap.mapping import load_mapping
from automap.records import DEFAULT_THRESHOLD, Match, NameMapping, ParamRecord, ParamTable

from ._outputs import check_output, refuse_writing_over
from ._outputs import source_files as files_holding
from ._pages import MappedPages
from ._workers import WorkerReport, WorkersResult, can_fork, write_in_workers
from .plan import ConversionPlan, is_restored_by_loader, output_framework, plan_conversion
from .readback import verify_output
from .writer import output_records, write_output

__all__ = ["ConversionReport", "check_direction", "convert", "infer_for_conversion"]


@dataclass(frozen=True)
class ConversionReport:
    """What `convert` did.

    Attributes:
        source: the source checkpoint.
        output: the file written (for a sharded output, its index).
        source_framework: the source's framework.
        target_framework: the output's framework (naming conventions and file flavour).
        tensors: how many tensors were written.
        nbytes: their total size.
        verified: how many were re-read and found bit-exact (0 when verification was skipped).
        verified_with: the loader used to re-read the output.
        cast_to: the dtype float tensors were cast to, or None.
        cast_count: how many tensors were cast.
        plan: the plan that was run.
        notes: further facts worth telling a person.
        shards: the shard files of a sharded output, in order (empty for a single file).
        workers: what each worker process did, when the shards were converted by several (`workers`).
        mapping: the mapping file used (empty when the mapping was given as an object); the place where the
            pairs accepted below the threshold are listed in full.
    """

    source: str
    output: str
    source_framework: Framework
    target_framework: Framework
    tensors: int
    nbytes: int
    verified: int
    verified_with: str
    cast_to: str | None
    cast_count: int
    plan: ConversionPlan
    notes: tuple[str, ...] = field(default=())
    shards: tuple[str, ...] = field(default=())
    mapping: str = ""
    workers: tuple[WorkerReport, ...] = field(default=())

    @property
    def target_checked(self) -> bool:
        """False when nothing told the target's names and shapes (a flat mapping without the target)."""
        return self.plan.target_checked

    def __repr__(self) -> str:
        shards = f" in {len(self.shards)} shards" if self.shards else ""
        return (
            f"<ConversionReport {self.source_framework} {self.source!r} -> {self.target_framework} {self.output!r}: "
            f"{self.tensors} tensors ({human_bytes(self.nbytes)}){shards}, {self.verified} verified>"
        )

    def lines(self) -> list[str]:
        """A short human-readable account, one fact per line."""
        out = [
            f"converted {self.tensors} tensors ({human_bytes(self.nbytes)}) {self.source} -> {self.output} "
            f"({self.source_framework} -> {self.target_framework})"
        ]
        if self.shards:
            names = [Path(s).name for s in self.shards]
            shown = ", ".join(names) if len(names) <= 3 else f"{names[0]}, ..., {names[-1]}"
            out.append(
                f"sharded into {len(names)} file{'s' if len(names) > 1 else ''} ({shown}) listed in {self.output}"
            )
        if self.cast_to:
            out.append(f"cast {self.cast_count} floating-point tensors to {self.cast_to}")
        for tensor in self.plan.automatic:
            out.append(f"automatic: {tensor.target}: {tensor.automatic}")
        if self.plan.left_out:
            out.append(
                f"WARNING: {len(self.plan.left_out)} target parameters have no source and were LEFT OUT "
                f"({option('allow_missing')}): {', '.join(self.plan.left_out)}"
            )
        if self.plan.accepted_low:
            out.append(self._accepted_low())
        if self.plan.restored_by_loader:
            out.append(
                f"left out {len(self.plan.restored_by_loader)} BatchNorm num_batches_tracked counters, "
                "which PyTorch's load_state_dict restores"
            )
        counters = {n for n in self.plan.unused_sources if is_restored_by_loader(n, self.source_framework)}
        unused = [n for n in self.plan.unused_sources if n not in counters]
        if counters:
            out.append(f"{len(counters)} BatchNorm num_batches_tracked counters are not needed by the target")
        if unused:
            shown = ", ".join(unused[:8]) + (", ..." if len(unused) > 8 else "")
            out.append(f"{len(unused)} source parameter{'' if len(unused) == 1 else 's'} not used: {shown}")
        out.extend(self.notes)
        out.extend(report.line() for report in self.workers)
        if self.verified and self.target_checked:
            out.append(f"verified {self.verified} tensors bit-exact (dtype, shape, CRC-32) with {self.verified_with}")
        elif self.verified:
            out.append(f"read back {self.verified} tensors bit-exact (dtype, shape, CRC-32) with {self.verified_with}")
        if not self.target_checked:
            out.append(
                "WARNING: NOT verified against the target model: a flat mapping records no target names or shapes, "
                "so a missing transpose or reshape would go unnoticed; pass --target TEMPLATE to check them"
            )
        return out

    def _accepted_low(self) -> str:
        """The warning for pairs converted below the confidence threshold, unreviewed."""
        low = self.plan.accepted_low
        shown = ", ".join(f"{p.target} <- {_source_name(p)} ({p.confidence:.2f})" for p in low[:_SHOWN_LOW])
        more = f", ... ({len(low)} in all)" if len(low) > _SHOWN_LOW else ""
        where = f"automap audit {self.mapping}" if self.mapping else "automap audit MAPPING"
        count = f"{len(low)} pair{'s' if len(low) > 1 else ''}"
        return (
            f"WARNING: {count} below the confidence threshold {self.plan.low_threshold:g} were converted UNREVIEWED "
            f"({option('accept_low_confidence')}): {shown}{more}; `{where}` lists them with their evidence"
        )


def convert(
    source: ParamTable | StrPath,
    mapping: NameMapping | StrPath,
    output: StrPath,
    *,
    target: ParamTable | StrPath | None = None,
    dtype: str | None = None,
    framework: Framework | None = None,
    allow_missing: bool = False,
    accept_low_confidence: bool = False,
    ignore_fingerprint: bool = False,
    overwrite: bool = False,
    verify: bool = True,
    progress: bool = False,
    max_shard_size: int | str | None = None,
    workers: int = 1,
) -> ConversionReport:
    """Convert a checkpoint with a mapping; the output's format follows its suffix.

    Everything is checked before anything is written: the source must be the checkpoint the mapping was made
    from, every source name must exist, shapes must fit (after the pair's transform), and every target must
    have a source. Then the tensors are streamed, one at a time, into `output` (written atomically), which is
    re-opened with its framework's own loader and compared bit-exact (dtype, shape and CRC-32 of every
    tensor). Memory holds about one tensor at a time, whatever the checkpoint's size.

    Args:
        source: the checkpoint to convert, or its table (`load_checkpoint`).
        mapping: a `NameMapping`, or a mapping file (versioned, or a flat `{target: source}` JSON object).
        output: the file to write: `.ckpt` (MindSpore), `.pth`/`.pt`/`.bin` (PyTorch) or `.safetensors`.
        target: the target's checkpoint or listing (or table). It sets the output order and shapes, and
            shows targets the mapping misses; without it, the mapping's pair order is used.
        dtype: cast floating-point tensors to this dtype ("float16", "bfloat16", ...); others are kept.
        framework: the naming flavour of a `.safetensors` output; defaults to the target's.
        allow_missing: leave out target parameters with no source instead of failing (they are listed).
        accept_low_confidence: convert even when pairs are below the mapping's confidence threshold.
        ignore_fingerprint: accept a source (or target) other than the one the mapping was made from, as
            long as names and shapes still fit.
        overwrite: replace an existing output.
        verify: re-open the output with its framework's loader and compare every tensor bit-exact.
        progress: draw a progress bar on stderr (on a terminal, for conversions that take a while).
        max_shard_size: split the output into shards of at most this many bytes of tensor data (`"2GB"`,
            `"500MiB"`, or an int) plus a HuggingFace-style index `OUTPUT.index.json` (see
            `automap.io.sharded`); `output` names the checkpoint as one file would be named, or the index.
        workers: convert the shards of a sharded output in this many processes, each streaming one tensor at a
            time; the shards and the index appear only once every worker has written and verified its shards. A
            single-file output is written in one process (a note says so).

    Returns:
        What was written and verified.

    Raises:
        ConversionError: the mapping does not fit the checkpoints (all problems listed), the output exists or
            cannot be written, the source and target look swapped (`check_direction`), or verification found a
            difference (the output is then removed).
        MappingFileError: the mapping file is malformed.
        CheckpointFormatError: a checkpoint cannot be read.
        MissingDependencyError: a cast to or from bfloat16 or float8 needs torch, which is not installed.

    Example:
        >>> report = convert("model.pth", "mapping.json", "model.ckpt")  # doctest: +SKIP
        >>> report.verified == report.tensors  # doctest: +SKIP
        True
    """
    shard_size = _shard_size(max_shard_size)
    if workers < 1:
        msg = f"{option_name('workers')} must be at least 1, not {workers}"
        raise ConversionError(msg)
    out = check_output(output, sharded=shard_size is not None, overwrite=overwrite)
    source_table = _table(source)
    source_files = files_holding(source_table)
    refuse_writing_over(source_files, [index_path(out)] if shard_size is not None else [out])
    target_table = _table(target) if target is not None else None
    check_direction(source_table, target_table, out)
    the_mapping = mapping if isinstance(mapping, NameMapping) else load_mapping(mapping)
    where = str(mapping) if not isinstance(mapping, NameMapping) else "the mapping"
    plan = plan_conversion(
        source_table,
        the_mapping,
        target=target_table,
        dtype=dtype,
        framework=output_framework(out, framework, target_table, the_mapping),
        allow_missing=allow_missing,
        accept_low_confidence=accept_low_confidence,
        ignore_fingerprint=ignore_fingerprint,
        where=where,
    )
    records = output_records(source_table, plan)
    if target_table is not None:
        _check_against_target(records, plan, target_table)
    files: list[tuple[Path, list[ParamRecord]]] = [(out, records)]
    index: Path | None = None
    if shard_size is not None:
        shards = layout(out, records, shard_size)
        files, index = [(path, list(group)) for path, group in shards.shards], shards.index
        refuse_writing_over(source_files, [path for path, _ in files])
    total = sum(t.nbytes for t in plan.tensors)
    notes = _dtype_notes(plan, target_table, dtype) + _workers_notes(workers, len(files), index is not None)
    if not verify:
        notes += (f"not verified: the output was not re-read ({option('verify', False)})",)
    parallel = min(workers, len(files)) if index is not None and can_fork() else 1
    run: WorkersResult | None = None
    if parallel > 1:
        assert shard_size is not None
        run = write_in_workers(
            shards,
            files,
            plan,
            framework=plan.framework,
            source_files=source_files,
            workers=parallel,
            verify=verify,
            overwrite=overwrite,
            progress=progress,
        )
        verified, how = run.verified, run.how
    else:
        verified, how = _write_here(
            records,
            (out, files, index),
            plan,
            source_files,
            total=total,
            shard_size=shard_size,
            verify=verify,
            progress=progress,
            overwrite=overwrite,
        )
    cast = [t for t in plan.tensors if t.dtype != t.source_dtype]
    return ConversionReport(
        source=source_table.source,
        output=str(index or out),
        source_framework=source_table.framework,
        target_framework=plan.framework,
        tensors=len(records),
        nbytes=total,
        verified=verified,
        verified_with=how,
        cast_to=dtype if cast else None,
        cast_count=len(cast),
        plan=plan,
        notes=notes,
        shards=tuple(str(path) for path, _ in files) if index is not None else (),
        mapping="" if isinstance(mapping, NameMapping) else str(mapping),
        workers=run.reports if run is not None else (),
    )


def _write_here(
    records: list[ParamRecord],
    where: tuple[Path, list[tuple[Path, list[ParamRecord]]], Path | None],
    plan: ConversionPlan,
    source_files: list[Path],
    *,
    total: int,
    shard_size: int | None,
    verify: bool,
    progress: bool,
    overwrite: bool,
) -> tuple[int, str]:
    """Write (and verify) the output in this process: how many tensors were verified, and with what.

    `where` is the output as one file would be named, each file written with its records, and the index or None.
    """
    out, files, index = where
    with MappedPages(source_files) as pages:
        digests = write_output(
            records,
            out,
            framework=plan.framework,
            pages=pages,
            total=total,
            checksums=verify,
            progress=progress,
            overwrite=overwrite,
            max_shard_size=shard_size,
        )
        pages.release()
        if not verify:
            return 0, ""
        verified = verify_output(files, index, plan, digests, pages, total=total, progress=progress)
        pages.release()
        return verified


def _workers_notes(workers: int, files: int, sharded: bool) -> tuple[str, ...]:
    """Say why fewer workers than asked for were used."""
    name = option_name("workers")
    if workers == 1:
        return ()
    if not sharded:
        return (
            f"note: {name} {workers} had no effect: workers convert the shards of a sharded output in parallel, and "
            f"this output is one file; split it with {option_name('max_shard_size')} to use them",
        )
    if not can_fork():
        return (f"note: {name} {workers} had no effect: this platform cannot fork worker processes",)
    if files < workers:
        return (f"note: {files} shard{'s' if files > 1 else ''}, so {min(workers, files)} worker(s) were used",)
    return ()


def check_direction(source: ParamTable, target: ParamTable | None, output: StrPath) -> None:
    """Refuse, before anything is written, a source and target that cannot be what they are given as.

    A listing cannot be converted (it holds no tensor data), and an output whose format belongs to one framework
    cannot take the names of a target that a checkpoint of the other framework defines: both come from swapped
    arguments (`convert template.ckpt --like model.pth -o out.ckpt`).

    Args:
        source: the checkpoint to convert.
        target: the target's checkpoint or listing, when known.
        output: the output file.

    Raises:
        ConversionError: the source is a listing, or the output's format disagrees with the target's framework.

    Example:
        >>> source, template = load_checkpoint("model.pth"), load_checkpoint("template.ckpt")  # doctest: +SKIP
        >>> check_direction(source, template, "out.ckpt")  # doctest: +SKIP
    """
    out = Path(output)
    if not source.has_data:
        msg = (
            f"the source {source.source!r} is a listing of names and shapes, with no tensor data to convert; the "
            "checkpoint to convert comes first, the target (which may be a listing) second"
        )
        raise ConversionError(msg)
    fmt = FORMATS.for_suffix(out)
    wanted = fmt.framework if fmt is not None else None
    if target is None or wanted is None or target.format not in _FRAMEWORK_FORMATS or target.framework == wanted:
        return
    msg = (
        f"the output {str(out)!r} is a {_NAMES[wanted]} checkpoint, but the target {target.source!r} is a "
        f"{_NAMES[target.framework]} model, whose names and order the output would take"
    )
    if source.format in _FRAMEWORK_FORMATS and source.framework == wanted:
        msg += (
            f"; did you swap them? automap convert {target.source} --like {source.source} -o {out} (the source is "
            "the checkpoint to convert; the target, a model of the output's framework)"
        )
    else:
        suffix = ".pth" if target.framework == "pytorch" else ".ckpt"
        msg += f"; name the output {suffix} (or .safetensors) to follow the target"
    raise ConversionError(msg)


def infer_for_conversion(
    source: ParamTable, template: ParamTable, *, threshold: float = DEFAULT_THRESHOLD, pins: NameMapping | None = None
) -> NameMapping:
    """Infer the mapping from `source` to the template's parameters (`automap convert --like`).

    Args:
        source: the checkpoint to convert.
        template: the target checkpoint or listing whose names, shapes and order the output takes.
        threshold: confidence below which a pair needs review.
        pins: a mapping whose reviewed pairs are kept as they are.

    Returns:
        The inferred mapping.

    Raises:
        MappingFileError: a reviewed pair of `pins` names a parameter that does not exist.

    Example:
        >>> mapping = infer_for_conversion(load_checkpoint("a.pth"), load_checkpoint("b.ckpt"))  # doctest: +SKIP
    """
    # the engine is heavy; a conversion with a given mapping never loads it
    from automap.engine.inference import infer_mapping

    return infer_mapping(source, template, threshold=threshold, pins=pins)


_NAMES = {"pytorch": "PyTorch", "mindspore": "MindSpore"}
_FRAMEWORK_FORMATS = (
    "pytorch",
    "mindspore-ckpt",
    "pytorch-dcp",
    "mindspore-distributed",
    "pytorch-fsdp",
)  # formats that settle the framework, unlike a guess from names
_SHOWN_LOW = 12


def _check_against_target(records: Sequence[ParamRecord], plan: ConversionPlan, target: ParamTable) -> None:
    """The output must hold the target's names and shapes (less what is left out), or it is not written at all."""
    expected = [r for r in target.params if r.name not in plan.left_out and r.name not in plan.restored_by_loader]
    if [(r.name, r.shape) for r in records] != [(r.name, r.shape) for r in expected]:
        wrong = next(
            (
                f"{a.name!r} {shape_text(a.shape)}"
                for a, b in zip(records, expected, strict=False)  # the first difference
                if (a.name, a.shape) != (b.name, b.shape)
            ),
            f"{len(records)} tensors where the target has {len(expected)}",
        )
        msg = f"the output would not match the target {target.source!r} ({wrong}); nothing was written"
        raise ConversionError(msg)


def _dtype_notes(plan: ConversionPlan, target: ParamTable | None, dtype: str | None) -> tuple[str, ...]:
    """Say the output's floating-point dtypes where the target's template differs, and how to follow it."""
    if target is None:
        return ()
    differing = []
    for tensor in plan.tensors:
        record = target.get(tensor.target)
        if record is not None and record.dtype != tensor.dtype and get_dtype(record.dtype).is_float:
            if get_dtype(tensor.dtype).is_float:
                differing.append((tensor.dtype, record.dtype))
    if not differing:
        return ()
    ours = "/".join(sorted({a for a, _ in differing}))
    theirs = sorted({b for _, b in differing})
    how = "keeps the source's dtypes" if dtype is None else f"is cast to {dtype} (--dtype)"
    text = (
        f"note: the output {how}: {len(differing)} tensor{'s are' if len(differing) > 1 else ' is'} {ours} where the "
        f"template has {'/'.join(theirs)}"
    )
    if len(theirs) == 1:
        text += f"; pass --dtype {theirs[0]} to follow the template"
    else:
        text += "; --dtype casts every floating-point tensor to one dtype"
    return (text,)


def _source_name(pair: Match) -> str:
    return pair.source if isinstance(pair.source, str) else " + ".join(pair.source_names)


def _table(value: ParamTable | StrPath) -> ParamTable:
    return value if isinstance(value, ParamTable) else load_checkpoint(value)


def _shard_size(value: int | str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as error:
        msg = f"{option_name('max_shard_size')}: {error}"
        raise ConversionError(msg) from None
