"""Small equivalent networks in PyTorch and MindSpore for the conversion and verification tests.

`TorchNet`/`MsNet`: conv, batchnorm, a Conv1d, layernorm and a linear head; MindSpore names and orders its
parameters its own way (gamma/beta, moving_mean, Conv1d weights [O, I, 1, k]). `TorchAttention`/`MsAttention`:
a fused qkv projection in PyTorch against three Dense layers in MindSpore, and an output projection MindSpore
keeps as a transposed [in, out] matrix. The hand-written mappings below are the ground truth the tests use.
Factories take no arguments, so `automap verify --torch-model _convert_nets:torch_net` can build them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

C_IN, C_MID, C_CONV1D, N_OUT = 3, 4, 6, 5
D_MODEL = 8

# {MindSpore name: PyTorch name or {"source", "transform"}}, in MindSpore's parameter order.
NET_TO_MINDSPORE: dict[str, Any] = {
    "stem.conv.weight": "conv.weight",
    "stem.conv.bias": "conv.bias",
    "stem.bn.moving_mean": "bn.running_mean",
    "stem.bn.moving_variance": "bn.running_var",
    "stem.bn.gamma": "bn.weight",
    "stem.bn.beta": "bn.bias",
    "mixer.weight": {"source": "conv1d.weight", "transform": [{"op": "unsqueeze", "axis": 2}]},
    "mixer.bias": "conv1d.bias",
    "norm.gamma": "ln.weight",
    "norm.beta": "ln.bias",
    "head.weight": "fc.weight",
    "head.bias": "fc.bias",
}

# {PyTorch name: MindSpore name or {...}}, in PyTorch's state-dict order (num_batches_tracked left to torch).
NET_TO_TORCH: dict[str, Any] = {
    "conv.weight": "stem.conv.weight",
    "conv.bias": "stem.conv.bias",
    "bn.weight": "stem.bn.gamma",
    "bn.bias": "stem.bn.beta",
    "bn.running_mean": "stem.bn.moving_mean",
    "bn.running_var": "stem.bn.moving_variance",
    "conv1d.weight": {"source": "mixer.weight", "transform": [{"op": "squeeze", "axis": 2}]},
    "conv1d.bias": "mixer.bias",
    "ln.weight": "norm.gamma",
    "ln.bias": "norm.beta",
    "fc.weight": "head.weight",
    "fc.bias": "head.bias",
}

ATTENTION_TO_MINDSPORE: dict[str, Any] = {
    **{
        f"{part}.{leaf}": {"source": f"qkv.{leaf}", "transform": [{"op": "split", "axis": 0, "parts": 3, "index": i}]}
        for i, part in enumerate(("q", "k", "v"))
        for leaf in ("weight", "bias")
    },
    "proj_w": {"source": "proj.weight", "transform": [{"op": "transpose"}]},
    "proj_b": "proj.bias",
}

ATTENTION_TO_TORCH: dict[str, Any] = {
    "qkv.weight": {"source": ["q.weight", "k.weight", "v.weight"], "transform": [{"op": "concat", "axis": 0}]},
    "qkv.bias": {"source": ["q.bias", "k.bias", "v.bias"], "transform": [{"op": "concat", "axis": 0}]},
    "proj.weight": {"source": "proj_w", "transform": [{"op": "transpose"}]},
    "proj.bias": "proj_b",
}


def torch_net() -> Any:
    """The PyTorch network, with every parameter and buffer made distinct (no 0/1 defaults)."""
    import torch
    from torch import nn

    class TorchNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(C_IN, C_MID, 3, padding=1)
            self.bn = nn.BatchNorm2d(C_MID)
            self.conv1d = nn.Conv1d(C_MID, C_CONV1D, 3, padding=1)
            self.ln = nn.LayerNorm(C_CONV1D)
            self.fc = nn.Linear(C_CONV1D, N_OUT)

        def forward(self, x: Any) -> Any:
            x = torch.relu(self.bn(self.conv(x)))
            x = self.conv1d(x.flatten(2))
            return self.fc(self.ln(x.mean(dim=2)))

    torch.manual_seed(0)
    return _perturbed_torch(TorchNet())


def mindspore_net() -> Any:
    """The MindSpore network, parameters named and ordered the MindSpore way."""
    from mindspore import nn, ops

    class Stem(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(C_IN, C_MID, 3, pad_mode="pad", padding=1, has_bias=True)
            self.bn = nn.BatchNorm2d(C_MID)

        def construct(self, x: Any) -> Any:
            return ops.relu(self.bn(self.conv(x)))

    class MsNet(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.stem = Stem()
            self.mixer = nn.Conv1d(C_MID, C_CONV1D, 3, pad_mode="pad", padding=1, has_bias=True)
            self.norm = nn.LayerNorm((C_CONV1D,), epsilon=1e-5)
            self.head = nn.Dense(C_CONV1D, N_OUT)

        def construct(self, x: Any) -> Any:
            x = self.stem(x)
            x = self.mixer(x.reshape(x.shape[0], x.shape[1], -1))
            return self.head(self.norm(x.mean(axis=2)))

    return _perturbed_mindspore(MsNet())


def torch_attention() -> Any:
    """Self-attention with a fused qkv projection."""
    import torch
    from torch import nn

    class TorchAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
            self.proj = nn.Linear(D_MODEL, D_MODEL)

        def forward(self, x: Any) -> Any:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            weights = torch.softmax(q @ k.transpose(-1, -2) / D_MODEL**0.5, dim=-1)
            return self.proj(weights @ v)

    torch.manual_seed(1)
    return _perturbed_torch(TorchAttention())


def mindspore_attention() -> Any:
    """The same attention with separate q, k, v layers and a transposed output matrix."""
    from mindspore import Parameter, Tensor, nn, ops

    class MsAttention(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.q = nn.Dense(D_MODEL, D_MODEL)
            self.k = nn.Dense(D_MODEL, D_MODEL)
            self.v = nn.Dense(D_MODEL, D_MODEL)
            self.proj_w = Parameter(Tensor(np.zeros((D_MODEL, D_MODEL), np.float32)), name="proj_w")
            self.proj_b = Parameter(Tensor(np.zeros((D_MODEL,), np.float32)), name="proj_b")

        def construct(self, x: Any) -> Any:
            q, k, v = self.q(x), self.k(x), self.v(x)
            weights = ops.softmax(ops.matmul(q, k.swapaxes(-1, -2)) / D_MODEL**0.5, axis=-1)
            return ops.matmul(ops.matmul(weights, v), self.proj_w) + self.proj_b

    return _perturbed_mindspore(MsAttention())


def _perturbed_torch(module: Any) -> Any:
    import torch

    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator) * 0.1
                tensor.copy_((tensor + noise).abs() + 0.5 if name.endswith("running_var") else tensor + noise)
    return module.eval()


def _perturbed_mindspore(cell: Any) -> Any:
    from mindspore import Tensor

    rng = np.random.default_rng(3)
    for name, param in cell.parameters_and_names():
        values = rng.standard_normal(param.shape).astype(np.float32) * 0.3
        if name.endswith("moving_variance"):
            values = np.abs(values) + 0.5
        param.set_data(Tensor(values))
    cell.set_train(False)
    return cell


def versioned_mapping(
    entries: dict[str, Any],
    source: Any,
    target: Any,
    *,
    confidence: dict[str, float] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """A versioned mapping document, written the way `automap infer` writes one, from ground-truth entries.

    `source` and `target` are ParamTables of the real files; pairs follow the target's order and targets the
    entries leave out get a null source.
    """
    from automap.mapping import fingerprint

    def endpoint(table: Any) -> dict[str, Any]:
        return {
            "path": table.source,
            "framework": table.framework,
            "params": len(table),
            "fingerprint": fingerprint(table),
        }

    pairs = []
    for record in target.params:
        entry = entries.get(record.name)
        names = None if entry is None else (entry if isinstance(entry, str | list) else entry["source"])
        steps = None if entry is None or isinstance(entry, str | list) else entry.get("transform")
        if names is None:
            shapes: Any = None
        elif isinstance(names, list):
            shapes = [list(source[n].shape) for n in names]
        else:
            shapes = list(source[names].shape)
        pairs.append(
            {
                "target": record.name,
                "source": names,
                "confidence": (confidence or {}).get(record.name, 0.0 if names is None else 0.97),
                "transform": steps,
                "target_shape": list(record.shape),
                "source_shape": shapes,
                "evidence": {"shape": 1.0, "leaf": 0.5, "decided_by": "hand-written for the tests"},
                "alternatives": [],
                "pinned": False,
            }
        )
    used = {n for p in pairs for n in ([p["source"]] if isinstance(p["source"], str) else p["source"] or [])}
    return {
        "format": "automap.mapping",
        "version": 1,
        "source": endpoint(source),
        "target": endpoint(target),
        "threshold": threshold,
        "notes": [],
        "pairs": pairs,
        "unmatched_source": [n for n in source.names if n not in used],
        "excluded_source": [],
        "excluded_target": [],
    }


def flat_mapping(entries: dict[str, Any]) -> dict[str, Any]:
    """The plain {target: source} form of ground-truth entries (transforms dropped)."""
    return {t: (e if isinstance(e, str | list) else e["source"]) for t, e in entries.items()}
