"""What a real-port pair is: one model in two third-party packages, and the hand-written truth between them.

A `RealPair` names the packages whose model code builds each side (torchvision, timm, transformers, ...
against mindcv, mindformers, ...), small configurations of both, and a ground truth written by hand from the
two packages' naming conventions, independently of automap's engine. The generator proves the truth by
running both networks (see `_prove`); nothing here imports a framework or a model package until a builder
is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Direction = Literal["pt2ms", "ms2pt"]
TorchFormat = Literal["pth", "safetensors"]
MindsporeFormat = Literal["ckpt", "safetensors"]
TruthEntry = str | list[str] | dict[str, Any]
Truth = dict[str, TruthEntry | None]  # None: the target has no source in the other package (said why in notes)
Inputs = tuple[np.ndarray, ...]

FAMILIES = (
    "cnn",
    "vision-transformer",
    "encoder-lm",
    "decoder-lm",
    "seq2seq",
    "clip",
    "diffusion",
    "detection-ocr",
    "audio-recurrent",
    "hybrid-vision",
    "mobile-cnn",
    "segmentation",
)


@dataclass(frozen=True)
class RealPair:
    """One model as two third-party packages build it, with the truth from target names to source names.

    Attributes:
        name: short identifier, also the folder name under tests/data/realports.
        family: one of `FAMILIES`; the held-out split is by family.
        direction: "pt2ms" (source: the PyTorch checkpoint, target: the MindSpore one) or "ms2pt".
        packages: the distributions whose model code builds the two networks; their installed versions
            are recorded with the data.
        torch_model, mindspore_model: build the network with a small configuration (seeded by the caller).
        truth: {target name: source name | [names to concatenate] | {"source", "transform"} | None}, covering
            every parameter of the target checkpoint; None marks a target with no counterpart (e.g. torch's
            `num_batches_tracked` in the MindSpore -> PyTorch direction).
        inputs: the probe inputs (numpy) for a random generator.
        torch_forward, mindspore_forward: run a network on the inputs and return its output arrays.
        torch_format: how a user gets the PyTorch weights: "pth" (torch.save(state_dict)) or "safetensors"
            (save_pretrained).
        mindspore_format: how a user gets the MindSpore weights: "ckpt" (mindspore.save_checkpoint(net), names
            from the parameters' own names) or "safetensors" (the package's save_pretrained, names from the
            cells' attribute paths, as mindone writes them).
        rtol, atol: tolerance of the equivalence proof.
        swap: two same-shaped target tensors whose exchange must break the proof (default: picked).
        proof: "network" (whole outputs compared) or "per-block" (said in notes).
        notes: what is odd about the pair: workarounds, aligned parameter-free differences.
        fill: constants for target tensors without a source that the target network nevertheless uses (e.g. a
            position bias the other package does not have, zero there); the proof sets them.
        constants: name fragments of tensors a package stores as parameters although they are computed constants
            (attention masks, index tables); they are not perturbed.
        setup: pair-specific run-time set-up, called before either network is built.
        site: an extra package folder the pair needs on sys.path (a package line that cannot share the
            environment's site-packages with another version of itself), relative to the environment prefix.
    """

    name: str
    family: str
    direction: Direction
    packages: tuple[str, ...]
    torch_model: Callable[[], Any]
    mindspore_model: Callable[[], Any]
    truth: Callable[[], Truth]
    inputs: Callable[[np.random.Generator], Inputs]
    torch_forward: Callable[[Any, Inputs], list[np.ndarray]] | None = None
    mindspore_forward: Callable[[Any, Inputs], list[np.ndarray]] | None = None
    torch_format: TorchFormat = "pth"
    mindspore_format: MindsporeFormat = "ckpt"
    rtol: float = 1e-4
    atol: float = 1e-5
    swap: tuple[str, str] | None = None
    proof: Literal["network", "per-block"] = "network"
    notes: str = ""
    fill: dict[str, float] | None = None
    constants: tuple[str, ...] = ()
    setup: Callable[[], None] | None = None
    site: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            msg = f"pair {self.name!r}: unknown family {self.family!r}; use one of {FAMILIES}"
            raise ValueError(msg)
        if self.direction not in ("pt2ms", "ms2pt"):
            msg = f"pair {self.name!r}: direction must be 'pt2ms' or 'ms2pt', not {self.direction!r}"
            raise ValueError(msg)


def images(size: int, batch: int = 2, channels: int = 3) -> Callable[[np.random.Generator], Inputs]:
    """Probe images, NCHW float32."""

    def build(rng: np.random.Generator) -> Inputs:
        return (rng.standard_normal((batch, channels, size, size)).astype(np.float32),)

    return build


def token_ids(vocab: int, length: int, batch: int = 2) -> Callable[[np.random.Generator], Inputs]:
    """Probe token ids, int64 [batch, length] (MindSpore forwards convert to int32 where a port wants it)."""

    def build(rng: np.random.Generator) -> Inputs:
        return (rng.integers(1, vocab, size=(batch, length)).astype(np.int64),)

    return build


def weight_bias(target: str, source: str) -> dict[str, TruthEntry | None]:
    """`target.weight/bias` from `source.weight/bias` (same layout)."""
    return {f"{target}.weight": f"{source}.weight", f"{target}.bias": f"{source}.bias"}


def transposed(source: str) -> dict[str, Any]:
    """A 2-D weight stored the other way round."""
    return {"source": source, "transform": [{"op": "transpose"}]}


def batchnorm(ms: str, torch: str) -> dict[str, TruthEntry | None]:
    """MindSpore BatchNorm (`gamma`, `beta`, `moving_mean`, `moving_variance`) from torch's."""
    return {
        f"{ms}.gamma": f"{torch}.weight",
        f"{ms}.beta": f"{torch}.bias",
        f"{ms}.moving_mean": f"{torch}.running_mean",
        f"{ms}.moving_variance": f"{torch}.running_var",
    }


def layernorm(ms: str, torch: str) -> dict[str, TruthEntry | None]:
    """MindSpore LayerNorm (`gamma`, `beta`) from torch's (`weight`, `bias`)."""
    return {f"{ms}.gamma": f"{torch}.weight", f"{ms}.beta": f"{torch}.bias"}


_MINDSPORE_NORM_LEAVES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def mindspore_names(model: Any, rename: Callable[[str], str | None]) -> Truth:
    """{MindSpore name: torch name} over a torch network's state dict, for ports that keep its structure.

    A norm layer's leaves first take MindSpore's names (`gamma`, `beta`, `moving_mean`, `moving_variance`); then
    `rename`, written by hand from the two packages' conventions, turns the whole name into the port's (None: the
    tensor has no counterpart there). torch's `num_batches_tracked` are left out.
    """
    from torch import nn

    norms = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
    modules = dict(model.named_modules())
    truth: Truth = {}
    for name in model.state_dict():
        path, _, leaf = name.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if isinstance(modules.get(path), norms):
            leaf = _MINDSPORE_NORM_LEAVES[leaf]
        renamed = rename(f"{path}.{leaf}" if path else leaf)
        if renamed is not None:
            truth[renamed] = name
    return truth


def with_batchnorm_counters(truth: Truth) -> Truth:
    """A truth whose targets are torch names, plus torch's `num_batches_tracked` of every BatchNorm it maps (no
    MindSpore counterpart)."""
    counters = [t.replace(".running_mean", ".num_batches_tracked") for t in truth if t.endswith(".running_mean")]
    return {**truth, **dict.fromkeys(counters)}


_INVERSE_OPS = {"transpose", "squeeze", "unsqueeze"}


def invert(truth: Truth, no_source: list[str] | tuple[str, ...] = ()) -> Truth:
    """The same correspondence seen from the other side, for one-to-one entries (a rename, a transpose,
    a squeeze or an unsqueeze); `no_source` lists the new targets that have no counterpart."""
    out: Truth = {}
    for target, entry in truth.items():
        if entry is None:
            continue
        if isinstance(entry, str):
            out[entry] = target
            continue
        if not isinstance(entry, dict) or not isinstance(entry["source"], str):
            msg = f"cannot invert the entry for {target!r}: {entry!r}"
            raise ValueError(msg)
        steps = []
        for step in reversed(entry.get("transform") or []):
            op = step["op"]
            if op not in _INVERSE_OPS:
                msg = f"cannot invert step {step!r} of {target!r}"
                raise ValueError(msg)
            if op == "transpose":
                axes = step.get("axes")
                steps.append({"op": "transpose", **({"axes": list(np.argsort(axes).tolist())} if axes else {})})
            else:
                steps.append({"op": "unsqueeze" if op == "squeeze" else "squeeze", "axis": step["axis"]})
        out[entry["source"]] = {"source": target, "transform": steps} if steps else target
    for name in no_source:
        out[name] = None
    return out
