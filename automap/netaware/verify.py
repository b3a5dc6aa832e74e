"""Check that two networks, one per framework, compute the same thing with their weights.

Both networks run in eval mode on the same input (given, or random from specs, or guessed from the first
layer of the PyTorch model) and their outputs are compared: `|a - b| <= atol + rtol * |a|` everywhere, the
PyTorch output being the reference. Weights, when given, are loaded by name first, every parameter required.
The verdict is data (`VerifyReport.passed`); only bad input raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from automap._advice import option
from automap._types import Array, Framework, StrPath
from automap.io import load_checkpoint
from automap.records import ParamTable

from ._frameworks import NetworkRunError, get_backend
from .networks import OutputComparison, compare_outputs, flatten_outputs, load_into_mindspore, load_into_torch
from .probes import ProbeInput, guess_input, make_inputs, token_ids

if TYPE_CHECKING:
    from ._localise import Divergence

__all__ = ["VerifyReport", "verify"]


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of running both networks on the same input.

    Attributes:
        comparison: output differences and the verdict.
        inputs: how each input was made (`1x3x224x224:float32`), in argument order.
        rtol: relative tolerance used.
        atol: absolute tolerance used.
        guessed: the input was guessed from the PyTorch model's first layer.
        divergence: when the outputs differ, the first MindSpore module whose outputs differ from its PyTorch
            counterpart's (modules paired by which parameters hold the same values), or None.
    """

    comparison: OutputComparison
    inputs: tuple[str, ...]
    rtol: float
    atol: float
    guessed: bool = False
    divergence: Divergence | None = None

    def __repr__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"<VerifyReport {verdict}: max abs diff {self.comparison.max_abs:.3g}, max rel diff "
            f"{self.comparison.max_rel:.3g} (rtol {self.rtol:g}, atol {self.atol:g}), {len(self.inputs)} inputs>"
        )

    @property
    def passed(self) -> bool:
        """True when every output agrees within tolerance."""
        return self.comparison.passed

    def lines(self) -> list[str]:
        """A short human-readable account: inputs, per-output differences, verdict."""
        origin = (
            f" (guessed from the first layer; choose it with {option('inputs', ['SHAPE:DTYPE'])})"
            if self.guessed
            else ""
        )
        out = [f"input {i}: {text}{origin}" for i, text in enumerate(self.inputs)]
        out.extend(self.comparison.detail)
        verdict = "PASS" if self.passed else "FAIL"
        out.append(
            f"{verdict}: max abs diff {self.comparison.max_abs:.3g}, max rel diff {self.comparison.max_rel:.3g} "
            f"(rtol {self.rtol:g}, atol {self.atol:g})"
        )
        if self.divergence is not None:
            out.append(self.divergence.describe())
        return out


def verify(
    torch_module: object,
    mindspore_cell: object,
    *,
    inputs: Sequence[ProbeInput] | None = None,
    torch_weights: ParamTable | StrPath | None = None,
    mindspore_weights: ParamTable | StrPath | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    seed: int = 0,
    localise: bool = True,
) -> VerifyReport:
    """Run a PyTorch module and a MindSpore cell on the same input and compare their outputs.

    Args:
        torch_module: a `torch.nn.Module`.
        mindspore_cell: a `mindspore.nn.Cell`.
        inputs: one entry per positional argument of the networks: numpy arrays, `InputSpec`s or spec strings
            such as "1x3x224x224:float32" or "1x16:int64:0-1000". When omitted, guessed from the PyTorch
            model's first layer (a Conv, Linear, Embedding or LayerNorm).
        torch_weights: a checkpoint (or table) to load into the module first; every entry must fit.
        mindspore_weights: a checkpoint (or table) to load into the cell first; every parameter must be given.
        rtol: relative tolerance.
        atol: absolute tolerance.
        seed: seed for random inputs.
        localise: when the outputs differ, run both models again with every module's outputs recorded and
            name the first MindSpore module whose outputs differ from its PyTorch counterpart's.

    Returns:
        The comparison; `passed` tells the verdict.

    Raises:
        AutomapError: an input spec is malformed or cannot be guessed, the weights do not fit the networks,
            or a network fails on the input.

    Example:
        >>> report = verify(torch_net, ms_net, inputs=["1x3x224x224:float32"])  # doctest: +SKIP
        >>> report.passed  # doctest: +SKIP
        True
    """
    if torch_weights is not None:
        arrays, dtypes = _arrays(torch_weights)
        load_into_torch(torch_module, arrays, dtypes)
    if mindspore_weights is not None:
        arrays, dtypes = _arrays(mindspore_weights)
        load_into_mindspore(mindspore_cell, arrays, dtypes)
    rng = np.random.default_rng(seed)
    guessed = inputs is None
    if inputs is None:
        inputs = [guess_input(torch_module)]
    arrays_in, described = make_inputs(inputs, rng, token_ids(torch_module, mindspore_cell))
    hint = f"; give the input with {option('inputs', ['SHAPE:DTYPE'])}" if guessed else ""
    reference = _run("pytorch", torch_module, arrays_in, described, hint)
    candidate = _run("mindspore", mindspore_cell, arrays_in, described, hint)
    comparison = compare_outputs(reference, candidate, rtol=rtol, atol=atol)
    divergence = None
    if localise and not comparison.passed:
        from ._localise import locate_divergence

        divergence = locate_divergence(torch_module, mindspore_cell, arrays_in)
    return VerifyReport(comparison, tuple(described), rtol, atol, guessed, divergence)


def _arrays(weights: ParamTable | StrPath) -> tuple[dict[str, Array], dict[str, str]]:
    table = weights if isinstance(weights, ParamTable) else load_checkpoint(weights)
    return {r.name: r.read() for r in table.params}, {r.name: r.dtype for r in table.params}


def _run(framework: Framework, network: object, inputs: list[Array], described: list[str], hint: str) -> list[Array]:
    backend = get_backend(framework)
    try:
        output = backend.run(network, inputs)
    except Exception as error:  # the network's own code rejected the input: a usage problem, not a bug here
        raise NetworkRunError(backend, described, error, hint) from error
    return flatten_outputs(output)
