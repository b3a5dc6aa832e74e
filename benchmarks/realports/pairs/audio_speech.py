"""Self-supervised speech encoders (convolutional feature extractor + transformer): HF transformers against
mindone.transformers.

As in `audio_codecs.py`, these pairs run with the environment's `site-mindone` folder first on sys.path (the
PyTorch side is its transformers 4.57.1, the version mindone 0.5.0 ports). mindone keeps HF's module names but
builds the convolutions from MindSpore's nn.Conv1d, whose kernels carry an extra axis (`[out, in, 1, k]`), and
weight-normalises the positional convolution with its own `WeightNorm` cell (`weight_g`, `weight_v`, the wrapped
convolution's `weight_norm_cell.bias` and the `weight_norm_cell.weight` it recomputes on every call) where torch's
parametrisation stores `parametrizations.weight.original0/original1`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth

_SITE = "site-mindone"
_WAV2VEC2 = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 48,
    "conv_dim": (8, 8, 8),
    "conv_stride": (4, 2, 2),
    "conv_kernel": (8, 4, 4),
    "num_conv_pos_embeddings": 8,
    "num_conv_pos_embedding_groups": 2,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
    "vocab_size": 16,
}


def _mindone_setup() -> None:
    from benchmarks.realports._setup import mint_cpu_fallbacks

    mint_cpu_fallbacks()


def _wav2vec2_torch() -> Any:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    return Wav2Vec2Model(Wav2Vec2Config(**_WAV2VEC2))


def _wav2vec2_mindspore() -> Any:
    from mindone.transformers import Wav2Vec2Model
    from transformers import Wav2Vec2Config

    return Wav2Vec2Model(Wav2Vec2Config(**_WAV2VEC2))


def _wav2vec2_truth() -> Truth:
    """{mindone name: HF name} (PyTorch -> MindSpore), over HF's names."""
    to_mindspore_kernel = [{"op": "unsqueeze", "axis": 2}]
    positional = "encoder.pos_conv_embed.conv"
    truth: Truth = {f"{positional}.weight_norm_cell.weight": None}  # recomputed from g and v on every call
    for name in _wav2vec2_torch().state_dict():
        weight_norm = re.fullmatch(r"(.+\.conv)\.parametrizations\.weight\.original([01])", name)
        if weight_norm:
            part = "weight_g" if weight_norm[2] == "0" else "weight_v"
            truth[f"{weight_norm[1]}.{part}"] = {"source": name, "transform": to_mindspore_kernel}
        elif name == f"{positional}.bias":
            truth[f"{positional}.weight_norm_cell.bias"] = name
        elif re.fullmatch(r"feature_extractor\.conv_layers\.\d+\.conv\.weight", name):
            truth[name] = {"source": name, "transform": to_mindspore_kernel}
        else:
            truth[name] = name
    return truth


def _wav2vec2_inputs(rng: np.random.Generator) -> Inputs:
    return (rng.standard_normal((2, 256)).astype(np.float32),)


def _wav2vec2_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    """The transformer's output and the convolutional features."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(inputs[0]))
    return [out.last_hidden_state.numpy(), out.extract_features.numpy()]


def _wav2vec2_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    out = net(mindspore.Tensor(inputs[0]), return_dict=False)
    return [out[0].asnumpy(), out[1].asnumpy()]


WAV2VEC2 = RealPair(
    name="wav2vec2_hf_mindone",
    family="audio-recurrent",
    direction="pt2ms",
    packages=("transformers", "mindone"),
    torch_model=_wav2vec2_torch,
    mindspore_model=_wav2vec2_mindspore,
    truth=_wav2vec2_truth,
    inputs=_wav2vec2_inputs,
    torch_forward=_wav2vec2_torch_forward,
    mindspore_forward=_wav2vec2_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    site=_SITE,
    setup=_mindone_setup,
    notes="wav2vec 2.0 (3 feature convolutions of 8 channels with a group norm, 2 transformer layers of width 32, "
    "a grouped weight-normalised positional convolution of kernel 8). mindone's convolution kernels get MindSpore's "
    "extra axis (unsqueezed); torch's `parametrizations.weight.original0/1` are mindone's `weight_g`/`weight_v`, its "
    "bias sits under `weight_norm_cell`, and mindone's `weight_norm_cell.weight` (recomputed from g and v on every "
    "call) has no source. mindone's file is in sorted key order. Transformer output and convolutional features "
    "compared.",
)

PAIRS = [WAV2VEC2]
