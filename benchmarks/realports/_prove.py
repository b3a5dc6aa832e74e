"""Proving a pair's truth: real files written by the packages, weights moved through the truth, both nets run.

The steps, for one pair:

1. Build the source and the target network with their packages' own code; measure the source's BatchNorm
   statistics on probe inputs (with the defaults a deep random network's output hardly depends on its early
   layers); perturb every float parameter and buffer so that no two tensors coincide (default initialisations
   make many equal: a norm's weight 1 and bias 0, and a mapping that swapped them would compute the same thing).
2. Write both checkpoints the way users get them: `torch.save(state_dict)` `.pth` or `save_pretrained`'s
   `model.safetensors` for PyTorch, `mindspore.save_checkpoint(net)` `.ckpt` for MindSpore.
3. Read the source file back with the framework's own reader, build every target tensor through the truth
   (automap's transform steps), and load them into the target network. The truth must name every tensor of
   the target file, and only tensors of the source file.
4. Run both networks in eval mode on the same inputs: the outputs must agree within the pair's tolerance.
5. Exchange two same-shaped target tensors and run again: the outputs must now disagree, or the proof could
   not have caught a wrong pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automap.transforms import apply_steps, parse_steps

from ._pair import Inputs, RealPair, Truth

_NOISE = 0.05  # perturbation scale: small next to typical weights' spread, large enough to tell tensors apart


@dataclass(frozen=True)
class Comparison:
    """How far the target's outputs are from the source's."""

    max_abs_diff: float
    max_rel_diff: float  # max |a - b| / max |reference|, per output, the worst
    passed: bool
    outputs: int


@dataclass(frozen=True)
class Proof:
    """The outcome of proving one pair."""

    comparison: Comparison
    swap: tuple[str, str]
    swapped: Comparison
    source_file: Path
    target_file: Path

    @property
    def passed(self) -> bool:
        return self.comparison.passed and not self.swapped.passed


class ProofError(Exception):
    """The truth does not fit the files or the networks (a name missing, a shape wrong, a proof failing)."""


def normalise(truth: Truth) -> dict[str, tuple[tuple[str, ...], tuple[Mapping[str, Any], ...]] | None]:
    """{target: (source names, parsed steps) | None} from any accepted truth entry form."""
    out: dict[str, tuple[tuple[str, ...], tuple[Mapping[str, Any], ...]] | None] = {}
    for target, entry in truth.items():
        if entry is None:
            out[target] = None
            continue
        if isinstance(entry, dict):
            source, steps = entry["source"], parse_steps(entry.get("transform"), where=target)
        else:
            source, steps = entry, ()
        out[target] = ((source,) if isinstance(source, str) else tuple(source), steps)
    return out


def prove(pair: RealPair, folder: Path, *, seed: int = 0) -> Proof:
    """Build, write, map through the truth, run and compare; then check that a swap breaks the agreement."""
    torch_net, ms_net = _build(pair, seed)
    torch_file = _save_torch(torch_net, folder, pair)
    ms_file = _save_mindspore(ms_net, folder, pair)
    if pair.direction == "pt2ms":
        source_net, source_file, target_net, target_file = torch_net, torch_file, ms_net, ms_file
    else:
        source_net, source_file, target_net, target_file = ms_net, ms_file, torch_net, torch_file
    sources = read_arrays(source_file)
    target_names = list(read_arrays(target_file))
    entries = normalise(pair.truth())
    _check_coverage(pair, entries, target_names, sources)
    arrays = {
        target: np.asarray(apply_steps([sources[s] for s in entry[0]], entry[1]))
        for target, entry in entries.items()
        if entry is not None
    }
    fill = _fill(pair, entries, read_arrays(target_file))
    inputs = pair.inputs(np.random.default_rng(seed))
    reference = _run(pair, source_net, inputs)
    loaded = _load(pair, target_net, {**arrays, **fill}, entries, target_file)
    comparison = compare(reference, _run(pair, loaded, inputs), pair.rtol, pair.atol)
    if not comparison.passed:
        msg = (
            f"{pair.name}: outputs differ through the truth (max abs {comparison.max_abs_diff:.3g}, "
            f"max rel {comparison.max_rel_diff:.3g}; tolerance rtol {pair.rtol}, atol {pair.atol})"
        )
        raise ProofError(msg)
    first, second = pair.swap or pick_swap(arrays)
    if first not in arrays or second not in arrays or arrays[first].shape != arrays[second].shape:
        msg = f"{pair.name}: swap {first!r} <-> {second!r} must name two mapped target tensors of one shape"
        raise ProofError(msg)
    swapped = {**arrays, **fill, first: arrays[second], second: arrays[first]}
    loaded = _load(pair, target_net, swapped, entries, target_file)
    swapped_comparison = compare(reference, _run(pair, loaded, inputs), pair.rtol, pair.atol)
    if swapped_comparison.passed:
        msg = f"{pair.name}: exchanging {first!r} and {second!r} did not change the outputs; name a swap that matters"
        raise ProofError(msg)
    return Proof(comparison, (first, second), swapped_comparison, source_file, target_file)


def _fill(pair: RealPair, entries: Mapping[str, Any], targets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The constant tensors the pair sets for sourceless targets (see `RealPair.fill`)."""
    out = {}
    for name, value in (pair.fill or {}).items():
        if entries.get(name, 0) is not None:
            msg = f"{pair.name}: fill {name!r} must be a target whose truth is None"
            raise ProofError(msg)
        out[name] = np.full_like(targets[name], value)
    return out


