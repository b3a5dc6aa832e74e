"""GPT-2 small: HuggingFace's `GPT2Model` checkpoint (as published, no prefix) against MindFormers' `GPT2LMHeadModel`.

GPT-2 small widths (hidden 768, 12 heads, MLP 3072, 1024 positions, LayerNorm eps 1e-5, tanh-approximated GELU);
"full" has the 12 layers and the 50257-token vocabulary, "ci" two layers and 1000 tokens. Both heads reuse the
token embedding (tied), so the head has no tensor of its own.

torch side (HuggingFace): `wte`, `wpe`, `h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `ln_f`.
Its `Conv1D` layers store weights (in, out): `c_attn` is the fused [768, 2304] query/key/value projection.

MindSpore side (MindFormers, names and layouts as its GPT-2 converter writes them): `backbone.embedding.
{word_embedding, position_embedding}.embedding_table`, the final `backbone.layernorm` declared before the blocks,
`backbone.blocks.N.{layernorm1, layernorm2, attention.{projection, dense1, dense2, dense3}, output.{mapping,
projection}}` (LayerNorms gamma/beta). dense1/2/3 are `c_attn` split in three along its output axis and transposed
to (out, in); `attention.projection`, `output.mapping` and `output.projection` keep the (in, out) layout
(MindFormers builds them with `transpose_b=False`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.zoo._base import GroundTruth, Size, ZooPair
from benchmarks.zoo._text_blocks import causal_mask, int32_ids, ms_blocks, token_ids, torch_blocks


@dataclass(frozen=True)
class GPT2Config:
    vocab: int
    layers: int
    hidden: int = 768
    heads: int = 12
    positions: int = 1024
    eps: float = 1e-5


_CONFIGS = {"ci": GPT2Config(vocab=1000, layers=2), "full": GPT2Config(vocab=50257, layers=12)}
_SEQ = {"ci": 16, "full": 64}


@functools.cache
def _torch() -> SimpleNamespace:
    import torch
    from torch import nn

    tb = torch_blocks()

    class GPT2Attention(nn.Module):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.heads, self.hidden = cfg.heads, cfg.hidden
            self.c_attn = tb.Conv1D(3 * cfg.hidden, cfg.hidden)
            self.c_proj = tb.Conv1D(cfg.hidden, cfg.hidden)
            self.attn_dropout = nn.Dropout(0.1)
            self.resid_dropout = nn.Dropout(0.1)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, length, _ = x.shape
            q, k, v = self.c_attn(x).split(self.hidden, dim=2)

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, length, self.heads, -1).transpose(1, 2)

            context = tb.attention(heads(q), heads(k), heads(v), mask).transpose(1, 2).reshape(b, length, -1)
            return self.resid_dropout(self.c_proj(context))

    class GPT2MLP(nn.Module):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.c_fc = tb.Conv1D(4 * cfg.hidden, cfg.hidden)
            self.c_proj = tb.Conv1D(cfg.hidden, 4 * cfg.hidden)
            self.act = nn.GELU(approximate="tanh")
            self.dropout = nn.Dropout(0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.dropout(self.c_proj(self.act(self.c_fc(x))))

    class GPT2Block(nn.Module):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
            self.attn = GPT2Attention(cfg)
            self.ln_2 = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
            self.mlp = GPT2MLP(cfg)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.ln_1(x), mask)
            return x + self.mlp(self.ln_2(x))

    class GPT2Model(nn.Module):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab, cfg.hidden)
            self.wpe = nn.Embedding(cfg.positions, cfg.hidden)
            self.drop = nn.Dropout(0.1)
            self.h = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg.layers))
            self.ln_f = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

        def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            length = input_ids.shape[1]
            mask = torch.from_numpy(causal_mask(length))
            x = self.drop(self.wte(input_ids) + self.wpe(torch.arange(length)[None]))
            for block in self.h:
                x = block(x, mask)
            hidden = self.ln_f(x)
            return hidden, hidden @ self.wte.weight.T  # the LM head is tied to wte

    return SimpleNamespace(GPT2Model=GPT2Model)


@functools.cache
def _mindspore() -> SimpleNamespace:
    import mindspore
    from mindspore import Tensor, nn, ops
    from mindspore.common.initializer import Normal

    mb = ms_blocks()

    class VocabEmbedding(nn.Cell):
        def __init__(self, vocab: int, dim: int) -> None:
            super().__init__()
            self.embedding_table = mindspore.Parameter(
                mindspore.common.initializer.initializer(Normal(0.02), [vocab, dim], mindspore.float32)
            )

        def construct(self, ids: Any) -> Any:
            return ops.gather(self.embedding_table, ids, 0), self.embedding_table

    class GPTEmbeddingLayer(nn.Cell):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.word_embedding = VocabEmbedding(cfg.vocab, cfg.hidden)
            self.position_embedding = VocabEmbedding(cfg.positions, cfg.hidden)
            self.dropout = nn.Dropout(p=0.1)

        def construct(self, input_ids: Any, input_position: Any) -> Any:
            word, table = self.word_embedding(input_ids)
            position, _ = self.position_embedding(input_position)
            return self.dropout(word + position), table

    class MultiHeadAttention(nn.Cell):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.heads = cfg.heads
            self.projection = mb.Linear(cfg.hidden, cfg.hidden, transpose_b=False)
            self.dense1 = mb.Linear(cfg.hidden, cfg.hidden)
            self.dense2 = mb.Linear(cfg.hidden, cfg.hidden)
            self.dense3 = mb.Linear(cfg.hidden, cfg.hidden)
            self.dropout = nn.Dropout(p=0.1)

        def construct(self, x: Any, mask: Any) -> Any:
            b, length, _ = x.shape

            def heads(t: Any) -> Any:
                return t.reshape(b, length, self.heads, -1).swapaxes(1, 2)

            q, k, v = heads(self.dense1(x)), heads(self.dense2(x)), heads(self.dense3(x))
            context = mb.attention(q, k, v, mask).swapaxes(1, 2).reshape(b, length, -1)
            return self.dropout(self.projection(context))

    class FeedForward(nn.Cell):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.mapping = mb.Linear(cfg.hidden, 4 * cfg.hidden, transpose_b=False)
            self.projection = mb.Linear(4 * cfg.hidden, cfg.hidden, transpose_b=False)
            self.gelu = nn.GELU(approximate=True)
            self.dropout = nn.Dropout(p=0.1)

        def construct(self, x: Any) -> Any:
            return self.dropout(self.projection(self.gelu(self.mapping(x))))

    class GPTTransformerDecoderLayer(nn.Cell):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.layernorm1 = nn.LayerNorm((cfg.hidden,), epsilon=cfg.eps)
            self.layernorm2 = nn.LayerNorm((cfg.hidden,), epsilon=cfg.eps)
            self.attention = MultiHeadAttention(cfg)
            self.output = FeedForward(cfg)

        def construct(self, x: Any, mask: Any) -> Any:
            x = x + self.attention(self.layernorm1(x), mask)
            return x + self.output(self.layernorm2(x))

    class GPT2Model(nn.Cell):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.embedding = GPTEmbeddingLayer(cfg)
            self.layernorm = nn.LayerNorm((cfg.hidden,), epsilon=cfg.eps)
            self.blocks = nn.CellList([GPTTransformerDecoderLayer(cfg) for _ in range(cfg.layers)])

        def construct(self, input_ids: Any) -> Any:
            length = input_ids.shape[1]
            positions = ops.arange(length, dtype=mindspore.int32).reshape(1, -1)
            x, table = self.embedding(input_ids, positions)
            mask = Tensor(causal_mask(length))
            for block in self.blocks:
                x = block(x, mask)
            return self.layernorm(x), table

    class GPTHead(nn.Cell):
        """Logits from the word-embedding table: no tensor of its own."""

        def __init__(self) -> None:
            super().__init__()
            self.matmul = ops.MatMul(transpose_b=True)

        def construct(self, state: Any, embedding_table: Any) -> Any:
            return self.matmul(state.reshape(-1, state.shape[-1]), embedding_table).reshape(*state.shape[:-1], -1)

    class GPT2LMHeadModel(nn.Cell):
        def __init__(self, cfg: GPT2Config) -> None:
            super().__init__()
            self.backbone = GPT2Model(cfg)
            self.head = GPTHead()

        def construct(self, input_ids: Any) -> Any:
            hidden, table = self.backbone(input_ids)
            return hidden, self.head(hidden, table)

    return SimpleNamespace(GPT2LMHeadModel=GPT2LMHeadModel)


def ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {
        "backbone.embedding.word_embedding.embedding_table": "wte.weight",
        "backbone.embedding.position_embedding.embedding_table": "wpe.weight",
        "backbone.layernorm.gamma": "ln_f.weight",
        "backbone.layernorm.beta": "ln_f.bias",
    }
    for i in range(_CONFIGS[size].layers):
        ms, pt = f"backbone.blocks.{i}", f"h.{i}"
        for number in (1, 2):
            truth[f"{ms}.layernorm{number}.gamma"] = f"{pt}.ln_{number}.weight"
            truth[f"{ms}.layernorm{number}.beta"] = f"{pt}.ln_{number}.bias"
        truth[f"{ms}.attention.projection.weight"] = f"{pt}.attn.c_proj.weight"
        truth[f"{ms}.attention.projection.bias"] = f"{pt}.attn.c_proj.bias"
        for index in range(3):  # query, key, value
            split = {"op": "split", "axis": 1, "parts": 3, "index": index}
            truth[f"{ms}.attention.dense{index + 1}.weight"] = {
                "source": f"{pt}.attn.c_attn.weight",
                "transform": [split, {"op": "transpose"}],
            }
            truth[f"{ms}.attention.dense{index + 1}.bias"] = {
                "source": f"{pt}.attn.c_attn.bias",
                "transform": [{"op": "split", "axis": 0, "parts": 3, "index": index}],
            }
        for ms_name, pt_name in (("mapping", "c_fc"), ("projection", "c_proj")):
            truth[f"{ms}.output.{ms_name}.weight"] = f"{pt}.mlp.{pt_name}.weight"
            truth[f"{ms}.output.{ms_name}.bias"] = f"{pt}.mlp.{pt_name}.bias"
    return truth


def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (token_ids(rng, 2, _SEQ[size], _CONFIGS[size].vocab),)


PAIR = ZooPair(
    name="gpt2_small",
    title="GPT-2 small",
    torch_model=lambda size: _torch().GPT2Model(_CONFIGS[size]),
    mindspore_model=lambda size: _mindspore().GPT2LMHeadModel(_CONFIGS[size]),
    ground_truth=ground_truth,
    inputs=inputs,
    optimizer="adam",
    rtol=1e-3,
    atol=1e-3,  # logits over 50257 tokens reach ~150: float32 rounding alone gives ~3e-4 near zero
    mindspore_inputs=int32_ids,
    notes=(
        "HuggingFace GPT-2 (Conv1D weights stored (in, out), fused c_attn [768, 2304]) vs MindFormers "
        "GPT2LMHeadModel: c_attn split into attention.dense1/2/3 and transposed, c_proj/c_fc kept (in, out) as "
        "attention.projection and output.mapping/projection, backbone. prefix, final layernorm declared first."
    ),
    tags=("language", "decoder", "layernorm", "split", "transpose"),
)
