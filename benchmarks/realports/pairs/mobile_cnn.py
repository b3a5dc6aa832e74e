"""Mobile CNNs (ghost modules, NAS-searched inverted residuals, mixed depthwise kernels): timm against mindcv.

Both packages build these networks block by block from the same published architectures; they differ in how they
number and nest the blocks. Each truth is written as a rename of timm's module paths into mindcv's (rules by hand,
below), with MindSpore's norm leaves (`gamma`, `beta`, `moving_mean`, `moving_variance`).
"""

from __future__ import annotations

import re
from typing import Any

from benchmarks.realports._pair import RealPair, Truth, images, invert, mindspore_names, with_batchnorm_counters

_CLASSES = 10


# ---------------------------------------------------------------------------------------------------- GhostNet
# timm:   conv_stem, bn1, blocks.S.0.{ghost1.{primary_conv, cheap_operation}.{0 conv, 1 bn}, conv_dw, bn_dw,
#         se.{conv_reduce, conv_expand}, ghost2.*, shortcut.{0..3}}, the last stage blocks.9.0.{conv, bn1}, conv_head,
#         classifier.
# mindcv: the same names, except the last stage's plain convolution: blocks.9.features.{0 conv, 1 bn}.
def _ghostnet_torch() -> Any:
    from timm.models.ghostnet import ghostnet_050

    return ghostnet_050(num_classes=_CLASSES)


def _ghostnet_mindspore() -> Any:
    from mindcv.models.ghostnet import ghostnet_050

    return ghostnet_050(num_classes=_CLASSES)


def _ghostnet_rename(name: str) -> str:
    return re.sub(r"^blocks\.9\.0\.(conv|bn1)\.", lambda m: f"blocks.9.features.{0 if m[1] == 'conv' else 1}.", name)


GHOSTNET = RealPair(
    name="ghostnet_mindcv_timm",
    family="mobile-cnn",
    direction="ms2pt",
    packages=("mindcv", "timm"),
    torch_model=_ghostnet_torch,
    mindspore_model=_ghostnet_mindspore,
    truth=lambda: with_batchnorm_counters(invert(mindspore_names(_ghostnet_torch(), _ghostnet_rename))),
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="GhostNet at width 0.5 (the real 16 bottlenecks). mindcv keeps timm's names (ghost1/ghost2, "
    "primary_conv/cheap_operation, shortcut) but for the last stage's 1x1 convolution (`blocks.9.features.0/1` "
    "against `blocks.9.0.conv/bn1`); many same-shaped BatchNorms in each block. torch's num_batches_tracked have "
    "no source.",
)


# ----------------------------------------------------------------------------------------------------- MnasNet
# timm:   conv_stem, bn1, blocks.0.0.{conv_dw, bn1, conv_pw, bn2} (depthwise separable), blocks.S.J.{conv_pw, bn1,
#         conv_dw, bn2, conv_pwl, bn3} (inverted residuals, stages of 3, 3, 3, 2, 4, 1), conv_head, bn2, classifier.
# mindcv: one flat numbering with the activations counted: features.0 conv, .1 bn, (.2 act), .3 depthwise, .4 bn,
#         (.5 act), .6 conv, .7 bn, then one `features.K.layers.{0, 1, 3, 4, 6, 7}` per inverted residual from K = 8,
#         features.24 conv, features.25 bn, classifier.
_MNASNET_DEPTHS = (3, 3, 3, 2, 4, 1)
_MNASNET_FIRST = {"conv_stem": 0, "bn1": 1, "blocks.0.0.conv_dw": 3, "blocks.0.0.bn1": 4}
_MNASNET_FIRST |= {"blocks.0.0.conv_pw": 6, "blocks.0.0.bn2": 7, "conv_head": 24, "bn2": 25}
_MNASNET_PARTS = {"conv_pw": 0, "bn1": 1, "conv_dw": 3, "bn2": 4, "conv_pwl": 6, "bn3": 7}


def _mnasnet_torch() -> Any:
    from timm.models.efficientnet import mnasnet_050
    from torch import nn

    model = mnasnet_050(num_classes=_CLASSES)
    for module in model.modules():  # mindcv's BatchNorm epsilon (parameter-free)
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-3
    return model