def pick_swap(arrays: Mapping[str, np.ndarray]) -> tuple[str, str]:
    """Two same-shaped target tensors with different values, weights (2-D and up) first, in target order."""
    for min_ndim in (2, 1):
        seen: dict[tuple[int, ...], str] = {}
        for name, array in arrays.items():
            if array.ndim < min_ndim or not np.issubdtype(array.dtype, np.floating):
                continue
            other = seen.get(array.shape)
            if other is not None and not np.array_equal(arrays[other], array):
                return other, name
            seen.setdefault(array.shape, name)
    msg = "no two same-shaped float target tensors to exchange; give the pair a `swap`"
    raise ProofError(msg)


def compare(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray], rtol: float, atol: float) -> Comparison:
    """Output-by-output agreement within `rtol`/`atol` (numpy's allclose), with the worst differences."""
    if len(reference) != len(outputs):
        msg = f"the networks return {len(reference)} and {len(outputs)} outputs"
        raise ProofError(msg)
    max_abs, max_rel, passed = 0.0, 0.0, True
    for ref, out in zip(reference, outputs, strict=True):
        ref, out = np.asarray(ref, dtype=np.float64), np.asarray(out, dtype=np.float64)
        if ref.shape != out.shape:
            msg = f"output shapes differ: {ref.shape} and {out.shape}"
            raise ProofError(msg)
        diff = float(np.max(np.abs(ref - out))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale else diff)
        passed = passed and bool(np.allclose(out, ref, rtol=rtol, atol=atol))
    return Comparison(max_abs, max_rel, passed, len(reference))


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint, read with the framework's own reader, in the file's order where it keeps one."""
    if path.suffix == ".ckpt":
        import mindspore

        return {name: np.asarray(p.asnumpy()) for name, p in mindspore.load_checkpoint(str(path)).items()}
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return {name: tensor.detach().numpy() for name, tensor in state.items()}


def _build(pair: RealPair, seed: int) -> tuple[Any, Any]:
    """Both networks, seeded, in eval mode, every float tensor perturbed (each side with its own stream)."""
    import mindspore
    import torch

    if pair.setup is not None:
        pair.setup()
    torch.manual_seed(seed)
    torch_net = pair.torch_model().eval()
    mindspore.set_seed(seed)
    ms_net = pair.mindspore_model()
    ms_net.set_train(False)
    calibration = pair.inputs(np.random.default_rng(seed + 3))
    if pair.direction == "pt2ms":
        _calibrate_torch_batchnorm(torch_net, calibration)
    else:
        _calibrate_mindspore_batchnorm(ms_net, calibration)
    _perturb_torch(torch_net, np.random.default_rng(seed + 1), pair.constants)
    _perturb_mindspore(ms_net, np.random.default_rng(seed + 2), pair.constants)
    return torch_net, ms_net


def _calibrate_torch_batchnorm(module: Any, inputs: Inputs) -> None:
    """BatchNorm statistics measured on the probe-like inputs, as training would leave them.

    With the default statistics (mean 0, variance 1) and random weights, a deep network's activations drift layer
    by layer until its outputs no longer depend on its early layers (or on its input): the proof could not tell
    a right mapping from a wrong one there. Measured statistics keep every layer's signal normalised.
    """
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration passes
    module.train()
    with torch.no_grad():
        for _ in range(4):
            module(*[torch.from_numpy(x) for x in inputs])
    module.eval()
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


def _calibrate_mindspore_batchnorm(net: Any, inputs: Inputs, passes: int = 40) -> None:
    """As `_calibrate_torch_batchnorm`; MindSpore's moving averages keep 0.9 of the old value, hence the passes."""
    import mindspore
    from mindspore import nn

    if not any(isinstance(c, nn.layer.normalization._BatchNorm) for _, c in net.cells_and_names()):
        return
    net.set_train(True)
    tensors = [mindspore.Tensor(x) for x in inputs]
    for _ in range(passes):
        net(*tensors)
    net.set_train(False)


