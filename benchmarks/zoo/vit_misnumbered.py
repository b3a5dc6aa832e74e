"""Names that mislead: timm's ViT against a port whose LayerNorms are numbered against the order they run in.

The MindSpore port keeps timm's names (`blocks.N.norm1`, `attn.qkv`, `norm2`, `mlp.fc1`, ...) and declares the
norms in number order, but it numbers them by the sub-layer they *follow* in its post-norm heritage: `norm2`
normalises the attention's input and `norm1` the MLP's. So `norm1`'s values must come from timm's `norm2` and the
other way round. Names, numbers and declaration order all agree with each other and all point the wrong way; only
running the layers shows which norm is which.

Small ViT (width 192, 3 heads, patch 8, 10 classes); "ci" has 2 blocks on 32x32 images, "full" 6 blocks on 64x64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.zoo import _vision_blocks as vb
from benchmarks.zoo._base import GroundTruth, Size, ZooPair

_DIM, _HEADS, _PATCH, _CLASSES, _EPS = 192, 3, 8, 10, 1e-6
_DEPTH = {"ci": 2, "full": 6}
_IMAGE = {"ci": 32, "full": 64}


def _tokens(size: Size) -> int:
    return (_IMAGE[size] // _PATCH) ** 2 + 1


def _torch_model(size: Size) -> Any:
    return vb.torch_timm().VisionTransformer(_PATCH, _DIM, _HEADS, _DEPTH[size], _tokens(size), _CLASSES, _EPS)


def _mindspore_model(size: Size) -> Any:
    from mindspore import Parameter, Tensor, nn, ops

    timm = vb.mindspore_timm()

    class Block(nn.Cell):
        """timm's block, its norms numbered by the sub-layer they follow: norm2 before attn, norm1 before mlp."""

        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm((_DIM,), epsilon=_EPS)
            self.norm2 = nn.LayerNorm((_DIM,), epsilon=_EPS)
            self.attn = timm.Attention(_DIM, _HEADS)
            self.mlp = timm.Mlp(_DIM, _DIM * 4)

        def construct(self, x: Any) -> Any:
            x = x + self.attn(self.norm2(x))
            return x + self.mlp(self.norm1(x))

    class VisionTransformer(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.patch_embed = timm.PatchEmbed(_PATCH, _DIM)
            self.cls_token = Parameter(Tensor(np.zeros((1, 1, _DIM), np.float32)))
            self.pos_embed = Parameter(Tensor(np.zeros((1, _tokens(size), _DIM), np.float32)))
            self.blocks = nn.SequentialCell([Block() for _ in range(_DEPTH[size])])
            self.norm = nn.LayerNorm((_DIM,), epsilon=_EPS)
            self.head = nn.Dense(_DIM, _CLASSES)

        def construct(self, x: Any) -> Any:
            x = self.patch_embed(x)
            x = ops.concat((ops.tile(self.cls_token, (x.shape[0], 1, 1)), x), axis=1) + self.pos_embed
            return self.head(self.norm(self.blocks(x))[:, 0])

    return VisionTransformer()


def _ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {
        "cls_token": "cls_token",
        "pos_embed": "pos_embed",
        **vb.weight_bias("patch_embed.proj", "patch_embed.proj"),
    }
    for number in range(_DEPTH[size]):
        ms = pt = f"blocks.{number}"
        truth.update(vb.layernorm(f"{ms}.norm1", f"{pt}.norm2"))
        truth.update(vb.layernorm(f"{ms}.norm2", f"{pt}.norm1"))
        truth.update(vb.weight_bias(f"{ms}.attn.qkv", f"{pt}.attn.qkv"))
        truth.update(vb.weight_bias(f"{ms}.attn.proj", f"{pt}.attn.proj"))
        truth.update(vb.weight_bias(f"{ms}.mlp.fc1", f"{pt}.mlp.fc1"))
        truth.update(vb.weight_bias(f"{ms}.mlp.fc2", f"{pt}.mlp.fc2"))
    truth.update(vb.layernorm("norm", "norm"))
    truth.update(vb.weight_bias("head", "head"))
    return truth


PAIR = ZooPair(
    name="vit_misnumbered",
    title="ViT, LayerNorms numbered against execution order",
    torch_model=_torch_model,
    mindspore_model=_mindspore_model,
    ground_truth=_ground_truth,
    inputs=vb.square_images(_IMAGE),
    optimizer="adamw",
    rtol=1e-4,
    atol=5e-5,
    network_aware_only=True,
    notes=(
        "timm ViT vs a port with timm's names whose blocks apply norm2 before the attention and norm1 before the "
        "MLP: names, numbers and declaration order all pair norm1 with norm1, which is wrong. Only execution "
        "order and the numbers the layers compute tell them apart."
    ),
    tags=("vision", "transformer", "layernorm", "misleading-names", "network-aware"),
)
