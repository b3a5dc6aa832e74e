"""DeiT-S distilled: timm's VisionTransformerDistilled against a mindcv-style MindSpore port.

Both sides carry a classification token and a distillation token (`cls_token`, `dist_token`, both
`[1, 1, 384]`), one position embedding covering both, and two heads of the same shape (`head`, `head_dist`).
mindcv's DeiT port keeps timm's names (`patch_embed.proj`, `blocks.N.attn.qkv`, `blocks.N.mlp.fc1`, ...) but
has no distillation token; this port adds `dist_token` and `head_dist` in the same style. Apart from
LayerNorm's gamma/beta the names agree; the hard part is the tensors that shapes cannot tell apart (the two
tokens, the two heads) and the declaration order, which differs around them. The checkpoint holds weights
only (mindcv's DeiT checkpoints were converted, not trained, in MindSpore). Both nets return both heads'
logits (timm averages them at inference), so that the proof sees a swap of the heads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.zoo import _vision_blocks as vb
from benchmarks.zoo._base import GroundTruth, Size, ZooPair

_DIM, _HEADS, _PATCH, _CLASSES = 384, 6, 16, 1000
_DEPTH = {"ci": 2, "full": 12}
_IMAGE = {"ci": 32, "full": 224}


def _tokens(size: Size) -> int:
    return (_IMAGE[size] // _PATCH) ** 2 + 2


def _torch_model(size: Size) -> Any:
    import torch
    from torch import nn

    timm = vb.torch_timm()

    class VisionTransformerDistilled(timm.VisionTransformer):
        def __init__(self) -> None:
            super().__init__(_PATCH, _DIM, _HEADS, _DEPTH[size], _tokens(size) - 1, _CLASSES)
            self.dist_token = nn.Parameter(torch.zeros(1, 1, _DIM))
            self.pos_embed = nn.Parameter(torch.zeros(1, _tokens(size), _DIM))
            self.head_dist = nn.Linear(_DIM, _CLASSES)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.patch_embed(x)
            b = x.shape[0]
            x = torch.cat((self.cls_token.expand(b, -1, -1), self.dist_token.expand(b, -1, -1), x), dim=1)
            x = self.norm(self.blocks(x + self.pos_embed))
            return self.head(x[:, 0]), self.head_dist(x[:, 1])

    return VisionTransformerDistilled()


def _mindspore_model(size: Size) -> Any:
    from mindspore import Parameter, Tensor, nn, ops

    timm = vb.mindspore_timm()

    class DistilledVisionTransformer(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.patch_embed = timm.PatchEmbed(_PATCH, _DIM)
            self.cls_token = Parameter(Tensor(np.zeros((1, 1, _DIM), np.float32)))
            self.dist_token = Parameter(Tensor(np.zeros((1, 1, _DIM), np.float32)))
            self.pos_embed = Parameter(Tensor(np.zeros((1, _tokens(size), _DIM), np.float32)))
            self.blocks = nn.CellList([timm.Block(_DIM, _HEADS) for _ in range(_DEPTH[size])])
            self.norm = nn.LayerNorm((_DIM,), epsilon=1e-6)
            self.head = nn.Dense(_DIM, _CLASSES)
            self.head_dist = nn.Dense(_DIM, _CLASSES)

        def construct(self, x: Any) -> Any:
            x = self.patch_embed(x)
            b = x.shape[0]
            cls_tokens = ops.tile(self.cls_token, (b, 1, 1))
            dist_tokens = ops.tile(self.dist_token, (b, 1, 1))
            x = ops.concat((cls_tokens, dist_tokens, x), axis=1) + self.pos_embed
            for block in self.blocks:
                x = block(x)
            x = self.norm(x)
            return self.head(x[:, 0]), self.head_dist(x[:, 1])

    return DistilledVisionTransformer()


def _ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {
        "cls_token": "cls_token",
        "dist_token": "dist_token",
        "pos_embed": "pos_embed",
        **vb.timm_encoder("", "", _DEPTH[size]),
    }
    truth.update(vb.weight_bias("head", "head"))
    truth.update(vb.weight_bias("head_dist", "head_dist"))
    return truth


PAIR = ZooPair(
    name="deit",
    title="DeiT-S distilled",
    torch_model=_torch_model,
    mindspore_model=_mindspore_model,
    ground_truth=_ground_truth,
    inputs=vb.square_images(_IMAGE),
    optimizer=None,
    rtol=1e-4,
    atol=5e-5,
    notes=(
        "Near-identical names (only LayerNorm gamma/beta differ); two same-shaped tokens (cls/dist) and two "
        "same-shaped heads (head/head_dist) that only names and order tell apart; weights-only checkpoint."
    ),
    tags=("vision", "transformer", "distillation", "weights-only"),
)
