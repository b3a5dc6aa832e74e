"""Apply a mapping to a checkpoint: check everything first, then stream, write atomically and verify.

Invariants:

- Nothing is written until the whole mapping has been checked against the source checkpoint (and the
  target's listing when one is known), and every problem found is reported at once.
- The output follows the target's parameter order. Each output record's loader reads and transforms one
  source tensor (or one group of parts) when the writer asks for it, and every writer streams, so memory
  holds one tensor at a time, whatever the checkpoint's size. Pages of memory-mapped source and output
  files are handed back as the conversion moves on (`_pages`), so they do not pile up either.
- dtypes are kept bit-exact unless a cast is asked for; casts involving bfloat16 or float8, which numpy
  lacks, go through torch.
- The output appears atomically (never a partial file; with `max_shard_size`, never a partial set of
  shards) and is then re-opened with its framework's own loader, and every tensor's dtype, shape and CRC-32s
  (one per 16 MiB piece, `_checksums`) are compared with those of the transformed source tensor that was
  written. The CRC-32s are taken as each tensor is written, so the source is read once; those of the output
  are spread over a few threads, with a bounded amount of it in flight. A loader that reads a whole file into memory
  (`mindspore.load_checkpoint`) checks files up to `FRAMEWORK_CHECK_LIMIT`; larger ones are checked with
  automap's own lazy reader, and the report says which loader was used. So are files whose framework is not
  installed: converting between formats automap reads and writes itself needs neither framework.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from automap._advice import option, option_name
from automap._atomic import check_writable
from automap._errors import AutomapError, ConversionError, MissingDependencyError
from automap._text import first_line, human_bytes, shape_text
from automap._types import Array, Framework, StrPath
from automap.dtypes import all_dtype_names, dtype_from_mindspore, dtype_from_safetensors, get_dtype
from automap.io import load_checkpoint, save_checkpoint
from automap.io._copy import copying_from
from automap.io._framework import guess_framework
from automap.io.formats import FORMATS, MINDSPORE, PYTORCH, SAFETENSORS
from automap.io.sharded import base_path, files_of, index_path, layout, parse_size
from automap.mapping import fingerprint, load_mapping
from automap.records import Match, NameMapping, ParamRecord, ParamTable
from automap.transforms import Concat, Reshape, Split, Step, apply_steps, describe, output_shape

from ._checksums import Checksum, ChecksumPool, piece_crcs
from ._pages import MappedPages
from ._progress import Progress

__all__ = [
    "FRAMEWORK_CHECK_LIMIT",
    "ConversionPlan",
    "ConversionReport",
    "PlannedTensor",
    "Verifier",
    "check_mapping",
    "check_output",
    "convert",
    "infer_for_conversion",
    "is_restored_by_loader",
    "plan_conversion",
]

_SHOWN = 12  # problems quoted in one error line; `automap audit` lists them all
_SHOWN_PAIRS = 5
FRAMEWORK_CHECK_LIMIT = 1 << 30
"""Largest file verified with a loader that reads a whole file into memory (`mindspore.load_checkpoint`)."""


@dataclass(frozen=True, slots=True)
class PlannedTensor:
    """One output tensor: which source tensor(s) it is made from and how.

    Attributes:
        target: the output parameter's name.
        sources: the source names read (several when parts are concatenated).
        steps: layout steps applied to the source(s), automatic ones included.
        shape: the output shape.
        dtype: the output dtype.
        source_dtype: the sources' dtype (differs from `dtype` when a cast was asked for).
        automatic: what automap added on its own (a reshape over length-1 axes, an implied concat), or "".
    """

    target: str
    sources: tuple[str, ...]
    steps: tuple[Step, ...]
    shape: tuple[int, ...]
    dtype: str
    source_dtype: str
    automatic: str = ""

    @property
    def nbytes(self) -> int:
        """Size of the output tensor in bytes."""
        size = get_dtype(self.dtype).itemsize
        for dim in self.shape:
            size *= dim
        return size


@dataclass(frozen=True)
class ConversionPlan:
    """A checked conversion, ready to run.

    Attributes:
        tensors: the output tensors in target order.
        framework: whose naming conventions the output follows (the `.safetensors` flavour).
        left_out: targets with no source, left out because missing targets were allowed.
        restored_by_loader: targets left out because the target framework's loader restores them
            (PyTorch BatchNorm's `num_batches_tracked`).
        unused_sources: source parameters no output tensor reads.
        problems: everything that prevents the conversion; empty for a plan that can run.
    """

    tensors: tuple[PlannedTensor, ...]
    framework: Framework
    left_out: tuple[str, ...] = ()
    restored_by_loader: tuple[str, ...] = ()
    unused_sources: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<ConversionPlan to {self.framework}: {len(self.tensors)} tensors, {len(self.problems)} problems>"

    @property
    def automatic(self) -> tuple[PlannedTensor, ...]:
        """Tensors that got a layout step automap added on its own."""
        return tuple(t for t in self.tensors if t.automatic)


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
        if self.verified:
            out.append(f"verified {self.verified} tensors bit-exact (dtype, shape, CRC-32) with {self.verified_with}")
        return out


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

    Returns:
        What was written and verified.

    Raises:
        ConversionError: the mapping does not fit the checkpoints (all problems listed), the output exists or
            cannot be written, or verification found a difference (the output is then removed).
        MappingFileError: the mapping file is malformed.
        CheckpointFormatError: a checkpoint cannot be read.
        MissingDependencyError: a cast to or from bfloat16 or float8 needs torch, which is not installed.

    Example:
        >>> report = convert("model.pth", "mapping.json", "model.ckpt")  # doctest: +SKIP
        >>> report.verified == report.tensors  # doctest: +SKIP
        True
    """
    shard_size = _shard_size(max_shard_size)
    out = check_output(output, sharded=shard_size is not None, overwrite=overwrite)
    _check_output_kind(out)
    source_table = _table(source)
    source_files = _source_files(source_table)
    _refuse_writing_over(source_files, [index_path(out)] if shard_size is not None else [out])
    target_table = _table(target) if target is not None else None
    the_mapping = mapping if isinstance(mapping, NameMapping) else load_mapping(mapping)
    where = str(mapping) if not isinstance(mapping, NameMapping) else "the mapping"
    plan = plan_conversion(
        source_table,
        the_mapping,
        target=target_table,
        dtype=dtype,
        framework=_output_framework(out, framework, target_table, the_mapping),
        allow_missing=allow_missing,
        accept_low_confidence=accept_low_confidence,
        ignore_fingerprint=ignore_fingerprint,
        where=where,
    )
    records = _output_records(source_table, plan)
    files: list[tuple[Path, list[ParamRecord]]] = [(out, records)]
    index: Path | None = None
    if shard_size is not None:
        shards = layout(out, records, shard_size)
        files, index = [(path, list(group)) for path, group in shards.shards], shards.index
        _refuse_writing_over(source_files, [path for path, _ in files])
    total = sum(t.nbytes for t in plan.tensors)
    with MappedPages(source_files) as pages:
        with (
            _Digests(enabled=verify) as digests,
            Progress(total, len(records), label="writing", enabled=progress) as bar,
            copying_from(pages.locate),  # untransformed tensors go file to file, as cp copies
        ):
            save_checkpoint(
                _streamed(records, bar, pages, digests),
                out,
                framework=plan.framework,
                overwrite=overwrite,
                max_shard_size=shard_size,
            )
        pages.release()
        verified, how = 0, ""
        notes: tuple[str, ...] = (
            () if verify else (f"not verified: the output was not re-read ({option('verify', False)})",)
        )
        if verify:
            for path, _ in files:
                pages.add(path)
            with Progress(total, len(records), label="verifying", enabled=progress) as bar:
                verified, how = _verify_output(files, index, plan, digests.values, bar, pages)
            pages.release()
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
    )


