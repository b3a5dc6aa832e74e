"""The model and input options of the command line, declared once for `automap verify`, `infer` and `convert`.

`add_model_options` adds `--torch-model`, `--mindspore-model`, `--input`, `--seed`, `--rtol`, `--atol` and (for
inference) the arguments and outputs of each model to a parser and imports nothing beyond argparse.
`model_options` turns the parsed arguments into a `ModelOptions` (input specs and argument specs parsed, so
that a malformed one fails before any framework is imported); its methods build both
models from their factories (MindSpore set to PyNative mode on the CPU) and verify them or run network-aware
inference with them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automap._errors import AutomapError, MissingDependencyError

from .probes import InputSpec, parse_input_spec

if TYPE_CHECKING:
    from automap._types import StrPath
    from automap.records import NameMapping, ParamTable

    from ._api import NetworkInference
    from ._calls import Arguments
    from .verify import VerifyReport

__all__ = ["ModelOptions", "add_model_options", "model_options", "model_options_problem", "require_frameworks"]


@dataclass(frozen=True)
class ModelOptions:
    """Both model factories and how to probe and compare the models, as given on the command line.

    Attributes:
        torch_model: the factory of the torch module, `package.module:function`.
        mindspore_model: the factory of the MindSpore cell.
        inputs: one spec per probe input; empty to guess the input from the PyTorch model's first layer.
        seed: seed of the random inputs.
        rtol: relative tolerance of the output comparison (None: chosen for the precision the models compute in;
            `automap verify` then uses 1e-4).
        atol: absolute tolerance of the output comparison (None: 1e-5).
        torch_arguments: how the probe inputs become the torch model's arguments (`0,2,mask=1`).
        mindspore_arguments: the same for the MindSpore model.
        torch_outputs: the torch model's outputs to compare (names or positions, comma-separated).
        mindspore_outputs: the MindSpore model's outputs to compare.
        torch_method: the torch model's method the runs call instead of `forward`.
        mindspore_method: the MindSpore model's method the runs call instead of `construct`.
    """

    torch_model: str
    mindspore_model: str
    inputs: tuple[InputSpec, ...] = ()
    seed: int = 0
    rtol: float | None = None
    atol: float | None = None
    torch_arguments: Arguments | None = None
    mindspore_arguments: Arguments | None = None
    torch_outputs: str | None = None
    mindspore_outputs: str | None = None
    torch_method: str | None = None
    mindspore_method: str | None = None

    def build(self) -> tuple[object, object]:
        """Both models, built by their factories (MindSpore set to PyNative mode on the CPU).

        Raises:
            AutomapError: a factory cannot be loaded or returns the wrong kind of model.
        """
        from .networks import load_factory

        here = str(Path.cwd())
        if here not in sys.path:  # as `python -m` would, so that a model module beside the user is found
            sys.path.insert(0, here)
        os.environ.setdefault("GLOG_v", "3")
        import mindspore

        if mindspore.get_context("device_target") != "CPU":  # set_device may run once, before anything runs
            mindspore.set_device("CPU")  # `set_context(device_target=...)` is deprecated and logs a warning
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
        torch_model = load_factory(self.torch_model)
        mindspore_model = load_factory(self.mindspore_model)
        if not hasattr(torch_model, "state_dict"):
            msg = f"{self.torch_model} returned a {type(torch_model).__name__}, not a torch.nn.Module"
            raise AutomapError(msg)
        if not hasattr(mindspore_model, "parameters_and_names"):
            msg = f"{self.mindspore_model} returned a {type(mindspore_model).__name__}, not a mindspore.nn.Cell"
            raise AutomapError(msg)
        return torch_model, mindspore_model

    def verify(self, *, torch_weights: StrPath | None = None, mindspore_weights: StrPath | None = None) -> VerifyReport:
        """Build both models, load the weights given, run them on the same inputs and compare (`verify`).

        Raises:
            AutomapError: as `build` and `verify`.
        """
        from .verify import verify

        torch_model, mindspore_model = self.build()
        return verify(
            torch_model,
            mindspore_model,
            inputs=list(self.inputs) or None,
            torch_weights=torch_weights,
            mindspore_weights=mindspore_weights,
            rtol=1e-4 if self.rtol is None else self.rtol,
            atol=1e-5 if self.atol is None else self.atol,
            seed=self.seed,
        )

    def infer(
        self, source: ParamTable, target: ParamTable, *, threshold: float, pins: NameMapping | None
    ) -> NetworkInference:
        """Build both models and run network-aware inference (`infer_with_networks`).

        Raises:
            AutomapError: as `build`, or the models do not fit the checkpoints or their inputs.
        """
        from ._api import infer_with_networks

        torch_model, mindspore_model = self.build()
        return infer_with_networks(
            source,
            target,
            torch_model=torch_model,
            mindspore_model=mindspore_model,
            inputs=list(self.inputs) or None,
            threshold=threshold,
            pins=pins,
            seed=self.seed,
            **self._calling(),
        )

    def check(self, mapping: NameMapping, source: ParamTable, target: ParamTable) -> NetworkInference:
        """Build both models, then settle and prove a given mapping (`check_with_networks`).

        Raises:
            AutomapError: as `infer`.
        """
        from ._api import check_with_networks

        torch_model, mindspore_model = self.build()
        return check_with_networks(
            mapping,
            source,
            target,
            torch_model=torch_model,
            mindspore_model=mindspore_model,
            inputs=list(self.inputs) or None,
            seed=self.seed,
            **self._calling(),
        )

    def _calling(self) -> dict[str, Any]:
        """The keyword arguments of network-aware inference that say how the models are called and compared."""
        return {
            "torch_arguments": self.torch_arguments,
            "mindspore_arguments": self.mindspore_arguments,
            "torch_outputs": self.torch_outputs,
            "mindspore_outputs": self.mindspore_outputs,
            "torch_method": self.torch_method,
            "mindspore_method": self.mindspore_method,
            "rtol": self.rtol,
            "atol": self.atol,
        }


def add_model_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add the model and input options to a subcommand's parser.

    Args:
        parser: the subcommand's parser.
        required: both models are the subject of the command (`verify`), not an option (`infer`, `convert`).
    """
    if required:
        group = parser.add_argument_group(
            "models and inputs",
            "each model comes from a function called with no arguments (modules in the current folder are found)",
        )
    else:
        group = parser.add_argument_group(
            "network-aware inference",
            "with both model definitions, parameters are ordered by execution, doubtful pairs are settled by "
            "running the models, and the mapping is proven (each model from a function called with no arguments)",
        )
    group.add_argument("--torch-model", required=required, metavar="MODULE:FACTORY", help="builds the torch.nn.Module")
    group.add_argument(
        "--mindspore-model", required=required, metavar="MODULE:FACTORY", help="builds the mindspore.nn.Cell"
    )
    group.add_argument(
        "--input",
        action="append",
        dest="inputs",
        metavar="SPEC",
        help="input SHAPE[:DTYPE[:LOW-HIGH]], once per model argument, e.g. 1x3x224x224:float32 or "
        "1x16:int64:0-1000 (default: guessed from the PyTorch model's first layer)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    group.add_argument(
        "--rtol",
        type=float,
        help="relative tolerance when the outputs are compared (default: 1e-4; network-aware inference measures it "
        "against each output's largest value and loosens it for float16/bfloat16 compute)",
    )
    group.add_argument("--atol", type=float, help="absolute tolerance when the outputs are compared (default 1e-5)")
    if not required:
        group.add_argument(
            "--torch-args",
            metavar="SPEC",
            help="how the inputs become the torch model's arguments: positions then keywords, each an input number, "
            "an item of one (1[0]: its first item along the first axis) or a constant (true, false, none, a number; "
            "a whole number is an input, a constant integer takes a sign: +5, -1; 'text'; a tuple: (64,64)), e.g. "
            "input_ids=0,token_type_ids=1,attention_mask=2 (default: the inputs in order)",
        )
        group.add_argument(
            "--mindspore-args",
            metavar="SPEC",
            help="the same for the MindSpore model, e.g. 0,2,1 or image=0,original_size=(64,64),point_coords=1[0]",
        )
        group.add_argument(
            "--torch-output",
            metavar="NAMES",
            help="the torch model's outputs to compare, by name or position, comma-separated, e.g. logits or 0,1 "
            "(default: paired by shape with the other model's; the choice is printed)",
        )
        group.add_argument("--mindspore-output", metavar="NAMES", help="the MindSpore model's outputs to compare")
        group.add_argument(
            "--torch-method",
            metavar="NAME",
            help="the torch model's method to call instead of forward, where that method returns what the other "
            "model returns, e.g. get_logits (open_clip) or encode_text",
        )
        group.add_argument(
            "--mindspore-method", metavar="NAME", help="the MindSpore model's method to call instead of construct"
        )


