"""List every parameter of one checkpoint, or of two side by side (one per framework) to compare them."""

from __future__ import annotations

import argparse
import json
import sys
from itertools import zip_longest

from automap._text import human_bytes, render_table, shape_text
from automap.records import ParamRecord, ParamTable

from ._common import add_reading_options, load

HELP = "list the parameters of a checkpoint, or of two side by side"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `automap inspect`."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="one or two checkpoints or listings")
    parser.add_argument("--json", action="store_true", help="print a JSON listing (reusable as a target template)")
    parser.add_argument("--verify", action="store_true", help="read every tensor and check CRC trailers")
    add_reading_options(parser)


def run(args: argparse.Namespace) -> int:
    """Print the listing(s)."""
    if len(args.files) > 2:
        print(f"automap: error: inspect takes one or two files, got {len(args.files)}", file=sys.stderr)
        return 2
    tables = [load(f, args, verify_crc=args.verify) for f in args.files]
    if args.verify:
        for table in tables:
            for record in (*table.params, *table.excluded):
                if record.has_data:
                    record.read()
    if args.json:
        from automap.io.listing import listing_document

        documents = [listing_document(t) for t in tables]
        document = documents[0] if len(documents) == 1 else {"checkpoints": documents}
        print(json.dumps(document, indent=1))
    elif len(tables) == 1:
        print(_single(tables[0]))
    else:
        print(_side_by_side(tables[0], tables[1]))
    return 0


def _title(table: ParamTable) -> str:
    lines = [
        f"{table.source}  ({table.framework}, {table.format}; {len(table)} parameters, "
        f"{table.total_numel:,} elements, {human_bytes(table.total_nbytes)})"
    ]
    lines += [f"  note: {note}" for note in table.notes]
    return "\n".join(lines)


def _rows(records: tuple[ParamRecord, ...], training_state: bool) -> list[list[str]]:
    mark = "train" if training_state else ""
    return [
        [str(r.index), r.name, shape_text(r.shape), r.dtype, f"{r.numel:,}", human_bytes(r.nbytes), mark]
        for r in records
    ]


def _single(table: ParamTable) -> str:
    header = ["#", "name", "shape", "dtype", "numel", "size", ""]
    parts = [_title(table), "", render_table(header, _rows(table.params, False), right=(0, 4, 5))]
    if table.excluded:
        parts += [
            "",
            f"training state, set aside ({len(table.excluded)}):",
            render_table(header, _rows(table.excluded, True), right=(0, 4, 5)),
        ]
    parts += ["", _totals(table)]
    return "\n".join(parts)


def _totals(table: ParamTable) -> str:
    extra = f"; {len(table.excluded)} training-state entries set aside" if table.excluded else ""
    return f"Total: {len(table)} parameters, {table.total_numel:,} elements, {human_bytes(table.total_nbytes)}{extra}"


def _side_by_side(left: ParamTable, right: ParamTable) -> str:
    header = ["#", "A: name", "shape", "dtype", "", "B: name", "shape", "dtype"]
    rows = []
    for i, (a, b) in enumerate(zip_longest(left.params, right.params)):
        same = a is not None and b is not None and a.numel == b.numel
        rows.append(
            [
                str(i),
                a.name if a else "",
                shape_text(a.shape) if a else "",
                a.dtype if a else "",
                "|" if same else "!",
                b.name if b else "",
                shape_text(b.shape) if b else "",
                b.dtype if b else "",
            ]
        )
    legend = "'!' marks rows whose element counts differ (or where one side has no parameter)"
    parts = [
        f"A: {_title(left)}",
        f"B: {_title(right)}",
        "",
        render_table(header, rows, right=(0,)),
        "",
        legend,
        f"A: {_totals(left)}",
        f"B: {_totals(right)}",
    ]
    for label, table in (("A", left), ("B", right)):
        if table.excluded:
            names = ", ".join(r.name for r in table.excluded[:8])
            more = f", ... ({len(table.excluded)} in all)" if len(table.excluded) > 8 else ""
            parts.append(f"{label}: training state set aside: {names}{more}")
    return "\n".join(parts)