def check_output(output: StrPath, *, sharded: bool = False, overwrite: bool = False) -> Path:
    """Refuse an output that cannot be written, before any work is done.

    Args:
        output: the output file (for a sharded output, the name one file would have, or the index's name).
        sharded: the output will be split into shards plus an index.
        overwrite: an existing output may be replaced.

    Returns:
        The output as one file would be named (`model.safetensors` also for `model.safetensors.index.json`).

    Raises:
        ConversionError: the output (or, sharded, its index) exists without `overwrite`, is a directory, or its
            folder does not exist.
        MissingDependencyError: the output is a PyTorch file and torch is not installed.

    Example:
        >>> check_output("model.ckpt", sharded=True)  # doctest: +SKIP
        PosixPath('model.ckpt')
    """
    # automap's .pth writer refers to torch's own tensor-rebuilding functions, so it needs torch
    if FORMATS.for_suffix(base_path(output) if sharded else Path(output)) is PYTORCH and not _installed("torch"):
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


def plan_conversion(
    source: ParamTable,
    mapping: NameMapping,
    *,
    target: ParamTable | None = None,
    dtype: str | None = None,
    framework: Framework | None = None,
    allow_missing: bool = False,
    accept_low_confidence: bool = False,
    ignore_fingerprint: bool = False,
    where: str = "the mapping",
) -> ConversionPlan:
    """Check a mapping against the checkpoints and work out every output tensor, reading no tensor data.

    Args:
        source: the source checkpoint's table.
        mapping: the mapping.
        target: the target's table (checkpoint or listing), when known.
        dtype: cast floating-point tensors to this dtype.
        framework: the output's naming flavour; defaults to the target's.
        allow_missing: leave out targets with no source instead of failing.
        accept_low_confidence: accept pairs below the mapping's threshold.
        ignore_fingerprint: accept checkpoints other than the ones the mapping was made from.
        where: how to name the mapping in messages (its file name).

    Returns:
        A plan with no problems.

    Raises:
        ConversionError: anything prevents the conversion; every problem is listed in one message.
        MissingDependencyError: a cast involves bfloat16 or float8 and torch is not installed.

    Example:
        >>> plan = plan_conversion(load_checkpoint("model.pth"), load_mapping("mapping.json"))  # doctest: +SKIP
        >>> [t.target for t in plan.tensors][:1]  # doctest: +SKIP
        ['conv1.weight']
    """
    if dtype is not None and (dtype not in all_dtype_names() or not get_dtype(dtype).is_float):
        floats = ", ".join(name for name in all_dtype_names() if get_dtype(name).is_float)
        msg = f"cannot cast to {dtype!r}: give a floating-point dtype ({floats})"
        raise ConversionError(msg)
    if not ignore_fingerprint:
        _check_fingerprint("source", mapping, source, where)
        if target is not None:
            _check_fingerprint("target", mapping, target, where)
    plan = _plan(source, mapping, target, dtype, framework, allow_missing)
    if plan.problems:
        count = len(plan.problems)
        shown = "; ".join(plan.problems[:_SHOWN])
        more = f"; ... and {count - _SHOWN} more (automap audit lists them all)" if count > _SHOWN else ""
        msg = f"{where} does not fit {source.source!r}: {count} problem{'s' if count > 1 else ''}: {shown}{more}"
        raise ConversionError(msg)
    low = low_confidence(mapping)
    if low and not accept_low_confidence:
        shown = ", ".join(f"{p.target} <- {_source_text(p)} ({p.confidence:.2f})" for p in low[:_SHOWN_PAIRS])
        more = ", ..." if len(low) > _SHOWN_PAIRS else ""
        msg = (
            f"{where}: {len(low)} pair{'s are' if len(low) > 1 else ' is'} below the confidence threshold "
            f"{mapping.threshold:g}: {shown}{more}; review with `automap audit`, mark the right ones reviewed with "
            f"`automap audit MAPPING --accept TARGET`, or pass {option('accept_low_confidence')}"
        )
        raise ConversionError(msg)
    _check_cast_possible(plan)
    return plan


