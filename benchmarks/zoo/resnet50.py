"""ResNet-50: torchvision's naming against the MindSpore ModelZoo ResNet port.

torch side (torchvision): `conv1`, `bn1`, `layerS.B.{conv1, bn1, conv2, bn2, conv3, bn3}`,
`layerS.0.downsample.{0, 1}`, `fc`; BatchNorm buffers `running_mean`/`running_var` (and the int64
`num_batches_tracked`, which has no MindSpore counterpart).

MindSpore side (ModelZoo `official/cv/ResNet`): the same block names, but `down_sample_layer.{0, 1}` for the
projection shortcut, `end_point` for the classifier, and BatchNorm's `moving_mean`/`moving_variance`/`gamma`/
`beta` (moving statistics first). The port's TF-style "same" padding is replaced by explicit symmetric
padding (its ResNet-18 variant does the same), and BatchNorm's epsilon is torch's 1e-5 rather than the port's
1e-4, so that the two nets compute the same function.
"""

from __future__ import annotations

from typing import Any

from benchmarks.zoo import _vision_blocks as vb
from benchmarks.zoo._base import GroundTruth, Size, ZooPair

_WIDTHS = (64, 128, 256, 512)  # bottleneck widths; each stage outputs 4x
_STRIDES = (1, 2, 2, 2)
_CLASSES = 1000
_BLOCKS = {"ci": (2, 1, 1, 1), "full": (3, 4, 6, 3)}
_IMAGE = {"ci": 32, "full": 64}


def _torch_model(size: Size) -> Any:
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes: int, width: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(width * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or inplanes != width * 4:
                self.downsample = nn.Sequential(
                    nn.Conv2d(inplanes, width * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(width * 4)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            inplanes = 64
            for stage, (width, stride, blocks) in enumerate(
                zip(_WIDTHS, _STRIDES, _BLOCKS[size], strict=True), start=1
            ):
                layers = []
                for number in range(blocks):
                    layers.append(Bottleneck(inplanes, width, stride if number == 0 else 1))
                    inplanes = width * 4
                self.add_module(f"layer{stage}", nn.Sequential(*layers))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, _CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


def _mindspore_model(size: Size) -> Any:
    from mindspore import nn, ops

    def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad", padding=kernel // 2)

    class ResidualBlock(nn.Cell):
        expansion = 4

        def __init__(self, in_channel: int, out_channel: int, stride: int = 1) -> None:
            super().__init__()
            channel = out_channel // self.expansion
            self.conv1 = conv(in_channel, channel, 1)
            self.bn1 = nn.BatchNorm2d(channel)
            self.conv2 = conv(channel, channel, 3, stride)
            self.bn2 = nn.BatchNorm2d(channel)
            self.conv3 = conv(channel, out_channel, 1)
            self.bn3 = nn.BatchNorm2d(out_channel)
            self.relu = nn.ReLU()
            self.down_sample = stride != 1 or in_channel != out_channel
            self.down_sample_layer = None
            if self.down_sample:
                self.down_sample_layer = nn.SequentialCell(
                    [conv(in_channel, out_channel, 1, stride), nn.BatchNorm2d(out_channel)]
                )

        def construct(self, x: Any) -> Any:
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            if self.down_sample:
                identity = self.down_sample_layer(identity)
            return self.relu(out + identity)

    class ResNet(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = conv(3, 64, 7, 2)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = ops.ReLU()
            self.pad = nn.Pad(paddings=((0, 0), (0, 0), (1, 1), (1, 1)))  # after ReLU, zero pads like -inf
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
            in_channel = 64
            stages = []
            for width, stride, blocks in zip(_WIDTHS, _STRIDES, _BLOCKS[size], strict=True):
                layers = []
                for number in range(blocks):
                    layers.append(ResidualBlock(in_channel, width * 4, stride if number == 0 else 1))
                    in_channel = width * 4
                stages.append(nn.SequentialCell(layers))
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.flatten = nn.Flatten()
            self.end_point = nn.Dense(2048, _CLASSES)

        def construct(self, x: Any) -> Any:
            x = self.maxpool(self.pad(self.relu(self.bn1(self.conv1(x)))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.end_point(self.flatten(ops.mean(x, (2, 3), keep_dims=True)))

    return ResNet()


def _ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {"conv1.weight": "conv1.weight", **vb.batchnorm("bn1", "bn1")}
    inplanes = 64
    for stage, (width, stride, blocks) in enumerate(zip(_WIDTHS, _STRIDES, _BLOCKS[size], strict=True), start=1):
        for number in range(blocks):
            block = f"layer{stage}.{number}"
            for part in (1, 2, 3):
                truth[f"{block}.conv{part}.weight"] = f"{block}.conv{part}.weight"
                truth.update(vb.batchnorm(f"{block}.bn{part}", f"{block}.bn{part}"))
            if number == 0 and (stride != 1 or inplanes != width * 4):
                truth[f"{block}.down_sample_layer.0.weight"] = f"{block}.downsample.0.weight"
                truth.update(vb.batchnorm(f"{block}.down_sample_layer.1", f"{block}.downsample.1"))
            inplanes = width * 4
    truth.update(vb.weight_bias("end_point", "fc"))
    return truth


PAIR = ZooPair(
    name="resnet50",
    title="ResNet-50",
    torch_model=_torch_model,
    mindspore_model=_mindspore_model,
    ground_truth=_ground_truth,
    inputs=vb.square_images(_IMAGE),
    optimizer="momentum",
    rtol=1e-4,
    atol=5e-4,
    notes=(
        "ModelZoo ResNet: downsample -> down_sample_layer, fc -> end_point, BatchNorm moving statistics "
        "(listed first) against running statistics; many same-shaped convolutions and BatchNorms."
    ),
    tags=("vision", "cnn", "batchnorm"),
)