def model_options_problem(args: argparse.Namespace) -> str:
    """What is wrong with the combination of model options given (a usage error), or ""."""
    torch_model, mindspore_model = getattr(args, "torch_model", None), getattr(args, "mindspore_model", None)
    if bool(torch_model) != bool(mindspore_model):
        return "--torch-model and --mindspore-model go together: give both model factories"
    if getattr(args, "inputs", None) and not torch_model:
        return "--input is for network-aware inference: give --torch-model and --mindspore-model too"
    calling = ("torch_args", "mindspore_args", "torch_output", "mindspore_output", "torch_method", "mindspore_method")
    if any(getattr(args, name, None) for name in calling) and not torch_model:
        return (
            "--torch-args, --mindspore-args and the output and method choices need --torch-model and --mindspore-model"
        )
    return ""


def model_options(args: argparse.Namespace) -> ModelOptions | None:
    """The parsed model options, or None when no model factory was given.

    Check `model_options_problem` first: with one factory only, this returns None. Called before any
    checkpoint is read, so that a missing framework is reported before any work.

    Raises:
        AutomapError: an input spec is malformed.
        MissingDependencyError: torch or MindSpore is not installed.
    """
    torch_model, mindspore_model = getattr(args, "torch_model", None), getattr(args, "mindspore_model", None)
    if not torch_model or not mindspore_model:
        return None
    specs = tuple(parse_input_spec(text) for text in args.inputs or [])  # malformed specs fail first
    from ._calls import parse_arguments

    arguments = [getattr(args, name, None) for name in ("torch_args", "mindspore_args")]
    parsed = [parse_arguments(text) if text else None for text in arguments]
    require_frameworks()
    return ModelOptions(
        torch_model,
        mindspore_model,
        specs,
        args.seed,
        args.rtol,
        args.atol,
        parsed[0],
        parsed[1],
        getattr(args, "torch_output", None),
        getattr(args, "mindspore_output", None),
        getattr(args, "torch_method", None),
        getattr(args, "mindspore_method", None),
    )


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
