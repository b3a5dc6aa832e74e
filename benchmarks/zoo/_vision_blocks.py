"""What the vision pairs share: ground-truth helpers, image probes and the timm-style transformer layers.

The ground-truth helpers only spell out names (a MindSpore BatchNorm's four tensors against torch's four);
each pair still writes its own mapping by hand. The layer classes are built on first use, so that listing
the zoo imports neither torch nor MindSpore.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.zoo._base import GroundTruth, Size


def batchnorm(ms: str, pt: str) -> GroundTruth:
    """A MindSpore BatchNorm's parameters (moving statistics included) against a torch BatchNorm's."""
    return {
        f"{ms}.moving_mean": f"{pt}.running_mean",
        f"{ms}.moving_variance": f"{pt}.running_var",
        f"{ms}.gamma": f"{pt}.weight",
        f"{ms}.beta": f"{pt}.bias",
    }


def layernorm(ms: str, pt: str) -> GroundTruth:
    """A MindSpore LayerNorm (gamma, beta) against a torch LayerNorm (weight, bias)."""
    return {f"{ms}.gamma": f"{pt}.weight", f"{ms}.beta": f"{pt}.bias"}


def weight_bias(ms: str, pt: str, *, bias: bool = True) -> GroundTruth:
    """A Dense/Conv layer whose tensors keep their names and layout: weight (and bias)."""
    truth: GroundTruth = {f"{ms}.weight": f"{pt}.weight"}
    if bias:
        truth[f"{ms}.bias"] = f"{pt}.bias"
    return truth


def images(rng: np.random.Generator, height: int, width: int, batch: int = 2) -> tuple[np.ndarray, ...]:
    """A batch of random NCHW float32 images."""
    return (rng.standard_normal((batch, 3, height, width)).astype(np.float32),)


def square_images(sides: Mapping[Size, int]) -> Callable[[Size, np.random.Generator], tuple[np.ndarray, ...]]:
    """A pair's `inputs`: for a size, a batch of square images `sides[size]` pixels a side."""

    def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return images(rng, sides[size], sides[size])

    return inputs


@functools.cache
def torch_timm() -> SimpleNamespace:
    """timm's ViT layers (PatchEmbed.proj, Attention.qkv/proj, Mlp.fc1/fc2, Block.norm1/attn/norm2/mlp)."""
    import torch
    from torch import nn

    class PatchEmbed(nn.Module):
        def __init__(self, patch: int, dim: int) -> None:
            super().__init__()
            self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x).flatten(2).transpose(1, 2)

    class Attention(nn.Module):
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.scale = (dim // heads) ** -0.5
            self.qkv = nn.Linear(dim, dim * 3)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, c = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    class Mlp(nn.Module):
        def __init__(self, dim: int, hidden: int) -> None:
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self, dim: int, heads: int, eps: float = 1e-6) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, eps=eps)
            self.attn = Attention(dim, heads)
            self.norm2 = nn.LayerNorm(dim, eps=eps)
            self.mlp = Mlp(dim, dim * 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class VisionTransformer(nn.Module):
        """timm's `VisionTransformer` (class token, learned positions); `classes=0` leaves no head, as in timm."""

        def __init__(
            self, patch: int, dim: int, heads: int, depth: int, tokens: int, classes: int, eps: float = 1e-6
        ) -> None:
            super().__init__()
            self.patch_embed = PatchEmbed(patch, dim)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
            self.blocks = nn.Sequential(*(Block(dim, heads, eps) for _ in range(depth)))
            self.norm = nn.LayerNorm(dim, eps=eps)
            self.head = nn.Linear(dim, classes) if classes else nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.patch_embed(x)
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
            return self.head(self.norm(self.blocks(x))[:, 0])

    return SimpleNamespace(
        PatchEmbed=PatchEmbed, Attention=Attention, Mlp=Mlp, Block=Block, VisionTransformer=VisionTransformer
    )


@functools.cache
def mindspore_timm() -> SimpleNamespace:
    """The same layers the way mindcv's timm-derived ports write them (nn.Dense, LayerNorm gamma/beta)."""
    from mindspore import nn, ops

    class PatchEmbed(nn.Cell):
        def __init__(self, patch: int, dim: int) -> None:
            super().__init__()
            self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch, pad_mode="pad", has_bias=True)

        def construct(self, x: Any) -> Any:
            x = self.proj(x)
            b, c, h, w = x.shape
            return ops.transpose(ops.reshape(x, (b, c, h * w)), (0, 2, 1))

    class Attention(nn.Cell):
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.scale = (dim // heads) ** -0.5
            self.qkv = nn.Dense(dim, dim * 3)
            self.proj = nn.Dense(dim, dim)

        def construct(self, x: Any) -> Any:
            b, n, c = x.shape
            qkv = ops.transpose(ops.reshape(self.qkv(x), (b, n, 3, self.heads, c // self.heads)), (2, 0, 3, 1, 4))
            q, k, v = qkv[0], qkv[1], qkv[2]
            attn = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * self.scale, axis=-1)
            return self.proj(ops.reshape(ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)), (b, n, c)))

    class Mlp(nn.Cell):
        def __init__(self, dim: int, hidden: int) -> None:
            super().__init__()
            self.fc1 = nn.Dense(dim, hidden)
            self.act = nn.GELU(approximate=False)
            self.fc2 = nn.Dense(hidden, dim)

        def construct(self, x: Any) -> Any:
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Cell):
        def __init__(self, dim: int, heads: int, eps: float = 1e-6) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm((dim,), epsilon=eps)
            self.attn = Attention(dim, heads)
            self.norm2 = nn.LayerNorm((dim,), epsilon=eps)
            self.mlp = Mlp(dim, dim * 4)

        def construct(self, x: Any) -> Any:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    return SimpleNamespace(PatchEmbed=PatchEmbed, Attention=Attention, Mlp=Mlp, Block=Block)


