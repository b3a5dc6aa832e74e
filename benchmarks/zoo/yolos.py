"""YOLOS-Ti: a ViT detector with detection tokens, hustvl/YOLOS naming against a community MindSpore port.

torch side (hustvl/YOLOS `Detector`): `backbone.cls_token`, `backbone.pos_embed` (class, patch and detection
positions in one tensor), `backbone.det_token`, `backbone.patch_embed.proj`, `backbone.blocks.N.attn.qkv` ...,
`backbone.norm`, and DETR's three-layer MLP heads `class_embed.layers.N` / `bbox_embed.layers.N`.

MindSpore side, after a published port whose conversion table reads `optimizer.backbone.cls_token`,
`optimizer.pos_embed`, `optimizer.det_token`, `optimizer.backbone.blocks.0.norm1.gamma` ...: the detector sits
under a training wrapper's `optimizer` attribute, the position embedding and detection tokens live on the
detector rather than its backbone (so they come first in the file), and LayerNorms hold gamma/beta.

Both nets add the position embedding as stored: the probe image has the size the embedding was made for, so
the bicubic re-interpolation hustvl applies for other sizes is left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.zoo import _vision_blocks as vb
from benchmarks.zoo._base import GroundTruth, Size, ZooPair

_DIM, _HEADS, _PATCH, _CLASSES, _DET_TOKENS = 192, 3, 16, 91, 100
_DEPTH = {"ci": 2, "full": 12}
_IMAGE = {"ci": (32, 48), "full": (512, 864)}  # the size the position embedding covers


def _patches(size: Size) -> int:
    height, width = _IMAGE[size]
    return (height // _PATCH) * (width // _PATCH)


def _torch_model(size: Size) -> Any:
    import torch
    from torch import nn
    from torch.nn import functional

    timm = vb.torch_timm()

    class VisionTransformer(timm.VisionTransformer):
        def __init__(self) -> None:
            super().__init__(_PATCH, _DIM, _HEADS, _DEPTH[size], 1 + _patches(size) + _DET_TOKENS, classes=0)
            # finetune_det() adds the detection tokens after the classification model is built
            self.det_token = nn.Parameter(torch.zeros(1, _DET_TOKENS, _DIM))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b = x.shape[0]
            x = self.patch_embed(x)
            x = torch.cat((self.cls_token.expand(b, -1, -1), x, self.det_token.expand(b, -1, -1)), dim=1)
            x = x + self.pos_embed
            for block in self.blocks:
                x = block(x)
            return self.norm(x)[:, -_DET_TOKENS:, :]

    class MLP(nn.Module):
        def __init__(self, hidden: int, out: int, layers: int) -> None:
            super().__init__()
            sizes = [hidden] * (layers - 1)
            self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([hidden, *sizes], [*sizes, out], strict=True))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for number, layer in enumerate(self.layers):
                x = functional.relu(layer(x)) if number < len(self.layers) - 1 else layer(x)
            return x

    class Detector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = VisionTransformer()
            self.class_embed = MLP(_DIM, _CLASSES + 1, 3)
            self.bbox_embed = MLP(_DIM, 4, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.backbone(x)
            return self.class_embed(x), self.bbox_embed(x).sigmoid()

    return Detector()


def _mindspore_model(size: Size) -> Any:
    from mindspore import Parameter, Tensor, nn, ops

    timm = vb.mindspore_timm()

    def zeros(*shape: int) -> Parameter:
        return Parameter(Tensor(np.zeros(shape, np.float32)))

    class VisionTransformer(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.cls_token = zeros(1, 1, _DIM)
            self.patch_embed = timm.PatchEmbed(_PATCH, _DIM)
            self.blocks = nn.CellList([timm.Block(_DIM, _HEADS) for _ in range(_DEPTH[size])])
            self.norm = nn.LayerNorm((_DIM,), epsilon=1e-6)

        def construct(self, x: Any, det_token: Any, pos_embed: Any) -> Any:
            b = x.shape[0]
            x = self.patch_embed(x)
            cls = ops.broadcast_to(self.cls_token, (b, 1, _DIM))
            det = ops.broadcast_to(det_token, (b, _DET_TOKENS, _DIM))
            x = ops.concat((cls, x, det), axis=1) + pos_embed
            for block in self.blocks:
                x = block(x)
            return self.norm(x)[:, -_DET_TOKENS:, :]

    class MLP(nn.Cell):
        def __init__(self, hidden: int, out: int, layers: int) -> None:
            super().__init__()
            sizes = [hidden] * (layers - 1)
            self.layers = nn.CellList([nn.Dense(n, k) for n, k in zip([hidden, *sizes], [*sizes, out], strict=True)])
            self.relu = nn.ReLU()

        def construct(self, x: Any) -> Any:
            for number, layer in enumerate(self.layers):
                x = self.relu(layer(x)) if number < len(self.layers) - 1 else layer(x)
            return x

    class Yolos(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = VisionTransformer()
            self.pos_embed = zeros(1, 1 + _patches(size) + _DET_TOKENS, _DIM)
            self.det_token = zeros(1, _DET_TOKENS, _DIM)
            self.class_embed = MLP(_DIM, _CLASSES + 1, 3)
            self.bbox_embed = MLP(_DIM, 4, 3)

        def construct(self, x: Any) -> Any:
            x = self.backbone(x, self.det_token, self.pos_embed)
            return self.class_embed(x), ops.sigmoid(self.bbox_embed(x))

    class YolosTrainer(nn.Cell):
        """The port's training wrapper: the detector is its `optimizer` attribute, hence the names' prefix."""

        def __init__(self) -> None:
            super().__init__()
            self.optimizer = Yolos()

        def construct(self, x: Any) -> Any:
            return self.optimizer(x)

    return YolosTrainer()


def _ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {
        "optimizer.pos_embed": "backbone.pos_embed",
        "optimizer.det_token": "backbone.det_token",
        "optimizer.backbone.cls_token": "backbone.cls_token",
        **vb.timm_encoder("optimizer.backbone.", "backbone.", _DEPTH[size]),
    }
    for head in ("class_embed", "bbox_embed"):
        for number in range(3):
            truth.update(vb.weight_bias(f"optimizer.{head}.layers.{number}", f"{head}.layers.{number}"))
    return truth


def _inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return vb.images(rng, *_IMAGE[size])


PAIR = ZooPair(
    name="yolos",
    title="YOLOS-Ti (detection tokens)",
    torch_model=_torch_model,
    mindspore_model=_mindspore_model,
    ground_truth=_ground_truth,
    inputs=_inputs,
    optimizer="adamw",
    rtol=1e-4,
    atol=1e-5,
    notes=(
        "ViT detector: an `optimizer.` prefix on every MindSpore name, position embedding and detection tokens "
        "moved from the backbone to the detector, cls/det/pos tensors of equal width, two MLP heads."
    ),
    tags=("vision", "transformer", "detection", "prefix"),
)
