"""Fused against split attention: OpenAI CLIP's text transformer (torch) against a MindSpore port that splits the
fused query/key/value projection and keeps every projection matrix (in, out).

Widths are CLIP ViT-B/32's text tower (width 512, 8 heads, MLP 2048, 77-token context, 512-d text embedding,
QuickGELU, causal attention, LayerNorm eps 1e-5); "full" has its 12 layers and 49408-token vocabulary, "ci" two
layers and 1000 tokens. The text embedding is the final state at each row's end-of-text token (its largest id).

torch side (openai/CLIP): the model's own tensors come first, as a torch state dict lists them:
`positional_embedding`, `text_projection` ((in, out), used as `x @ text_projection`), then
`transformer.resblocks.N.{attn.in_proj_weight [1536, 512], attn.in_proj_bias, attn.out_proj, ln_1, mlp.c_fc,
mlp.c_proj, ln_2}` (`nn.MultiheadAttention`, query/key/value stacked in that order), `token_embedding`, `ln_final`.

MindSpore side: the same names where the port keeps them (as MindFormers' CLIP converter does: LayerNorms gamma/beta,
`token_embedding.embedding_table`), declared embedding-first, and each block declared in call order (ln_1, attn,
ln_2, mlp). `attn.in_proj_weight` is split into `attn.query`, `attn.key` and `attn.value`, and every projection
(query/key/value, out_proj, c_fc, c_proj) is a MindFormers-style `Linear(transpose_b=False)` whose weight is stored
(in, out), i.e. transposed from torch's nn.Linear/in_proj layout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.zoo._base import GroundTruth, Size, ZooPair
from benchmarks.zoo._text_blocks import causal_mask, int32_ids, ms_blocks, torch_blocks


@dataclass(frozen=True)
class TextConfig:
    vocab: int
    layers: int
    width: int = 512
    heads: int = 8
    context: int = 77
    embed_dim: int = 512
    eps: float = 1e-5


_CONFIGS = {"ci": TextConfig(vocab=1000, layers=2), "full": TextConfig(vocab=49408, layers=12)}
_SEQ = {"ci": 16, "full": 77}


@functools.cache
def _torch() -> SimpleNamespace:
    import torch
    from torch import nn

    tb = torch_blocks()

    class QuickGELU(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(1.702 * x)

    class MultiheadAttention(nn.Module):
        """`nn.MultiheadAttention`'s tensors (in_proj_weight/in_proj_bias fused, out_proj) and arithmetic."""

        def __init__(self, width: int, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
            self.out_proj = nn.Linear(width, width)
            nn.init.xavier_uniform_(self.in_proj_weight)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x [length, batch, width]
            length, b, width = x.shape
            q, k, v = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(length, b, self.heads, -1).permute(1, 2, 0, 3)

            context = tb.attention(heads(q), heads(k), heads(v), mask)
            return self.out_proj(context.permute(2, 0, 1, 3).reshape(length, b, width))

    class ResidualAttentionBlock(nn.Module):
        def __init__(self, cfg: TextConfig) -> None:
            super().__init__()
            self.attn = MultiheadAttention(cfg.width, cfg.heads)
            self.ln_1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
            self.mlp = nn.Sequential()
            self.mlp.add_module("c_fc", nn.Linear(cfg.width, 4 * cfg.width))
            self.mlp.add_module("gelu", QuickGELU())
            self.mlp.add_module("c_proj", nn.Linear(4 * cfg.width, cfg.width))
            self.ln_2 = nn.LayerNorm(cfg.width, eps=cfg.eps)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.ln_1(x), mask)
            return x + self.mlp(self.ln_2(x))

    class Transformer(nn.Module):
        def __init__(self, cfg: TextConfig) -> None:
            super().__init__()
            self.resblocks = nn.ModuleList(ResidualAttentionBlock(cfg) for _ in range(cfg.layers))

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            for block in self.resblocks:
                x = block(x, mask)
            return x

    class CLIPTextEncoder(nn.Module):
        def __init__(self, cfg: TextConfig) -> None:
            super().__init__()
            self.transformer = Transformer(cfg)
            self.token_embedding = nn.Embedding(cfg.vocab, cfg.width)
            self.positional_embedding = nn.Parameter(torch.empty(cfg.context, cfg.width))
            self.ln_final = nn.LayerNorm(cfg.width, eps=cfg.eps)
            self.text_projection = nn.Parameter(torch.empty(cfg.width, cfg.embed_dim))
            nn.init.normal_(self.positional_embedding, std=0.01)
            nn.init.normal_(self.text_projection, std=cfg.width**-0.5)

        def forward(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            length = text.shape[1]
            x = self.token_embedding(text) + self.positional_embedding[:length]
            x = self.transformer(x.permute(1, 0, 2), torch.from_numpy(causal_mask(length))).permute(1, 0, 2)
            x = self.ln_final(x)
            return x, x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    return SimpleNamespace(CLIPTextEncoder=CLIPTextEncoder)


@functools.cache
def _mindspore() -> SimpleNamespace:
    import mindspore
    from mindspore import Parameter, Tensor, nn, ops
    from mindspore.common.initializer import Normal, initializer

    mb = ms_blocks()

    class QuickGELU(nn.Cell):
        def construct(self, x: Any) -> Any:
            return x * ops.sigmoid(1.702 * x)

    class MultiheadAttention(nn.Cell):
        def __init__(self, width: int, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.query = mb.Linear(width, width, transpose_b=False)
            self.key = mb.Linear(width, width, transpose_b=False)
            self.value = mb.Linear(width, width, transpose_b=False)
            self.out_proj = mb.Linear(width, width, transpose_b=False)

        def construct(self, x: Any, mask: Any) -> Any:  # x [batch, length, width]
            b, length, width = x.shape

            def heads(t: Any) -> Any:
                return t.reshape(b, length, self.heads, -1).swapaxes(1, 2)

            context = mb.attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), mask)
            return self.out_proj(context.swapaxes(1, 2).reshape(b, length, width))

    class MLP(nn.Cell):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.c_fc = mb.Linear(width, 4 * width, transpose_b=False)
            self.gelu = QuickGELU()
            self.c_proj = mb.Linear(4 * width, width, transpose_b=False)

        def construct(self, x: Any) -> Any:
            return self.c_proj(self.gelu(self.c_fc(x)))

    class ResidualAttentionBlock(nn.Cell):
        def __init__(self, cfg: TextConfig) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm((cfg.width,), epsilon=cfg.eps)
            self.attn = MultiheadAttention(cfg.width, cfg.heads)
            self.ln_2 = nn.LayerNorm((cfg.width,), epsilon=cfg.eps)
            self.mlp = MLP(cfg.width)

        def construct(self, x: Any, mask: Any) -> Any:
            x = x + self.attn(self.ln_1(x), mask)
            return x + self.mlp(self.ln_2(x))

    class Transformer(nn.Cell):
        def __init__(self, cfg: TextConfig) -> None:
            super().__init__()
            self.resblocks = nn.CellList([ResidualAttentionBlock(cfg) for _ in range(cfg.layers)])

        def construct(self, x: Any, mask: Any) -> Any:
            for block in self.resblocks:
                x = block(x, mask)
            return x

    class CLIPTextEncoder(nn.Cell):
        def __init__(self, cfg: TextConfig) -> None:
            super().__init__()
            self.token_embedding = nn.Embedding(cfg.vocab, cfg.width)
            self.positional_embedding = Parameter(
                initializer(Normal(0.01), [cfg.context, cfg.width], mindspore.float32)
            )
            self.transformer = Transformer(cfg)
            self.ln_final = nn.LayerNorm((cfg.width,), epsilon=cfg.eps)
            self.text_projection = Parameter(
                initializer(Normal(cfg.width**-0.5), [cfg.width, cfg.embed_dim], mindspore.float32)
            )

        def construct(self, text: Any) -> Any:
            length = text.shape[1]
            x = self.token_embedding(text) + self.positional_embedding[:length]
            x = self.ln_final(self.transformer(x, Tensor(causal_mask(length))))
            eot = ops.argmax(text, -1)
            pooled = ops.stack([x[i, eot[i]] for i in range(x.shape[0])])
            return x, ops.matmul(pooled, self.text_projection)

    return SimpleNamespace(CLIPTextEncoder=CLIPTextEncoder)


def ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {
        "token_embedding.embedding_table": "token_embedding.weight",
        "positional_embedding": "positional_embedding",
    }
    transpose = {"op": "transpose"}
    for i in range(_CONFIGS[size].layers):
        ms = pt = f"transformer.resblocks.{i}"
        for norm in ("ln_1", "ln_2"):
            truth[f"{ms}.{norm}.gamma"] = f"{pt}.{norm}.weight"
            truth[f"{ms}.{norm}.beta"] = f"{pt}.{norm}.bias"
        for index, part in enumerate(("query", "key", "value")):
            split = {"op": "split", "axis": 0, "parts": 3, "index": index}
            truth[f"{ms}.attn.{part}.weight"] = {"source": f"{pt}.attn.in_proj_weight", "transform": [split, transpose]}
            truth[f"{ms}.attn.{part}.bias"] = {"source": f"{pt}.attn.in_proj_bias", "transform": [split]}
        for layer in ("attn.out_proj", "mlp.c_fc", "mlp.c_proj"):
            truth[f"{ms}.{layer}.weight"] = {"source": f"{pt}.{layer}.weight", "transform": [transpose]}
            truth[f"{ms}.{layer}.bias"] = f"{pt}.{layer}.bias"
    truth["ln_final.gamma"] = "ln_final.weight"
    truth["ln_final.beta"] = "ln_final.bias"
    truth["text_projection"] = "text_projection"
    return truth


def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Token rows as CLIP's tokenizer makes them: start token, words, end-of-text (the largest id), zero padding."""
    cfg, length = _CONFIGS[size], _SEQ[size]
    text = np.zeros((2, length), dtype=np.int64)
    for row, end in enumerate((length - 1, length // 2)):
        text[row, 0] = cfg.vocab - 2  # start of text
        text[row, 1:end] = rng.integers(1, cfg.vocab - 2, size=end - 1)
        text[row, end] = cfg.vocab - 1  # end of text
    return (text,)


PAIR = ZooPair(
    name="fused_qkv",
    title="CLIP text encoder (fused in_proj vs split q/k/v)",
    torch_model=lambda size: _torch().CLIPTextEncoder(_CONFIGS[size]),
    mindspore_model=lambda size: _mindspore().CLIPTextEncoder(_CONFIGS[size]),
    ground_truth=ground_truth,
    inputs=inputs,
    optimizer="momentum",
    rtol=1e-3,
    atol=1e-4,
    mindspore_inputs=int32_ids,
    notes=(
        "OpenAI CLIP text transformer (nn.MultiheadAttention in_proj_weight [3d, d]) vs a port with attn.query/"
        "key/value split out of it and every projection stored (in, out): split + transpose for q/k/v, transpose "
        "for out_proj/c_fc/c_proj (out_proj is square), bare positional_embedding/text_projection parameters."
    ),
    tags=("language", "encoder", "layernorm", "split", "transpose"),
)
