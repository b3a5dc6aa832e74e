"""The command-line side of network-aware inference: options shared by `automap infer` and `automap convert`.

Adding the options imports nothing beyond argparse; running them loads the model factories, puts MindSpore in
PyNative mode on the CPU, and calls `infer_with_networks`. `automap verify` builds its models with `build_models` too.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from automap._errors import AutomapError, MissingDependencyError

if TYPE_CHECKING:
    from automap.records import NameMapping, ParamTable

    from ._api import NetworkInference
    from .probes import InputSpec


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """`--torch-model`, `--mindspore-model`, `--input` and the proof's tolerances."""
    group = parser.add_argument_group(
        "network-aware inference",
        "with both model definitions, parameters are ordered by execution, doubtful pairs are settled by running "
        "the models, and the mapping is proven (each model from a function called with no arguments)",
    )
    group.add_argument("--torch-model", metavar="MODULE:FACTORY", help="builds the torch.nn.Module")
    group.add_argument("--mindspore-model", metavar="MODULE:FACTORY", help="builds the mindspore.nn.Cell")
    group.add_argument(
        "--input",
        action="append",
        dest="inputs",
        metavar="SPEC",
        help="probe input SHAPE[:DTYPE[:LOW-HIGH]], once per model argument, e.g. 1x3x224x224:float32 or "
        "1x16:int64:0-1000 (default: guessed from the PyTorch model's first layer)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the random probe inputs (default 0)")
    group.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance of the proof (default 1e-4)")
    group.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance of the proof (default 1e-5)")


def model_options_problem(args: argparse.Namespace) -> str:
    """What is wrong with the combination of model options given, or ""."""
    torch_model, mindspore_model = getattr(args, "torch_model", None), getattr(args, "mindspore_model", None)
    if bool(torch_model) != bool(mindspore_model):
        return "--torch-model and --mindspore-model go together: give both model factories"
    if getattr(args, "inputs", None) and not torch_model:
        return "--input is for network-aware inference: give --torch-model and --mindspore-model too"
    return ""


def uses_models(args: argparse.Namespace) -> bool:
    """Whether both model factories were given."""
    return bool(getattr(args, "torch_model", None) and getattr(args, "mindspore_model", None))


def infer_from_models(
    args: argparse.Namespace, source: ParamTable, target: ParamTable, *, threshold: float, pins: NameMapping | None
) -> NetworkInference:
    """Build both models from their factories and run network-aware inference.

    Raises:
        AutomapError: a factory cannot be loaded or returns the wrong kind of model, an input spec is malformed,
            or the models do not fit the checkpoints or their inputs.
    """
    from ._api import infer_with_networks

    specs, torch_model, mindspore_model = build_models(args)
    return infer_with_networks(
        source,
        target,
        torch_model=torch_model,
        mindspore_model=mindspore_model,
        inputs=specs or None,
        threshold=threshold,
        pins=pins,
        rtol=args.rtol,
        atol=args.atol,
        seed=args.seed,
    )


def check_from_models(
    args: argparse.Namespace, mapping: NameMapping, source: ParamTable, target: ParamTable
) -> NetworkInference:
    """Build both models from their factories and settle and prove a given mapping.

    Raises:
        AutomapError: as `infer_from_models`.
    """
    from ._api import check_with_networks

    specs, torch_model, mindspore_model = build_models(args)
    return check_with_networks(
        mapping,
        source,
        target,
        torch_model=torch_model,
        mindspore_model=mindspore_model,
        inputs=specs or None,
        rtol=args.rtol,
        atol=args.atol,
        seed=args.seed,
    )


def build_models(args: argparse.Namespace) -> tuple[list[InputSpec], object, object]:
    """The input specs and both models, built by their factories (MindSpore set to PyNative on the CPU).

    Raises:
        AutomapError: an input spec is malformed, or a factory cannot be loaded or returns the wrong kind of model.
        MissingDependencyError: torch or MindSpore is not installed.
    """
    from .networks import load_factory
    from .probes import parse_input_spec

    specs = [parse_input_spec(text) for text in args.inputs or []]  # malformed specs fail before any import
    require_frameworks()
    here = str(Path.cwd())
    if here not in sys.path:  # as `python -m` would, so that a model module beside the user is found
        sys.path.insert(0, here)
    os.environ.setdefault("GLOG_v", "3")
    import mindspore

    mindspore.set_context(mode=mindspore.PYNATIVE_MODE, device_target="CPU")
    torch_model = load_factory(args.torch_model)
    mindspore_model = load_factory(args.mindspore_model)
    if not hasattr(torch_model, "state_dict"):
        msg = f"{args.torch_model} returned a {type(torch_model).__name__}, not a torch.nn.Module"
        raise AutomapError(msg)
    if not hasattr(mindspore_model, "parameters_and_names"):
        msg = f"{args.mindspore_model} returned a {type(mindspore_model).__name__}, not a mindspore.nn.Cell"
        raise AutomapError(msg)
    return specs, torch_model, mindspore_model


_EXTRAS = {("torch",): "automap[torch]", ("mindspore",): "automap[mindspore]", ("torch", "mindspore"): "automap[all]"}


def require_frameworks(purpose: str = "running the models (--torch-model, --mindspore-model)") -> None:
    """Fail, naming the extra to install, unless both torch and MindSpore can be imported (found, not imported).

    Raises:
        MissingDependencyError: one or both frameworks are not installed.
    """
    missing = tuple(name for name in ("torch", "mindspore") if importlib.util.find_spec(name) is None)
    if missing:
        names = " and ".join("MindSpore" if name == "mindspore" else name for name in missing)
        verb = "are" if len(missing) > 1 else "is"
        msg = (
            f"{purpose} needs both torch and MindSpore; {names} {verb} not installed; "
            f"run: pip install '{_EXTRAS[missing]}'"
        )
        raise MissingDependencyError(msg)
