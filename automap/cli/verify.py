"""Run a PyTorch model and a MindSpore model on the same input and compare their outputs.

Each model comes from a factory given as `package.module:function` (called with no arguments; modules in
the current folder are found). Weights, when given, are loaded by name first. The input is random from
--input specs (`1x3x224x224:float32`, token ids `1x16:int64:0-1000`; one --input per argument), or guessed
from the PyTorch model's first layer. Exit status 0 when the outputs agree within tolerance, 3 when not.
"""

from __future__ import annotations

import argparse

HELP = "run both frameworks' models on the same input and compare outputs (exit 3 on mismatch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `automap verify`."""
    parser.add_argument("--torch-model", required=True, metavar="MODULE:FACTORY", help="builds the torch.nn.Module")
    parser.add_argument(
        "--mindspore-model", required=True, metavar="MODULE:FACTORY", help="builds the mindspore.nn.Cell"
    )
    parser.add_argument("--torch-weights", metavar="FILE", help="checkpoint to load into the PyTorch model")
    parser.add_argument("--mindspore-weights", metavar="FILE", help="checkpoint to load into the MindSpore model")
    parser.add_argument(
        "--input",
        action="append",
        dest="inputs",
        metavar="SPEC",
        help="SHAPE[:DTYPE[:LOW-HIGH]], e.g. 1x3x224x224:float32 or 1x16:int64:0-1000; once per model argument",
    )
    parser.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (default 1e-4)")
    parser.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")


def run(args: argparse.Namespace) -> int:
    """Build, load and run both models; print the comparison; 0 when they agree, 3 when not."""
    from automap.netaware._options import build_models
    from automap.netaware.verify import verify

    specs, torch_model, mindspore_model = build_models(args)
    report = verify(
        torch_model,
        mindspore_model,
        inputs=specs or None,
        torch_weights=args.torch_weights,
        mindspore_weights=args.mindspore_weights,
        rtol=args.rtol,
        atol=args.atol,
        seed=args.seed,
    )
    for line in report.lines():
        print(line)
    return 0 if report.passed else 3