def check_mapping(mapping: NameMapping, source: ParamTable, target: ParamTable | None = None) -> list[str]:
    """Every way a mapping fails to fit its checkpoints, as readable lines (empty when it fits).

    Args:
        mapping: the mapping.
        source: the source checkpoint's table.
        target: the target's table, when known.

    Returns:
        One line per problem: fingerprints, unknown or reused source names, shapes, transforms, missing targets.

    Example:
        >>> check_mapping(load_mapping("m.json"), load_checkpoint("model.pth"))  # doctest: +SKIP
        []
    """
    problems = []
    for side, table in (("source", source), ("target", target)):
        if table is not None:
            found = _fingerprint_problem(side, mapping, table)
            if found:
                problems.append(found)
    plan = _plan(source, mapping, target, None, None, allow_missing=False)
    return [*problems, *plan.problems]


def low_confidence(mapping: NameMapping) -> tuple[Match, ...]:
    """Pairs with a source whose confidence is below the mapping's threshold and that no person reviewed."""
    return tuple(p for p in mapping.pairs if p.source is not None and p.confidence < mapping.threshold and not p.pinned)


def is_restored_by_loader(name: str, framework: Framework) -> bool:
    """True for a target the framework's own loader fills in when absent (PyTorch's `num_batches_tracked`)."""
    return framework == "pytorch" and name.rsplit(".", 1)[-1] == "num_batches_tracked"