def _mnasnet_mindspore() -> Any:
    from mindcv.models.mnasnet import mnasnet_050

    return mnasnet_050(num_classes=_CLASSES)


def _mnasnet_rename(name: str) -> str:
    path, _, leaf = name.rpartition(".")
    if path in _MNASNET_FIRST:
        return f"features.{_MNASNET_FIRST[path]}.{leaf}"
    block = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)", path)
    if block is None:
        return name  # classifier
    stage, index, part = int(block[1]), int(block[2]), block[3]
    flat = 8 + sum(_MNASNET_DEPTHS[: stage - 1]) + index
    return f"features.{flat}.layers.{_MNASNET_PARTS[part]}.{leaf}"


MNASNET = RealPair(
    name="mnasnet_timm_mindcv",
    family="mobile-cnn",
    direction="pt2ms",
    packages=("timm", "mindcv"),
    torch_model=_mnasnet_torch,
    mindspore_model=_mnasnet_mindspore,
    truth=lambda: mindspore_names(_mnasnet_torch(), _mnasnet_rename),
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="MnasNet-B1 at width 0.5 (the real 17 blocks). timm nests stages and names the layers (conv_pw, conv_dw, "
    "conv_pwl, bn1-bn3); mindcv numbers the stem, the first block and the head in one flat `features` list with the "
    "activations counted, each later block as `features.K.layers.N`.",
)


# ------------------------------------------------------------------------------------------------------ MixNet
# timm:   conv_stem, bn1, blocks.S.J.{conv_pw, bn1, conv_dw, bn2, se.{conv_reduce, conv_expand}, conv_pwl, bn3}
#         (the first block depthwise separable: conv_dw, bn1, conv_pw, bn2); a mixed convolution holds one
#         convolution per kernel size or group (`conv_dw.K`, `conv_pw.K`), a single one is plain; conv_head, bn2,
#         classifier.
# mindcv: stem_conv.{0, 1}, layers.N.convs.* numbered flat over the blocks (N = 0..15), the activations counted:
#         [pw 0, bn 1,] depthwise 3 (0 without expansion), bn 4 (1), [se 6,] pw-linear 6 or 7 (3), bn 7 or 8 (4);
#         pointwise convolutions are `grouped_conv[.K]`, depthwise ones `mixed_depthwise_conv[.K]`; head_conv.{0, 1}.
_MIXNET_DEPTHS = (1, 2, 4, 3, 3, 3)


def _mixnet_torch() -> Any:
    from timm.models.efficientnet import mixnet_s
    from torch import nn

    model = mixnet_s(num_classes=_CLASSES)
    for module in model.modules():  # mindcv's squeeze-excitation reduces through ReLU, timm's through the block's
        if hasattr(module, "conv_reduce"):  # activation (parameter-free)
            module.act1 = nn.ReLU()
    return model


def _mixnet_mindspore() -> Any:
    from mindcv.models.mixnet import mixnet_s

    return mixnet_s(num_classes=_CLASSES)


def _mixnet_ms_from_torch() -> Truth:
    """{mindcv name: timm name}; which parts a block has (expansion, squeeze-excitation) read from timm's names."""
    model = _mixnet_torch()
    names = list(model.state_dict())
    fixed = {"conv_stem": "stem_conv.0", "bn1": "stem_conv.1", "conv_head": "head_conv.0", "bn2": "head_conv.1"}

    def rename(name: str) -> str:
        path, _, leaf = name.rpartition(".")
        if path in fixed:
            return f"{fixed[path]}.{leaf}"
        block = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(conv_pw|conv_dw|conv_pwl|bn1|bn2|bn3|se)(\.\w+)?", path)
        if block is None:
            return name  # classifier
        stage, index, part, inner = int(block[1]), int(block[2]), block[3], block[4] or ""
        prefix = f"blocks.{stage}.{index}."
        expands = any(n.startswith(prefix + "conv_pwl") for n in names)
        squeezes = any(n.startswith(prefix + "se.") for n in names)
        if expands:
            numbers = {"conv_pw": 0, "bn1": 1, "conv_dw": 3, "bn2": 4, "se": 6}
            numbers |= {"conv_pwl": 6 + squeezes, "bn3": 7 + squeezes}
        else:  # depthwise separable: depthwise first
            numbers = {"conv_dw": 0, "bn1": 1, "se": 3, "conv_pw": 3 + squeezes, "bn2": 4 + squeezes}
        kind = {"conv_dw": ".mixed_depthwise_conv", "conv_pw": ".grouped_conv", "conv_pwl": ".grouped_conv"}
        flat = sum(_MIXNET_DEPTHS[:stage]) + index
        return f"layers.{flat}.convs.{numbers[part]}{kind.get(part, '')}{inner}.{leaf}"

    return mindspore_names(model, rename)


