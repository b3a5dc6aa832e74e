"""Convert a checkpoint to the other framework (or rename within one) with a mapping, then verify the output.

Give the mapping with --mapping (a file written by `automap infer`, possibly edited, or a flat
{target: source} JSON object), or let automap infer it from a target template with --like. The output's
format follows its suffix: .ckpt (MindSpore), .pth/.pt (PyTorch) or .safetensors; --max-shard-size splits it
into shards plus a HuggingFace-style index. Everything is checked before anything is written; tensors are
streamed one at a time; the output is then re-read with its framework's own loader and compared bit-exact
with its source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from automap._errors import AutomapError, ConversionError
from automap.dtypes import all_dtype_names, get_dtype
from automap.netaware import add_model_options, model_options, model_options_problem
from automap.records import Match, NameMapping, ParamTable

from ._common import add_reading_options, load

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
        default=0.5,
        help="with --like: confidence below which a pair needs review (default 0.5)",
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
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--no-verify", action="store_true", help="skip re-reading the output to compare it")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_reading_options(parser)
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    """Convert, print what was done, and return the exit status."""
    from automap.conversion import check_output, convert
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
    check_output(args.output, sharded=args.max_shard_size is not None, overwrite=args.force)
    source = load(args.source, args)
    target: ParamTable | None = None
    if args.like:
        target = load_checkpoint(args.like)
        mapping = _inferred(args, models, source, target)
        if mapping is None:
            return 1
    else:
        mapping = load_mapping(args.mapping)
        target = load_checkpoint(args.target) if args.target else None
        if models is not None and target is not None:
            checked = _checked(args, models, mapping, source, target)
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
    )
    for line in report.lines():
        print(line)
    return 0


def _size(text: str) -> int:
    """An argparse type: a size such as 2GB (10**9 bytes), 500MiB (2**20) or a plain number of bytes."""
    from automap.io.sharded import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _inferred(
    args: argparse.Namespace, models: ModelOptions | None, source: ParamTable, template: ParamTable
) -> NameMapping | None:
    """Infer the mapping, save it beside the output; None (after explaining) when pairs need review."""
    from automap.conversion import infer_for_conversion, is_restored_by_loader
    from automap.mapping import save_mapping

    mapping_path = Path(args.save_mapping or f"{args.output}.mapping.json")
    pins = _reviewed_pairs(mapping_path, source, template, force=args.force)
    if pins is not None:
        print(f"keeping {len(pins.pairs)} reviewed pairs from {mapping_path}")
    if models is not None:
        network = models.infer(source, template, threshold=args.threshold, pins=pins)
        save_mapping(network.mapping, mapping_path)
        print("\n".join(network.lines()))
        if not _network_ok(network, args):
            print(f"wrote the mapping to {mapping_path}", file=sys.stderr)
            return None
        mapping = network.mapping
    else:
        mapping = infer_for_conversion(source, template, threshold=args.threshold, pins=pins)
        save_mapping(mapping, mapping_path)
    review = [p for p in mapping.doubtful if not is_restored_by_loader(p.target, template.framework)]
    print(f"wrote the mapping to {mapping_path}: {len(mapping.pairs)} pairs, {len(review)} need review")
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
        f"                          then re-run `{command}` (reviewed pairs are kept)\n"
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
    if network.proven or args.accept_low_confidence:
        return True
    where = f"; {network.divergence.describe()}" if network.divergence is not None else ""
    print(
        "automap: error: refusing to convert: the converted model would not reproduce the source model on the "
        f"probe inputs{where}; fix the mapping (automap audit), or pass --accept-low-confidence",
        file=sys.stderr,
    )
    return False


def _reviewed_pairs(path: Path, source: ParamTable, template: ParamTable, *, force: bool) -> NameMapping | None:
    """The pinned pairs of a mapping already beside the output for this same conversion, as pins."""
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
    pinned = tuple(p for p in existing.pairs if p.pinned)
    if not pinned:
        return None
    return NameMapping(existing.source, existing.target, pinned, existing.threshold)


def _pair_text(pair: Match) -> str:
    from automap.transforms import describe

    def source_text(source: str | tuple[str, ...] | None) -> str:
        return "(no source)" if source is None else source if isinstance(source, str) else " + ".join(source)

    if pair.source is None:
        return f"{pair.target}  <- (no source)"
    alternatives = ", ".join(
        f"{source_text(a.source)}{f' [{describe(a.transform)}]' if a.transform else ''} {a.confidence:.2f}"
        for a in pair.alternatives[:2]
    )
    extra = f"; alternatives: {alternatives}" if alternatives else ""
    steps = f" [{describe(pair.transform)}]" if pair.transform else ""
    return f"{pair.target}  <- {source_text(pair.source)}{steps}  (confidence {pair.confidence:.2f}{extra})"
