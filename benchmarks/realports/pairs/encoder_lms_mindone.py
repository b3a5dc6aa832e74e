"""Encoder language models: HF transformers against mindone.transformers (MindSpore).

mindone 0.5.0 ports transformers 4.57.1 and needs huggingface_hub < 1: these pairs run with the environment's
`site-mindone` folder first on sys.path, and the PyTorch side is that folder's transformers 4.57.1 (the version
mindone ports). mindone's `save_pretrained` writes its parameters by cell path in the safetensors library's
(sorted) key order. Most of its ports build HF's layers from `mindspore.mint` and keep HF's names; a few older ones
(ALBERT among them) use MindSpore's own layers, whose parameters are named `embedding_table` (nn.Embedding) and
`gamma`/`beta` (nn.LayerNorm), and their files carry those names.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, invert, token_ids

_SITE = "site-mindone"
_VOCAB = 64
_LENGTH = 8


def _mindone_setup() -> None:
    from benchmarks.realports._setup import mint_cpu_fallbacks

    mint_cpu_fallbacks()


def _torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    """The last hidden states and the pooled output."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(inputs[0]))
    return [out.last_hidden_state.numpy(), out.pooler_output.numpy()]


def _mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    out = net(mindspore.Tensor(inputs[0].astype(np.int32)), return_dict=False)
    return [out[0].asnumpy(), out[1].asnumpy()]


# ------------------------------------------------------------------------------------------------------ ALBERT
# HF:      embeddings.{word, position, token_type}_embeddings.weight, embeddings.LayerNorm.{weight, bias},
#          encoder.embedding_hidden_mapping_in, encoder.albert_layer_groups.G.albert_layers.L.{full_layer_layer_norm,
#          attention.{query, key, value, dense, LayerNorm}, ffn, ffn_output}, pooler.
# mindone: the same paths; embeddings' tables `embedding_table`, LayerNorms `gamma`/`beta` (MindSpore's layers).
_ALBERT = {
    "vocab_size": _VOCAB,
    "embedding_size": 16,
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_hidden_groups": 1,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "max_position_embeddings": 16,
    "hidden_act": "gelu_new",
}


def _albert_torch() -> Any:
    from transformers import AlbertConfig, AlbertModel

    return AlbertModel(AlbertConfig(**_ALBERT))


def _albert_mindspore() -> Any:
    from mindone.transformers import AlbertModel
    from transformers import AlbertConfig

    return AlbertModel(AlbertConfig(**_ALBERT))


def _albert_ms_name(name: str) -> str:
    name = re.sub(r"_embeddings\.weight$", "_embeddings.embedding_table", name)
    leaves = {"weight": "gamma", "bias": "beta"}
    return re.sub(r"(LayerNorm|layer_norm)\.(weight|bias)$", lambda m: f"{m[1]}.{leaves[m[2]]}", name)


ALBERT = RealPair(
    name="albert_hf_mindone",
    family="encoder-lm",
    direction="pt2ms",
    packages=("transformers", "mindone"),
    torch_model=_albert_torch,
    mindspore_model=_albert_mindspore,
    truth=lambda: {_albert_ms_name(n): n for n in _albert_torch().state_dict()},
    inputs=token_ids(_VOCAB, _LENGTH),
    torch_forward=_torch_forward,
    mindspore_forward=_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    site=_SITE,
    setup=_mindone_setup,
    notes="ALBERT (embedding width 16 factorised into hidden width 32, one shared layer group run 3 times, 4 heads). "
    "mindone builds it from MindSpore's own layers: embedding tables `embedding_table`, LayerNorms `gamma`/`beta`; "
    "HF names the norm after the feed-forward `full_layer_layer_norm` and lists it before the attention. mindone's "
    "file is in sorted key order. Last hidden states and pooled output compared.",
)


# -------------------------------------------------------------------------------------------------- MobileBERT
# HF and mindone: embeddings.{word_embeddings (narrow), embedding_transformation, position/token_type_embeddings,
#     LayerNorm}, encoder.layer.N.{attention.{self.{query, key, value}, output.{dense, LayerNorm}}, intermediate,
#     output.{dense, LayerNorm, bottleneck.{dense, LayerNorm}}, bottleneck.{input, attention}.{dense, LayerNorm},
#     ffn.K.{intermediate, output.{dense, LayerNorm}}}, pooler.dense: the same names (mint layers, NoNorm weight/bias).
_MOBILEBERT = {
    "vocab_size": _VOCAB,
    "embedding_size": 16,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 32,
    "intra_bottleneck_size": 16,
    "true_hidden_size": 16,
    "max_position_embeddings": 16,
    "num_feedforward_networks": 2,
}


def _mobilebert_torch() -> Any:
    from transformers import MobileBertConfig, MobileBertModel

    return MobileBertModel(MobileBertConfig(**_MOBILEBERT))


def _mobilebert_mindspore() -> Any:
    from mindone.transformers import MobileBertModel
    from transformers import MobileBertConfig

    return MobileBertModel(MobileBertConfig(**_MOBILEBERT))


MOBILEBERT = RealPair(
    name="mobilebert_mindone_hf",
    family="encoder-lm",
    direction="ms2pt",
    packages=("mindone", "transformers"),
    torch_model=_mobilebert_torch,
    mindspore_model=_mobilebert_mindspore,
    truth=lambda: invert({n: n for n in _mobilebert_torch().state_dict()}),
    inputs=token_ids(_VOCAB, _LENGTH),
    torch_forward=_torch_forward,
    mindspore_forward=_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    # q and k of these small random layers give near-uniform attention: a feed-forward pair is the telling swap
    swap=("encoder.layer.0.ffn.0.intermediate.dense.weight", "encoder.layer.0.intermediate.dense.weight"),
    site=_SITE,
    setup=_mindone_setup,
    notes="MobileBERT (2 layers, bottlenecks 32 -> 16, 2 stacked feed-forward networks, NoNorm layers, embedding "
    "width 16 with the trigram transformation). Identical names on both sides (mindone's mint layers), but the "
    "MindSpore file is in sorted key order and nearly every layer has several same-shaped twins (bottleneck input "
    "and attention projections, the NoNorms, the stacked feed-forward networks). Last hidden states and pooled "
    "output compared.",
)

PAIRS = [ALBERT, MOBILEBERT]
