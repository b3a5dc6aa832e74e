"""Run-time set-up that lets the third-party model packages import and run together on a CPU machine.

Each workaround is here, in generator code, rather than in a patched site-packages, so that a clean
`env.sh` environment reproduces the corpus. Every one is idempotent; `prepare()` applies them all and is called
before any pair builds a network. Why each is needed is said where it is done.
"""

from __future__ import annotations

import os
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

_DONE: set[str] = set()


def prepare() -> None:
    """Everything a generator process needs before it builds the first network."""
    os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ logging: errors only
    # mindformers writes logs under LOCAL_DEFAULT_PATH and LOG_MF_PATH (./output by default): keep them out of
    # the work tree
    scratch = tempfile.mkdtemp(prefix="realports-mindformers-")
    os.environ.setdefault("LOCAL_DEFAULT_PATH", scratch)
    os.environ.setdefault("LOG_MF_PATH", str(Path(scratch) / "log"))
    _torchvision_operator_schemas()
    _mindspore_removed_py_transforms()
    _huggingface_hub_removed_names()
    import mindspore

    mindspore.set_context(mode=mindspore.PYNATIVE_MODE, device_target="CPU")


def _once(key: str) -> bool:
    if key in _DONE:
        return False
    _DONE.add(key)
    return True


def _torchvision_operator_schemas() -> None:
    """The registry's torchvision is a CUDA build whose C++ operators do not load against the CPU torch.

    Its Python model definitions work once the operator schemas that `torchvision` (and timm, through it)
    registers fake kernels for exist; defining the two schemas is enough to import it. No model in the corpus
    calls these operators.
    """
    if not _once("torchvision"):
        return
    import torch

    try:
        library = torch.library.Library("torchvision", "DEF")
    except RuntimeError:  # the namespace is already defined in this process (torchvision's own ops did load)
        return
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _KEEP.append(library)  # the schemas live as long as the Library object does


_KEEP: list[object] = []


def _mindspore_removed_py_transforms() -> None:
    """mindformers 1.3.2 (written for MindSpore 2.4) subclasses `py_transforms.PyTensorOperation` in its dataset code.

    MindSpore 2.5 removed that module; a stand-in with the one base class lets mindformers import. The corpus
    uses no mindformers dataset code.
    """
    if not _once("py_transforms"):
        return
    import mindspore.dataset.transforms

    name = "mindspore.dataset.transforms.py_transforms"
    if name in sys.modules:
        return
    module = types.ModuleType(name)

    class PyTensorOperation:
        """Stand-in base class (dataset code only)."""

    module.PyTensorOperation = PyTensorOperation  # type: ignore[attr-defined]
    sys.modules[name] = module
    mindspore.dataset.transforms.py_transforms = module  # type: ignore[attr-defined]


def _huggingface_hub_removed_names() -> None:
    """Older MindSpore packages import hub helpers that huggingface_hub 1.x removed; they are never called here."""
    if not _once("hub"):
        return
    import huggingface_hub

    if not hasattr(huggingface_hub, "repo_type_and_id_from_hf_id"):

        def repo_type_and_id_from_hf_id(*args: object, **kwargs: object) -> None:
            msg = "not available in this environment"
            raise NotImplementedError(msg)

        huggingface_hub.repo_type_and_id_from_hf_id = repo_type_and_id_from_hf_id  # type: ignore[attr-defined]


_ASCEND_KERNEL_CHECKS = (
    "check_valid_big_kernel",  # fused SiLU / RMSNorm
    "check_rmsnorm_big_kernel_valid",
    "check_valid_gmm_op",  # GroupedMatmul (MoE)
    "check_valid_moefinalizerouting_op",
)


def mindformers_on_cpu() -> None:
    """mindformers' layers ask whether the MindSpore version has fused kernels, which exist on Ascend only.

    The answer is yes for MindSpore 2.10, so on the CPU the layers fail ("kernel RmsNorm unregistered"); every
    mindformers module that imported one of these checks gets one that answers no, and the layers take their
    plain path. Call before building a mindformers network.
    """
    if not _once("mindformers_cpu"):
        return
    import mindformers  # noqa: F401  (loads the model modules whose imported names are replaced)

    def no() -> bool:
        return False

    for name, module in list(sys.modules.items()):
        if name.startswith("mindformers") and module is not None:
            for check in _ASCEND_KERNEL_CHECKS:
                if hasattr(module, check):
                    setattr(module, check, no)


