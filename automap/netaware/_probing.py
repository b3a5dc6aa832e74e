"""Both networks set up for network-aware inference: checked against their checkpoints, probed, traced.

`prepare` wraps the two models, decides from the checkpoints' frameworks which is the source, aligns each
network's parameter names with its checkpoint's, loads the source weights, makes the probe inputs (given, or
guessed from the PyTorch model's first layer) and traces one forward pass of each network. The traced runs give
the execution orders the inference engine uses, and the reference outputs numeric resolution compares with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automap._advice import option
from automap._errors import AutomapError
from automap._types import Array, StrPath
from automap.records import ParamTable

from ._nets import Net, Run, wrap
from ._resolve import Timeline, timeline
from ._session import Session, side
from .probes import ProbeInput, guess_input, make_input, make_inputs

MindSporeInputs = Callable[[tuple[Array, ...]], Sequence[Array]]
"""Turns the probe inputs into the MindSpore model's arguments, when its signature differs."""


@dataclass
class Probes:
    """Both networks set up, the probe inputs and what the first traced runs showed."""

    session: Session
    reference: Run
    line: Timeline
    source_order: list[str]
    target_order: list[str]
    probe: list[Array]
    proof_inputs: tuple[list[Array], list[Array]]
    described: list[str]

    def close(self) -> None:
        """Take the hooks off both models."""
        self.session.source.net.close()
        self.session.target.net.close()


def prepare(
    source: ParamTable | StrPath,
    target: ParamTable | StrPath,
    torch_model: object,
    mindspore_model: object,
    inputs: Sequence[ProbeInput] | None,
    mindspore_inputs: MindSporeInputs | None,
    seed: int,
) -> Probes:
    """Wrap and check both models, load the source weights, and trace one forward pass of each."""
    source_table, target_table = table_of(source), table_of(target)
    torch_net, mindspore_net = wrap(torch_model), wrap(mindspore_model)
    if torch_net.framework != "pytorch" or mindspore_net.framework != "mindspore":
        msg = "torch_model must be a torch.nn.Module and mindspore_model a mindspore.nn.Cell"
        raise AutomapError(msg)
    if source_table.framework == target_table.framework:
        msg = (
            f"network-aware inference maps between the frameworks, but {source_table.source} and "
            f"{target_table.source} are both {source_table.framework} checkpoints"
        )
        raise AutomapError(msg)
    source_net, target_net = (
        (torch_net, mindspore_net) if source_table.framework == "pytorch" else (mindspore_net, torch_net)
    )
    session = Session(
        side(source_net, source_table, "source", _what(source_net)),
        side(target_net, target_table, "target", _what(target_net)),
    )
    torch_probe, described = _inputs(inputs, torch_net, seed)
    source_probe, probe = _per_side(torch_probe, mindspore_inputs, source_net.framework)
    session.load_source()
    try:
        reference = session.run_source(source_probe, capture=None, trace=True)
        shapes_run = session.run_target(probe, capture=None, trace=True)
    except BaseException:
        source_net.close()  # the hooks stay for the runs to come, unless there are none
        target_net.close()
        raise
    fresh = _proof_inputs(inputs, torch_probe, torch_net, seed + 1)
    return Probes(
        session=session,
        reference=reference,
        line=timeline(shapes_run, target_net.owner),
        source_order=_order(source_net, reference, session.source.to_checkpoint),
        target_order=_order(target_net, shapes_run, session.target.to_checkpoint),
        probe=probe,
        proof_inputs=_per_side(fresh, mindspore_inputs, source_net.framework),
        described=described,
    )


class Clock:
    """Seconds spent per phase, each lap measured from the end of the previous one."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.start
        self.start = now


def table_of(value: ParamTable | StrPath) -> ParamTable:
    """A table as given, or the table of a checkpoint file."""
    if isinstance(value, ParamTable):
        return value
    from automap.io import load_checkpoint

    return load_checkpoint(Path(value))


def _what(net: Net) -> str:
    return type(net.module).__name__


def _inputs(inputs: Sequence[ProbeInput] | None, torch_net: Net, seed: int) -> tuple[list[Array], list[str]]:
    rng = np.random.default_rng(seed)
    if inputs is None:
        try:
            spec = guess_input(torch_net.module)
        except AutomapError as error:
            msg = f"network-aware inference needs probe inputs: {error}"
            raise AutomapError(msg) from None
        return [make_input(spec, rng)], [
            f"{spec} (guessed from the first layer; choose it with {option('inputs', ['SHAPE:DTYPE'])})"
        ]
    return make_inputs(inputs, rng)


def _per_side(
    arrays: list[Array], mindspore_inputs: MindSporeInputs | None, source: str
) -> tuple[list[Array], list[Array]]:
    """(source inputs, target inputs) from the torch model's inputs."""
    for_mindspore = list(mindspore_inputs(tuple(arrays))) if mindspore_inputs is not None else arrays
    return (arrays, for_mindspore) if source == "pytorch" else (for_mindspore, arrays)


def _proof_inputs(inputs: Sequence[ProbeInput] | None, probe: list[Array], torch_net: Net, seed: int) -> list[Array]:
    """Fresh inputs of the same specs for the proof; given arrays are reused."""
    if inputs is not None and any(isinstance(v, np.ndarray) for v in inputs):
        return probe
    return _inputs(inputs, torch_net, seed)[0]


def _order(net: Net, run: Run, to_checkpoint: Mapping[str, str]) -> list[str]:
    """Checkpoint names in the order a traced run first used them."""
    return [to_checkpoint[n] for n in net.execution_order(run) if n in to_checkpoint]
