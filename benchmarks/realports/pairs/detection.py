"""Detection: ultralytics YOLOv8 against mindyolo's YOLOv8."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth, images

_CLASSES, _IMAGE = 4, 64


def _ultralytics_setup() -> None:
    import os
    import tempfile

    # ultralytics writes a settings file under the user's config folder on import: keep it in a scratch folder
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="realports-ultralytics-"))


# ---------------------------------------------------------------------------------------------- YOLOv8
# ultralytics: model.I.{conv, bn} for a Conv, model.I.{cv1, cv2, m.J.{cv1, cv2}} for a C2f, model.9.{cv1, cv2} for
#              SPPF, model.22.{cv2.L.{0,1,2}, cv3.L.{0,1,2}, dfl.conv} for the head; BatchNorm weight/bias/running_*.
# mindyolo:    model.model.I.*, with C2f bottlenecks and SPPF convs named conv1/conv2, BatchNorm gamma/beta/moving_*
#              (moving statistics first), and the head's strides stored as an int32 parameter.
# The network is YOLOv8-n (depth 0.33, width 0.25) from each package's own definition: ultralytics' yolov8.yaml, and
# the same layer list written for mindyolo's model builder (its YAML files are not part of the package).
_CONV = "ConvNormAct"
_MINDYOLO_LAYERS = {
    "backbone": [
        [-1, 1, _CONV, [64, 3, 2]],
        [-1, 1, _CONV, [128, 3, 2]],
        [-1, 3, "C2f", [128, True]],
        [-1, 1, _CONV, [256, 3, 2]],
        [-1, 6, "C2f", [256, True]],
        [-1, 1, _CONV, [512, 3, 2]],
        [-1, 6, "C2f", [512, True]],
        [-1, 1, _CONV, [1024, 3, 2]],
        [-1, 3, "C2f", [1024, True]],
        [-1, 1, "SPPF", [1024, 5]],
    ],
    "head": [
        [-1, 1, "Upsample", [None, 2, "nearest"]],
        [[-1, 6], 1, "Concat", [1]],
        [-1, 3, "C2f", [512]],
        [-1, 1, "Upsample", [None, 2, "nearest"]],
        [[-1, 4], 1, "Concat", [1]],
        [-1, 3, "C2f", [256]],
        [-1, 1, _CONV, [256, 3, 2]],
        [[-1, 12], 1, "Concat", [1]],
        [-1, 3, "C2f", [512]],
        [-1, 1, _CONV, [512, 3, 2]],
        [[-1, 9], 1, "Concat", [1]],
        [-1, 3, "C2f", [1024]],
        [[15, 18, 21], 1, "YOLOv8Head", [_CLASSES, 16, [8, 16, 32]]],
    ],
}
_CONVS = (0, 1, 3, 5, 7, 16, 19)
_C2F = {2: 1, 4: 2, 6: 2, 8: 1, 12: 1, 15: 1, 18: 1, 21: 1}  # layer: bottlenecks (repeats times depth 0.33)


def _yolo_torch() -> Any:
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel("yolov8n.yaml", nc=_CLASSES, verbose=False)


def _yolo_mindspore() -> Any:
    from mindyolo.models.yolov8 import YOLOv8
    from mindyolo.utils.config import Config

    config = Config(
        {"stride": [8, 16, 32], "depth_multiple": 0.33, "width_multiple": 0.25, "max_channels": 1024, "reg_max": 16}
        | _MINDYOLO_LAYERS
    )
    return YOLOv8(config, in_channels=3, num_classes=_CLASSES)


def _conv_bn(truth: Truth, torch: str, ms: str) -> None:
    """{ultralytics: mindyolo} for a convolution with its BatchNorm."""
    truth[f"{torch}.conv.weight"] = f"{ms}.conv.weight"
    truth[f"{torch}.bn.weight"] = f"{ms}.bn.gamma"
    truth[f"{torch}.bn.bias"] = f"{ms}.bn.beta"
    truth[f"{torch}.bn.running_mean"] = f"{ms}.bn.moving_mean"
    truth[f"{torch}.bn.running_var"] = f"{ms}.bn.moving_variance"
    truth[f"{torch}.bn.num_batches_tracked"] = None


def _yolo_truth() -> Truth:
    """{ultralytics name: mindyolo name} (MindSpore -> PyTorch)."""
    truth: Truth = {}
    for layer in _CONVS:
        _conv_bn(truth, f"model.{layer}", f"model.model.{layer}")
    for layer, bottlenecks in _C2F.items():
        pt, ms = f"model.{layer}", f"model.model.{layer}"
        _conv_bn(truth, f"{pt}.cv1", f"{ms}.cv1")
        _conv_bn(truth, f"{pt}.cv2", f"{ms}.cv2")
        for j in range(bottlenecks):
            _conv_bn(truth, f"{pt}.m.{j}.cv1", f"{ms}.m.{j}.conv1")
            _conv_bn(truth, f"{pt}.m.{j}.cv2", f"{ms}.m.{j}.conv2")
    _conv_bn(truth, "model.9.cv1", "model.model.9.conv1")
    _conv_bn(truth, "model.9.cv2", "model.model.9.conv2")
    for branch in ("cv2", "cv3"):
        for level in range(3):
            pt, ms = f"model.22.{branch}.{level}", f"model.model.22.{branch}.{level}"
            _conv_bn(truth, f"{pt}.0", f"{ms}.0")
            _conv_bn(truth, f"{pt}.1", f"{ms}.1")
            truth[f"{pt}.2.weight"] = f"{ms}.2.weight"
            truth[f"{pt}.2.bias"] = f"{ms}.2.bias"
    truth["model.22.dfl.conv.weight"] = "model.model.22.dfl.conv.weight"
    return truth


def _yolo_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        decoded, levels = model(torch.from_numpy(inputs[0]))  # [batch, 4 box + classes, anchors], raw maps
    return [decoded.numpy(), *(level.numpy() for level in levels)]


def _yolo_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    decoded, levels = net(mindspore.Tensor(inputs[0]))  # [batch, anchors, 4 box + classes], raw maps
    return [decoded.asnumpy().transpose(0, 2, 1), *(level.asnumpy() for level in levels)]


YOLOV8 = RealPair(
    name="yolov8n_mindyolo_ultralytics",
    family="detection-ocr",
    direction="ms2pt",
    packages=("mindyolo", "ultralytics"),
    torch_model=_yolo_torch,
    mindspore_model=_yolo_mindspore,
    truth=_yolo_truth,
    inputs=images(_IMAGE, batch=2),
    torch_forward=_yolo_torch_forward,
    mindspore_forward=_yolo_mindspore_forward,
    rtol=1e-4,
    atol=1e-3,
    swap=("model.2.m.0.cv1.conv.weight", "model.2.m.0.cv2.conv.weight"),
    setup=_ultralytics_setup,
    notes="YOLOv8-n (4 classes, 64x64 input): the head's raw maps of the three levels and the decoded boxes and "
    "class scores compared (mindyolo returns the latter anchors-first). mindyolo names C2f bottleneck and SPPF "
    "convolutions conv1/conv2 where ultralytics says cv1/cv2 (which both use for the C2f's own convolutions); "
    "mindyolo's strides parameter has no ultralytics counterpart in the file.",
)

PAIRS = [YOLOV8]