def mindformers_missing_cast(net: object) -> object:
    """Some mindformers 1.3.2 cells call `self.cast` in `construct` without creating it in `__init__`.

    `RotaryEmbedding` and `WhisperEncoder` do; the package's own graph-mode runs compile around it, PyNative
    runs reach the line. Every cell of `net` without a `cast` gets the Cast primitive it expects (no parameter
    changes). Returns `net`.
    """
    from mindspore import ops

    for _, cell in net.cells_and_names():  # type: ignore[attr-defined]
        if not hasattr(cell, "cast"):
            cell.cast = ops.Cast()
    return net


def mindformers_float32(net: object) -> object:
    """Compute in float32 where a mindformers model hard-codes float16 for a sub-network.

    mindformers 1.3.2's BERT and GPT-2 build their shared `Transformer` without passing the configured compute
    type, and its T5 feed-forward casts its input to float16 in `construct`; whatever the config says, parts
    compute in float16, while the proof compares against float32 PyTorch. Each cell attribute holding the
    compute type (`dtype`, `compute_dtype`, `activation_compute_type`) is set from float16 to float32, and each cell's
    `cast` primitive
    becomes one that turns a cast to float16 into a cast to float32; cells set `.to_float(float16)` are set to
    float32: no parameter changes. Returns `net`.
    """
    import mindspore.common.dtype as mstype
    from mindspore import ops

    class Float32Cast:
        """`ops.Cast`, except that float16 targets become float32."""

        def __init__(self) -> None:
            self.cast = ops.Cast()

        def __call__(self, x: object, dtype: object) -> object:
            return self.cast(x, mstype.float32 if dtype == mstype.float16 else dtype)

    for _, cell in net.cells_and_names():  # type: ignore[attr-defined]
        for attribute in ("dtype", "compute_dtype", "activation_compute_type"):
            if cell.__dict__.get(attribute) == mstype.float16:
                setattr(cell, attribute, mstype.float32)
        if isinstance(getattr(cell, "cast", None), ops.Cast):
            object.__setattr__(cell, "cast", Float32Cast())
        if cell.get_flags().get("fp16"):  # `.to_float(float16)`: inputs cast to float16 on every call
            cell.to_float(mstype.float32)
    return net


