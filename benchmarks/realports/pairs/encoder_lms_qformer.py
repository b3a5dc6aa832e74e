"""The BLIP-2 Q-Former (a BERT encoder whose learned queries cross-attend to image features): mindformers against HF
transformers.

mindformers ports Salesforce's LAVIS Q-Former, a full BERT with a text branch (word and position embeddings, a
text feed-forward `intermediate`/`output` in every layer) next to the query branch (`intermediate_query`,
`output_query`); HF's Blip2QFormerModel keeps the query branch only. mindformers names self-attention `self_att`
and its LayerNorms `layernorm` (`gamma`/`beta`); HF names them `attention.attention` and `LayerNorm`, and its
input LayerNorm is `layernorm` at the top where mindformers' is `embeddings.layernorm`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth, weight_bias

_QFORMER = {"layers": 2, "heads": 2, "width": 32, "ffn": 48, "queries": 4, "image_width": 24, "cross_every": 2}
_BATCH = 2


def _hf_qformer() -> Any:
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    config = Blip2QFormerConfig(
        num_hidden_layers=_QFORMER["layers"],
        num_attention_heads=_QFORMER["heads"],
        hidden_size=_QFORMER["width"],
        intermediate_size=_QFORMER["ffn"],
        vocab_size=64,
        max_position_embeddings=16,
        encoder_hidden_size=_QFORMER["image_width"],
        cross_attention_frequency=_QFORMER["cross_every"],
        hidden_act="gelu_pytorch_tanh",  # mindformers' GELU is the tanh approximation
    )
    return Blip2QFormerModel(config)


def _mindformers_qformer() -> Any:
    from mindformers.models.blip2.qformer import BertModel
    from mindformers.models.blip2.qformer_config import QFormerConfig

    from benchmarks.realports._setup import mindformers_float32, mindformers_missing_cast, mindformers_on_cpu

    mindformers_on_cpu()
    config = QFormerConfig(
        num_hidden_layers=_QFORMER["layers"],
        num_attention_heads=_QFORMER["heads"],
        hidden_size=_QFORMER["width"],
        intermediate_size=_QFORMER["ffn"],
        vocab_size=64,
        max_position_embeddings=16,
        query_length=_QFORMER["queries"],
        encoder_width=_QFORMER["image_width"],
        cross_attention_freq=_QFORMER["cross_every"],
        compute_dtype="float32",
    )
    return mindformers_float32(mindformers_missing_cast(BertModel(config)))


def _qformer_truth() -> Truth:
    """{HF name: mindformers name} (MindSpore -> PyTorch)."""

    def norm(hf: str, ms: str) -> dict[str, Any]:
        return {f"{hf}.weight": f"{ms}.gamma", f"{hf}.bias": f"{ms}.beta"}

    truth: Truth = dict(norm("layernorm", "embeddings.layernorm"))
    for n in range(_QFORMER["layers"]):
        hf = ms = f"encoder.layer.{n}"
        blocks = ["attention"] + (["crossattention"] if n % _QFORMER["cross_every"] == 0 else [])
        for block in blocks:
            for linear in ("query", "key", "value"):
                truth.update(weight_bias(f"{hf}.{block}.attention.{linear}", f"{ms}.{block}.self_att.{linear}"))
            truth.update(weight_bias(f"{hf}.{block}.output.dense", f"{ms}.{block}.output.dense"))
            truth.update(norm(f"{hf}.{block}.output.LayerNorm", f"{ms}.{block}.output.layernorm"))
        truth.update(weight_bias(f"{hf}.intermediate_query.dense", f"{ms}.intermediate_query.dense"))
        truth.update(weight_bias(f"{hf}.output_query.dense", f"{ms}.output_query.dense"))
        truth.update(norm(f"{hf}.output_query.LayerNorm", f"{ms}.output_query.layernorm"))
    return truth


def _qformer_inputs(rng: np.random.Generator) -> Inputs:
    queries = rng.standard_normal((_BATCH, _QFORMER["queries"], _QFORMER["width"])).astype(np.float32)
    image = rng.standard_normal((_BATCH, 6, _QFORMER["image_width"])).astype(np.float32)
    return queries, image


def _hf_qformer_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    queries, image = (torch.from_numpy(x) for x in inputs)
    with torch.no_grad():
        return [model(query_embeds=queries, encoder_hidden_states=image).last_hidden_state.numpy()]


def _mindformers_qformer_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    queries, image = (mindspore.Tensor(x) for x in inputs)
    image_mask = mindspore.Tensor(np.ones(inputs[1].shape[:2], np.float32))
    out = net(query_embeds=queries, encoder_hidden_states=image, encoder_attention_mask=image_mask)
    return [out[0].asnumpy()]


QFORMER = RealPair(
    name="qformer_mindformers_hf",
    family="encoder-lm",
    direction="ms2pt",
    packages=("mindformers", "transformers"),
    torch_model=_hf_qformer,
    mindspore_model=_mindformers_qformer,
    truth=_qformer_truth,
    inputs=_qformer_inputs,
    torch_forward=_hf_qformer_forward,
    mindspore_forward=_mindformers_qformer_forward,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    notes="BLIP-2 Q-Former (2 layers of width 32, cross-attention to 24-wide image features in the first, 4 queries). "
    "mindformers' file also holds LAVIS's text branch (word/position embeddings, a position-id table, every layer's "
    "text feed-forward `intermediate`/`output`, the same shapes as the query branch's `intermediate_query`/"
    "`output_query`): unused sources, as HF's model has no text branch. `self_att` against `attention.attention`, "
    "`layernorm` (gamma/beta) against `LayerNorm`. HF built with mindformers' tanh GELU (config option); mindformers' "
    "float16 compute set to float32 (parameter-free).",
)

PAIRS = [QFORMER]