def _noise(rng: np.random.Generator, name: str, value: np.ndarray) -> np.ndarray:
    noisy = value + rng.standard_normal(value.shape) * _NOISE
    if name.endswith(("running_var", "moving_variance")):
        # a variance stays positive, and near its value (1 by default): a larger one would shrink the signal
        # through every BatchNorm of a deep network until the outputs no longer depend on the early layers
        noisy = np.abs(noisy) + 0.01
    return np.asarray(noisy, dtype=value.dtype)  # a 0-d array stays an array (a scalar such as logit_scale)


def _perturb_torch(module: Any, rng: np.random.Generator, constants: tuple[str, ...]) -> None:
    import torch

    seen: set[int] = set()
    with torch.no_grad():
        # only what a checkpoint holds: non-persistent buffers (rotary frequencies, masks) are computed, not learned
        for name, tensor in module.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point() or id(tensor) in seen or any(c in name for c in constants):
                continue
            seen.add(id(tensor))  # a tied weight is perturbed once
            tensor.copy_(torch.from_numpy(_noise(rng, name, tensor.detach().float().numpy())).to(tensor.dtype))


def _perturb_mindspore(net: Any, rng: np.random.Generator, constants: tuple[str, ...]) -> None:
    import mindspore

    for name, param in net.parameters_and_names():  # every parameter once, whatever its own name says
        value = param.asnumpy()
        if not np.issubdtype(value.dtype, np.floating) or any(c in name for c in constants):
            continue
        param.set_data(mindspore.Tensor(_noise(rng, name, value), dtype=param.dtype))


def _save_torch(model: Any, folder: Path, pair: RealPair) -> Path:
    import torch

    if pair.torch_format == "safetensors":
        model.save_pretrained(str(folder / "torch"))
        written = sorted((folder / "torch").glob("*.safetensors"))  # model.safetensors, diffusion_pytorch_model...
        if len(written) != 1:
            msg = f"{pair.name}: save_pretrained wrote {[p.name for p in written]}, expected one file"
            raise ProofError(msg)
        return written[0]
    path = folder / "torch_model.pth"
    torch.save(model.state_dict(), path)
    return path


def _save_mindspore(net: Any, folder: Path, pair: RealPair) -> Path:
    import mindspore

    if pair.mindspore_format == "safetensors":
        net.save_pretrained(str(folder / "mindspore"))
        written = sorted((folder / "mindspore").glob("*.safetensors"))
        if len(written) != 1:
            msg = f"{pair.name}: save_pretrained wrote {[p.name for p in written]}, expected one file"
            raise ProofError(msg)
        return written[0]
    path = folder / "mindspore_model.ckpt"
    mindspore.save_checkpoint(net, str(path))
    return path


def _mindspore_parameters(net: Any, pair: RealPair) -> dict[str, Any]:
    """The parameters by the names the pair's MindSpore file uses (see `RealPair.mindspore_format`)."""
    if pair.mindspore_format == "safetensors":
        return dict(net.parameters_and_names())
    return dict(net.parameters_dict())


def _check_coverage(
    pair: RealPair,
    entries: Mapping[str, tuple[tuple[str, ...], tuple[Mapping[str, Any], ...]] | None],
    target_names: Sequence[str],
    sources: Mapping[str, np.ndarray],
) -> None:
    """The truth names every target tensor of the file, and only source tensors that the file holds."""
    missing = [n for n in target_names if n not in entries]
    extra = [n for n in entries if n not in set(target_names)]
    unknown = sorted({s for e in entries.values() if e is not None for s in e[0] if s not in sources})
    problems = []
    if missing:
        problems.append(f"{len(missing)} target tensors without truth, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} truth targets not in the target file, e.g. {extra[:3]}")
    if unknown:
        problems.append(f"{len(unknown)} truth sources not in the source file, e.g. {unknown[:3]}")
    if problems:
        msg = f"{pair.name}: " + "; ".join(problems)
        raise ProofError(msg)


