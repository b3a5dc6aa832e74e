"""Audio front end: the wav2vec2-base feature encoder and feature projection, HuggingFace (torch) against a
MindSpore port written with MindSpore's own layers.

wav2vec2-base's widths: seven 512-channel Conv1d layers without bias (kernels 10, 3, 3, 3, 3, 2, 2; strides
5, 2, 2, 2, 2, 2, 2; exact GELU), a GroupNorm with one group per channel after the first convolution only
("group" feature-extractor norm), then LayerNorm(512, eps 1e-5) and a Dense 512 -> 768. The whole stack is small,
so "ci" keeps every layer and only shortens the waveform (50 ms at 16 kHz, two output frames, against 1 s at "full").

torch side (HuggingFace `Wav2Vec2Model`'s front end): `feature_extractor.conv_layers.0.{conv, layer_norm}`,
`feature_extractor.conv_layers.N.conv` (N = 1..6), `feature_projection.{layer_norm, projection}`.

MindSpore side: the same module names, but MindSpore's `nn.Conv1d` keeps a 4-D weight (out, in, 1, kernel), so
every convolution's ground truth inserts an axis; GroupNorm and LayerNorm parameters are gamma/beta.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.zoo._base import GroundTruth, Size, ZooPair

_CHANNELS, _HIDDEN, _EPS = 512, 768, 1e-5
_KERNELS = (10, 3, 3, 3, 3, 2, 2)
_STRIDES = (5, 2, 2, 2, 2, 2, 2)
_SAMPLES = {"ci": 800, "full": 16000}


@functools.cache
def _torch() -> SimpleNamespace:
    import torch
    from torch import nn

    class Wav2Vec2GroupNormConvLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, _CHANNELS, kernel_size=_KERNELS[0], stride=_STRIDES[0], bias=False)
            self.activation = nn.GELU()
            self.layer_norm = nn.GroupNorm(num_groups=_CHANNELS, num_channels=_CHANNELS, affine=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.activation(self.layer_norm(self.conv(x)))

    class Wav2Vec2NoLayerNormConvLayer(nn.Module):
        def __init__(self, layer: int) -> None:
            super().__init__()
            self.conv = nn.Conv1d(_CHANNELS, _CHANNELS, kernel_size=_KERNELS[layer], stride=_STRIDES[layer], bias=False)
            self.activation = nn.GELU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.activation(self.conv(x))

    class Wav2Vec2FeatureEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = [Wav2Vec2GroupNormConvLayer()]
            layers += [Wav2Vec2NoLayerNormConvLayer(i) for i in range(1, len(_KERNELS))]
            self.conv_layers = nn.ModuleList(layers)

        def forward(self, input_values: torch.Tensor) -> torch.Tensor:
            x = input_values[:, None]
            for layer in self.conv_layers:
                x = layer(x)
            return x

    class Wav2Vec2FeatureProjection(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer_norm = nn.LayerNorm(_CHANNELS, eps=_EPS)
            self.projection = nn.Linear(_CHANNELS, _HIDDEN)
            self.dropout = nn.Dropout(0.1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            norm = self.layer_norm(x)
            return self.dropout(self.projection(norm)), norm

    class Wav2Vec2FrontEnd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.feature_extractor = Wav2Vec2FeatureEncoder()
            self.feature_projection = Wav2Vec2FeatureProjection()

        def forward(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.feature_extractor(input_values).transpose(1, 2)
            return self.feature_projection(features)

    return SimpleNamespace(Wav2Vec2FrontEnd=Wav2Vec2FrontEnd)


@functools.cache
def _mindspore() -> SimpleNamespace:
    from mindspore import nn

    def conv(in_channels: int, layer: int) -> nn.Conv1d:
        return nn.Conv1d(
            in_channels, _CHANNELS, _KERNELS[layer], stride=_STRIDES[layer], pad_mode="valid", has_bias=False
        )

    class Wav2Vec2GroupNormConvLayer(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv(1, 0)
            self.activation = nn.GELU(approximate=False)
            self.layer_norm = nn.GroupNorm(_CHANNELS, _CHANNELS, eps=_EPS)

        def construct(self, x: Any) -> Any:
            return self.activation(self.layer_norm(self.conv(x)))

    class Wav2Vec2NoLayerNormConvLayer(nn.Cell):
        def __init__(self, layer: int) -> None:
            super().__init__()
            self.conv = conv(_CHANNELS, layer)
            self.activation = nn.GELU(approximate=False)

        def construct(self, x: Any) -> Any:
            return self.activation(self.conv(x))

    class Wav2Vec2FeatureEncoder(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            layers = [Wav2Vec2GroupNormConvLayer()]
            layers += [Wav2Vec2NoLayerNormConvLayer(i) for i in range(1, len(_KERNELS))]
            self.conv_layers = nn.CellList(layers)

        def construct(self, input_values: Any) -> Any:
            x = input_values.expand_dims(1)
            for layer in self.conv_layers:
                x = layer(x)
            return x

    class Wav2Vec2FeatureProjection(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.layer_norm = nn.LayerNorm((_CHANNELS,), epsilon=_EPS)
            self.projection = nn.Dense(_CHANNELS, _HIDDEN)
            self.dropout = nn.Dropout(p=0.1)

        def construct(self, x: Any) -> Any:
            norm = self.layer_norm(x)
            return self.dropout(self.projection(norm)), norm

    class Wav2Vec2FrontEnd(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.feature_extractor = Wav2Vec2FeatureEncoder()
            self.feature_projection = Wav2Vec2FeatureProjection()

        def construct(self, input_values: Any) -> Any:
            features = self.feature_extractor(input_values).swapaxes(1, 2)
            return self.feature_projection(features)

    return SimpleNamespace(Wav2Vec2FrontEnd=Wav2Vec2FrontEnd)


def ground_truth(size: Size) -> GroundTruth:
    del size  # "ci" and "full" share every layer
    truth: GroundTruth = {}
    for i in range(len(_KERNELS)):
        name = f"feature_extractor.conv_layers.{i}.conv.weight"
        truth[name] = {"source": name, "transform": [{"op": "unsqueeze", "axis": 2}]}
        if i == 0:
            truth["feature_extractor.conv_layers.0.layer_norm.gamma"] = (
                "feature_extractor.conv_layers.0.layer_norm.weight"
            )
            truth["feature_extractor.conv_layers.0.layer_norm.beta"] = "feature_extractor.conv_layers.0.layer_norm.bias"
    truth["feature_projection.layer_norm.gamma"] = "feature_projection.layer_norm.weight"
    truth["feature_projection.layer_norm.beta"] = "feature_projection.layer_norm.bias"
    truth["feature_projection.projection.weight"] = "feature_projection.projection.weight"
    truth["feature_projection.projection.bias"] = "feature_projection.projection.bias"
    return truth


def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (rng.standard_normal((2, _SAMPLES[size])).astype(np.float32),)


PAIR = ZooPair(
    name="conv1d_audio",
    title="wav2vec2-base feature encoder (Conv1d)",
    torch_model=lambda size: _torch().Wav2Vec2FrontEnd(),
    mindspore_model=lambda size: _mindspore().Wav2Vec2FrontEnd(),
    ground_truth=ground_truth,
    inputs=inputs,
    optimizer="adam",
    rtol=1e-3,
    atol=1e-4,
    notes=(
        "HuggingFace wav2vec2 feature encoder + projection vs a MindSpore-layer port with the same module names: "
        "Conv1d weights (out, in, k) -> (out, in, 1, k), GroupNorm/LayerNorm gamma/beta; six same-shaped "
        "[512, 512, 3 or 2] convolutions."
    ),
    tags=("audio", "conv1d", "unsqueeze", "groupnorm"),
)
