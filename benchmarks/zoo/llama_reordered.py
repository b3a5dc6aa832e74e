"""Declaration order against execution order: HuggingFace's LLaMA against a port that declares everything out of order.

A MindFormers-named LLaMA port written "output first": each decoder layer declares `ffn_norm` and the feed-forward
(`w3`, `w2`, `w1`) before `attention_norm` and the attention (`wo`, `wv`, `wk`, `wq`), and the model declares
`lm_head` and `norm_out` before the layers and the embedding. The computation is LLaMA's: `attention_norm` runs
before the attention, `ffn_norm` before `w2(silu(w1(x)) * w3(x))`.

Names cannot settle it: `attention_norm` and `ffn_norm` against `input_layernorm` and `post_attention_layernorm`
(two same-shaped vectors per layer), `w1`/`w3` against `gate_proj`/`up_proj` (two same-shaped matrices). File order
points the wrong way for both pairs, since the port declares them reversed. The order in which a forward pass first
uses each parameter is the same on both sides, and running the two layers tells them apart for certain.

Small widths (hidden 64, 4 query heads sharing 2 key/value heads, MLP 176); "ci" has 2 layers and a 500-token
vocabulary, "full" 8 layers and 4000 tokens.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

from benchmarks.zoo._base import GroundTruth, Size, ZooPair
from benchmarks.zoo._text_blocks import int32_ids, ms_blocks, token_ids
from benchmarks.zoo.llama import LlamaConfig
from benchmarks.zoo.llama import _mindspore as _mindformers
from benchmarks.zoo.llama import _torch as _hf_torch

_CONFIGS = {
    "ci": LlamaConfig(vocab=500, hidden=64, intermediate=176, layers=2, heads=4, kv_heads=2),
    "full": LlamaConfig(vocab=4000, hidden=64, intermediate=176, layers=8, heads=4, kv_heads=2),
}
_SEQ = {"ci": 8, "full": 16}


@functools.cache
def _mindspore() -> SimpleNamespace:
    """MindFormers' LLaMA cells declared output-first; each computes what the cell it derives from computes.

    Each `__init__` calls `nn.Cell.__init__` rather than its parent's, which would declare in execution order.
    """
    from mindspore import nn

    mb, mindformers = ms_blocks(), _mindformers()

    class FeedForward(mb.LlamaFeedForward):
        """w2(silu(w1(x)) * w3(x)), declared w3, w2, w1."""

        def __init__(self, hidden: int, intermediate: int) -> None:
            nn.Cell.__init__(self)
            self.w3 = mb.Linear(hidden, intermediate, has_bias=False)
            self.w2 = mb.Linear(intermediate, hidden, has_bias=False)
            self.w1 = mb.Linear(hidden, intermediate, has_bias=False)

    class Attention(mb.LLamaAttention):
        """MindFormers' attention with its projections declared wo, wv, wk, wq."""

        def __init__(self, cfg: LlamaConfig) -> None:
            nn.Cell.__init__(self)
            self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.hidden // cfg.heads
            self.wo = mb.Linear(cfg.hidden, cfg.hidden, has_bias=False)
            self.wv = mb.Linear(cfg.hidden, cfg.kv_heads * self.head_dim, has_bias=False)
            self.wk = mb.Linear(cfg.hidden, cfg.kv_heads * self.head_dim, has_bias=False)
            self.wq = mb.Linear(cfg.hidden, cfg.hidden, has_bias=False)

    class DecodeLayer(mindformers.LLamaDecodeLayer):
        def __init__(self, cfg: LlamaConfig) -> None:
            nn.Cell.__init__(self)
            self.ffn_norm = mb.LlamaRMSNorm(cfg.hidden, cfg.eps)
            self.feed_forward = FeedForward(cfg.hidden, cfg.intermediate)
            self.attention_norm = mb.LlamaRMSNorm(cfg.hidden, cfg.eps)
            self.attention = Attention(cfg)

    class LlamaModel(mindformers.LlamaModel):
        def __init__(self, cfg: LlamaConfig) -> None:
            nn.Cell.__init__(self)
            self.cfg = cfg
            self.norm_out = mb.LlamaRMSNorm(cfg.hidden, cfg.eps)
            self.layers = nn.CellList([DecodeLayer(cfg) for _ in range(cfg.layers)])
            self.tok_embeddings = mb.LlamaEmbedding(cfg.vocab, cfg.hidden)

    class LlamaForCausalLM(mindformers.LlamaForCausalLM):
        def __init__(self, cfg: LlamaConfig) -> None:
            nn.Cell.__init__(self)
            self.lm_head = mb.Linear(cfg.hidden, cfg.vocab, has_bias=False)
            self.model = LlamaModel(cfg)

    return SimpleNamespace(LlamaForCausalLM=LlamaForCausalLM)


def ground_truth(size: Size) -> GroundTruth:
    cfg = _CONFIGS[size]
    truth: GroundTruth = {
        "lm_head.weight": "lm_head.weight",
        "model.norm_out.weight": "model.norm.weight",
        "model.tok_embeddings.embedding_weight": "model.embed_tokens.weight",
    }
    for i in range(cfg.layers):
        ms = pt = f"model.layers.{i}"
        truth[f"{ms}.ffn_norm.weight"] = f"{pt}.post_attention_layernorm.weight"
        for ms_name, pt_name in (("w3", "up_proj"), ("w2", "down_proj"), ("w1", "gate_proj")):
            truth[f"{ms}.feed_forward.{ms_name}.weight"] = f"{pt}.mlp.{pt_name}.weight"
        truth[f"{ms}.attention_norm.weight"] = f"{pt}.input_layernorm.weight"
        for ms_name, pt_name in (("wo", "o_proj"), ("wv", "v_proj"), ("wk", "k_proj"), ("wq", "q_proj")):
            truth[f"{ms}.attention.{ms_name}.weight"] = f"{pt}.self_attn.{pt_name}.weight"
    return truth


def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (token_ids(rng, 2, _SEQ[size], _CONFIGS[size].vocab),)


PAIR = ZooPair(
    name="llama_reordered",
    title="LLaMA, port declared out of execution order",
    torch_model=lambda size: _hf_torch().LlamaForCausalLM(_CONFIGS[size]),
    mindspore_model=lambda size: _mindspore().LlamaForCausalLM(_CONFIGS[size]),
    ground_truth=ground_truth,
    inputs=inputs,
    optimizer=None,
    rtol=1e-4,
    atol=1e-5,
    mindspore_inputs=int32_ids,
    network_aware_only=True,
    notes=(
        "HuggingFace LLaMA vs a MindFormers-named port declared output-first: ffn_norm and w3/w2/w1 before "
        "attention_norm and wo/wv/wk/wq. attention_norm/ffn_norm and w1/w3 have same-shaped rivals and file order "
        "points the wrong way; execution order and a numeric probe settle them."
    ),
    tags=("language", "decoder", "rmsnorm", "declaration-order", "network-aware"),
)