def timm_block(ms: str, pt: str) -> GroundTruth:
    """One timm-named transformer block on both sides (only the norms change names)."""
    return {
        **layernorm(f"{ms}.norm1", f"{pt}.norm1"),
        **weight_bias(f"{ms}.attn.qkv", f"{pt}.attn.qkv"),
        **weight_bias(f"{ms}.attn.proj", f"{pt}.attn.proj"),
        **layernorm(f"{ms}.norm2", f"{pt}.norm2"),
        **weight_bias(f"{ms}.mlp.fc1", f"{pt}.mlp.fc1"),
        **weight_bias(f"{ms}.mlp.fc2", f"{pt}.mlp.fc2"),
    }


def timm_encoder(ms: str, pt: str, depth: int) -> GroundTruth:
    """A timm-named ViT encoder on both sides: `patch_embed.proj`, `depth` blocks and the final `norm`.

    `ms` and `pt` are the encoder's name prefixes, each empty or ending in a dot.
    """
    truth: GroundTruth = weight_bias(f"{ms}patch_embed.proj", f"{pt}patch_embed.proj")
    for number in range(depth):
        truth.update(timm_block(f"{ms}blocks.{number}", f"{pt}blocks.{number}"))
    truth.update(layernorm(f"{ms}norm", f"{pt}norm"))
    return truth


def calibrate_batchnorm(module: Any, height: int, width: int) -> Any:
    """Give a freshly built torch CNN the statistics a trained one has, so that every layer shapes the output.

    With default initialisation and made-up running statistics, the activations of a deep BatchNorm/ReLU6
    net (MobileNetV2) fade within a few blocks, and the output stops depending on the early layers: a proof
    would then pass with their tensors swapped. Here every convolution gets a variance-preserving
    Kaiming-normal kernel, and every BatchNorm's running statistics are measured on a batch of random images
    (one training-mode pass, cumulative average), so that each BatchNorm really normalises its input.
    """
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        norms = []
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                std = (2.0 / layer.weight[0].numel()) ** 0.5
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
            elif isinstance(layer, nn.BatchNorm2d):
                layer.reset_running_stats()
                norms.append((layer, layer.momentum))
                layer.momentum = None
        module.train()
        module(torch.randn((4, 3, height, width), generator=generator))
        for layer, momentum in norms:
            layer.momentum = momentum
    return module.eval()
