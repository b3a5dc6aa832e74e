"""Neural audio codecs (convolutions, LSTMs, residual vector quantisers): HF transformers against mindone.

mindone 0.5.0 ports transformers 4.57.1 and needs huggingface_hub < 1, so these pairs run with the environment's
`site-mindone` folder first on sys.path, and the PyTorch side is that folder's transformers 4.57.1 too (the version
mindone ports). mindone keeps HF's module names, but not its layers' storage: its weight-normalised convolutions are
its own `WeightNorm` cell (`weight_g`, `weight_v`, and the wrapped convolution's `weight_norm_cell.weight` that it
recomputes on every call, `weight_norm_cell.bias`) where torch's parametrisation stores `parametrizations.weight.
original0` (the norm) and `original1` (the direction); MindSpore's Conv1d keeps a 4-D kernel (`[out, in, 1, k]`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth

_SITE = "site-mindone"
_BATCH = 2
_ENCODEC = {
    "target_bandwidths": [1.5, 3.0],
    "sampling_rate": 800,
    "audio_channels": 1,
    "hidden_size": 16,
    "num_filters": 4,
    "num_residual_layers": 1,
    "upsampling_ratios": [4, 2],
    "codebook_size": 16,
    "codebook_dim": 16,
    "num_lstm_layers": 2,
}
_BANDWIDTH = 3.0  # every codebook in use
_QUANTIZERS = 7  # 3 kbps at 100 frames per second (800 Hz, strides 4 and 2) and 4 bits per code


def _mindone_setup() -> None:
    from benchmarks.realports._setup import mint_cpu_fallbacks

    mint_cpu_fallbacks()


def _encodec_torch() -> Any:
    from transformers import EncodecConfig, EncodecModel

    return EncodecModel(EncodecConfig(**_ENCODEC))


def _encodec_mindspore() -> Any:
    from mindone.transformers import EncodecModel
    from transformers import EncodecConfig

    return EncodecModel(EncodecConfig(**_ENCODEC))


def _encodec_truth() -> Truth:
    """{HF name: mindone name} (MindSpore -> PyTorch), over HF's names."""
    to_torch_layout = [{"op": "squeeze", "axis": 2}]
    truth: Truth = {}
    for name in _encodec_torch().state_dict():
        weight_norm = re.fullmatch(r"(.+\.conv)\.parametrizations\.weight\.original([01])", name)
        if weight_norm:
            part = "weight_g" if weight_norm[2] == "0" else "weight_v"
            truth[name] = {"source": f"{weight_norm[1]}.{part}", "transform": to_torch_layout}
        elif name.endswith(".conv.bias"):
            truth[name] = name[: -len("bias")] + "weight_norm_cell.bias"
        elif name.endswith(".codebook.inited"):
            truth[name] = None  # a training flag torch keeps as a buffer; mindone has none
        else:  # LSTMs and codebooks keep torch's names
            truth[name] = name
    return truth


def _encodec_inputs(rng: np.random.Generator) -> Inputs:
    return (rng.standard_normal((_BATCH, 1, 64)).astype(np.float32),)


def _encodec_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    """Encoder output, the codes every quantiser picks, and the decoder's audio from the quantised codes."""
    import torch

    with torch.no_grad():
        embeddings = model.encoder(torch.from_numpy(inputs[0]))
        codes = model.quantizer.encode(embeddings, _BANDWIDTH)
        audio = model.decoder(model.quantizer.decode(codes))
    return [embeddings.numpy(), codes.numpy().astype(np.float32), audio.numpy()]


def _encodec_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    embeddings = net.encoder(mindspore.Tensor(inputs[0]))
    codes = net.quantizer.encode(embeddings, _BANDWIDTH)
    audio = net.decoder(net.quantizer.decode(codes))
    return [embeddings.asnumpy(), codes.asnumpy().astype(np.float32), audio.asnumpy()]


ENCODEC = RealPair(
    name="encodec_mindone_hf",
    family="audio-recurrent",
    direction="ms2pt",
    packages=("mindone", "transformers"),
    torch_model=_encodec_torch,
    mindspore_model=_encodec_mindspore,
    truth=_encodec_truth,
    inputs=_encodec_inputs,
    torch_forward=_encodec_torch_forward,
    mindspore_forward=_encodec_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    site=_SITE,
    setup=_mindone_setup,
    fill={f"quantizer.layers.{i}.codebook.inited": 1.0 for i in range(_QUANTIZERS)},
    notes="EnCodec (SEANet encoder/decoder with 4 filters, strides 2 and 4, 2-layer LSTMs of width 16, 7 residual "
    "codebooks of 16 entries) from HF transformers 4.57.1 and mindone.transformers. Weight-normalised convolutions: "
    "torch's `parametrizations.weight.original0/original1` are mindone's `weight_g`/`weight_v` with MindSpore's extra "
    "kernel axis (squeezed), the bias sits under `weight_norm_cell`, and mindone's file also holds the recomputed "
    "`weight_norm_cell.weight` (unused source). torch's codebook `inited` flags have no source (set for loading, "
    "unused in inference). Encoder output, codes and decoded audio compared.",
)

PAIRS = [ENCODEC]
