"""A square weight stored transposed, with no non-square sibling to vote: a BERT-style encoder against a port that
keeps its attention matrices (in, out).

The MindSpore port builds the four attention projections (`query`, `key`, `value`, `out`, each `[d, d]`) as
MindFormers' `Linear(transpose_b=False)`, which stores the weight (in, out) and computes `x @ W`, while its MLP
(`intermediate`, `output`) and classifier are plain `nn.Dense` layers stored (out, in) like torch's `nn.Linear`.
Every non-square weight therefore says "same layout as torch", and the square attention weights, whose shape fits
both ways, are the exception. Names and order are clean; only the orientation is wrong, and only running the
layers shows it.

Small widths (hidden 64, 4 heads, MLP 256, 16 tokens, 3 classes); "ci" has 2 layers and a 500-token vocabulary,
"full" 6 layers and 4000 tokens.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.zoo._base import GroundTruth, Size, ZooPair
from benchmarks.zoo._text_blocks import int32_ids, ms_blocks, token_ids


@dataclass(frozen=True)
class EncoderConfig:
    vocab: int
    layers: int
    hidden: int = 64
    heads: int = 4
    intermediate: int = 256
    positions: int = 64
    labels: int = 3
    eps: float = 1e-12


_CONFIGS = {"ci": EncoderConfig(vocab=500, layers=2), "full": EncoderConfig(vocab=4000, layers=6)}
_SEQ = {"ci": 16, "full": 32}


@functools.cache
def _torch() -> SimpleNamespace:
    import torch
    from torch import nn

    class SelfAttention(nn.Module):
        def __init__(self, cfg: EncoderConfig) -> None:
            super().__init__()
            self.heads = cfg.heads
            self.query = nn.Linear(cfg.hidden, cfg.hidden)
            self.key = nn.Linear(cfg.hidden, cfg.hidden)
            self.value = nn.Linear(cfg.hidden, cfg.hidden)
            self.out = nn.Linear(cfg.hidden, cfg.hidden)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, length, width = x.shape

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, length, self.heads, -1).transpose(1, 2)

            q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / float(np.sqrt(width // self.heads))
            context = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, length, width)
            return self.out(context)

    class Layer(nn.Module):
        def __init__(self, cfg: EncoderConfig) -> None:
            super().__init__()
            self.attention = SelfAttention(cfg)
            self.attention_norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
            self.intermediate = nn.Linear(cfg.hidden, cfg.intermediate)
            self.output = nn.Linear(cfg.intermediate, cfg.hidden)
            self.output_norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.attention_norm(x + self.attention(x))
            return self.output_norm(x + self.output(nn.functional.gelu(self.intermediate(x))))

    class Encoder(nn.Module):
        def __init__(self, cfg: EncoderConfig) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(cfg.vocab, cfg.hidden)
            self.position_embeddings = nn.Embedding(cfg.positions, cfg.hidden)
            self.embedding_norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
            self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
            self.classifier = nn.Linear(cfg.hidden, cfg.labels)

        def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            positions = torch.arange(input_ids.shape[1])[None]
            x = self.embedding_norm(self.word_embeddings(input_ids) + self.position_embeddings(positions))
            for layer in self.layers:
                x = layer(x)
            return x, self.classifier(x[:, 0])

    return SimpleNamespace(Encoder=Encoder)


@functools.cache
def _mindspore() -> SimpleNamespace:
    import mindspore
    from mindspore import nn, ops

    mb = ms_blocks()

    class SelfAttention(nn.Cell):
        def __init__(self, cfg: EncoderConfig) -> None:
            super().__init__()
            self.heads = cfg.heads
            self.query = mb.Linear(cfg.hidden, cfg.hidden, transpose_b=False)
            self.key = mb.Linear(cfg.hidden, cfg.hidden, transpose_b=False)
            self.value = mb.Linear(cfg.hidden, cfg.hidden, transpose_b=False)
            self.out = mb.Linear(cfg.hidden, cfg.hidden, transpose_b=False)

        def construct(self, x: Any) -> Any:
            b, length, width = x.shape

            def heads(t: Any) -> Any:
                return t.reshape(b, length, self.heads, -1).swapaxes(1, 2)

            q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
            scores = ops.matmul(q, k.swapaxes(-1, -2)) / float(np.sqrt(width // self.heads))
            context = ops.matmul(ops.softmax(scores, -1), v).swapaxes(1, 2).reshape(b, length, width)
            return self.out(context)

    class Layer(nn.Cell):
        def __init__(self, cfg: EncoderConfig) -> None:
            super().__init__()
            self.attention = SelfAttention(cfg)
            self.attention_norm = nn.LayerNorm((cfg.hidden,), epsilon=cfg.eps)
            self.intermediate = nn.Dense(cfg.hidden, cfg.intermediate)
            self.gelu = nn.GELU(approximate=False)
            self.output = nn.Dense(cfg.intermediate, cfg.hidden)
            self.output_norm = nn.LayerNorm((cfg.hidden,), epsilon=cfg.eps)

        def construct(self, x: Any) -> Any:
            x = self.attention_norm(x + self.attention(x))
            return self.output_norm(x + self.output(self.gelu(self.intermediate(x))))

    class Encoder(nn.Cell):
        def __init__(self, cfg: EncoderConfig) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(cfg.vocab, cfg.hidden)
            self.position_embeddings = nn.Embedding(cfg.positions, cfg.hidden)
            self.embedding_norm = nn.LayerNorm((cfg.hidden,), epsilon=cfg.eps)
            self.layers = nn.CellList([Layer(cfg) for _ in range(cfg.layers)])
            self.classifier = nn.Dense(cfg.hidden, cfg.labels)

        def construct(self, input_ids: Any) -> Any:
            positions = ops.arange(input_ids.shape[1], dtype=mindspore.int32).reshape(1, -1)
            x = self.embedding_norm(self.word_embeddings(input_ids) + self.position_embeddings(positions))
            for layer in self.layers:
                x = layer(x)
            return x, self.classifier(x[:, 0])

    return SimpleNamespace(Encoder=Encoder)


def ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {
        "word_embeddings.embedding_table": "word_embeddings.weight",
        "position_embeddings.embedding_table": "position_embeddings.weight",
        "embedding_norm.gamma": "embedding_norm.weight",
        "embedding_norm.beta": "embedding_norm.bias",
        "classifier.weight": "classifier.weight",
        "classifier.bias": "classifier.bias",
    }
    for i in range(_CONFIGS[size].layers):
        ms = pt = f"layers.{i}"
        for name in ("query", "key", "value", "out"):
            truth[f"{ms}.attention.{name}.weight"] = {
                "source": f"{pt}.attention.{name}.weight",
                "transform": [{"op": "transpose"}],
            }
            truth[f"{ms}.attention.{name}.bias"] = f"{pt}.attention.{name}.bias"
        for name in ("attention_norm", "output_norm"):
            truth[f"{ms}.{name}.gamma"] = f"{pt}.{name}.weight"
            truth[f"{ms}.{name}.beta"] = f"{pt}.{name}.bias"
        for name in ("intermediate", "output"):
            truth[f"{ms}.{name}.weight"] = f"{pt}.{name}.weight"
            truth[f"{ms}.{name}.bias"] = f"{pt}.{name}.bias"
    return truth


def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (token_ids(rng, 2, _SEQ[size], _CONFIGS[size].vocab),)


PAIR = ZooPair(
    name="square_transposed",
    title="Encoder, square attention weights stored (in, out)",
    torch_model=lambda size: _torch().Encoder(_CONFIGS[size]),
    mindspore_model=lambda size: _mindspore().Encoder(_CONFIGS[size]),
    ground_truth=ground_truth,
    inputs=inputs,
    optimizer="adam",
    rtol=1e-4,
    atol=1e-5,
    mindspore_inputs=int32_ids,
    network_aware_only=True,
    notes=(
        "BERT-style encoder vs a port whose four [d, d] attention projections are Linear(transpose_b=False), "
        "stored (in, out), while every non-square weight keeps torch's (out, in): the layout vote of the "
        "non-square weights is right for them and wrong for the square ones. Only running the layers tells."
    ),
    tags=("language", "encoder", "layernorm", "transpose", "network-aware"),
)