def mint_cpu_fallbacks() -> list[str]:
    """mindone calls `mindspore.mint` operators and layers, several of which have no CPU kernel in MindSpore 2.10.

    Each one that fails on the CPU is replaced, in this process only, by the same computation written with
    `mindspore.ops` primitives that do have CPU kernels (layers keep their parameters and names; only how they
    compute changes). Returns the names replaced.
    """
    if not _once("mint"):
        return []
    import mindspore
    import numpy as np
    from mindspore import mint, nn, ops

    def fails(probe: object) -> bool:
        try:
            out = probe()  # type: ignore[operator]
            (out[0] if isinstance(out, tuple | list) else out).asnumpy()  # kernels are looked up when run
        except RuntimeError:
            return True
        return False

    x = mindspore.Tensor(np.ones((1, 2, 4, 4), np.float32))
    v = mindspore.Tensor(np.ones((2, 3, 4), np.float32))
    replaced = []

    def replace(owner: object, name: str, probe: object, fallback: object) -> None:
        if fails(probe):
            setattr(owner, name, fallback)
            replaced.append(name)

    replace(mint, "arange", lambda: mint.arange(0, 4), ops.arange)
    replace(mint, "outer", lambda: mint.outer(v[0, 0], v[0, 0]), lambda input, vec2: ops.outer(input, vec2))
    replace(mint, "stack", lambda: mint.stack([v, v]), lambda tensors, dim=0: ops.stack(tensors, axis=dim))
    replace(
        mint,
        "meshgrid",
        lambda: mint.meshgrid(mindspore.Tensor([0.0, 1.0]), mindspore.Tensor([0.0, 1.0]), indexing="xy"),
        lambda *tensors, indexing="ij": ops.meshgrid(*tensors, indexing=indexing),
    )
    replace(
        mint,
        "baddbmm",
        lambda: mint.baddbmm(v[:, :, :3], v, v.swapaxes(1, 2)),
        lambda input, batch1, batch2, *, beta=1, alpha=1: beta * input + alpha * ops.BatchMatMul()(batch1, batch2),
    )
    replace(
        mint,
        "repeat_interleave",
        lambda: mint.repeat_interleave(v, 2, 0),
        lambda input, repeats, dim=None: ops.repeat_elements(input, repeats, dim),
    )
    original_einsum = mint.einsum

    def einsum(equation: str, *operands: object) -> object:
        """A single-operand einsum that only permutes axes is a transpose (mint's einsum is Ascend-only)."""
        inputs, _, output = equation.replace(" ", "").partition("->")
        permutation = sorted(inputs) == sorted(output) and len(set(inputs)) == len(inputs)
        if len(operands) == 1 and "," not in inputs and permutation:
            return ops.transpose(operands[0], tuple(inputs.index(c) for c in output))
        return original_einsum(equation, *operands)

    mint.einsum = einsum
    replaced.append("einsum (permutations)")
    functional = mint.nn.functional
    replace(
        functional,
        "gelu",
        lambda: functional.gelu(v),
        lambda input, approximate="none": ops.GeLU()(input) if approximate == "tanh" else _exact_gelu(input),
    )
    replace(
        functional,
        "avg_pool2d",
        lambda: functional.avg_pool2d(x, 2),
        lambda input, kernel_size, stride=None, padding=0, **_: ops.AvgPool(
            kernel_size=kernel_size, strides=stride or kernel_size
        )(input),
    )

    if fails(lambda: mint.nn.Conv2d(2, 2, 3, padding=1)(x)):

        def conv2d(self: object, input: object) -> object:
            weight = self.weight  # type: ignore[attr-defined]
            pad = self.padding  # type: ignore[attr-defined]
            if isinstance(pad, str):
                mode, pads = pad, 0
            else:
                top, left = (pad, pad) if isinstance(pad, int) else pad
                mode, pads = "pad", (top, top, left, left)
            primitive = ops.Conv2D(
                weight.shape[0],
                tuple(weight.shape[2:]),
                pad_mode=mode,
                pad=pads,
                stride=self.stride,  # type: ignore[attr-defined]
                dilation=self.dilation,  # type: ignore[attr-defined]
                group=self.groups,  # type: ignore[attr-defined]
            )
            out = primitive(input, weight)
            return out if self.bias is None else ops.bias_add(out, self.bias)  # type: ignore[attr-defined]

        mint.nn.Conv2d.construct = conv2d
        replaced.append("nn.Conv2d")
    if fails(lambda: mint.nn.LayerNorm(4)(v)):

        def layer_norm(self: object, input: object) -> object:
            axes = len(self.normalized_shape)  # type: ignore[attr-defined]
            weight = self.weight if self.weight is not None else ops.ones(self.normalized_shape, input.dtype)  # type: ignore[attr-defined]
            bias = self.bias if self.bias is not None else ops.zeros(self.normalized_shape, input.dtype)  # type: ignore[attr-defined]
            return ops.LayerNorm(-axes, -axes, self.eps)(input, weight, bias)[0]  # type: ignore[attr-defined]

        nn.LayerNormExt.construct = layer_norm
        replaced.append("nn.LayerNorm")
    if fails(lambda: mint.nn.Embedding(4, 2)(mindspore.Tensor(np.array([1, 2], np.int32)))):

        def embedding(self: object, input: object) -> object:
            return ops.gather(self.weight, input, 0)  # type: ignore[attr-defined]

        nn.EmbeddingExt.construct = embedding
        replaced.append("nn.Embedding")
    replaced += _more_mint_cpu_fallbacks(fails)
    return replaced