def _load(
    pair: RealPair, net: Any, arrays: Mapping[str, np.ndarray], entries: Mapping[str, Any], target_file: Path
) -> Any:
    """The target network holding the mapped arrays; every tensor must fit its place exactly.

    A PyTorch target saved by `save_pretrained` is loaded the way users load one, with `from_pretrained` on a
    folder holding the mapped tensors under the file's names: the names in the file can differ from the module's
    own (transformers 5 writes MoE experts one by one but holds them stacked).
    """
    if pair.direction == "pt2ms":
        _load_mindspore(pair, net, arrays, entries)
        return net
    if pair.torch_format == "safetensors":
        return _load_pretrained(pair, net, arrays, target_file)
    _load_torch(pair, net, arrays, entries)
    return net


def _load_pretrained(pair: RealPair, net: Any, arrays: Mapping[str, np.ndarray], target_file: Path) -> Any:
    import shutil

    from safetensors.numpy import save_file

    folder = target_file.parent.with_name(target_file.parent.name + "-mapped")
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(target_file.parent, folder)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(folder / target_file.name))
    model, info = type(net).from_pretrained(str(folder), output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        msg = f"{pair.name}: loading the mapped checkpoint: {problems}"
        raise ProofError(msg)
    return model.eval()


def _load_mindspore(pair: RealPair, net: Any, arrays: Mapping[str, np.ndarray], entries: Mapping[str, Any]) -> None:
    import mindspore

    params = _mindspore_parameters(net, pair)
    unset = [n for n in params if n not in arrays and entries.get(n, 0) is not None]
    if unset:
        msg = f"{pair.name}: MindSpore parameters the truth leaves unset: {unset[:5]}"
        raise ProofError(msg)
    for name, array in arrays.items():
        param = params[name]
        if tuple(param.shape) != array.shape:
            msg = f"{pair.name}: {name!r} is {tuple(param.shape)} in the network, the truth makes {array.shape}"
            raise ProofError(msg)
        param.set_data(mindspore.Tensor(array, dtype=param.dtype))


def _load_torch(pair: RealPair, net: Any, arrays: Mapping[str, np.ndarray], entries: Mapping[str, Any]) -> None:
    import torch

    state = net.state_dict()
    tensors = {}
    for name, array in arrays.items():
        if name not in state:
            msg = f"{pair.name}: {name!r} is not in the torch network's state dict"
            raise ProofError(msg)
        tensors[name] = torch.from_numpy(np.ascontiguousarray(array)).to(state[name].dtype)
    try:
        result = net.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # a size mismatch
        msg = f"{pair.name}: {e}"
        raise ProofError(msg) from e
    # tensors the file leaves out (tied weights) are loaded through the tensor they share
    allowed = {n for n, e in entries.items() if e is None} | (set(state) - set(entries))
    unset = [n for n in result.missing_keys if n not in allowed]
    if unset or result.unexpected_keys:
        msg = f"{pair.name}: torch tensors left unset {unset[:5]}, unexpected {result.unexpected_keys[:5]}"
        raise ProofError(msg)


def _run(pair: RealPair, net: Any, inputs: Inputs) -> list[np.ndarray]:
    is_torch = not _is_mindspore(net)
    custom = pair.torch_forward if is_torch else pair.mindspore_forward
    if custom is not None:
        return [np.asarray(o) for o in custom(net, inputs)]
    return torch_first_output(net, inputs) if is_torch else mindspore_first_output(net, inputs)


def _is_mindspore(net: Any) -> bool:
    return type(net).__module__.startswith("mindspore") or any(
        c.__module__.startswith("mindspore.nn") for c in type(net).__mro__
    )


def torch_first_output(net: Any, inputs: Inputs) -> list[np.ndarray]:
    """The network's first tensor output (a HF model output's first field), as numpy."""
    import torch

    with torch.no_grad():
        out = net(*[torch.from_numpy(x) for x in inputs])
    while not isinstance(out, torch.Tensor):
        out = out[0]
    return [out.detach().float().numpy()]


def mindspore_first_output(net: Any, inputs: Inputs) -> list[np.ndarray]:
    """The cell's first tensor output, as numpy."""
    import mindspore

    out = net(*[mindspore.Tensor(x) for x in inputs])
    while isinstance(out, tuple | list):
        out = out[0]
    return [out.asnumpy().astype(np.float32)]
