"""Convert a checkpoint to the other framework (or rename within one) with a mapping, then verify the output.

Give the mapping with --mapping (a file written by `automap infer`, possibly edited, or a flat
{target: source} JSON object), or let automap infer it from a target template with --like. The output's
format follows its suffix: .ckpt (MindSpore), .pth/.pt (PyTorch) or .safetensors; --max-shard-size splits it
into shards plus a HuggingFace-style index, and --workers N converts those shards in N processes. Everything is
checked before anything is written; tensors are streamed one at a time; the output is then re-read with its
framework's own loader and compared bit-exact with its source.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sized
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from automap._errors import AutomapError, ConversionError
from automap.dtypes import all_dtype_names, get_dtype
from automap.netaware import add_model_options, model_options, model_options_problem
from automap.records import DEFAULT_THRESHOLD, Match, NameMapping, ParamTable

from ._common import add_reading_options, load, lowered_threshold_warning

if TYPE_CHECKING:
    from automap.netaware import ModelOptions, NetworkInference

HELP = "convert a checkpoint with a mapping (or one inferred from a template), then verify it"

_CAST_DTYPES = [name for name in all_dtype_names() if get_dtype(name).is_float]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `automap convert`."""
    parser.add_argument("source", metavar="SOURCE", help="the checkpoint to convert")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("-m", "--mapping", metavar="MAPPING", help="mapping file: versioned, or flat {target: source}")
    how.add_argument(
        "--like",
        metavar="TEMPLATE",
        help="infer the mapping from this target checkpoint or listing (saved beside the output)",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="file to write (.ckpt, .pth, .safetensors)"
    )
    parser.add_argument(
        "--target",
        metavar="TEMPLATE",
        help="with --mapping: the target checkpoint or listing, for its order, shapes and missing parameters",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"with --like: probability below which a pair needs review (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--save-mapping", metavar="PATH", help="with --like: where to write the mapping (OUT.mapping.json)"
    )
    parser.add_argument(
        "--accept-low-confidence", action="store_true", help="convert even when pairs are below the threshold"
    )
    parser.add_argument(
        "--allow-missing", action="store_true", help="leave out target parameters no source supplies (listed)"
    )
    parser.add_argument("--dtype", choices=_CAST_DTYPES, help="cast floating-point tensors (default: keep dtypes)")
    parser.add_argument(
        "--to",
        dest="output_framework",
        choices=["pytorch", "mindspore"],
        help="flavour of a .safetensors output (default: the target's framework)",
    )
    parser.add_argument(
        "--ignore-fingerprint",
        action="store_true",
        help="accept a checkpoint other than the one the mapping was made from, if names and shapes still fit",
    )
    parser.add_argument(
        "--max-shard-size",
        metavar="SIZE",
        type=_size,
        help="split the output into shards of at most SIZE of tensor data (2GB, 500MB, 1GiB) named "
        "OUT-00001-of-0000N plus an index OUT.index.json, as HuggingFace does",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=_count,
        default=1,
        help="with --max-shard-size: convert the shards in N processes, each streaming (default 1)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip re-reading the output to compare it; the output is then written past the page cache (faster)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_reading_options(parser)
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    """Convert, print what was done, and return the exit status."""
    from automap.conversion import check_direction, convert
    from automap.io import load_checkpoint
    from automap.mapping import load_mapping

    if args.target and args.like:
        print("automap: error: --target goes with --mapping; --like is already the target", file=sys.stderr)
        return 2
    if not 0 <= args.threshold <= 1:
        print("automap: error: --threshold must be between 0 and 1", file=sys.stderr)
        return 2
    problem = model_options_problem(args)
    models = None if problem else model_options(args)
    if models is not None and args.mapping and not args.target:
        problem = "checking a --mapping with the models needs the target too: add --target TEMPLATE"
    if problem:
        print(f"automap: error: {problem}", file=sys.stderr)
        return 2
    # every output is checked before anything is inferred or written: a refused command leaves nothing behind
    mapping_path = Path(args.save_mapping or f"{args.output}.mapping.json") if args.like else None
    source = _checked_outputs(args, mapping_path)
    template = args.like or args.target
    target = load_checkpoint(template, strategy=args.strategy) if template else None
    check_direction(source, target, args.output)
    mapping: NameMapping | str
    if args.like:
        assert target is not None and mapping_path is not None
        inferred = _inferred(args, models, source, target, mapping_path)
        if inferred is None:
            return 1
        mapping = str(mapping_path)  # as written: the report then names the file that lists every pair
    else:
        mapping = args.mapping
        if models is not None and target is not None:
            checked = _checked(args, models, load_mapping(args.mapping), source, target)
            if checked is None:
                return 1
            mapping = checked
    report = convert(
        source,
        mapping,
        args.output,
        target=target,
        dtype=args.dtype,
        framework=args.output_framework,
        allow_missing=args.allow_missing,
        accept_low_confidence=args.accept_low_confidence or bool(args.like),
        ignore_fingerprint=args.ignore_fingerprint,
        overwrite=args.force,
        verify=not args.no_verify,
        progress=not args.quiet,
        max_shard_size=args.max_shard_size,
        workers=args.workers,
    )
    for line in report.lines():
        print(line)
    return 0


def _checked_outputs(args: argparse.Namespace, mapping_path: Path | None) -> ParamTable:
    """Check the output and the mapping file beside it (name, folder, writable, none of the inputs); the source."""
    from automap._atomic import check_writable
    from automap.conversion import check_not_source, check_output
    from automap.io.sharded import index_path

    sharded = args.max_shard_size is not None
    out = check_output(args.output, sharded=sharded, overwrite=args.force)
    if mapping_path is not None:
        check_writable(mapping_path, overwrite=True)  # an existing one is read first, and kept or replaced
        for other, what in ((out, "the output"), (Path(args.like), "the template")):
            if _same_file(mapping_path, other):
                msg = f"the mapping file {str(mapping_path)!r} is {what}; give --save-mapping another file"
                raise ConversionError(msg)
    source = load(args.source, args)
    outputs = [index_path(out) if sharded else out, *([mapping_path] if mapping_path is not None else [])]
    check_not_source(source, outputs)
    return source


def _count(text: str) -> int:
    """An argparse type: a number of worker processes, at least 1."""
    if not text.isdigit() or int(text) < 1:
        msg = f"{text!r} is not a number of workers; give 1 or more"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _size(text: str) -> int:
    """An argparse type: a size such as 2GB (10**9 bytes), 500MiB (2**20) or a plain number of bytes."""
    from automap.io.sharded import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _inferred(
    args: argparse.Namespace,
    models: ModelOptions | None,
    source: ParamTable,
    template: ParamTable,
    mapping_path: Path,
) -> NameMapping | None:
    """Infer the mapping, save it beside the output; None (after explaining) when pairs need review.

    A mapping already there for this same conversion is read first: its reviewed (pinned) pairs are kept, and so
    are the pairs a person edited by hand since automap wrote it (now marked reviewed).
    """
    from automap.conversion import infer_for_conversion, is_restored_by_loader
    from automap.mapping import save_mapping

    existing = _existing_mapping(mapping_path, source, template, force=args.force)
    pins = _pinned(existing)
    if pins is not None:
        print(f"keeping {len(pins.pairs)} reviewed pairs from {mapping_path}")

    def infer(pins: NameMapping | None) -> tuple[NameMapping, NetworkInference | None]:
        if models is not None:
            network = models.infer(source, template, threshold=args.threshold, pins=pins)
            return network.mapping, network
        return infer_for_conversion(source, template, threshold=args.threshold, pins=pins), None

    mapping, network = infer(pins)
    edits = _edits(mapping_path, existing, mapping, args) if existing is not None else ()
    if edits:
        assert existing is not None
        shown = ", ".join(f"{p.target} <- {_source_text(p.source)}" for p in edits)
        print(f"keeping {len(edits)} pair{_s(edits)} edited by hand in {mapping_path} (now marked reviewed): {shown}")
        kept = (*(pins.pairs if pins is not None else ()), *(replace(p, pinned=True) for p in edits))
        mapping, network = infer(replace(existing, pairs=kept))
    save_mapping(mapping, mapping_path)
    if network is not None:
        print("\n".join(network.lines()))
        if not _network_ok(network, args):
            print(f"wrote the mapping to {mapping_path}", file=sys.stderr)
            return None
    review = [p for p in mapping.doubtful if not is_restored_by_loader(p.target, template.framework)]
    print(f"wrote the mapping to {mapping_path}: {len(mapping.pairs)} pairs, {len(review)} need review")
    if warning := lowered_threshold_warning(mapping):
        print(warning, file=sys.stderr)
    if not review or args.accept_low_confidence:
        return mapping
    print(
        f"automap: error: refusing to convert: {len(review)} of {len(mapping.pairs)} pairs are below the confidence "
        f"threshold {mapping.threshold:g} or have no source:",
        file=sys.stderr,
    )
    for pair in review[:20]:
        print(f"  {_pair_text(pair)}", file=sys.stderr)
    if len(review) > 20:
        print(f"  ... and {len(review) - 20} more", file=sys.stderr)
    command = f"automap convert {args.source} --like {args.like} -o {args.output}"
    print(
        "To proceed:\n"
        f"  review them:            automap audit {mapping_path}\n"
        f"  mark the right ones:    automap audit {mapping_path} --accept TARGET [--accept TARGET ...]\n"
        f"  or choose another:      automap audit {mapping_path} --choose TARGET=SOURCE\n"
        f"                          then re-run `{command}` (reviewed pairs and edits are kept)\n"
        f"  or edit the mapping:    automap convert {args.source} --mapping {mapping_path} --target {args.like} "
        f"-o {args.output}\n"
        "  or convert anyway:      add --accept-low-confidence (and --allow-missing for targets without a source)",
        file=sys.stderr,
    )
    return None


def _checked(
    args: argparse.Namespace, models: ModelOptions, mapping: NameMapping, source: ParamTable, target: ParamTable
) -> NameMapping | None:
    """A given mapping settled and proven with the models; None (after explaining) when it cannot be proven."""
    network = models.check(mapping, source, target)
    print("\n".join(network.lines()))
    return network.mapping if _network_ok(network, args) else None


def _network_ok(network: NetworkInference, args: argparse.Namespace) -> bool:
    """Proven, or the person accepted an unproven mapping; otherwise say why the conversion stops."""
    if network.proven or network.confirmed_per_parameter or args.accept_low_confidence:
        return True
    where = f"; {network.divergence.describe()}" if network.divergence is not None else ""
    print(
        "automap: error: refusing to convert: the converted model would not reproduce the source model on the "
        f"probe inputs{where}; fix the mapping (automap audit), or pass --accept-low-confidence",
        file=sys.stderr,
    )
    return False


def _existing_mapping(path: Path, source: ParamTable, template: ParamTable, *, force: bool) -> NameMapping | None:
    """The mapping already beside the output when it was made for this same conversion, else None."""
    from automap.mapping import fingerprint, load_mapping

    if not path.exists():
        return None
    try:
        existing = load_mapping(path)
    except AutomapError:
        if force:
            return None
        raise
    same = existing.source.fingerprint == fingerprint(source) and existing.target.fingerprint == fingerprint(template)
    if not same:
        if force:
            return None
        msg = (
            f"{str(path)!r} exists and belongs to another conversion; pass --force to replace it, "
            "or --save-mapping to write the new mapping elsewhere"
        )
        raise ConversionError(msg)
    return existing


def _pinned(existing: NameMapping | None) -> NameMapping | None:
    """The reviewed (pinned) pairs of an existing mapping, as pins; None when there are none."""
    if existing is None:
        return None
    pinned = tuple(p for p in existing.pairs if p.pinned)
    return replace(existing, pairs=pinned) if pinned else None


def _edits(path: Path, existing: NameMapping, fresh: NameMapping, args: argparse.Namespace) -> tuple[Match, ...]:
    """The unpinned pairs of the existing file a person changed by hand, to be kept as reviewed.

    A pair differs when its source or transform is not what automap infers now. The file's digest tells whether
    automap wrote those differences (an older automap's choices: re-inferred) or a person did (kept). A file that
    does not say is refused unless --force, which replaces it.
    """
    from automap.mapping import hand_edited

    now = {p.target: p for p in fresh.pairs}
    differing = tuple(
        p
        for p in existing.pairs
        if not p.pinned
        and p.target in now
        and (p.source, p.transform) != (now[p.target].source, now[p.target].transform)
    )
    if not differing:
        return ()
    edited = hand_edited(existing)
    shown = ", ".join(f"{p.target} <- {_source_text(p.source)}" for p in differing[:6])
    shown += ", ..." if len(differing) > 6 else ""
    if edited is None:
        if args.force:
            print(f"replacing {path}, which differed from what automap infers in {len(differing)} pairs ({shown})")
            return ()
        msg = (
            f"{str(path)!r} differs from what automap infers in {len(differing)} pair{_s(differing)} ({shown}) and "
            "does not record what automap wrote, so edits by hand cannot be told from an older automap's choices: "
            f"mark the pairs you edited as reviewed (automap audit {path} --accept TARGET) and re-run, or pass --force "
            "to replace the file (reviewed pairs are kept)"
        )
        raise ConversionError(msg)
    if not edited:
        return ()  # automap wrote these itself (an older automap, another threshold): re-inferred
    sourceless = [p.target for p in differing if p.source is None]
    if sourceless:
        msg = (
            f"{str(path)!r}: {sourceless[0]!r} was edited to have no source, which a re-run cannot keep; convert "
            f"with the file as it is: automap convert {args.source} --mapping {path} --target {args.like} "
            f"-o {args.output} --allow-missing"
        )
        raise ConversionError(msg)
    return differing


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (written or not yet); a path that cannot be followed names none."""
    try:
        return a.absolute() == b.absolute() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:  # a symlink loop, a permission denied on the way: the read that follows reports it
        return False


def _s(items: Sized) -> str:
    return "" if len(items) == 1 else "s"


def _source_text(source: str | tuple[str, ...] | None) -> str:
    return "(no source)" if source is None else source if isinstance(source, str) else " + ".join(source)


def _pair_text(pair: Match) -> str:
    from automap.transforms import describe

    source_text = _source_text
    if pair.source is None:
        return f"{pair.target}  <- (no source)"
    alternatives = ", ".join(
        f"{source_text(a.source)}{f' [{describe(a.transform)}]' if a.transform else ''} {a.confidence:.2f}"
        for a in pair.alternatives[:2]
    )
    extra = f"; alternatives: {alternatives}" if alternatives else ""
    steps = f" [{describe(pair.transform)}]" if pair.transform else ""
    return f"{pair.target}  <- {source_text(pair.source)}{steps}  (confidence {pair.confidence:.2f}{extra})"
