"""Run the accuracy benchmark (from a checkout of the automap repository).

The benchmark and its model pairs live in the repository's `benchmarks/` folder, not in the installed package:
run this from the repository root, or point `--root` at it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from automap._errors import AutomapError

HELP = "measure mapping accuracy on the benchmark pairs (run from the repository root)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `automap bench`."""
    parser.add_argument("--root", default=".", help="the automap repository (holding benchmarks/); default: here")
    add_bench_options(parser)


def add_bench_options(parser: Any) -> None:
    """The benchmark's options, shared by `automap bench` and `python -m benchmarks.run`."""
    parser.add_argument("--size", choices=["ci", "full"], default="ci", help="model depth (default: ci)")
    parser.add_argument("--pairs", help="comma-separated pair names (default: all)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--cache",
        metavar="FOLDER",
        help="where the zoo's checkpoints are written once and kept (up to about 2 GB at full size; default: "
        "$XDG_CACHE_HOME/automap/bench, or ~/.cache/automap/bench)",
    )
    parser.add_argument("--no-numeric", action="store_true", help="skip running the nets with the inferred mapping")
    parser.add_argument("--reverse", action="store_true", help="also map MindSpore -> PyTorch")
    parser.add_argument(
        "--network-aware",
        action="store_true",
        help="infer with both models at hand (execution order, numeric resolution, proof) and compare with "
        "checkpoint-only inference; on the zoo, then on the real-port corpus when its third-party model packages "
        "are installed (says so when they are not); with --real, the real-port corpus only",
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="measure on the real-port corpus (third-party model pairs, committed as listings) instead of the zoo: "
        "accuracy, wrong pairs at or above the threshold, calibration, convert --like on every pair",
    )
    parser.add_argument(
        "--split",
        choices=["test", "dev", "all"],
        default="all",
        help="with --real: the held-out half (test), the half the engine was tuned on (dev), or both (default)",
    )
    parser.add_argument("--no-convert", action="store_true", help="with --real: skip the convert --like check")


def default_cache() -> Path:
    """Where the benchmark keeps its checkpoints by default: the user's cache folder, never the current one."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "automap" / "bench"


def run(args: argparse.Namespace) -> int:
    """Import the benchmark's runner from the repository and run it."""
    root = Path(args.root).resolve()
    if not (root / "benchmarks" / "run.py").is_file():
        msg = f"no benchmarks in {str(root)!r}: run from the automap repository root or pass --root"
        raise AutomapError(msg)
    sys.path.insert(0, str(root))
    if getattr(args, "real", False) and not getattr(args, "network_aware", False):
        return int(importlib.import_module("benchmarks.realports.run").run(args))  # listings only: no framework
    from automap.netaware import require_frameworks

    require_frameworks("automap bench")  # the benchmark builds every model pair in both frameworks
    runner = importlib.import_module("benchmarks.run")
    return int(runner.run(args))