def infer_for_conversion(
    source: ParamTable, template: ParamTable, *, threshold: float = 0.5, pins: NameMapping | None = None
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


# --- planning -------------------------------------------------------------------------------------------------


def _plan(
    source: ParamTable,
    mapping: NameMapping,
    target: ParamTable | None,
    dtype: str | None,
    framework: Framework | None,
    allow_missing: bool,
) -> ConversionPlan:
    target_framework: Framework = (
        framework or (target.framework if target is not None else None) or _mapping_framework(mapping)
    )
    problems: list[str] = []
    by_target = {p.target: p for p in mapping.pairs}
    if target is not None:
        order: list[tuple[str, Match | None, tuple[int, ...] | None]] = [
            (r.name, by_target.get(r.name), r.shape) for r in target.params
        ]
        unknown = [p.target for p in mapping.pairs if p.target not in target]
        if unknown:
            problems.append(
                f"{_count(unknown, 'target')} in the mapping {'is' if len(unknown) == 1 else 'are'} not "
                f"parameters of {target.source!r}: {_names(unknown)}"
            )
    else:
        order = [(p.target, p, _recorded_target_shape(p)) for p in mapping.pairs]
    tensors: list[PlannedTensor] = []
    missing: list[str] = []
    restored: list[str] = []
    uses: dict[str, list[tuple[str, tuple[Step, ...], int]]] = {}
    for name, pair, expected in order:
        if pair is None or pair.source is None:
            if is_restored_by_loader(name, target_framework):
                restored.append(name)
            else:
                missing.append(name)
            continue
        planned, problem = _plan_pair(source, pair, expected, dtype)
        if problem or planned is None:
            problems.append(problem)
            continue
        tensors.append(planned)
        for source_name in pair.source_names:
            uses.setdefault(source_name, []).append((name, pair.transform, len(pair.source_names)))
    problems.extend(_reuse_problems(uses))
    if missing and not allow_missing:
        problems.append(
            f"{_count(missing, 'target parameter')} {'has' if len(missing) == 1 else 'have'} no source: "
            f"{_names(missing)} (give {'it a source' if len(missing) == 1 else 'them sources'} in the mapping, "
            f"or pass {option('allow_missing')} to leave {'it' if len(missing) == 1 else 'them'} out of the output)"
        )
    if not tensors and not problems:
        problems.append("no target parameter has a source; there is nothing to convert")
    unused = tuple(name for name in source.names if name not in uses)
    return ConversionPlan(
        tensors=tuple(tensors),
        framework=target_framework,
        left_out=tuple(missing),
        restored_by_loader=tuple(restored),
        unused_sources=unused,
        problems=tuple(problems),
    )


def _plan_pair(
    source: ParamTable, pair: Match, expected: tuple[int, ...] | None, dtype: str | None
) -> tuple[PlannedTensor | None, str]:
    """The output tensor of one pair, or the problem that prevents it."""
    names = pair.source_names
    records = [source.get(n) for n in names]
    absent = [n for n, r in zip(names, records, strict=True) if r is None]
    if absent:
        hints = [difflib.get_close_matches(n, source.names, n=1) for n in absent]
        hint = next((f" (did you mean {h[0]!r}?)" for h in hints if h), "")
        return None, f"target {pair.target!r}: source {_names(absent)} not in {source.source!r}{hint}"
    found = [r for r in records if r is not None]
    dtypes = {r.dtype for r in found}
    if len(dtypes) > 1:
        return None, f"target {pair.target!r}: its sources have different dtypes {sorted(dtypes)}"
    steps: tuple[Step, ...] = pair.transform
    automatic = ""
    shapes = [r.shape for r in found]
    shapes_recorded = pair.source_shape is not None
    if len(found) > 1 and not steps and not shapes_recorded:
        steps = (Concat(0),)
        automatic = f"concatenated {len(found)} sources along axis 0"
    try:
        shape = output_shape(shapes, steps, where=f"target {pair.target!r}")
    except AutomapError as error:
        return None, str(error)
    if expected is not None and shape != expected:
        if not pair.transform and not shapes_recorded and _squeezed(shape) == _squeezed(expected):
            steps = (*steps, Reshape(expected))
            change = f"reshaped {shape_text(shape)} -> {shape_text(expected)} (they differ only in length-1 axes)"
            automatic = f"{automatic}; {change}" if automatic else change
            shape = expected
        else:
            how = f"after {describe(steps)}" if steps else "with no transform"
            given = " + ".join(shape_text(s) for s in shapes)
            return None, (
                f"target {pair.target!r}: source {_source_text(pair)} {given} gives {shape_text(shape)} {how}, "
                f"the target needs {shape_text(expected)}"
            )
    source_dtype = found[0].dtype
    out_dtype = dtype if dtype is not None and get_dtype(source_dtype).is_float else source_dtype
    return PlannedTensor(pair.target, names, steps, shape, out_dtype, source_dtype, automatic), ""


def _reuse_problems(uses: dict[str, list[tuple[str, tuple[Step, ...], int]]]) -> list[str]:
    """A source may feed several targets only when each takes a different part of the same split."""
    problems = []
    for name, items in uses.items():
        if len(items) < 2:
            continue
        splits = [_first_split(steps) if count == 1 else None for _, steps, count in items]
        keys = {(s.axis, s.parts) for s in splits if s is not None}
        indexes = [s.index for s in splits if s is not None]
        if all(s is not None for s in splits) and len(keys) == 1 and len(set(indexes)) == len(indexes):
            continue
        targets = [t for t, _, _ in items]
        problems.append(
            f"source {name!r} feeds {len(items)} targets ({_names(targets)}) (a source may feed only one target, "
            "unless each takes a different part of the same split)"
        )
    return problems


def _first_split(steps: Sequence[Step]) -> Split | None:
    return next((s for s in steps if isinstance(s, Split)), None)


def _recorded_target_shape(pair: Match) -> tuple[int, ...] | None:
    """The target shape a mapping records for a pair, or None when it records no shapes (a flat mapping)."""
    if pair.target_shape or pair.source_shape is not None:
        return tuple(pair.target_shape)
    return None


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _fingerprint_problem(side: str, mapping: NameMapping, table: ParamTable) -> str:
    endpoint = mapping.source if side == "source" else mapping.target
    if not endpoint.fingerprint:
        return ""
    actual = fingerprint(table)
    if actual == endpoint.fingerprint:
        return ""
    made_from = f"{endpoint.path!r}, " if endpoint.path else ""
    return (
        f"{table.source!r} is not the {side} checkpoint the mapping was made from ({made_from}{endpoint.params} "
        f"parameters, fingerprint {endpoint.fingerprint}; this file: {len(table)} parameters, fingerprint {actual})"
    )


def _check_fingerprint(side: str, mapping: NameMapping, table: ParamTable, where: str) -> None:
    problem = _fingerprint_problem(side, mapping, table)
    if problem:
        msg = (
            f"{where}: {problem}; give the right file, re-run `automap infer` for this one, or pass "
            f"{option('ignore_fingerprint')} if its names and shapes still fit"
        )
        raise ConversionError(msg)


def _mapping_framework(mapping: NameMapping) -> Framework:
    side = mapping.target
    if side.path or side.fingerprint or side.params:
        return side.framework
    return guess_framework(p.target for p in mapping.pairs)  # a flat mapping says nothing about frameworks


def _output_framework(
    out: Path, explicit: Framework | None, target: ParamTable | None, mapping: NameMapping
) -> Framework:
    fmt = FORMATS.for_suffix(out)
    if fmt is not None and fmt.framework is not None:
        return fmt.framework
    if explicit is not None:
        return explicit
    return target.framework if target is not None else _mapping_framework(mapping)


def _check_output_kind(out: Path) -> None:
    fmt = FORMATS.for_suffix(out)
    if fmt is None or fmt.write_to is None or not fmt.holds_data:
        msg = (
            f"cannot tell what to write for {out.name!r}: name the output .ckpt (MindSpore), .pth (PyTorch) "
            "or .safetensors"
        )
        raise ConversionError(msg)


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


def _source_files(table: ParamTable) -> list[Path]:
    """The files holding the source's data (the shards of an index), for page release and overwrite checks."""
    with contextlib.suppress(OSError, ValueError):
        source = Path(table.source)
        if source.is_file():
            return [source, *(f for f in files_of(source) if f != source)]
    return []


def _refuse_writing_over(sources: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Refuse an output that is one of the source's files (streaming would read what it overwrites)."""
    resolved = {s.resolve() for s in sources if s.exists()}
    for output in outputs:
        if output.exists() and output.resolve() in resolved:
            msg = f"output {str(output)!r} is the source checkpoint; write to another file"
            raise ConversionError(msg)


def _source_text(pair: Match) -> str:
    names = pair.source_names
    return repr(names[0]) if len(names) == 1 else "[" + ", ".join(repr(n) for n in names) + "]"


def _count(items: Sequence[str], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _names(items: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# --- running --------------------------------------------------------------------------------------------------


def _output_records(source: ParamTable, plan: ConversionPlan) -> list[ParamRecord]:
    return [ParamRecord(t.target, t.shape, t.dtype, i, _loader(source, t)) for i, t in enumerate(plan.tensors)]


def _loader(source: ParamTable, tensor: PlannedTensor) -> Callable[[], Array]:
    records = [source[n] for n in tensor.sources]

    def load() -> Array:
        arrays = [r.read() for r in records]
        array = apply_steps(arrays, tensor.steps) if tensor.steps else arrays[0]
        if tensor.shape == () and array.shape == (1,):  # np.ascontiguousarray turns a 0-d scalar into shape (1,)
            array = array.reshape(())
        return _cast(array, tensor.source_dtype, tensor.dtype)

    return load


class _Digests:
    """Piece CRC-32s (`_checksums`) of each tensor handed to the writer, on a second thread meanwhile.

    Both only read the array, and both release the GIL on large buffers (zlib, file writes), so the checksum
    costs no time where writing waits for the disk. One thread, one tensor at a time (the main thread is busy
    writing): `wait()` collects the previous checksum before the next tensor is read.
    """

    def __init__(self, *, enabled: bool) -> None:
        self.values: dict[str, Checksum] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="automap-crc") if enabled else None
        self._pending: tuple[str, Future[Checksum]] | None = None

    def __enter__(self) -> _Digests:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, name: str, array: Array) -> None:
        if self._pool is None:
            return
        self.wait()
        holder = [array]  # emptied by the worker, so that no reference outlives the checksum
        self._pending = (name, self._pool.submit(_crc32_of, holder))

    def wait(self) -> None:
        if self._pending is not None:
            name, future = self._pending
            self._pending = None
            self.values[name] = future.result()


def _crc32_of(holder: list[Array]) -> Checksum:
    return piece_crcs(holder.pop())


def _streamed(records: list[ParamRecord], bar: Progress, pages: MappedPages, digests: _Digests) -> list[ParamRecord]:
    """The same records, as the writer should consume them: contiguous, digested, counted, pages released.

    Each loader hands over a C-contiguous array (so the writer copies nothing more), has the source's pages read
    ahead, has its CRC-32 taken for the verification, and advances the progress bar. Writers ask for tensors in
    order and finish one before asking for the next, so when a loader runs the previous tensor is on its way to
    disk and the pages it was read from may be handed back.
    """
    handed_out = [0]  # bytes of the tensor handed out last

    def wrap(record: ParamRecord) -> ParamRecord:
        inner = record.read

        def load() -> Array:
            digests.wait()  # the previous tensor's checksum reads its pages too
            pages.used(handed_out[0])
            handed_out[0] = 0
            array = inner()
            pages.prefetch(array)  # a view of a mapped source: let the disk stream while earlier data is written
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array).reshape(array.shape)  # keeps a 0-d scalar 0-d
            digests.add(record.name, array)
            bar.advance(record.nbytes)
            handed_out[0] = record.nbytes
            return array

        return ParamRecord(record.name, record.shape, record.dtype, record.index, load)

    return [wrap(r) for r in records]


def _needs_torch_to_cast(source: str, target: str) -> bool:
    return source != target and not (get_dtype(source).numpy_native and get_dtype(target).numpy_native)


def _check_cast_possible(plan: ConversionPlan) -> None:
    """Refuse, before anything is written, a cast that needs torch when torch is not installed."""
    needing = next((t for t in plan.tensors if _needs_torch_to_cast(t.source_dtype, t.dtype)), None)
    if needing is not None and not _installed("torch"):
        msg = (
            f"casting {needing.source_dtype} to {needing.dtype} ({needing.target!r}) needs torch, which is not "
            "installed; run: pip install 'automap[torch]'"
        )
        raise MissingDependencyError(msg)


def _cast(array: Array, source: str, target: str) -> Array:
    if not _needs_torch_to_cast(source, target):
        return array if source == target else array.astype(get_dtype(target).storage)  # C-ordered, 0-d kept 0-d
    # numpy has no bfloat16 or float8; torch rounds them the way the frameworks do (checked installed in the plan)
    import torch

    from automap.io.torch import to_numpy, to_torch

    return to_numpy(to_torch(array, source).to(getattr(torch, target)))


def _installed(framework: str) -> bool:
    """Whether a framework can be imported, found without importing it."""
    return importlib.util.find_spec(framework) is not None


# --- verification ---------------------------------------------------------------------------------------------

Reader = Callable[[str], tuple[str, Array] | None]


class _UnreadableError(Exception):
    """The framework's loader refused the file automap wrote."""


def _verify_output(
    files: list[tuple[Path, list[ParamRecord]]],
    index: Path | None,
    plan: ConversionPlan,
    digests: dict[str, Checksum],
    bar: Progress,
    pages: MappedPages,
) -> tuple[int, str]:
    """Re-open every output file with its framework's loader and compare each tensor with what was written."""
    problems: list[str] = []
    hows: dict[str, int] = {}
    for path, records in files:
        verifier, how = verifier_for(path, plan)
        hows[how] = hows.get(how, 0) + 1
        where = f"{path.name}: " if index is not None else ""
        problems.extend(where + p for p in _verify_file(path, verifier, how, records, digests, bar, pages))
        if len(problems) >= _SHOWN:
            break
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
        msg = f"verification of {str(shown)!r} with {how} failed, so {removed} removed: {'; '.join(problems[:_SHOWN])}"
        raise ConversionError(msg)
    return sum(len(records) for _, records in files), how


_Check = tuple[ParamRecord, str, tuple[int, ...], bool]  # a tensor read back: record, dtype, shape, right kind


def _verify_file(
    path: Path,
    verifier: Verifier,
    how: str,
    records: list[ParamRecord],
    digests: dict[str, Checksum],
    bar: Progress,
    pages: MappedPages,
) -> list[str]:
    """Compare every tensor of one output file with what was written; the problems found (the first `_SHOWN`).

    Each tensor read back goes to a `ChecksumPool`, whose threads checksum its pieces while the next ones are read;
    checksums come back in order, and a tensor's pages are handed back as its checksum comes in.
    """
    problems: list[str] = []

    def compare(check: _Check, checksum: Checksum) -> None:
        record, dtype, shape, same_kind = check
        if len(problems) >= _SHOWN:
            return
        if not same_kind or checksum != digests[record.name]:
            detail = " (values differ)" if same_kind else ""
            problems.append(
                f"{record.name!r}: read back as {dtype}{shape_text(shape)}, expected "
                f"{record.dtype}{shape_text(record.shape)}{detail}"
            )
        pages.used(record.nbytes)

    try:
        with _framework_reader(path, verifier) as (names, read), ChecksumPool(compare) as pool:
            expected_names = [r.name for r in records]
            wanted, present = set(expected_names), set(names)
            if present != wanted:
                extra = [n for n in names if n not in wanted]
                absent = [n for n in expected_names if n not in present]
                problems.append(
                    f"the file holds {_names(extra) or 'nothing more'} and lacks {_names(absent) or 'nothing'}"
                )
            elif names != expected_names and FORMATS.for_suffix(path) is not SAFETENSORS:
                problems.append("the tensors are not in the target's order")
            for record in records:
                found = read(record.name)
                bar.advance(record.nbytes)
                if found is None:
                    continue
                dtype, array = found
                pages.prefetch(array)
                shape = tuple(array.shape)
                same_kind = dtype == record.dtype and shape == record.shape
                # a tensor of the wrong kind is reported without a checksum, in its turn
                pool.submit((record, dtype, shape, same_kind), array if same_kind else None)
                del found, array  # the pool holds the array until its checksum is taken, and no longer
                if len(problems) >= _SHOWN:
                    break
            else:
                pool.drain()
    except _UnreadableError as error:
        problems.append(f"{how} cannot read it: {error}")
    return problems


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
        if not _installed("torch"):
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
        if not _installed("mindspore"):
            return reader, reader.describe("MindSpore is not installed")
        return Verifier.MINDSPORE_LOADER, Verifier.MINDSPORE_LOADER.describe()
    if too_big:
        why = f"data: safe_open copies every tensor into new memory, so it reads files up to {limit} whole"
        return header, header.describe(f"{why}; this one has {found}")
    if plan.framework == "mindspore" and not _has_float8(plan) and _installed("mindspore"):
        return Verifier.MINDSPORE_SAFETENSORS_LOADER, Verifier.MINDSPORE_SAFETENSORS_LOADER.describe()
    if not _installed("torch"):  # safe_open gives numpy arrays without torch, and numpy has no bfloat16 or float8
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
            return None if param is None else _mindspore_array(param)

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


def _mindspore_array(param: Any) -> tuple[str, Array]:
    found = dtype_from_mindspore(str(param.dtype))
    if found is None:
        msg = f"{param.name}: MindSpore dtype {param.dtype} is not supported"
        raise ConversionError(msg)
    if found.numpy_native:
        return found.name, np.asarray(param.asnumpy())
    raw = bytes(param.get_bytes())
    return found.name, np.frombuffer(raw, dtype=found.storage).reshape(tuple(param.shape))


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
