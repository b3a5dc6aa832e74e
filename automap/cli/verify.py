"""Run a PyTorch model and a MindSpore model on the same input and compare their outputs.

Each model comes from a factory given as `package.module:function` (called with no arguments; modules in
the current folder are found). Weights, when given, are loaded by name first. The input is random from
--input specs (`1x3x224x224:float32`, token ids `1x16:int64:0-1000`; one --input per argument), or guessed
from the PyTorch model's first layer. Exit status 0 when the outputs agree within tolerance, 3 when not.
"""

from __future__ import annotations

import argparse

from automap.netaware import add_model_options, model_options

HELP = "run both frameworks' models on the same input and compare outputs (exit 3 on mismatch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `automap verify`."""
    parser.add_argument("--torch-weights", metavar="FILE", help="checkpoint to load into the PyTorch model")
    parser.add_argument("--mindspore-weights", metavar="FILE", help="checkpoint to load into the MindSpore model")
    add_model_options(parser, required=True)


def run(args: argparse.Namespace) -> int:
    """Build, load and run both models; print the comparison; 0 when they agree, 3 when not."""
    models = model_options(args)
    assert models is not None  # argparse requires both factories
    report = models.verify(torch_weights=args.torch_weights, mindspore_weights=args.mindspore_weights)
    for line in report.lines():
        print(line)
    return 0 if report.passed else 3