def _more_mint_cpu_fallbacks(fails: Any) -> list[str]:
    """The fallbacks the VAE, PixArt, EnCodec, MobileBERT and wav2vec2 ports need on top of those of
    `mint_cpu_fallbacks`: `randn` and `Tensor.uniform_` (parameters drawn at construction; the proof overwrites
    them), `rand` (layer drop's draw, which eval mode ignores), constant and reflection `pad`, the 2-norm (weight
    normalisation), `Tensor.clone`, the ELU layer and the functional embedding lookup."""
    import mindspore
    import numpy as np
    from mindspore import mint, ops

    probe = mindspore.Tensor(np.ones((1, 2, 3), np.float32))
    indices = mindspore.Tensor(np.array([1, 0], np.int32))
    replaced = []

    def randn(*size: Any, **_: Any) -> Any:
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], tuple | list) else size
        return mindspore.Tensor(np.random.default_rng(0).standard_normal(shape), mindspore.float32)

    def rand(*size: Any, **_: Any) -> Any:  # layer drop's draw in wav2vec2 (eval mode skips no layer anyway)
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], tuple | list) else size
        return mindspore.Tensor(np.random.default_rng(0).uniform(size=shape), mindspore.float32)

    def pad(input: Any, pad: Any, mode: str = "constant", value: Any = None) -> Any:
        return ops.pad(input, pad, mode, value if mode == "constant" else None)  # a value pads constants only

    def norm(input: Any, p: Any = 2, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Any:
        if p != 2:
            msg = f"only the 2-norm has a CPU fallback here, not p={p}"
            raise NotImplementedError(msg)
        squares = input * input
        return ops.sqrt(squares.sum() if dim is None else squares.sum(axis=dim, keepdims=keepdim))

    def lookup(input: Any, weight: Any, *_: Any, **__: Any) -> Any:
        return ops.gather(weight, input, 0)

    functional = mint.nn.functional
    pads = (lambda: functional.pad(probe, (0, 1)), lambda: functional.pad(probe, (1, 1), mode="reflect"))
    for owner, name, probes, fallback in (
        (mint, "randn", [lambda: mint.randn(2, 2)], randn),
        (mint, "rand", [lambda: mint.rand(2, 2)], rand),
        (functional, "pad", pads, pad),
        (mint, "norm", [lambda: mint.norm(probe, 2, 1)], norm),
        (functional, "embedding", [lambda: functional.embedding(indices, probe[0])], lookup),
    ):
        if any(fails(p) for p in probes):
            setattr(owner, name, fallback)
            replaced.append(name)
    if fails(lambda: mint.nn.ELU()(probe)):
        mint.nn.ELU.construct = lambda self, input: ops.elu(input, self.alpha)
        replaced.append("nn.ELU")
    if fails(lambda: probe.clone()):
        mindspore.Tensor.clone = lambda self, **_: mindspore.Tensor(self.asnumpy().copy(), dtype=self.dtype)
        replaced.append("Tensor.clone")
    if fails(lambda: mint.empty(3).uniform_()):  # a parameter drawn at construction (wav2vec2's mask embedding)

        def uniform_(self: Any, start: float = 0.0, end: float = 1.0, **_: Any) -> Any:
            drawn = np.random.default_rng(0).uniform(start, end, tuple(self.shape))
            return mindspore.Tensor(drawn, dtype=self.dtype)

        mindspore.Tensor.uniform_ = uniform_
        replaced.append("Tensor.uniform_")
    return replaced


def _exact_gelu(x: object) -> object:
    from mindspore import ops

    return 0.5 * x * (1.0 + ops.erf(x / 1.4142135623730951))  # type: ignore[operator]


def mindspore_cpu_batch_matmul(net: object) -> object:
    """MindSpore's CPU BatchMatMul does not broadcast operands of different ranks; mindformers' expert layers
    (MoE) multiply [outer, experts, tokens, in] by [experts, out, in]. Each cell's BatchMatMul primitive gets a
    wrapper that broadcasts the lower-rank operand first (same product, no parameter changes). Returns `net`."""
    from mindspore import ops

    class BroadcastingBatchMatMul:
        """A BatchMatMul that broadcasts its operands to a common rank first."""

        def __init__(self, primitive: object) -> None:
            self.primitive = primitive

        def __call__(self, x: object, y: object) -> object:
            if len(x.shape) > len(y.shape):  # type: ignore[attr-defined]
                y = ops.broadcast_to(y, tuple(x.shape[:-2]) + tuple(y.shape[-2:]))  # type: ignore[attr-defined]
            elif len(y.shape) > len(x.shape):  # type: ignore[attr-defined]
                x = ops.broadcast_to(x, tuple(y.shape[:-2]) + tuple(x.shape[-2:]))  # type: ignore[attr-defined]
            return self.primitive(x, y)  # type: ignore[operator]

    for _, cell in net.cells_and_names():  # type: ignore[attr-defined]
        for name, value in list(getattr(cell, "_primitives", {}).items()):
            if isinstance(value, ops.BatchMatMul):
                object.__setattr__(cell, name, BroadcastingBatchMatMul(value))
    return net
