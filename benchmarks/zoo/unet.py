"""U-Net: a milesial/Pytorch-UNet style network against the MindSpore ModelZoo's UNet.

torch side (milesial naming): `inc.double_conv.{0, 1, 3, 4}` (conv, BN, conv, BN), `downK.maxpool_conv.1.
double_conv.*`, `upK.up` (ConvTranspose2d) and `upK.conv.double_conv.{0, 2}` (decoder convs without
BatchNorm), `outc.conv`. `up1` is the deepest decoder stage.

MindSpore side (ModelZoo `official/cv/Unet`, `unet_nested.UNet`): encoder `conv0` ... `conv4`, each a
`UnetConv2d` whose `convs.I` are small SequentialCells (`convs.0.0` conv, `convs.0.1` BN); decoder
`up_concat1` ... `up_concat4` numbered from the shallow end (`up_concat4` is torch's `up1`), each declaring its
`conv` before its `up_conv` (Conv2dTranspose, weight `[in, out, 2, 2]` like torch); the last conv is `final`.
Unlike the ModelZoo cell, the port concatenates the skip connection first, as the torch net does, so no
channel reordering is needed; and the decoder convs keep their biases.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.zoo import _vision_blocks as vb
from benchmarks.zoo._base import GroundTruth, Size, ZooPair

_FILTERS = {"ci": (64, 128, 256, 512), "full": (64, 128, 256, 512, 1024)}
_CLASSES = 2
_IMAGE = {"ci": 32, "full": 64}


def _torch_model(size: Size) -> Any:
    import torch
    from torch import nn

    class DoubleConv(nn.Module):
        def __init__(self, cin: int, cout: int, batch_norm: bool = True) -> None:
            super().__init__()
            if batch_norm:
                layers = [
                    nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                ]
            else:
                layers = [
                    nn.Conv2d(cin, cout, 3, padding=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(cout, cout, 3, padding=1),
                    nn.ReLU(inplace=True),
                ]
            self.double_conv = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.double_conv(x)

    class Down(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.maxpool_conv(x)

    class Up(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(cin, cout, batch_norm=False)

        def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
            return self.conv(torch.cat([x2, self.up(x1)], dim=1))

    class OutConv(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel_size=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            filters = _FILTERS[size]
            self.inc = DoubleConv(3, filters[0])
            for level in range(1, len(filters)):
                self.add_module(f"down{level}", Down(filters[level - 1], filters[level]))
            for level in range(1, len(filters)):
                self.add_module(f"up{level}", Up(filters[-level], filters[-level - 1]))
            self.outc = OutConv(filters[0], _CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            levels = len(_FILTERS[size])
            skips = [self.inc(x)]
            for level in range(1, levels):
                skips.append(getattr(self, f"down{level}")(skips[-1]))
            x = skips.pop()
            for level in range(1, levels):
                x = getattr(self, f"up{level}")(x, skips.pop())
            return self.outc(x)

    return UNet()


def _mindspore_model(size: Size) -> Any:
    from mindspore import nn, ops

    def conv_bn_relu(in_channel: int, out_channel: int, use_bn: bool) -> nn.SequentialCell:
        output = [nn.Conv2d(in_channel, out_channel, 3, pad_mode="pad", padding=1, has_bias=not use_bn)]
        if use_bn:
            output.append(nn.BatchNorm2d(out_channel))
        output.append(nn.ReLU())
        return nn.SequentialCell(output)

    class UnetConv2d(nn.Cell):
        def __init__(self, in_channel: int, out_channel: int, use_bn: bool = True) -> None:
            super().__init__()
            self.convs = nn.SequentialCell(
                [conv_bn_relu(in_channel, out_channel, use_bn), conv_bn_relu(out_channel, out_channel, use_bn)]
            )

        def construct(self, inputs: Any) -> Any:
            return self.convs(inputs)

    class UnetUp(nn.Cell):
        def __init__(self, in_channel: int, out_channel: int) -> None:
            super().__init__()
            self.conv = UnetConv2d(in_channel, out_channel, False)
            self.up_conv = nn.Conv2dTranspose(in_channel, out_channel, kernel_size=2, stride=2, has_bias=True)

        def construct(self, high_feature: Any, low_feature: Any) -> Any:
            return self.conv(ops.concat((low_feature, self.up_conv(high_feature)), axis=1))

    class UNet(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            filters = _FILTERS[size]
            self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2, pad_mode="same")
            self.downs = len(filters) - 1
            channels = 3
            for level, width in enumerate(filters):
                setattr(self, f"conv{level}", UnetConv2d(channels, width))
                channels = width
            for level in range(1, len(filters)):
                setattr(self, f"up_concat{level}", UnetUp(filters[level], filters[level - 1]))
            self.final = nn.Conv2d(filters[0], _CLASSES, 1, has_bias=True)

        def construct(self, inputs: Any) -> Any:
            features = [self.conv0(inputs)]
            for level in range(1, self.downs + 1):
                features.append(getattr(self, f"conv{level}")(self.maxpool(features[-1])))
            up = features[-1]
            for level in range(self.downs, 0, -1):
                up = getattr(self, f"up_concat{level}")(up, features[level - 1])
            return self.final(up)

    return UNet()


def _ground_truth(size: Size) -> GroundTruth:
    levels = len(_FILTERS[size])
    truth: GroundTruth = {}
    for level in range(levels):
        ms = f"conv{level}.convs"
        pt = "inc.double_conv" if level == 0 else f"down{level}.maxpool_conv.1.double_conv"
        truth[f"{ms}.0.0.weight"] = f"{pt}.0.weight"
        truth.update(vb.batchnorm(f"{ms}.0.1", f"{pt}.1"))
        truth[f"{ms}.1.0.weight"] = f"{pt}.3.weight"
        truth.update(vb.batchnorm(f"{ms}.1.1", f"{pt}.4"))
    for level in range(1, levels):
        ms, pt = f"up_concat{level}", f"up{levels - level}"
        truth.update(vb.weight_bias(f"{ms}.conv.convs.0.0", f"{pt}.conv.double_conv.0"))
        truth.update(vb.weight_bias(f"{ms}.conv.convs.1.0", f"{pt}.conv.double_conv.2"))
        truth.update(vb.weight_bias(f"{ms}.up_conv", f"{pt}.up"))
    truth.update(vb.weight_bias("final", "outc.conv"))
    return truth


def _inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return vb.images(rng, _IMAGE[size], _IMAGE[size], batch=1)


PAIR = ZooPair(
    name="unet",
    title="U-Net",
    torch_model=_torch_model,
    mindspore_model=_mindspore_model,
    ground_truth=_ground_truth,
    inputs=_inputs,
    optimizer="adam",
    rtol=1e-4,
    atol=1e-2,
    notes=(
        "Encoder/decoder with skip connections: decoder stages numbered from opposite ends (up1 -> up_concat4), "
        "inc/downK/outc -> conv0..conv4/final, transposed convs, decoder conv declared before its upsampler."
    ),
    tags=("vision", "cnn", "batchnorm", "encoder-decoder", "transposed-conv"),
)
