"""Review a mapping: doubtful pairs first (with their evidence and alternatives), then what is left unmatched.

Give the source checkpoint (and the target's) to also check the mapping against them. --accept marks pairs
reviewed (the file records them as "pinned": true) and rewrites the mapping file atomically; reviewed pairs
no longer count as doubtful, and `infer --pin` and a re-run of `convert --like` keep them. --strict exits
with status 3 when anything still needs review, for scripts and CI.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ._common import add_reading_options, load

HELP = "review a mapping's doubtful pairs; --accept marks the right ones reviewed"


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
    add_reading_options(parser)


def run(args: argparse.Namespace) -> int:
    """Print the audit (after accepting pairs, when asked) and return the exit status."""
    from automap.io import load_checkpoint
    from automap.mapping import load_mapping, save_mapping
    from automap.report.audit import accept, audit

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        print("automap: error: --threshold must be between 0 and 1")
        return 2
    if args.html:
        from automap._atomic import check_writable

        check_writable(args.html, overwrite=True)
    mapping = load_mapping(args.mapping)
    if args.accept:
        mapping, marked = accept(mapping, args.accept)
        if marked:
            save_mapping(mapping, Path(args.mapping), overwrite=True)
            print(f"marked {len(marked)} pair{'' if len(marked) == 1 else 's'} as reviewed: {', '.join(marked)}")
            print(f"rewrote {args.mapping}")
        else:
            print("those pairs were already marked as reviewed; the file is unchanged")
        print()
    source = load(args.source, args) if args.source else None
    target = load_checkpoint(args.target) if args.target else None
    report = audit(mapping, threshold=args.threshold, source=source, target=target)
    report = replace(report, where=args.mapping)
    print(report.render())
    if args.html:
        from automap.report.html import write_html

        write_html(mapping, args.html, threshold=args.threshold, source_table=source, target_table=target)
        print(f"report written to {args.html}")
    return 3 if args.strict and report.needs_review else 0
