"""Mixture of experts: HuggingFace's `MixtralForCausalLM` against MindFormers' Mixtral (LLaMA with an MoE feed-forward).

Mixtral-8x7B's layout (8 SwiGLU experts, top-2 routing with renormalised weights, head size 128, 4 query heads per
key/value head, vocabulary 32000, RMSNorm eps 1e-5, rotary theta 1e6) at one eighth of its widths (hidden 512,
expert MLP 1792): the real widths make one layer 1.4 billion parameters. "full" has 8 layers, "ci" one layer and a
1000-token vocabulary.

torch side (HuggingFace): each layer's `block_sparse_moe` holds a router `gate` ([8, hidden]) and eight same-shaped
experts `experts.K.{w1, w2, w3}` (w1 gate, w3 up, w2 down), next to LLaMA-style attention and norms.

MindSpore side (MindFormers, names as its Mixtral converter writes them): the experts are stacked, not listed:
`feed_forward.ffn.w1.weight` is [8, expert MLP, hidden], the eight experts' w1 in order (likewise w2 [8, hidden,
expert MLP] and w3), declared before the router `feed_forward.router.dense.weight`; attention and norms are named as
in MindFormers' LLaMA (wq/wk/wv/wo, attention_norm/ffn_norm, tok_embeddings.embedding_weight, norm_out).
Each stacked tensor's ground truth is the concatenation of the eight experts' tensors, reshaped.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.zoo._base import GroundTruth, Size, ZooPair
from benchmarks.zoo._text_blocks import int32_ids, ms_blocks, token_ids, torch_blocks
from benchmarks.zoo.llama import decoder_truth


@dataclass(frozen=True)
class MixtralConfig:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int = 4
    kv_heads: int = 1
    experts: int = 8
    top_k: int = 2
    eps: float = 1e-5
    theta: float = 1e6


_CONFIGS = {
    "ci": MixtralConfig(vocab=1000, hidden=512, intermediate=1792, layers=1),
    "full": MixtralConfig(vocab=32000, hidden=512, intermediate=1792, layers=8),
}
_SEQ = {"ci": 16, "full": 32}


@functools.cache
def _torch() -> SimpleNamespace:
    import torch
    from torch import nn

    tb = torch_blocks()

    class MixtralBlockSparseTop2MLP(nn.Module):
        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.w1 = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)
            self.w2 = nn.Linear(cfg.intermediate, cfg.hidden, bias=False)
            self.w3 = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))

    class MixtralSparseMoeBlock(nn.Module):
        """Routes each token to its top-k experts, as HuggingFace's loop over experts does."""

        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.top_k = cfg.top_k
            self.gate = nn.Linear(cfg.hidden, cfg.experts, bias=False)
            self.experts = nn.ModuleList(MixtralBlockSparseTop2MLP(cfg) for _ in range(cfg.experts))

        def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            b, length, dim = hidden_states.shape
            x = hidden_states.view(-1, dim)
            router_logits = self.gate(x)
            weights = torch.softmax(router_logits, dim=1)
            weights, selected = torch.topk(weights, self.top_k, dim=-1)
            weights = weights / weights.sum(dim=-1, keepdim=True)
            out = torch.zeros_like(x)
            for index, expert in enumerate(self.experts):
                token, slot = torch.where(selected == index)
                if token.numel():
                    out.index_add_(0, token, expert(x[token]) * weights[token, slot, None])
            return out.view(b, length, dim), router_logits

    class MixtralDecoderLayer(nn.Module):
        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.self_attn = tb.LlamaAttention(cfg.hidden, cfg.heads, cfg.kv_heads)
            self.block_sparse_moe = MixtralSparseMoeBlock(cfg)
            self.input_layernorm = tb.RMSNorm(cfg.hidden, cfg.eps)
            self.post_attention_layernorm = tb.RMSNorm(cfg.hidden, cfg.eps)

        def forward(
            self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
            moe, router_logits = self.block_sparse_moe(self.post_attention_layernorm(x))
            return x + moe, router_logits

    class MixtralModel(nn.Module):
        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.cfg = cfg
            self.embed_tokens = nn.Embedding(cfg.vocab, cfg.hidden)
            self.layers = nn.ModuleList(MixtralDecoderLayer(cfg) for _ in range(cfg.layers))
            self.norm = tb.RMSNorm(cfg.hidden, cfg.eps)

        def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            cos, sin, mask = tb.tables(input_ids.shape[1], self.cfg.hidden // self.cfg.heads, self.cfg.theta)
            x, all_logits = self.embed_tokens(input_ids), []
            for layer in self.layers:
                x, router_logits = layer(x, cos, sin, mask)
                all_logits.append(router_logits)
            return self.norm(x), all_logits

    class MixtralForCausalLM(nn.Module):
        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.model = MixtralModel(cfg)
            self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)

        def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
            hidden, router_logits = self.model(input_ids)
            return hidden, self.lm_head(hidden), router_logits

    return SimpleNamespace(MixtralForCausalLM=MixtralForCausalLM)


@functools.cache
def _mindspore() -> SimpleNamespace:
    import mindspore
    from mindspore import Parameter, Tensor, nn, ops
    from mindspore.common.initializer import Normal, initializer

    mb = ms_blocks()

    class ExpertLinear(nn.Cell):
        """MindFormers' `Linear` with `expert_num` > 1: one weight per expert, stacked ([experts, out, in])."""

        def __init__(self, experts: int, in_channels: int, out_channels: int) -> None:
            super().__init__()
            self.weight = Parameter(initializer(Normal(0.02), [experts, out_channels, in_channels], mindspore.float32))

        def construct(self, x: Any) -> Any:  # [tokens, in] or [experts, tokens, in] -> [experts, tokens, out]
            return ops.matmul(x, self.weight.swapaxes(1, 2))

    class FeedForward(nn.Cell):
        """MindFormers' `LlamaFeedForward` built with `expert_num`: every expert's SwiGLU MLP on every token."""

        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.w1 = ExpertLinear(cfg.experts, cfg.hidden, cfg.intermediate)
            self.w2 = ExpertLinear(cfg.experts, cfg.intermediate, cfg.hidden)
            self.w3 = ExpertLinear(cfg.experts, cfg.hidden, cfg.intermediate)

        def construct(self, x: Any) -> Any:  # [tokens, hidden] -> [experts, tokens, hidden]
            hidden = ops.silu(self.w1(x)) * self.w3(x)
            return self.w2(hidden)

    class Router(nn.Cell):
        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.dense = nn.Dense(cfg.hidden, cfg.experts, has_bias=False)

        def construct(self, x: Any) -> Any:
            return self.dense(x)

    class MoE(nn.Cell):
        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.experts, self.top_k = cfg.experts, cfg.top_k
            self.ffn = FeedForward(cfg)
            self.router = Router(cfg)

        def construct(self, hidden_states: Any) -> Any:
            b, length, dim = hidden_states.shape
            x = hidden_states.reshape(-1, dim)
            router_logits = self.router(x)
            weights, selected = ops.topk(ops.softmax(router_logits, -1), self.top_k)
            weights = weights / weights.sum(-1, keepdims=True)
            one_hot = ops.one_hot(
                selected, self.experts, Tensor(1.0, mindspore.float32), Tensor(0.0, mindspore.float32)
            )
            combine = (one_hot * weights.expand_dims(-1)).sum(1)  # [tokens, experts]
            out = (self.ffn(x) * combine.swapaxes(0, 1).expand_dims(-1)).sum(0)
            return out.reshape(b, length, dim), router_logits

    class LLamaDecodeLayer(nn.Cell):
        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.attention_norm = mb.LlamaRMSNorm(cfg.hidden, cfg.eps)
            self.ffn_norm = mb.LlamaRMSNorm(cfg.hidden, cfg.eps)
            self.attention = mb.LLamaAttention(cfg.hidden, cfg.heads, cfg.kv_heads)
            self.feed_forward = MoE(cfg)

        def construct(self, x: Any, cos: Any, sin: Any, mask: Any) -> Any:
            x = x + self.attention(self.attention_norm(x), cos, sin, mask)
            moe, router_logits = self.feed_forward(self.ffn_norm(x))
            return x + moe, router_logits

    class LlamaModel(nn.Cell):
        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.cfg = cfg
            self.tok_embeddings = mb.LlamaEmbedding(cfg.vocab, cfg.hidden)
            self.layers = nn.CellList([LLamaDecodeLayer(cfg) for _ in range(cfg.layers)])
            self.norm_out = mb.LlamaRMSNorm(cfg.hidden, cfg.eps)

        def construct(self, input_ids: Any) -> Any:
            cos, sin, mask = mb.tables(input_ids.shape[1], self.cfg.hidden // self.cfg.heads, self.cfg.theta)
            x, all_logits = self.tok_embeddings(input_ids), []
            for layer in self.layers:
                x, router_logits = layer(x, cos, sin, mask)
                all_logits.append(router_logits)
            return self.norm_out(x), all_logits

    class LlamaForCausalLM(nn.Cell):
        def __init__(self, cfg: MixtralConfig) -> None:
            super().__init__()
            self.model = LlamaModel(cfg)
            self.lm_head = mb.Linear(cfg.hidden, cfg.vocab, has_bias=False)

        def construct(self, input_ids: Any) -> Any:
            hidden, router_logits = self.model(input_ids)
            return hidden, self.lm_head(hidden), router_logits

    return SimpleNamespace(LlamaForCausalLM=LlamaForCausalLM)


def ground_truth(size: Size) -> GroundTruth:
    cfg = _CONFIGS[size]
    stacked = {
        "w1": [cfg.experts, cfg.intermediate, cfg.hidden],
        "w2": [cfg.experts, cfg.hidden, cfg.intermediate],
        "w3": [cfg.experts, cfg.intermediate, cfg.hidden],
    }

    def feed_forward(ms: str, pt: str) -> GroundTruth:
        truth: GroundTruth = {}
        for name, shape in stacked.items():
            truth[f"{ms}.feed_forward.ffn.{name}.weight"] = {
                "source": [f"{pt}.block_sparse_moe.experts.{k}.{name}.weight" for k in range(cfg.experts)],
                "transform": [{"op": "concat", "axis": 0}, {"op": "reshape", "shape": shape}],
            }
        truth[f"{ms}.feed_forward.router.dense.weight"] = f"{pt}.block_sparse_moe.gate.weight"
        return truth

    return decoder_truth(cfg.layers, feed_forward)


def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (token_ids(rng, 2, _SEQ[size], _CONFIGS[size].vocab),)


PAIR = ZooPair(
    name="moe",
    title="Mixtral-style MoE decoder (8 experts, top-2)",
    torch_model=lambda size: _torch().MixtralForCausalLM(_CONFIGS[size]),
    mindspore_model=lambda size: _mindspore().LlamaForCausalLM(_CONFIGS[size]),
    ground_truth=ground_truth,
    inputs=inputs,
    optimizer="adamw",
    rtol=1e-3,
    atol=1e-4,
    mindspore_inputs=int32_ids,
    notes=(
        "HuggingFace Mixtral (block_sparse_moe.gate, experts.0-7.w1/w2/w3) vs MindFormers Mixtral: the eight "
        "same-shaped experts are stacked into feed_forward.ffn.w1/w2/w3 [8, out, in] (declared before the router "
        "feed_forward.router.dense), so each target concatenates eight sources in expert order; attention as in LLaMA."
    ),
    tags=("language", "decoder", "moe", "stacked", "rmsnorm", "rotary", "gqa"),
)
