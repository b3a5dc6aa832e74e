"""Infer which source parameter feeds each target parameter and write the mapping as JSON.

SOURCE and TARGET are any two checkpoints or listings automap reads, either framework on either side; only
the target's names, shapes, dtypes and order are used. The summary says how many pairs were found, how many
need review (confidence below the threshold) and what is unmatched on each side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from automap._decisions import DECIDED_BY
from automap._errors import AutomapError
from automap._text import render_table
from automap.netaware import add_model_options, model_options, model_options_problem
from automap.records import Match, NameMapping

from ._common import add_reading_options, load

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
        help="also write the plain {target: source} dict (default name: OUTPUT with .flat.json)",
    )
    parser.add_argument("--pin", metavar="FILE", help="a mapping whose reviewed pairs are kept; the rest is re-solved")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report of the mapping")
    parser.add_argument("--threshold", type=float, default=0.5, help="confidence below which a pair needs review")
    parser.add_argument("--target-key", help="like --key, for the target file")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--strict", action="store_true", help="exit with status 3 when any pair needs review")
    add_reading_options(parser)
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    """Infer, print the summary, write the files."""
    from automap.engine.inference import infer_mapping
    from automap.mapping import load_mapping, save_mapping

    if not 0.0 <= args.threshold <= 1.0:
        msg = f"--threshold must be between 0 and 1, got {args.threshold}"
        raise AutomapError(msg)
    problem = model_options_problem(args)
    if problem:
        print(f"automap: error: {problem}", file=sys.stderr)
        return 2
    models = model_options(args)
    outputs = _outputs(args)
    for path in outputs:
        if path.exists() and not args.force:
            msg = f"output {str(path)!r} already exists; pass --force to overwrite it"
            raise AutomapError(msg)
    if args.html:
        from automap._atomic import check_writable

        check_writable(args.html, overwrite=args.force)
    source = load(args.source, args)
    target_args = argparse.Namespace(**{**vars(args), "key": args.target_key, "framework": None})
    target = load(args.target, target_args)
    pins = load_mapping(args.pin) if args.pin else None
    network = None
    if models is not None:
        network = models.infer(source, target, threshold=args.threshold, pins=pins)
        mapping = network.mapping
    else:
        mapping = infer_mapping(source, target, threshold=args.threshold, pins=pins)
    print(summary(mapping))
    if network is not None:
        print("")
        print("\n".join(network.lines()))
    if args.output:
        save_mapping(mapping, args.output, overwrite=True)
        print(f"\nmapping written to {args.output}")
    if args.flat is not None:
        flat_path = outputs[-1]
        save_mapping(mapping, flat_path, flat=True, overwrite=True)
        print(f"flat mapping written to {flat_path}")
    if args.html:
        from automap.report.html import write_html

        write_html(mapping, args.html, source_table=source, target_table=target, overwrite=args.force)
        print(f"report written to {args.html}")
    unproven = network is not None and not network.proven
    return 3 if args.strict and (mapping.doubtful or unproven) else 0


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
    """The text report of an inferred mapping: counts, then the pairs that need review."""
    pairs = mapping.pairs
    matched = [p for p in pairs if p.source is not None]
    doubtful = mapping.doubtful
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
                [
                    f"  confident (>= {mapping.threshold:.2f})",
                    str(len(matched) - len([p for p in doubtful if p.source])),
                ],
                [f"  need review (< {mapping.threshold:.2f})", str(len([p for p in doubtful if p.source]))],
                ["  with a layout transform", str(len(transformed))],
                ["unmatched target parameters", str(len(pairs) - len(matched))],
                ["unmatched source parameters", str(len(mapping.unmatched_source))],
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
            patterns.setdefault(_pattern(p.target), []).append(p)
        lines += [
            "",
            f"needs review (lowest confidence first; {len(doubtful)} pairs in {len(patterns)} pattern(s), "
            "marking one pair of a pattern reviewed settles the whole pattern on the next --pin run):",
        ]
        rows = []
        for group in list(patterns.values())[:40]:
            p = group[0]
            alternative = p.alternatives[0] if p.alternatives else None
            alt = f"{_name(alternative.source)} ({alternative.confidence:.2f})" if alternative else ""
            why = p.labels.get(DECIDED_BY, p.labels.get("note", ""))
            times = f"x{len(group)}" if len(group) > 1 else ""
            rows.append([p.target, _name(p.source) or "(none)", f"{p.confidence:.2f}", times, alt, why])
        lines.append(render_table(["target", "source", "conf", "", "best alternative", "why"], rows, right=(2,)))
        if len(patterns) > 40:
            lines.append(f"... and {len(patterns) - 40} more patterns (see automap audit)")
    if mapping.unmatched_source:
        shown = ", ".join(mapping.unmatched_source[:6])
        more = f", ... ({len(mapping.unmatched_source)} in all)" if len(mapping.unmatched_source) > 6 else ""
        lines += ["", f"unmatched source: {shown}{more}"]
    return "\n".join(lines)


def _pattern(name: str) -> str:
    """A name with its container indices blanked: `layers.7.w1.weight` -> `layers.#.w1.weight`."""
    return ".".join("#" if part.isdigit() else part for part in name.split("."))


def _name(source: object) -> str:
    if source is None:
        return ""
    return source if isinstance(source, str) else " + ".join(source)  # type: ignore[arg-type]