MIXNET = RealPair(
    name="mixnet_s_mindcv_timm",
    family="mobile-cnn",
    direction="ms2pt",
    packages=("mindcv", "timm"),
    torch_model=_mixnet_torch,
    mindspore_model=_mixnet_mindspore,
    truth=lambda: with_batchnorm_counters(invert(_mixnet_ms_from_torch())),
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="MixNet-S (the real 16 blocks, mixed depthwise kernels 3 to 11, grouped pointwise convolutions). mindcv "
    "numbers the blocks flat (`layers.N`) and their layers with the activations counted (`convs.K`), the index "
    "shifting by one where a squeeze-excitation sits before the projection; timm nests stages and names the "
    "layers. The per-kernel convolutions of a mixed layer are `.K` on both sides. torch's num_batches_tracked have "
    "no source.",
)


# ------------------------------------------------------------------------------------------------- MobileNetV1
# timm:   conv_stem, bn1, blocks.S.J.{conv_dw, bn1, conv_pw, bn2} (stages of 1, 2, 2, 6, 2), classifier.
# mindcv: features.0 conv, features.1 bn, (2 act), then one `features.K.{0 depthwise, 1 bn, (2 act), 3 pointwise,
#         4 bn}` per block from K = 3; classifier.
_MOBILENET_V1_DEPTHS = (1, 2, 2, 6, 2)
_MOBILENET_V1_PARTS = {"conv_dw": 0, "bn1": 1, "conv_pw": 3, "bn2": 4}


def _mobilenet_v1_torch() -> Any:
    from timm.models.efficientnet import mobilenetv1_100
    from torch import nn

    model = mobilenetv1_100(num_classes=_CLASSES)
    for module in list(model.modules()):  # timm's MobileNetV1 clips at 6, mindcv's does not (parameter-free)
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, nn.ReLU())
    return model


def _mobilenet_v1_mindspore() -> Any:
    from mindcv.models.mobilenetv1 import mobilenet_v1_100

    return mobilenet_v1_100(num_classes=_CLASSES)


def _mobilenet_v1_rename(name: str) -> str:
    path, _, leaf = name.rpartition(".")
    if path in ("conv_stem", "bn1"):
        return f"features.{0 if path == 'conv_stem' else 1}.{leaf}"
    block = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)", path)
    if block is None:
        return name  # classifier
    flat = 3 + sum(_MOBILENET_V1_DEPTHS[: int(block[1])]) + int(block[2])
    return f"features.{flat}.{_MOBILENET_V1_PARTS[block[3]]}.{leaf}"


MOBILENET_V1 = RealPair(
    name="mobilenet_v1_timm_mindcv",
    family="mobile-cnn",
    direction="pt2ms",
    packages=("timm", "mindcv"),
    torch_model=_mobilenet_v1_torch,
    mindspore_model=_mobilenet_v1_mindspore,
    truth=lambda: mindspore_names(_mobilenet_v1_torch(), _mobilenet_v1_rename),
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="MobileNetV1 at width 1.0 (the real 13 depthwise-separable blocks). timm nests stages and names the layers "
    "(conv_dw, bn1, conv_pw, bn2); mindcv numbers the blocks flat from 3 (`features.K.{0,1,3,4}`, activations "
    "counted). Five consecutive blocks have identical shapes (512 channels), so only the order tells them apart. "
    "timm's ReLU6 set to the plain ReLU mindcv uses (parameter-free).",
)

PAIRS = [GHOSTNET, MNASNET, MIXNET, MOBILENET_V1]
