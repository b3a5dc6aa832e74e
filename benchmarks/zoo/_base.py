"""What a zoo pair is, and how its ground truth is proven by numerical equivalence.

A pair is one architecture written twice, as a `torch.nn.Module` and as a `mindspore.nn.Cell` named the way
real ports name things, plus a hand-written ground-truth mapping from every MindSpore parameter to its
PyTorch source (with layout transforms). The engine never sees the ground truth; `prove()` shows it is right:
random torch weights go through it into the MindSpore net, both nets run on the same input in eval mode, and
the outputs must agree within the pair's tolerance.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automap.netaware.networks import (
    OutputComparison,
    compare_outputs,
    load_into_mindspore,
    run_mindspore,
    run_torch,
    torch_state,
)
from automap.transforms import Step, apply_steps, parse_steps

Size = str  # "ci" (small depth, for the test suite) or "full" (the real model's depth)
GroundTruthEntry = str | list[str] | dict[str, Any]
GroundTruth = dict[str, GroundTruthEntry]


@dataclass(frozen=True)
class ZooPair:
    """One architecture in both frameworks, with its proven ground-truth mapping.

    Attributes:
        name: short identifier, e.g. "resnet50".
        title: what a reader sees in the benchmark table, e.g. "ResNet-50".
        torch_model: builds the torch module for a size ("ci" or "full").
        mindspore_model: builds the MindSpore cell for a size.
        ground_truth: for a size, {mindspore_name: torch_name | [names to concat] | {"source", "transform"}}
            covering every MindSpore parameter; torch parameters it does not use are expected unmatched.
        inputs: for a size and a random generator, the probe inputs (numpy arrays) both nets take.
        optimizer: which MindSpore optimizer's state the MindSpore checkpoint carries ("momentum", "adam",
            "adamw" or None), as a real training checkpoint would.
        rtol, atol: tolerance of the equivalence proof.
        mindspore_inputs: converts the numpy inputs for MindSpore when dtypes differ (e.g. int32 token ids).
        network_aware_only: a pair that checkpoint-only inference is expected to flag (names and order mislead).
        notes: what this pair exercises.
    """

    name: str
    title: str
    torch_model: Callable[[Size], Any]
    mindspore_model: Callable[[Size], Any]
    ground_truth: Callable[[Size], GroundTruth]
    inputs: Callable[[Size, np.random.Generator], tuple[np.ndarray, ...]]
    optimizer: str | None = "momentum"
    rtol: float = 1e-4
    atol: float = 1e-5
    mindspore_inputs: Callable[[tuple[np.ndarray, ...]], tuple[Any, ...]] | None = None
    network_aware_only: bool = False
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Proof:
    """The outcome of running both nets with weights moved through a mapping."""

    pair: str
    size: Size
    comparison: OutputComparison

    @property
    def passed(self) -> bool:
        return self.comparison.passed


def normalise_ground_truth(
    truth: Mapping[str, GroundTruthEntry],
) -> dict[str, tuple[tuple[str, ...], tuple[Step, ...]]]:
    """{target: (source names, typed transform steps)} from any accepted ground-truth entry form (JSON steps)."""
    out: dict[str, tuple[tuple[str, ...], tuple[Step, ...]]] = {}
    for target, entry in truth.items():
        if isinstance(entry, dict):
            source, steps = entry["source"], parse_steps(entry.get("transform"), where=target)
        else:
            source, steps = entry, ()
        out[target] = ((source,) if isinstance(source, str) else tuple(source), steps)
    return out


def build_torch(pair: ZooPair, size: Size, seed: int = 0) -> Any:
    """The torch net with every float parameter and buffer perturbed, so that no two tensors coincide.

    Default initialisations make many tensors equal (LayerNorm weight 1, bias 0; BatchNorm statistics 0 and 1):
    a mapping that swapped them would still compute the same thing. Small random offsets make every tensor
    distinct, so the proof catches any swap.
    """
    import torch

    torch.manual_seed(seed)
    module = pair.torch_model(size)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * 0.05
            if name.endswith("running_var"):
                tensor.copy_((tensor + noise).abs() + 0.5)
            else:
                tensor.add_(noise)
    return module.eval()


def prove(
    pair: ZooPair,
    size: Size = "ci",
    mapping: Mapping[str, GroundTruthEntry] | None = None,
    *,
    seed: int = 0,
) -> Proof:
    """Move random torch weights through `mapping` (default: the ground truth) and compare both nets' outputs."""
    import mindspore

    with _quiet_mindspore():
        cpu_pynative(mindspore)
        torch_net = build_torch(pair, size, seed)
        state = torch_state(torch_net)
        entries = normalise_ground_truth(mapping if mapping is not None else pair.ground_truth(size))
        arrays = {
            target: apply_steps([state[s] for s in sources], steps) for target, (sources, steps) in entries.items()
        }
        ms_net = pair.mindspore_model(size)
        load_into_mindspore(ms_net, arrays)
        inputs = pair.inputs(size, np.random.default_rng(seed))
        reference = run_torch(torch_net, inputs)
        ms_inputs = pair.mindspore_inputs(inputs) if pair.mindspore_inputs else inputs
        outputs = run_mindspore(ms_net, ms_inputs)
    return Proof(pair.name, size, compare_outputs(reference, outputs, rtol=pair.rtol, atol=pair.atol))


