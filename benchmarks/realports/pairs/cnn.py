"""CNN classifiers: torchvision and timm against mindcv."""

from __future__ import annotations

from typing import Any

from benchmarks.realports._pair import RealPair, Truth, batchnorm, images, invert, layernorm, weight_bias

from ._align import like_mindspore_same_padding

_CLASSES = 10

# ----------------------------------------------------------------------------------------------- ResNet
# torchvision: conv1, bn1, layerS.B.{conv1,bn1,conv2,bn2}, layerS.0.downsample.{0,1}, fc.
# mindcv:      conv1, bn1, layerS.B.{conv1,bn1,conv2,bn2}, layerS.0.down_sample.{0,1}, classifier;
#              BatchNorm moving statistics listed before gamma/beta.
_RESNET_LAYERS = (1, 1, 1, 1)


def _resnet_torch() -> Any:
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, list(_RESNET_LAYERS), num_classes=_CLASSES)


def _resnet_mindspore() -> Any:
    from mindcv.models.resnet import BasicBlock, ResNet
    from mindspore import nn

    net = ResNet(BasicBlock, list(_RESNET_LAYERS), num_classes=_CLASSES)
    # mindcv's stem pools with "same" padding (bottom/right only); torchvision pads 1 on every side. After the
    # ReLU, zero padding is what -inf padding is, so an explicit pad aligns the two without any parameter.
    net.max_pool = nn.SequentialCell(
        [nn.Pad(paddings=((0, 0), (0, 0), (1, 1), (1, 1))), nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")]
    )
    return net


def _resnet_truth() -> Truth:
    truth: Truth = {"conv1.weight": "conv1.weight", **batchnorm("bn1", "bn1")}
    for stage, blocks in enumerate(_RESNET_LAYERS, start=1):
        for number in range(blocks):
            block = f"layer{stage}.{number}"
            for part in (1, 2):
                truth[f"{block}.conv{part}.weight"] = f"{block}.conv{part}.weight"
                truth.update(batchnorm(f"{block}.bn{part}", f"{block}.bn{part}"))
            if stage > 1 and number == 0:
                truth[f"{block}.down_sample.0.weight"] = f"{block}.downsample.0.weight"
                truth.update(batchnorm(f"{block}.down_sample.1", f"{block}.downsample.1"))
    truth.update(weight_bias("classifier", "fc"))
    return truth


RESNET = RealPair(
    name="resnet18_tv_mindcv",
    family="cnn",
    direction="pt2ms",
    packages=("torchvision", "mindcv"),
    torch_model=_resnet_torch,
    mindspore_model=_resnet_mindspore,
    truth=_resnet_truth,
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="ResNet (BasicBlock, one block per stage). mindcv's stem max-pool 'same' padding replaced by torchvision's "
    "symmetric padding for the proof (parameter-free).",
)

# --------------------------------------------------------------------------------------------- ConvNeXt
# mindcv: feature.0.{0: conv, 1: norm} stem, then feature.{2s-1}.B blocks and feature.{2s}.{0: norm, 1: conv}
#         downsampling; blocks `dwconv`, `norm`, `pwconv1/2` (Dense), layer scale `gamma_`; head `norm`,
#         `classifier`. LayerNorm `gamma`/`beta`.
# timm:   stem.{0,1}, stages.S.downsample.{0,1}, stages.S.blocks.B.{conv_dw, norm, mlp.fc1, mlp.fc2}, layer scale
#         `gamma` (so timm's `gamma` is mindcv's `gamma_`, and mindcv's `gamma` is a norm weight); head.norm, head.fc.
_CONVNEXT_DEPTHS = (1, 1, 2, 1)
_CONVNEXT_DIMS = (16, 24, 32, 48)


def _convnext_torch() -> Any:
    from timm.models.convnext import ConvNeXt

    return ConvNeXt(depths=_CONVNEXT_DEPTHS, dims=_CONVNEXT_DIMS, num_classes=_CLASSES)


def _convnext_mindspore() -> Any:
    from mindcv.models.convnext import ConvNeXt

    return ConvNeXt(in_channels=3, num_classes=_CLASSES, depths=list(_CONVNEXT_DEPTHS), dims=list(_CONVNEXT_DIMS))


def _convnext_ms_from_torch() -> Truth:
    """{mindcv name: timm name}."""
    truth: Truth = {**weight_bias("feature.0.0", "stem.0"), **layernorm("feature.0.1", "stem.1")}
    for stage, depth in enumerate(_CONVNEXT_DEPTHS):
        if stage > 0:
            down = f"feature.{2 * stage}"
            truth.update(layernorm(f"{down}.0", f"stages.{stage}.downsample.0"))
            truth.update(weight_bias(f"{down}.1", f"stages.{stage}.downsample.1"))
        for block in range(depth):
            ms, pt = f"feature.{2 * stage + 1}.{block}", f"stages.{stage}.blocks.{block}"
            truth[f"{ms}.gamma_"] = f"{pt}.gamma"
            truth.update(weight_bias(f"{ms}.dwconv", f"{pt}.conv_dw"))
            truth.update(layernorm(f"{ms}.norm", f"{pt}.norm"))
            truth.update(weight_bias(f"{ms}.pwconv1", f"{pt}.mlp.fc1"))
            truth.update(weight_bias(f"{ms}.pwconv2", f"{pt}.mlp.fc2"))
    truth.update(layernorm("norm", "head.norm"))
    truth.update(weight_bias("classifier", "head.fc"))
    return truth


CONVNEXT = RealPair(
    name="convnext_mindcv_timm",
    family="cnn",
    direction="ms2pt",
    packages=("mindcv", "timm"),
    torch_model=_convnext_torch,
    mindspore_model=_convnext_mindspore,
    truth=lambda: invert(_convnext_ms_from_torch()),
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="ConvNeXt (depths 1-1-2-1, small widths). timm's layer scale is `gamma`, mindcv's is `gamma_`, while "
    "mindcv's `gamma` is a LayerNorm weight.",
)

# -------------------------------------------------------------------------------------------- MobileNetV2
# torchvision: features.0.{0 conv, 1 bn}, features.B.conv.* for blocks B = 1..17 (the first without expansion:
#              conv.0.{0,1} depthwise, conv.1 projection, conv.2 bn; the others conv.0.{0,1} expansion, conv.1.{0,1}
#              depthwise, conv.2 projection, conv.3 bn), features.18.{0,1}, classifier.1.
# mindcv:      one flat numbering with the activations counted: features.0 conv, features.1 bn, features.B+2.layers.*
#              (0 conv, 1 bn, [2 ReLU6], 3 conv, 4 bn, [5 ReLU6], 6 conv, 7 bn), features.20 conv, features.21 bn,
#              classifier.1. So torchvision's block B is mindcv's features.B+2.
_MOBILENET_BLOCKS = 17


def _mobilenet_v2_torch() -> Any:
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(width_mult=0.35, num_classes=_CLASSES)


def _mobilenet_v2_mindspore() -> Any:
    from mindcv.models.mobilenetv2 import MobileNetV2

    return MobileNetV2(alpha=0.35, num_classes=_CLASSES)


def _mobilenet_v2_truth() -> Truth:
    truth: Truth = {"features.0.weight": "features.0.0.weight", **batchnorm("features.1", "features.0.1")}
    for block in range(1, _MOBILENET_BLOCKS + 1):
        ms, pt = f"features.{block + 2}.layers", f"features.{block}.conv"
        if block == 1:
            convs = [("0", "0.0"), ("3", "1")]
            norms = [("1", "0.1"), ("4", "2")]
        else:
            convs = [("0", "0.0"), ("3", "1.0"), ("6", "2")]
            norms = [("1", "0.1"), ("4", "1.1"), ("7", "3")]
        for ms_index, pt_index in convs:
            truth[f"{ms}.{ms_index}.weight"] = f"{pt}.{pt_index}.weight"
        for ms_index, pt_index in norms:
            truth.update(batchnorm(f"{ms}.{ms_index}", f"{pt}.{pt_index}"))
    truth["features.20.weight"] = "features.18.0.weight"
    truth.update(batchnorm("features.21", "features.18.1"))
    truth.update(weight_bias("classifier.1", "classifier.1"))
    return truth


MOBILENET_V2 = RealPair(
    name="mobilenet_v2_tv_mindcv",
    family="cnn",
    direction="pt2ms",
    packages=("torchvision", "mindcv"),
    torch_model=_mobilenet_v2_torch,
    mindspore_model=_mobilenet_v2_mindspore,
    truth=_mobilenet_v2_truth,
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="MobileNetV2 at width 0.35 (the real 17 blocks). mindcv numbers features with the activations counted, "
    "so block indices are shifted by two against torchvision's nested ones.",
)

# ------------------------------------------------------------------------------------------------ DenseNet
# mindcv:      features.{conv0, norm0}, features.denseblockS.cell_list.J.{norm1, conv1, norm2, conv2},
#              features.transitionS.features.{norm, conv}, features.norm5, classifier.
# torchvision: the same, but dense layers named denselayer{J+1} and the transitions' norm/conv directly under
#              transitionS.
_DENSENET = {"growth_rate": 8, "block_config": (2, 2, 2, 2), "num_init_features": 16, "bn_size": 2}


def _densenet_torch() -> Any:
    from torchvision.models import DenseNet

    return DenseNet(num_classes=_CLASSES, **_DENSENET)  # type: ignore[arg-type]


def _densenet_mindspore() -> Any:
    from mindcv.models.densenet import DenseNet

    return DenseNet(num_classes=_CLASSES, **_DENSENET)  # type: ignore[arg-type]


def _densenet_ms_from_torch() -> Truth:
    truth: Truth = {"features.conv0.weight": "features.conv0.weight", **batchnorm("features.norm0", "features.norm0")}
    blocks = _DENSENET["block_config"]
    for stage, layers in enumerate(blocks, start=1):  # type: ignore[arg-type]
        for j in range(layers):
            ms, pt = f"features.denseblock{stage}.cell_list.{j}", f"features.denseblock{stage}.denselayer{j + 1}"
            for part in ("1", "2"):
                truth.update(batchnorm(f"{ms}.norm{part}", f"{pt}.norm{part}"))
                truth[f"{ms}.conv{part}.weight"] = f"{pt}.conv{part}.weight"
        if stage < len(blocks):  # type: ignore[arg-type]
            truth.update(batchnorm(f"features.transition{stage}.features.norm", f"features.transition{stage}.norm"))
            truth[f"features.transition{stage}.features.conv.weight"] = f"features.transition{stage}.conv.weight"
    truth.update(batchnorm("features.norm5", "features.norm5"))
    truth.update(weight_bias("classifier", "classifier"))
    return truth


def _torch_batchnorm_counters(truth: Truth) -> list[str]:
    """torch's `num_batches_tracked` of every BatchNorm the truth maps: no MindSpore counterpart."""
    return [t.replace(".running_mean", ".num_batches_tracked") for t in truth if t.endswith(".running_mean")]


def _ms2pt(ms_from_torch: Truth) -> Truth:
    truth = invert(ms_from_torch)
    return {**truth, **dict.fromkeys(_torch_batchnorm_counters(truth))}


DENSENET = RealPair(
    name="densenet_mindcv_tv",
    family="cnn",
    direction="ms2pt",
    packages=("mindcv", "torchvision"),
    torch_model=_densenet_torch,
    mindspore_model=_densenet_mindspore,
    truth=lambda: _ms2pt(_densenet_ms_from_torch()),
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="DenseNet (growth 8, two layers per block, 16 initial features). Dense layers numbered from 0 in mindcv, "
    "from 1 in torchvision; torch's num_batches_tracked have no source.",
)


# ---------------------------------------------------------------------------------------------- SqueezeNet
SQUEEZE_FIRES = (3, 4, 6, 7, 9, 10, 11, 12)


def _squeezenet_torch() -> Any:
    from torch import nn
    from torchvision.models import squeezenet1_1

    model = squeezenet1_1(num_classes=_CLASSES)
    # mindcv's port pads the first convolution by 1 and pools without ceil mode; torchvision does neither. Both are
    # parameter-free settings read at run time, aligned here to mindcv's for the proof.
    model.features[0].padding = (1, 1)
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = False
    return model


def _squeezenet_mindspore() -> Any:
    from mindcv.models.squeezenet import squeezenet1_1

    return squeezenet1_1(num_classes=_CLASSES)


def _squeezenet_truth() -> Truth:
    """{torchvision: mindcv}: the same names on both sides."""
    truth: Truth = weight_bias("features.0", "features.0")
    for fire in SQUEEZE_FIRES:
        for conv in ("squeeze", "expand1x1", "expand3x3"):
            truth.update(weight_bias(f"features.{fire}.{conv}", f"features.{fire}.{conv}"))
    truth.update(weight_bias("classifier.1", "classifier.1"))
    return truth


SQUEEZENET = RealPair(
    name="squeezenet_mindcv_tv",
    family="cnn",
    direction="ms2pt",
    packages=("mindcv", "torchvision"),
    torch_model=_squeezenet_torch,
    mindspore_model=_squeezenet_mindspore,
    truth=_squeezenet_truth,
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="SqueezeNet 1.1: mindcv keeps torchvision's names; no normalisation layers (a control pair). mindcv "
    "pads the first convolution and pools without ceil mode: torchvision's modules set the same way for the proof.",
)


# ------------------------------------------------------------------- inverted residual blocks (MBConv)
# torchvision: block.K per part: [expansion {0 conv, 1 bn}], depthwise {0, 1}, [squeeze-excitation {fc1, fc2}],
#              projection {0, 1}.
# mindcv:      one flat numbering with the activations counted: [expansion conv, bn, (act)], depthwise conv, bn,
#              (act), [squeeze-excitation {conv_reduce, conv_expand}], projection conv, bn.
def _mbconv(truth: Truth, ms: str, pt: str, *, expand: bool, se: bool) -> None:
    """{mindcv: torchvision} for one inverted residual block."""
    ms_index, pt_index = 0, 0
    parts = (["expand"] if expand else []) + ["depthwise"] + (["se"] if se else []) + ["project"]
    for part in parts:
        if part == "se":
            truth.update(weight_bias(f"{ms}.{ms_index}.conv_reduce", f"{pt}.{pt_index}.fc1"))
            truth.update(weight_bias(f"{ms}.{ms_index}.conv_expand", f"{pt}.{pt_index}.fc2"))
            ms_index += 1
        else:
            truth[f"{ms}.{ms_index}.weight"] = f"{pt}.{pt_index}.0.weight"
            truth.update(batchnorm(f"{ms}.{ms_index + 1}", f"{pt}.{pt_index}.1"))
            ms_index += 2 if part == "project" else 3  # the activation takes a number too
        pt_index += 1


# ---------------------------------------------------------------------------------------- EfficientNet-B0
# torchvision: features.0.{0,1} stem, features.S.J.block.* (S = 1..7), features.8.{0,1}, classifier.1.
# mindcv:      features.0 conv, features.1 bn, features.S+2.J.block.*, features.10 conv, features.11 bn, mlp_head.
_EFFICIENTNET_STAGES = ((1, False), (2, True), (2, True), (3, True), (3, True), (4, True), (1, True))  # blocks, expand


def _efficientnet_torch() -> Any:
    from torchvision.models import efficientnet_b0

    return like_mindspore_same_padding(efficientnet_b0(num_classes=_CLASSES), depthwise_only=False)


def _efficientnet_mindspore() -> Any:
    from mindcv.models.efficientnet import efficientnet_b0

    return efficientnet_b0(num_classes=_CLASSES)


def _efficientnet_ms_from_torch() -> Truth:
    truth: Truth = {"features.0.weight": "features.0.0.weight", **batchnorm("features.1", "features.0.1")}
    for stage, (blocks, expand) in enumerate(_EFFICIENTNET_STAGES, start=1):
        for j in range(blocks):
            _mbconv(truth, f"features.{stage + 2}.{j}.block", f"features.{stage}.{j}.block", expand=expand, se=True)
    truth["features.10.weight"] = "features.8.0.weight"
    truth.update(batchnorm("features.11", "features.8.1"))
    truth.update(weight_bias("mlp_head", "classifier.1"))
    return truth


EFFICIENTNET = RealPair(
    name="efficientnet_b0_mindcv_tv",
    family="cnn",
    direction="ms2pt",
    packages=("mindcv", "torchvision"),
    torch_model=_efficientnet_torch,
    mindspore_model=_efficientnet_mindspore,
    truth=lambda: _ms2pt(_efficientnet_ms_from_torch()),
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="EfficientNet-B0 (the real 16 blocks). mindcv numbers block parts with the activations counted and its "
    "stages from 3; squeeze-excitation conv_reduce/conv_expand against fc1/fc2. mindcv's strided convolutions pad "
    "TensorFlow's 'same' way: torchvision's set to pad alike for the proof (parameter-free).",
)


# --------------------------------------------------------------------------------------- MobileNetV3-Small
# torchvision: features.0.{0,1}, features.B.block.* (B = 1..11), features.12.{0,1}, classifier.{0,3}.
# mindcv:      features.0 conv, features.1 bn, features.B+2.layers.*, features.14 conv, features.15 bn,
#              classifier.{0,3}.
_MOBILENET_V3_BLOCKS = (  # expansion, squeeze-excitation
    (False, True),
    (True, False),
    (True, False),
    *[(True, True)] * 8,
)


def _mobilenet_v3_torch() -> Any:
    from torchvision.models import mobilenet_v3_small

    model = mobilenet_v3_small(num_classes=_CLASSES)
    return like_mindspore_same_padding(model, depthwise_only=True, batchnorm_eps=1e-5)


def _mobilenet_v3_mindspore() -> Any:
    from mindcv.models.mobilenetv3 import mobilenet_v3_small_100

    return mobilenet_v3_small_100(num_classes=_CLASSES)


def _mobilenet_v3_truth() -> Truth:
    truth: Truth = {"features.0.weight": "features.0.0.weight", **batchnorm("features.1", "features.0.1")}
    for block, (expand, se) in enumerate(_MOBILENET_V3_BLOCKS, start=1):
        _mbconv(truth, f"features.{block + 2}.layers", f"features.{block}.block", expand=expand, se=se)
    truth["features.14.weight"] = "features.12.0.weight"
    truth.update(batchnorm("features.15", "features.12.1"))
    truth.update(weight_bias("classifier.0", "classifier.0"))
    truth.update(weight_bias("classifier.3", "classifier.3"))
    return truth


MOBILENET_V3 = RealPair(
    name="mobilenet_v3_small_tv_mindcv",
    family="cnn",
    direction="pt2ms",
    packages=("torchvision", "mindcv"),
    torch_model=_mobilenet_v3_torch,
    mindspore_model=_mobilenet_v3_mindspore,
    truth=_mobilenet_v3_truth,
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="MobileNetV3-Small (the real 11 blocks). Block indices shifted by two and block parts numbered with the "
    "activations counted on the mindcv side. mindcv's strided depthwise convolutions pad TensorFlow's 'same' way "
    "and its BatchNorm epsilon is 1e-5: torchvision's set alike for the proof (parameter-free).",
)

PAIRS = [RESNET, CONVNEXT, MOBILENET_V2, DENSENET, SQUEEZENET, EFFICIENTNET, MOBILENET_V3]
