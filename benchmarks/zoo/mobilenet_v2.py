"""MobileNetV2 (width 1.0): torchvision's naming against mindcv's flattened port.

torch side (torchvision): `features.0.{0, 1}` (stem conv + BN), then one `features.N` per inverted residual
block with a nested `conv` Sequential: `conv.0.{0, 1}` (1x1 expansion conv + BN), `conv.1.{0, 1}` (3x3
depthwise conv + BN), `conv.2` (1x1 projection), `conv.3` (its BN); the first block has no expansion, so its
depthwise pair is `conv.0` and its projection `conv.1`/`conv.2`. Then `features.18.{0, 1}` and `classifier.1`.

MindSpore side (mindcv): the stem and the last 1x1 conv are flattened into `features` with their BatchNorm
and ReLU6 as siblings (`features.0`, `features.1`, ... `features.20`, `features.21`), so every block index
shifts by two; inside a block, one flat `layers` SequentialCell holds conv, BN and ReLU6 in turn
(`layers.0`, `layers.1`, `layers.3`, `layers.4`, `layers.6`, `layers.7`). The classifier is `classifier.1`.

The torch net starts from Kaiming-initialised kernels and measured BatchNorm statistics: with made-up ones
its activations fade within a few blocks and the proof could not tell the early layers' tensors apart.
"""

from __future__ import annotations

from typing import Any

from benchmarks.zoo import _vision_blocks as vb
from benchmarks.zoo._base import GroundTruth, Size, ZooPair

# t (expansion), c (output channels), n (blocks), s (first stride): the paper's table at width 1.0
_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_STEM, _LAST, _CLASSES = 32, 1280, 1000
_IMAGE = {"ci": 32, "full": 96}


def _blocks(size: Size) -> list[tuple[int, int, int, int]]:
    """(in channels, out channels, stride, expansion) of every inverted residual block."""
    blocks = []
    channels = _STEM
    for t, c, n, s in _SETTING:
        for number in range(min(n, 2) if size == "ci" else n):
            blocks.append((channels, c, s if number == 0 else 1, t))
            channels = c
    return blocks


def _torch_model(size: Size) -> Any:
    import torch
    from torch import nn

    def conv_norm_act(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
        """torchvision's Conv2dNormActivation: conv (no bias), BatchNorm, ReLU6."""
        return nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            self.use_res_connect = stride == 1 and cin == cout
            layers: list[nn.Module] = [conv_norm_act(cin, hidden, 1)] if expand != 1 else []
            layers += [
                conv_norm_act(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            features: list[nn.Module] = [conv_norm_act(3, _STEM, 3, 2)]
            features += [InvertedResidual(*block) for block in _blocks(size)]
            features.append(conv_norm_act(_SETTING[-1][1], _LAST, 1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(_LAST, _CLASSES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    return vb.calibrate_batchnorm(MobileNetV2(), _IMAGE[size], _IMAGE[size])


def _mindspore_model(size: Size) -> Any:
    from mindspore import nn, ops

    def conv(cin: int, cout: int, kernel: int, stride: int = 1, group: int = 1) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, kernel, stride, pad_mode="pad", padding=kernel // 2, group=group, has_bias=False)

    class InvertedResidual(nn.Cell):
        def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
            super().__init__()
            hidden_dim = in_channels * expand_ratio
            self.use_res_connect = stride == 1 and in_channels == out_channels
            layers = []
            if expand_ratio != 1:
                layers += [conv(in_channels, hidden_dim, 1), nn.BatchNorm2d(hidden_dim), nn.ReLU6()]
            layers += [
                conv(hidden_dim, hidden_dim, 3, stride, group=hidden_dim),
                nn.BatchNorm2d(hidden_dim),
                nn.ReLU6(),
                conv(hidden_dim, out_channels, 1),
                nn.BatchNorm2d(out_channels),
            ]
            self.layers = nn.SequentialCell(layers)

        def construct(self, x: Any) -> Any:
            if self.use_res_connect:
                return x + self.layers(x)
            return self.layers(x)

    class MobileNetV2(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            features = [conv(3, _STEM, 3, 2), nn.BatchNorm2d(_STEM), nn.ReLU6()]
            features += [InvertedResidual(*block) for block in _blocks(size)]
            features += [conv(_SETTING[-1][1], _LAST, 1), nn.BatchNorm2d(_LAST), nn.ReLU6()]
            self.features = nn.SequentialCell(features)
            self.classifier = nn.SequentialCell([nn.Dropout(p=0.2), nn.Dense(_LAST, _CLASSES)])

        def construct(self, x: Any) -> Any:
            x = ops.mean(self.features(x), (2, 3))
            return self.classifier(x)

    return MobileNetV2()


def _ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {"features.0.weight": "features.0.0.weight", **vb.batchnorm("features.1", "features.0.1")}
    blocks = _blocks(size)
    for number, (_, _, _, expand) in enumerate(blocks):
        ms, pt = f"features.{number + 3}.layers", f"features.{number + 1}.conv"
        # (MindSpore conv index, BN index) against torch's (conv, BN) names, in the block's order
        pairs = [(0, 1, f"{pt}.0.0", f"{pt}.0.1"), (3, 4, f"{pt}.1.0", f"{pt}.1.1"), (6, 7, f"{pt}.2", f"{pt}.3")]
        if expand == 1:  # no expansion conv: depthwise (conv.0), projection (conv.1, conv.2)
            pairs = [(0, 1, f"{pt}.0.0", f"{pt}.0.1"), (3, 4, f"{pt}.1", f"{pt}.2")]
        for conv, bn, pt_conv, pt_bn in pairs:
            truth[f"{ms}.{conv}.weight"] = f"{pt_conv}.weight"
            truth.update(vb.batchnorm(f"{ms}.{bn}", pt_bn))
    last_ms, last_pt = len(blocks) + 3, len(blocks) + 1
    truth[f"features.{last_ms}.weight"] = f"features.{last_pt}.0.weight"
    truth.update(vb.batchnorm(f"features.{last_ms + 1}", f"features.{last_pt}.1"))
    truth.update(vb.weight_bias("classifier.1", "classifier.1"))
    return truth


PAIR = ZooPair(
    name="mobilenet_v2",
    title="MobileNetV2",
    torch_model=_torch_model,
    mindspore_model=_mindspore_model,
    ground_truth=_ground_truth,
    inputs=vb.square_images(_IMAGE),
    optimizer="momentum",
    rtol=1e-4,
    atol=1e-5,
    notes=(
        "Flattened Sequentials: every index differs (features.N.conv.1.0 -> features.N+2.layers.3), depthwise "
        "[C, 1, 3, 3] kernels, dozens of same-shaped BatchNorms whose only clue is their position."
    ),
    tags=("vision", "cnn", "batchnorm", "depthwise", "sequential"),
)
