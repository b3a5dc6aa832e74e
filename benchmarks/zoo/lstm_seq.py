"""Bidirectional two-layer LSTM sentiment classifier: the d2l `BiRNN` (torch) against MindSpore ModelZoo's
`SentimentNet` (official/nlp/LSTM), the port of the same network.

Both embed tokens into 300-d vectors (GloVe's size), run a 2-layer bidirectional LSTM with 100 hidden units, and
classify the concatenated first and last time steps (4 x 100) into 2 classes. "full" uses the d2l IMDb vocabulary
size (49346 tokens), "ci" 1000 tokens and shorter sequences.

torch side: `embedding.weight`, `encoder.{weight_ih, weight_hh, bias_ih, bias_hh}_l{0,1}[_reverse]`
(per layer and direction: weight_ih, weight_hh, bias_ih, bias_hh), `decoder`.

MindSpore side: `embedding.embedding_table` (frozen: the port keeps the pretrained GloVe vectors fixed, so it has no
optimizer state), `encoder.*` with torch's names and gate order (input, forget, cell, output) but MindSpore's
declaration order: every weight_ih (both directions, all layers) first, then every weight_hh, then the biases;
`decoder` as an `nn.Dense`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.zoo._base import GroundTruth, Size, ZooPair
from benchmarks.zoo._text_blocks import int32_ids, token_ids


@dataclass(frozen=True)
class SentimentConfig:
    vocab: int
    embed: int = 300
    hidden: int = 100
    layers: int = 2
    classes: int = 2


_CONFIGS = {"ci": SentimentConfig(vocab=1000), "full": SentimentConfig(vocab=49346)}
_SEQ = {"ci": 12, "full": 64}


@functools.cache
def _torch() -> SimpleNamespace:
    import torch
    from torch import nn

    class BiRNN(nn.Module):
        def __init__(self, cfg: SentimentConfig) -> None:
            super().__init__()
            self.embedding = nn.Embedding(cfg.vocab, cfg.embed)
            self.encoder = nn.LSTM(cfg.embed, cfg.hidden, num_layers=cfg.layers, bidirectional=True)
            self.decoder = nn.Linear(4 * cfg.hidden, cfg.classes)

        def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            embeddings = self.embedding(inputs.T)  # [time, batch, embed]
            outputs, _ = self.encoder(embeddings)
            encoding = torch.cat((outputs[0], outputs[-1]), dim=1)
            return outputs, self.decoder(encoding)

    return SimpleNamespace(BiRNN=BiRNN)


@functools.cache
def _mindspore() -> SimpleNamespace:
    from mindspore import nn, ops

    class SentimentNet(nn.Cell):
        def __init__(self, cfg: SentimentConfig) -> None:
            super().__init__()
            self.embedding = nn.Embedding(cfg.vocab, cfg.embed)
            self.embedding.embedding_table.requires_grad = False
            self.trans = ops.Transpose()
            self.perm = (1, 0, 2)
            self.encoder = nn.LSTM(
                input_size=cfg.embed,
                hidden_size=cfg.hidden,
                num_layers=cfg.layers,
                has_bias=True,
                bidirectional=True,
                dropout=0.0,
            )
            self.concat = ops.Concat(1)
            self.decoder = nn.Dense(cfg.hidden * 4, cfg.classes)

        def construct(self, inputs: Any) -> Any:
            embeddings = self.trans(self.embedding(inputs), self.perm)  # [time, batch, embed]
            output, _ = self.encoder(embeddings)
            encoding = self.concat((output[0], output[-1]))
            return output, self.decoder(encoding)

    return SimpleNamespace(SentimentNet=SentimentNet)


def ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {"embedding.embedding_table": "embedding.weight"}
    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        for layer in range(_CONFIGS[size].layers):
            for suffix in ("", "_reverse"):
                name = f"encoder.{kind}_l{layer}{suffix}"
                truth[name] = name
    truth["decoder.weight"] = "decoder.weight"
    truth["decoder.bias"] = "decoder.bias"
    return truth


def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (token_ids(rng, 3, _SEQ[size], _CONFIGS[size].vocab),)


PAIR = ZooPair(
    name="lstm_seq",
    title="Bidirectional 2-layer LSTM (sentiment)",
    torch_model=lambda size: _torch().BiRNN(_CONFIGS[size]),
    mindspore_model=lambda size: _mindspore().SentimentNet(_CONFIGS[size]),
    ground_truth=ground_truth,
    inputs=inputs,
    optimizer="momentum",
    rtol=1e-3,
    atol=1e-5,
    mindspore_inputs=int32_ids,
    notes=(
        "d2l BiRNN vs ModelZoo SentimentNet: MindSpore's nn.LSTM keeps torch's names and gate order but declares "
        "all weight_ih, then all weight_hh, then the biases; same-shaped forward/reverse and ih/hh biases; frozen "
        "embedding_table (no optimizer slots)."
    ),
    tags=("sequence", "rnn", "lstm", "bidirectional"),
)
