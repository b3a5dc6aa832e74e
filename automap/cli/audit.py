"""Review a mapping: doubtful pairs first (with their evidence and alternatives), then what is left unmatched.

Give the source checkpoint (and the target's) to also check the mapping against them. --accept marks pairs
reviewed (the file records them as "pinned": true), --choose TARGET=SOURCE gives a pair the source a person
chose; either rewrites the mapping file atomically. Reviewed pairs no longer count as doubtful, and `infer --pin`
and a re-run of `convert --like` keep them. A choice in a repeated block is carried to every block of its
pattern, and those pairs are marked as carried, not as reviewed by a person. Repeated patterns are listed once.
--strict exits
with status 3 when anything still needs review, for scripts and CI.
"""

from __future__ import annotations

import argparse
from collections.abc import Sized
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import add_reading_options, load

if TYPE_CHECKING:
    from automap.records import Match, NameMapping, ParamTable

HELP = "review a mapping's doubtful pairs; --accept marks the right ones reviewed, --choose picks a source"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `automap audit`."""
    parser.add_argument("mapping", metavar="MAPPING", help="a mapping file (versioned or flat)")
    parser.add_argument("source", nargs="?", metavar="SOURCE", help="the source checkpoint, to check the mapping")
    parser.add_argument("target", nargs="?", metavar="TARGET", help="the target checkpoint or listing, likewise")
    parser.add_argument(
        "--threshold", type=float, help="confidence below which a pair is doubtful (default: the mapping's)"
    )
    parser.add_argument("--strict", action="store_true", help="exit with status 3 when anything needs review")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report (replaced if present)")
    parser.add_argument(
        "--accept",
        action="append",
        default=[],
        metavar="NAME",
        help="mark a pair reviewed: a target name or pattern ('layers.*.wq.weight'); may be repeated",
    )
    parser.add_argument(
        "--choose",
        action="append",
        default=[],
        type=_choice,
        metavar="TARGET=SOURCE",
        help="give a pair the source you chose (an alternative the audit lists, or any source parameter when "
        "SOURCE is given); carried to every block of a repeated pattern; may be repeated",
    )
    add_reading_options(parser)


def _choice(text: str) -> tuple[str, str]:
    """An argparse type: `TARGET=SOURCE`."""
    target, equals, source = text.partition("=")
    if not (target and equals and source):
        msg = f"expected TARGET=SOURCE, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return target, source


def run(args: argparse.Namespace) -> int:
    """Print the audit (after accepting pairs, when asked) and return the exit status."""
    from automap._errors import MappingFileError
    from automap.io import load_checkpoint
    from automap.mapping import load_mapping
    from automap.report.audit import audit, is_flat

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        print("automap: error: --threshold must be between 0 and 1")
        return 2
    if args.html:
        from automap._atomic import check_writable

        check_writable(args.html, overwrite=True)
    mapping = load_mapping(args.mapping)
    if (args.accept or args.choose) and is_flat(mapping):
        msg = (
            f"{args.mapping!r} is a flat {{target: source}} mapping, which records no confidence and no review; "
            "--accept and --choose need the versioned mapping automap writes (automap infer SOURCE TARGET -o FILE)"
        )
        raise MappingFileError(msg)
    source = load(args.source, args) if args.source else None
    target = load_checkpoint(args.target) if args.target else None
    if args.accept or args.choose:
        mapping = _review(mapping, args, source)
        print()
    report = audit(mapping, threshold=args.threshold, source=source, target=target)
    report = replace(report, where=args.mapping)
    print(report.render())
    if args.html:
        from automap.report.html import write_html

        write_html(mapping, args.html, threshold=args.threshold, source_table=source, target_table=target)
        print(f"report written to {args.html}")
    return 3 if args.strict and report.needs_review else 0


def _review(mapping: NameMapping, args: argparse.Namespace, source: ParamTable | None) -> NameMapping:
    """Apply --choose, then --accept; rewrite the mapping file when anything changed, and say what."""
    from automap.mapping import save_mapping
    from automap.report.audit import accept, choose, name_pattern

    changed = False
    if args.choose:
        mapping, chosen, spread = choose(mapping, args.choose, source=source)
        pairs = {p.target: p for p in mapping.pairs}
        shown = ", ".join(f"{t} <- {' + '.join(pairs[t].source_names)}{_steps(pairs[t])}" for t in chosen)
        print(f"chose {len(chosen)} pair{_s(chosen)}: {shown}")
        if spread:
            patterns = {name_pattern(t) for t in spread}
            print(
                f"spread to {len(spread)} more pair{_s(spread)} of the same pattern{_s(patterns)} "
                "(marked 'same pattern as a reviewed pair')"
            )
        changed = True
    if args.accept:
        mapping, marked = accept(mapping, args.accept)
        if marked:
            print(f"marked {len(marked)} pair{_s(marked)} as reviewed: {', '.join(marked)}")
            changed = True
        else:
            print("those pairs were already marked as reviewed")
    if changed:
        save_mapping(mapping, Path(args.mapping), overwrite=True)
        print(f"rewrote {args.mapping}")
    else:
        print("the file is unchanged")
    return mapping


def _s(items: Sized) -> str:
    return "" if len(items) == 1 else "s"


def _steps(pair: Match) -> str:
    """The transform a chosen pair got, for the person to check (a square transpose cannot be seen in shapes)."""
    from automap.transforms import describe

    return f" [{describe(pair.transform)}]" if pair.transform else ""
