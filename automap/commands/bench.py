"""Run the accuracy benchmark on the zoo of architecture pairs (from a checkout of the automap repository).

The zoo lives in the repository's `benchmarks/` folder, not in the installed package: run this from the
repository root, or point `--root` at it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from automap._errors import AutomapError
from automap.bench import add_bench_options

HELP = "measure mapping accuracy on the benchmark zoo (run from the repository root)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `automap bench`; the rest go to the benchmark."""
    parser.add_argument("--root", default=".", help="the automap repository (holding benchmarks/); default: here")
    add_bench_options(parser)


def run(args: argparse.Namespace) -> int:
    """Import the zoo's runner from the repository and run it."""
    root = Path(args.root).resolve()
    if not (root / "benchmarks" / "zoo").is_dir():
        msg = f"no benchmark zoo in {str(root)!r}: run from the automap repository root or pass --root"
        raise AutomapError(msg)
    sys.path.insert(0, str(root))
    runner = importlib.import_module("benchmarks.run")
    return int(runner.run(args))
