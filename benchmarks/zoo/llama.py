"""LLaMA-family decoder: HuggingFace's `LlamaForCausalLM` against MindFormers' `LlamaForCausalLM`.

Widths are TinyLlama-1.1B's (hidden 2048, MLP 5632, 32 query heads sharing 4 key/value heads, vocabulary 32000,
RMSNorm eps 1e-5, rotary theta 10000); "full" has its 22 layers, "ci" one layer and a 1000-token vocabulary.

torch side (HuggingFace): `model.embed_tokens`, `model.layers.N.{self_attn.{q,k,v,o}_proj,
mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm}`, `model.norm`, `lm_head`.

MindSpore side (MindFormers, names as its HuggingFace converter writes them): `model.tok_embeddings.embedding_weight`,
`model.layers.N.{attention_norm, ffn_norm, attention.{wq,wk,wv,wo}, feed_forward.{w1,w2,w3}}`, `model.norm_out`,
`lm_head`. w1 is the gate, w3 the up and w2 the down projection, declared in the order w1, w2, w3; both norms are
declared before the attention. MindFormers rotates half of each head as HuggingFace does, so q/k need no permutation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.zoo._base import GroundTruth, Size, ZooPair
from benchmarks.zoo._text_blocks import int32_ids, ms_blocks, token_ids, torch_blocks


@dataclass(frozen=True)
class LlamaConfig:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    eps: float = 1e-5
    theta: float = 10000.0


_CONFIGS = {
    "ci": LlamaConfig(vocab=1000, hidden=2048, intermediate=5632, layers=1, heads=32, kv_heads=4),
    "full": LlamaConfig(vocab=32000, hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4),
}
_SEQ = {"ci": 8, "full": 16}


@functools.cache
def _torch() -> SimpleNamespace:
    import torch
    from torch import nn

    tb = torch_blocks()

    class LlamaDecoderLayer(nn.Module):
        def __init__(self, cfg: LlamaConfig) -> None:
            super().__init__()
            self.self_attn = tb.LlamaAttention(cfg.hidden, cfg.heads, cfg.kv_heads)
            self.mlp = tb.LlamaMLP(cfg.hidden, cfg.intermediate)
            self.input_layernorm = tb.RMSNorm(cfg.hidden, cfg.eps)
            self.post_attention_layernorm = tb.RMSNorm(cfg.hidden, cfg.eps)

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
            return x + self.mlp(self.post_attention_layernorm(x))

    class LlamaModel(nn.Module):
        def __init__(self, cfg: LlamaConfig) -> None:
            super().__init__()
            self.cfg = cfg
            self.embed_tokens = nn.Embedding(cfg.vocab, cfg.hidden)
            self.layers = nn.ModuleList(LlamaDecoderLayer(cfg) for _ in range(cfg.layers))
            self.norm = tb.RMSNorm(cfg.hidden, cfg.eps)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            cos, sin, mask = tb.tables(input_ids.shape[1], self.cfg.hidden // self.cfg.heads, self.cfg.theta)
            x = self.embed_tokens(input_ids)
            for layer in self.layers:
                x = layer(x, cos, sin, mask)
            return self.norm(x)

    class LlamaForCausalLM(nn.Module):
        def __init__(self, cfg: LlamaConfig) -> None:
            super().__init__()
            self.model = LlamaModel(cfg)
            self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)

        def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.model(input_ids)
            return hidden, self.lm_head(hidden)

    return SimpleNamespace(LlamaForCausalLM=LlamaForCausalLM)


@functools.cache
def _mindspore() -> SimpleNamespace:
    from mindspore import nn

    mb = ms_blocks()

    class LLamaDecodeLayer(nn.Cell):
        def __init__(self, cfg: LlamaConfig) -> None:
            super().__init__()
            self.attention_norm = mb.LlamaRMSNorm(cfg.hidden, cfg.eps)
            self.ffn_norm = mb.LlamaRMSNorm(cfg.hidden, cfg.eps)
            self.attention = mb.LLamaAttention(cfg.hidden, cfg.heads, cfg.kv_heads)
            self.feed_forward = mb.LlamaFeedForward(cfg.hidden, cfg.intermediate)

        def construct(self, x: Any, cos: Any, sin: Any, mask: Any) -> Any:
            x = x + self.attention(self.attention_norm(x), cos, sin, mask)
            return x + self.feed_forward(self.ffn_norm(x))

    class LlamaModel(nn.Cell):
        def __init__(self, cfg: LlamaConfig) -> None:
            super().__init__()
            self.cfg = cfg
            self.tok_embeddings = mb.LlamaEmbedding(cfg.vocab, cfg.hidden)
            self.layers = nn.CellList([LLamaDecodeLayer(cfg) for _ in range(cfg.layers)])
            self.norm_out = mb.LlamaRMSNorm(cfg.hidden, cfg.eps)

        def construct(self, input_ids: Any) -> Any:
            cos, sin, mask = mb.tables(input_ids.shape[1], self.cfg.hidden // self.cfg.heads, self.cfg.theta)
            x = self.tok_embeddings(input_ids)
            for layer in self.layers:
                x = layer(x, cos, sin, mask)
            return self.norm_out(x)

    class LlamaForCausalLM(nn.Cell):
        def __init__(self, cfg: LlamaConfig) -> None:
            super().__init__()
            self.model = LlamaModel(cfg)
            self.lm_head = mb.Linear(cfg.hidden, cfg.vocab, has_bias=False)

        def construct(self, input_ids: Any) -> Any:
            hidden = self.model(input_ids)
            return hidden, self.lm_head(hidden)

    return SimpleNamespace(LLamaDecodeLayer=LLamaDecodeLayer, LlamaModel=LlamaModel, LlamaForCausalLM=LlamaForCausalLM)


def decoder_truth(layers: int, feed_forward: Callable[[str, str], GroundTruth]) -> GroundTruth:
    """MindFormers' LLaMA-family decoder (LLaMA, Mixtral) against HuggingFace's, in the port's declaration order.

    `feed_forward(ms, pt)` maps one layer's feed-forward, given the layer's MindSpore and torch names.
    """
    truth: GroundTruth = {"model.tok_embeddings.embedding_weight": "model.embed_tokens.weight"}
    for i in range(layers):
        ms, pt = f"model.layers.{i}", f"model.layers.{i}"
        truth[f"{ms}.attention_norm.weight"] = f"{pt}.input_layernorm.weight"
        truth[f"{ms}.ffn_norm.weight"] = f"{pt}.post_attention_layernorm.weight"
        for ms_name, pt_name in (("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj"), ("wo", "o_proj")):
            truth[f"{ms}.attention.{ms_name}.weight"] = f"{pt}.self_attn.{pt_name}.weight"
        truth.update(feed_forward(ms, pt))
    truth["model.norm_out.weight"] = "model.norm.weight"
    truth["lm_head.weight"] = "lm_head.weight"
    return truth


def _feed_forward_truth(ms: str, pt: str) -> GroundTruth:
    return {
        f"{ms}.feed_forward.{ms_name}.weight": f"{pt}.mlp.{pt_name}.weight"
        for ms_name, pt_name in (("w1", "gate_proj"), ("w2", "down_proj"), ("w3", "up_proj"))
    }


def ground_truth(size: Size) -> GroundTruth:
    return decoder_truth(_CONFIGS[size].layers, _feed_forward_truth)


def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (token_ids(rng, 2, _SEQ[size], _CONFIGS[size].vocab),)


PAIR = ZooPair(
    name="llama",
    title="LLaMA decoder (TinyLlama-1.1B)",
    torch_model=lambda size: _torch().LlamaForCausalLM(_CONFIGS[size]),
    mindspore_model=lambda size: _mindspore().LlamaForCausalLM(_CONFIGS[size]),
    ground_truth=ground_truth,
    inputs=inputs,
    optimizer=None,
    rtol=1e-3,
    atol=1e-3,  # 22 layers at "full" accumulate ~3e-4 of float32 rounding on logits near zero
    mindspore_inputs=int32_ids,
    notes=(
        "HuggingFace LlamaForCausalLM vs MindFormers: q/k/v/o_proj -> wq/wk/wv/wo, gate/up/down_proj -> w1/w3/w2, "
        "input/post_attention_layernorm -> attention_norm/ffn_norm (declared first), embedding_weight, norm_out; "
        "grouped-query attention (4 key/value heads, so wk/wv are 8x smaller than wq/wo)."
    ),
    tags=("language", "decoder", "rmsnorm", "rotary", "gqa"),
)