def write_checkpoints(pair: ZooPair, size: Size, folder: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write the pair's real checkpoint files: torch `.pth` (state dict) and MindSpore `.ckpt` with training state.

    The MindSpore file is saved the way a training script saves one: the network wrapped with a loss and an
    optimizer in a `TrainOneStepCell`, so the optimizer's slots and counters are in the file too.
    """
    import mindspore
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch_path, ms_path = folder / f"{pair.name}-{size}.pth", folder / f"{pair.name}-{size}.ckpt"
    torch.save(build_torch(pair, size, seed).state_dict(), torch_path)
    with _quiet_mindspore():
        cpu_pynative(mindspore)
        mindspore.set_seed(seed)
        net = pair.mindspore_model(size)
        if ms_path.exists():
            ms_path.chmod(0o644)
            ms_path.unlink()
        mindspore.save_checkpoint(_with_optimizer(net, pair.optimizer), str(ms_path))
    return torch_path, ms_path


def _with_optimizer(net: Any, optimizer: str | None) -> Any:
    """`net` wrapped for training with the named optimizer, so its state is saved beside the weights."""
    if optimizer is None:
        return net
    from mindspore import nn

    params = net.trainable_params()
    if optimizer == "momentum":
        opt = nn.Momentum(params, learning_rate=0.01, momentum=0.9)
    elif optimizer == "adam":
        opt = nn.Adam(params, learning_rate=1e-3)
    elif optimizer == "adamw":
        opt = nn.AdamWeightDecay(params, learning_rate=1e-3)
    else:
        raise ValueError(optimizer)
    return nn.TrainOneStepCell(_first_output_loss(net), opt)


def _first_output_loss(net: Any) -> Any:
    """The sum of the net's first output: only there so that a TrainOneStepCell can be built and saved."""
    from mindspore import nn, ops

    class FirstOutputLoss(nn.Cell):
        def __init__(self, network: Any) -> None:
            super().__init__(auto_prefix=False)
            self.network = network

        def construct(self, *inputs: Any) -> Any:
            out = self.network(*inputs)
            while isinstance(out, tuple | list):
                out = out[0]
            return ops.reduce_sum(out)

    return FirstOutputLoss(net)


def cpu_pynative(mindspore: Any) -> None:
    """MindSpore in PyNative mode on the CPU, without the deprecated `set_context(device_target=...)`.

    That form logs a deprecation warning on every call, several per zoo pair; `set_device` does the same quietly.
    It may be called once per process only, before anything runs: a later call (the runtime already set up by an
    earlier pair, or by the caller on the CPU) leaves the device as it is.
    """
    from mindspore import get_context

    if get_context("device_target") != "CPU":
        mindspore.set_device("CPU")
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)


@contextlib.contextmanager
def _quiet_mindspore() -> Iterator[None]:
    """Keep the benchmark's output readable while it builds and saves the zoo's MindSpore nets.

    MindSpore logs through glog (`GLOG_v`, read when its logger is first made) and a Python logger: building an
    Adam optimizer, for one, logs that an operator it uses is deprecated. Those warnings come from the benchmark's
    own calls and say nothing about automap, so both are held at errors only for the duration.
    """
    previous = os.environ.get("GLOG_v")
    os.environ["GLOG_v"] = "3"
    logger = _mindspore_logger()
    level = logger.level if logger is not None else None
    if logger is not None:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        if logger is not None and level is not None:
            logger.setLevel(level)
        if previous is None:
            os.environ.pop("GLOG_v", None)
        else:
            os.environ["GLOG_v"] = previous


def _mindspore_logger() -> logging.Logger | None:
    """MindSpore's Python logger, or None where this MindSpore has none to reach (the benchmark's output only)."""
    try:
        from mindspore import log
    except ImportError:
        return None
    found = getattr(log, "_get_logger", lambda: None)()
    return found if isinstance(found, logging.Logger) else None
