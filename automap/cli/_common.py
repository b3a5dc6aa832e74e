"""Arguments and helpers several subcommands share."""

from __future__ import annotations

import argparse

from automap._types import Framework
from automap.records import DEFAULT_THRESHOLD, NameMapping, ParamTable


def add_reading_options(parser: argparse.ArgumentParser) -> None:
    """Options that control how checkpoints are read."""
    parser.add_argument(
        "--key",
        help="for a PyTorch file holding several state dicts, which to read (e.g. 'model', or 'ema/model')",
    )
    parser.add_argument(
        "--framework",
        choices=["pytorch", "mindspore"],
        help="naming convention of safetensors files and listings when automatic detection is wrong",
    )
    parser.add_argument(
        "--strategy",
        metavar="FILE",
        help="for a folder of MindSpore per-rank checkpoints (rank_0/, rank_1/, ...): the parallel strategy file, or "
        "a folder of the pipeline stages' files (default: found in the folder, strategy/ or ../strategy/)",
    )
    parser.add_argument(
        "--unsafe-pickle",
        action="store_true",
        help="DANGEROUS: let PyTorch files run code while loading (full unpickling); only for files you trust",
    )


def load(path: str, args: argparse.Namespace, *, verify_crc: bool = False) -> ParamTable:
    """Load one checkpoint with the reading options of `args`."""
    from automap.io import load_checkpoint

    framework: Framework | None = getattr(args, "framework", None)
    return load_checkpoint(
        path,
        key=getattr(args, "key", None),
        framework=framework,
        unsafe_pickle=getattr(args, "unsafe_pickle", False),
        verify_crc=verify_crc,
        strategy=getattr(args, "strategy", None),
    )


def lowered_threshold_warning(mapping: NameMapping) -> str | None:
    """A loud line when a threshold below the default lets pairs automap would flag count as confident.

    Confidences are probabilities, and the engine holds every pair it doubts (order only, a tie, ...) below the
    default threshold; a script written when 0.5 was the default would otherwise accept those pairs in silence.
    """
    if mapping.threshold >= DEFAULT_THRESHOLD:
        return None
    passed = [
        p
        for p in mapping.pairs
        if p.source is not None and not p.pinned and mapping.threshold <= p.confidence < DEFAULT_THRESHOLD
    ]
    if not passed:
        return None
    shown = ", ".join(f"{p.target} ({p.confidence:.2f})" for p in passed[:3]) + (", ..." if len(passed) > 3 else "")
    count = f"{len(passed)} pair{'s' if len(passed) > 1 else ''}"
    return (
        f"WARNING: --threshold {mapping.threshold:g} is below the default {DEFAULT_THRESHOLD:g}: {count} that automap "
        f"would flag for review {'count' if len(passed) > 1 else 'counts'} as confident here: {shown}; leave "
        "--threshold out to have them reviewed"
    )
