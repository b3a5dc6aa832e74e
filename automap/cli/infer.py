"""Infer which source parameter feeds each target parameter and write the mapping as JSON.

SOURCE and TARGET are any two checkpoints or listings automap reads, either framework on either side; only
the target's names, shapes, dtypes and order are used. The summary says how many pairs were found, how many
need review (confidence below the threshold, or no source) and what is unmatched on each side, lists what needs
review (each repeated pattern once), and ends with the next step. --flat also writes the plain {target: source}
form, only when every pair is confident and needs no layout transform: that form can carry neither.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sized
from dataclasses import replace
from pathlib import Path

from automap._atomic import check_writable
from automap._decisions import DECIDED_BY, DecidedBy
from automap._errors import AutomapError
from automap._text import render_table
from automap.netaware import add_model_options, model_options, model_options_problem
from automap.records import DEFAULT_THRESHOLD, Match, NameMapping, ParamTable

from ._common import add_reading_options, load, lowered_threshold_warning

HELP = "infer the mapping from a source checkpoint to a target's parameters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `automap infer`."""
    parser.add_argument("source", metavar="SOURCE", help="checkpoint whose weights will be converted")
    parser.add_argument("target", metavar="TARGET", help="checkpoint or listing with the names/shapes to produce")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the mapping here (JSON)")
    parser.add_argument(
        "--flat",
        metavar="FILE",
        nargs="?",
        const="",
        help="also write the plain {target: source} dict (default name: OUTPUT with .flat.json); refused when a "
        "pair needs a transform or a review, which that form cannot carry",
    )
    parser.add_argument("--pin", metavar="FILE", help="a mapping whose reviewed pairs are kept; the rest is re-solved")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report of the mapping")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"probability below which a pair needs review (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument("--target-key", help="like --key, for the target file")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--strict", action="store_true", help="exit with status 3 when any pair needs review")
    add_reading_options(parser)
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    """Infer, print the summary, write the files."""
    from automap.engine.inference import infer_mapping
    from automap.mapping import describe_flat_problems, flat_problems, save_mapping

    if not 0.0 <= args.threshold <= 1.0:
        msg = f"--threshold must be between 0 and 1, got {args.threshold}"
        raise AutomapError(msg)
    problem = model_options_problem(args)
    if problem:
        print(f"automap: error: {problem}", file=sys.stderr)
        return 2
    models = model_options(args)
    # every output is checked before anything is inferred or written: a refused command leaves nothing behind
    outputs = [*_outputs(args), *([Path(args.html)] if args.html else [])]
    for path in outputs:
        check_writable(path, overwrite=args.force)
    source = load(args.source, args)
    target_args = argparse.Namespace(**{**vars(args), "key": args.target_key, "framework": None})
    target = load(args.target, target_args)
    _refuse_writing_over_inputs(outputs, source, target)
    pins = _pins(args.pin) if args.pin else None
    network = None
    if models is not None:
        network = models.infer(source, target, threshold=args.threshold, pins=pins)
        mapping = network.mapping
    else:
        mapping = infer_mapping(source, target, threshold=args.threshold, pins=pins)
    print(summary(mapping))
    if warning := lowered_threshold_warning(mapping):
        print(warning, file=sys.stderr)
    if network is not None:
        print("")
        print("\n".join(network.lines()))
    if args.flat is not None and (problems := flat_problems(mapping)):
        where = f" ({args.output})" if args.output else ""
        msg = (
            f"--flat refused, nothing was written: {describe_flat_problems(mapping, problems)}; write the versioned "
            f"mapping{where} without --flat instead: it carries both"
        )
        raise AutomapError(msg)
    print("")
    if args.output:
        save_mapping(mapping, args.output, overwrite=True)
        print(f"mapping written to {args.output}")
    else:
        print(f"the mapping was not written (no -o): automap infer {args.source} {args.target} -o mapping.json")
    if args.flat is not None:
        flat_path = _outputs(args)[-1]
        save_mapping(mapping, flat_path, flat=True, overwrite=True)
        print(f"flat mapping written to {flat_path}")
    if args.html:
        from automap.report.html import write_html

        write_html(mapping, args.html, source_table=source, target_table=target, overwrite=args.force)
        print(f"report written to {args.html}")
    print(_next_step(mapping, args))
    unproven = network is not None and not network.proven and not network.confirmed_per_parameter
    return 3 if args.strict and (mapping.doubtful or unproven) else 0


def _pins(path: str) -> NameMapping:
    """The mapping given to --pin; a flat file's pairs are all taken as pins (a flat file records no review)."""
    from automap.mapping import load_mapping

    pins = load_mapping(path)
    given = [p for p in pins.pairs if p.decided_by is DecidedBy.FLAT_MAPPING]
    if not given:
        return pins
    print(f"--pin {path}: a flat mapping records no review; pinning all {len(given)} of its pairs as given")
    return replace(pins, pairs=tuple(replace(p, pinned=True) for p in pins.pairs))


def _refuse_writing_over_inputs(outputs: list[Path], source: ParamTable, target: ParamTable) -> None:
    """An output may be neither checkpoint it is inferred from (--force would replace it with JSON)."""
    from automap.conversion import check_not_source

    check_not_source(source, outputs)
    for path in outputs:
        try:
            same = path.exists() and path.samefile(target.source)
        except OSError:  # the target's name is no file (a description), or cannot be followed
            same = False
        if same:
            msg = f"output {str(path)!r} is the target checkpoint; write to another file"
            raise AutomapError(msg)


def _next_step(mapping: NameMapping, args: argparse.Namespace) -> str:
    """What to do with the mapping now, as the last line."""
    suffix = ".ckpt" if mapping.target.framework == "mindspore" else ".pth"
    file = args.output or "mapping.json"
    convert = f"automap convert {args.source} --mapping {file} --target {args.target} -o OUTPUT{suffix}"
    write = "" if args.output else f"write it with -o {file}, then "
    from automap.conversion import is_restored_by_loader

    review = sum(1 for p in mapping.doubtful if not is_restored_by_loader(p.target, mapping.target.framework))
    if review:
        return f"Next: {write}review the {review} listed with `automap audit {file}`, then `{convert}`"
    return f"Next: {write}{convert}"


def _outputs(args: argparse.Namespace) -> list[Path]:
    paths = [Path(args.output)] if args.output else []
    if args.flat is not None:
        if args.flat:
            paths.append(Path(args.flat))
        elif args.output:
            paths.append(Path(args.output).with_suffix(".flat.json"))
        else:
            msg = "--flat needs a file name when no --output is given"
            raise AutomapError(msg)
    return paths


def summary(mapping: NameMapping) -> str:
    """The text report of an inferred mapping: counts, then the pairs that need review (each pattern once)."""
    from automap.conversion import is_restored_by_loader
    from automap.report.audit import name_pattern

    pairs = mapping.pairs
    matched = [p for p in pairs if p.source is not None]
    doubtful = mapping.doubtful
    below = [p for p in doubtful if p.source is not None]
    transformed = [p for p in matched if p.transform]
    lines = [
        f"source: {mapping.source.path} ({mapping.source.framework}, {mapping.source.params} parameters"
        + (f"; {len(mapping.excluded_source)} set aside" if mapping.excluded_source else "")
        + ")",
        f"target: {mapping.target.path} ({mapping.target.framework}, {mapping.target.params} parameters"
        + (f"; {len(mapping.excluded_target)} training-state entries set aside" if mapping.excluded_target else "")
        + ")",
        "",
        render_table(
            ["", "count"],
            [
                ["pairs", str(len(matched))],
                [f"  confident (>= {mapping.threshold:.2f})", str(len(matched) - len(below))],
                [f"  need review (< {mapping.threshold:.2f})", str(len(below))],
                ["  with a layout transform", str(len(transformed))],
                ["unmatched target parameters", str(len(pairs) - len(matched))],
                ["unmatched source parameters", str(len(mapping.unmatched_source))],
                ["needs review, listed below", str(len(doubtful))],
            ],
            right=(1,),
        ),
    ]
    for note in mapping.notes:
        lines.append(f"note: {note}")
    if doubtful:
        # Repeated blocks repeat their doubts: show each pattern once (`layers.#.w1`), with how often it occurs.
        patterns: dict[str, list[Match]] = {}
        for p in sorted(doubtful, key=lambda p: p.confidence):
            patterns.setdefault(name_pattern(p.target), []).append(p)
        unmatched = len(doubtful) - len(below)
        lines += [
            "",
            f"needs review: {_count(doubtful, 'target')} ({_count(below, 'pair')} below the threshold, "
            f"{_count(range(unmatched), 'target')} without a source), in {_count(patterns, 'pattern')}, lowest "
            "confidence first; one `automap audit --choose` settles a repeated pattern:",
        ]
        rows = []
        for group in list(patterns.values())[:40]:
            p = group[0]
            alternative = p.alternatives[0] if p.alternatives else None
            alt = f"{_name(alternative.source)} ({alternative.confidence:.2f})" if alternative else ""
            why = p.labels.get(DECIDED_BY, p.labels.get("note", ""))
            if p.source is None and is_restored_by_loader(p.target, mapping.target.framework):
                why = "PyTorch's loader restores it; no action needed"
            target = name_pattern(p.target) if len(group) > 1 else p.target
            rows.append([target, _name(p.source) or "(none)", f"{p.confidence:.2f}", f"x{len(group)}", alt, why])
        header = ["target", "source", "confidence", "times", "best alternative", "why"]
        lines.append(render_table(header, rows, right=(2, 3)))
        if len(patterns) > 40:
            lines.append(f"... and {len(patterns) - 40} more patterns (see automap audit)")
    if mapping.unmatched_source:
        shown = ", ".join(mapping.unmatched_source[:6])
        more = f", ... ({len(mapping.unmatched_source)} in all)" if len(mapping.unmatched_source) > 6 else ""
        lines += ["", f"unmatched source: {shown}{more}"]
    return "\n".join(lines)


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _name(source: object) -> str:
    if source is None:
        return ""
    return source if isinstance(source, str) else " + ".join(source)  # type: ignore[arg-type]
