"""ConvNeXt-T: the official (facebookresearch) naming against mindcv's flattened port.

torch side (official ConvNeXt): all four `downsample_layers.I` first (the stem `downsample_layers.0.{0, 1}` is
conv then channels-first LayerNorm; the others are LayerNorm then conv), then all `stages.I.B` blocks
(`dwconv`, `norm`, `pwconv1`, `pwconv2` as Linear layers, layer scale `gamma`), then `norm` and `head`.

MindSpore side (mindcv): one `feature` SequentialCell interleaves them (`feature.0` stem, `feature.1` stage 0,
`feature.2` downsampling, `feature.3` stage 1, ...), LayerNorms hold gamma/beta, the layer scale is `gamma_`
(so a block's `gamma_` sits beside its norm's `gamma`), and the head is `classifier`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.zoo import _vision_blocks as vb
from benchmarks.zoo._base import GroundTruth, Size, ZooPair

_DIMS, _CLASSES, _EPS = (96, 192, 384, 768), 1000, 1e-6
_DEPTHS = {"ci": (1, 1, 2, 1), "full": (3, 3, 9, 3)}
_IMAGE = {"ci": 32, "full": 64}


def _torch_model(size: Size) -> Any:
    import torch
    from torch import nn
    from torch.nn import functional

    class LayerNorm(nn.Module):
        """The official LayerNorm, channels_last (F.layer_norm) or channels_first (by hand)."""

        def __init__(self, shape: int, eps: float = 1e-6, data_format: str = "channels_last") -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(shape))
            self.bias = nn.Parameter(torch.zeros(shape))
            self.eps, self.data_format, self.shape = eps, data_format, (shape,)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.data_format == "channels_last":
                return functional.layer_norm(x, self.shape, self.weight, self.bias, self.eps)
            mean = x.mean(1, keepdim=True)
            var = (x - mean).pow(2).mean(1, keepdim=True)
            x = (x - mean) / torch.sqrt(var + self.eps)
            return self.weight[:, None, None] * x + self.bias[:, None, None]

    class Block(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
            self.norm = LayerNorm(dim, eps=_EPS)
            self.pwconv1 = nn.Linear(dim, 4 * dim)
            self.act = nn.GELU()
            self.pwconv2 = nn.Linear(4 * dim, dim)
            self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shortcut = x
            x = self.dwconv(x).permute(0, 2, 3, 1)
            x = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(x))))
            return shortcut + x.permute(0, 3, 1, 2)

    class ConvNeXt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.downsample_layers = nn.ModuleList(
                [
                    nn.Sequential(
                        nn.Conv2d(3, _DIMS[0], kernel_size=4, stride=4),
                        LayerNorm(_DIMS[0], eps=_EPS, data_format="channels_first"),
                    )
                ]
            )
            for i in range(3):
                self.downsample_layers.append(
                    nn.Sequential(
                        LayerNorm(_DIMS[i], eps=_EPS, data_format="channels_first"),
                        nn.Conv2d(_DIMS[i], _DIMS[i + 1], kernel_size=2, stride=2),
                    )
                )
            self.stages = nn.ModuleList(
                nn.Sequential(*(Block(dim) for _ in range(depth)))
                for dim, depth in zip(_DIMS, _DEPTHS[size], strict=True)
            )
            self.norm = nn.LayerNorm(_DIMS[-1], eps=_EPS)
            self.head = nn.Linear(_DIMS[-1], _CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
                x = stage(downsample(x))
            return self.head(self.norm(x.mean([-2, -1])))

    return ConvNeXt()


def _mindspore_model(size: Size) -> Any:
    from mindspore import Parameter, Tensor, nn, ops

    class ConvNextLayerNorm(nn.LayerNorm):
        """nn.LayerNorm over the last axis, or over the channels of NCHW input (norm_axis=1)."""

        def __init__(self, normalized_shape: tuple[int], epsilon: float, norm_axis: int = -1) -> None:
            super().__init__(normalized_shape=normalized_shape, epsilon=epsilon)
            self.norm_axis = norm_axis

        def construct(self, input_x: Any) -> Any:
            if self.norm_axis == -1:
                return super().construct(input_x)
            y = super().construct(ops.transpose(input_x, (0, 2, 3, 1)))
            return ops.transpose(y, (0, 3, 1, 2))

    class Block(nn.Cell):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.dwconv = nn.Conv2d(dim, dim, 7, pad_mode="pad", padding=3, group=dim, has_bias=True)
            self.norm = ConvNextLayerNorm((dim,), epsilon=_EPS)
            self.pwconv1 = nn.Dense(dim, 4 * dim)
            self.act = nn.GELU(approximate=False)
            self.pwconv2 = nn.Dense(4 * dim, dim)
            self.gamma_ = Parameter(Tensor(np.full(dim, 1e-6, np.float32)), requires_grad=True)

        def construct(self, x: Any) -> Any:
            downsample = x
            x = ops.transpose(self.dwconv(x), (0, 2, 3, 1))
            x = self.gamma_ * self.pwconv2(self.act(self.pwconv1(self.norm(x))))
            return downsample + ops.transpose(x, (0, 3, 1, 2))

    class ConvNeXt(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            downsample_layers = [
                nn.SequentialCell(
                    nn.Conv2d(3, _DIMS[0], kernel_size=4, stride=4, pad_mode="valid", has_bias=True),
                    ConvNextLayerNorm((_DIMS[0],), epsilon=_EPS, norm_axis=1),
                )
            ]
            for i in range(3):
                downsample_layers.append(
                    nn.SequentialCell(
                        ConvNextLayerNorm((_DIMS[i],), epsilon=_EPS, norm_axis=1),
                        nn.Conv2d(_DIMS[i], _DIMS[i + 1], kernel_size=2, stride=2, pad_mode="valid", has_bias=True),
                    )
                )
            stages = [
                nn.SequentialCell([Block(dim) for _ in range(depth)])
                for dim, depth in zip(_DIMS, _DEPTHS[size], strict=True)
            ]
            self.feature = nn.SequentialCell(
                [cell for pair in zip(downsample_layers, stages, strict=True) for cell in pair]
            )
            self.norm = ConvNextLayerNorm((_DIMS[-1],), epsilon=_EPS)
            self.classifier = nn.Dense(_DIMS[-1], _CLASSES)

        def construct(self, x: Any) -> Any:
            x = self.feature(x)
            return self.classifier(self.norm(x.mean((-2, -1))))

    return ConvNeXt()


def _ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {
        **vb.weight_bias("feature.0.0", "downsample_layers.0.0"),
        **vb.layernorm("feature.0.1", "downsample_layers.0.1"),
    }
    for stage, depth in enumerate(_DEPTHS[size]):
        if stage > 0:
            truth.update(vb.layernorm(f"feature.{2 * stage}.0", f"downsample_layers.{stage}.0"))
            truth.update(vb.weight_bias(f"feature.{2 * stage}.1", f"downsample_layers.{stage}.1"))
        for number in range(depth):
            ms, pt = f"feature.{2 * stage + 1}.{number}", f"stages.{stage}.{number}"
            truth[f"{ms}.gamma_"] = f"{pt}.gamma"
            truth.update(vb.weight_bias(f"{ms}.dwconv", f"{pt}.dwconv"))
            truth.update(vb.layernorm(f"{ms}.norm", f"{pt}.norm"))
            truth.update(vb.weight_bias(f"{ms}.pwconv1", f"{pt}.pwconv1"))
            truth.update(vb.weight_bias(f"{ms}.pwconv2", f"{pt}.pwconv2"))
    truth.update(vb.layernorm("norm", "norm"))
    truth.update(vb.weight_bias("classifier", "head"))
    return truth


PAIR = ZooPair(
    name="convnext_t",
    title="ConvNeXt-T",
    torch_model=_torch_model,
    mindspore_model=_mindspore_model,
    ground_truth=_ground_truth,
    inputs=vb.square_images(_IMAGE),
    optimizer="adamw",
    rtol=1e-4,
    atol=5e-5,
    notes=(
        "Separate downsample_layers/stages lists interleaved into one flat `feature` Sequential (every index "
        "changes meaning), layer scale gamma -> gamma_ next to LayerNorm gamma, head -> classifier."
    ),
    tags=("vision", "cnn", "layernorm", "depthwise", "sequential"),
)
