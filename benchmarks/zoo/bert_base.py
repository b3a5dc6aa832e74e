"""BERT-base with a sentence classifier: HuggingFace's `BertForSequenceClassification` against MindSpore ModelZoo's
`BertCLSModel`.

BERT-base widths (hidden 768, 12 heads, MLP 3072, 512 positions, 2 token types, LayerNorm eps 1e-12, exact GELU),
two labels; "full" has the 12 layers and the 30522-token vocabulary, "ci" two layers and 1000 tokens.

torch side (HuggingFace): `bert.embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm}`,
`bert.encoder.layer.N.{attention.self.{query,key,value}, attention.output.{dense,LayerNorm}, intermediate.dense,
output.{dense,LayerNorm}}`, `bert.pooler.dense`, `classifier`.

MindSpore side (ModelZoo `official/nlp/Bert`): `bert.bert_embedding_lookup.embedding_table`,
`bert.bert_embedding_postprocessor.{token_type_embedding, full_position_embedding}.embedding_table` (token types
declared before positions) and `.layernorm`, `bert.bert_encoder.layers.N.{attention.attention.{query_layer,
key_layer,value_layer}, attention.output.{dense,layernorm}, intermediate, output.{dense,layernorm}}` (the
intermediate Dense is the cell itself, no `.dense`), the pooler `bert.dense`, the classifier `dense_1`; every
LayerNorm is gamma/beta. The ModelZoo masks with -10000 where HuggingFace uses the float minimum: same softmax.
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
class BertConfig:
    vocab: int
    layers: int
    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072
    max_positions: int = 512
    type_vocab: int = 2
    labels: int = 2
    eps: float = 1e-12


_CONFIGS = {"ci": BertConfig(vocab=1000, layers=2), "full": BertConfig(vocab=30522, layers=12)}
_SEQ = {"ci": 16, "full": 64}


@functools.cache
def _torch() -> SimpleNamespace:
    import torch
    from torch import nn

    class BertEmbeddings(nn.Module):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(cfg.vocab, cfg.hidden)
            self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden)
            self.token_type_embeddings = nn.Embedding(cfg.type_vocab, cfg.hidden)
            self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
            self.dropout = nn.Dropout(0.1)
            self.register_buffer("position_ids", torch.arange(cfg.max_positions)[None], persistent=False)

        def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            positions = self.position_ids[:, : input_ids.shape[1]]
            x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
            x = x + self.position_embeddings(positions)
            return self.dropout(self.LayerNorm(x))

    class BertSelfAttention(nn.Module):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.heads, self.head_dim = cfg.heads, cfg.hidden // cfg.heads
            self.query = nn.Linear(cfg.hidden, cfg.hidden)
            self.key = nn.Linear(cfg.hidden, cfg.hidden)
            self.value = nn.Linear(cfg.hidden, cfg.hidden)
            self.dropout = nn.Dropout(0.1)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, length, _ = x.shape

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, length, self.heads, self.head_dim).transpose(1, 2)

            q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / float(np.sqrt(self.head_dim)) + mask
            context = torch.matmul(self.dropout(torch.softmax(scores, dim=-1)), v)
            return context.transpose(1, 2).reshape(b, length, -1)

    class BertSelfOutput(nn.Module):
        def __init__(self, cfg: BertConfig, width: int) -> None:
            super().__init__()
            self.dense = nn.Linear(width, cfg.hidden)
            self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
            self.dropout = nn.Dropout(0.1)

        def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
            return self.LayerNorm(self.dropout(self.dense(x)) + residual)

    class BertAttention(nn.Module):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.self = BertSelfAttention(cfg)
            self.output = BertSelfOutput(cfg, cfg.hidden)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.output(self.self(x, mask), x)

    class BertIntermediate(nn.Module):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.dense = nn.Linear(cfg.hidden, cfg.intermediate)
            self.intermediate_act_fn = nn.GELU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.intermediate_act_fn(self.dense(x))

    class BertLayer(nn.Module):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.attention = BertAttention(cfg)
            self.intermediate = BertIntermediate(cfg)
            self.output = BertSelfOutput(cfg, cfg.intermediate)  # HuggingFace's BertOutput: the same three layers

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = self.attention(x, mask)
            return self.output(self.intermediate(x), x)

    class BertEncoder(nn.Module):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.layers))

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            for layer in self.layer:
                x = layer(x, mask)
            return x

    class BertPooler(nn.Module):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.dense = nn.Linear(cfg.hidden, cfg.hidden)
            self.activation = nn.Tanh()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.activation(self.dense(x[:, 0]))

    class BertModel(nn.Module):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.embeddings = BertEmbeddings(cfg)
            self.encoder = BertEncoder(cfg)
            self.pooler = BertPooler(cfg)

        def forward(
            self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
            sequence = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
            return sequence, self.pooler(sequence)

    class BertForSequenceClassification(nn.Module):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.bert = BertModel(cfg)
            self.dropout = nn.Dropout(0.1)
            self.classifier = nn.Linear(cfg.hidden, cfg.labels)

        def forward(
            self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            sequence, pooled = self.bert(input_ids, token_type_ids, attention_mask)
            return sequence, pooled, self.classifier(self.dropout(pooled))

    return SimpleNamespace(BertForSequenceClassification=BertForSequenceClassification)


@functools.cache
def _mindspore() -> SimpleNamespace:
    import mindspore
    from mindspore import nn, ops
    from mindspore.common.initializer import TruncatedNormal

    def dense(in_channels: int, out_channels: int) -> nn.Dense:
        return nn.Dense(in_channels, out_channels, weight_init=TruncatedNormal(0.02))

    class EmbeddingPostprocessor(nn.Cell):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.token_type_embedding = nn.Embedding(cfg.type_vocab, cfg.hidden)
            self.full_position_embedding = nn.Embedding(cfg.max_positions, cfg.hidden)
            self.layernorm = nn.LayerNorm((cfg.hidden,), epsilon=cfg.eps)
            self.dropout = nn.Dropout(p=0.1)

        def construct(self, token_type_ids: Any, word_embeddings: Any) -> Any:
            output = word_embeddings + self.token_type_embedding(token_type_ids)
            positions = ops.arange(word_embeddings.shape[1], dtype=mindspore.int32).reshape(1, -1)
            output = output + self.full_position_embedding(positions)
            return self.dropout(self.layernorm(output))

    class BertAttention(nn.Cell):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.heads, self.size_per_head = cfg.heads, cfg.hidden // cfg.heads
            self.query_layer = dense(cfg.hidden, cfg.hidden)
            self.key_layer = dense(cfg.hidden, cfg.hidden)
            self.value_layer = dense(cfg.hidden, cfg.hidden)
            self.softmax = nn.Softmax()
            self.dropout = nn.Dropout(p=0.1)

        def construct(self, x: Any, attention_mask: Any) -> Any:
            b, length, _ = x.shape

            def heads(t: Any) -> Any:
                return t.reshape(b, length, self.heads, self.size_per_head).swapaxes(1, 2)

            q, k, v = heads(self.query_layer(x)), heads(self.key_layer(x)), heads(self.value_layer(x))
            scores = ops.matmul(q, k.swapaxes(-1, -2)) * (1.0 / float(np.sqrt(self.size_per_head)))
            scores = scores + (1.0 - attention_mask.expand_dims(1)) * -10000.0
            context = ops.matmul(self.dropout(self.softmax(scores)), v)
            return context.swapaxes(1, 2).reshape(b, length, -1)

    class BertOutput(nn.Cell):
        def __init__(self, in_channels: int, out_channels: int, eps: float) -> None:
            super().__init__()
            self.dense = dense(in_channels, out_channels)
            self.dropout = nn.Dropout(p=0.1)
            self.layernorm = nn.LayerNorm((out_channels,), epsilon=eps)

        def construct(self, hidden_status: Any, input_tensor: Any) -> Any:
            return self.layernorm(input_tensor + self.dropout(self.dense(hidden_status)))

    class BertSelfAttention(nn.Cell):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.attention = BertAttention(cfg)
            self.output = BertOutput(cfg.hidden, cfg.hidden, cfg.eps)

        def construct(self, x: Any, attention_mask: Any) -> Any:
            return self.output(self.attention(x, attention_mask), x)

    class BertEncoderCell(nn.Cell):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.attention = BertSelfAttention(cfg)
            self.intermediate = dense(cfg.hidden, cfg.intermediate)
            self.gelu = nn.GELU(approximate=False)
            self.output = BertOutput(cfg.intermediate, cfg.hidden, cfg.eps)

        def construct(self, x: Any, attention_mask: Any) -> Any:
            attention_output = self.attention(x, attention_mask)
            return self.output(self.gelu(self.intermediate(attention_output)), attention_output)

    class BertTransformer(nn.Cell):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.layers = nn.CellList([BertEncoderCell(cfg) for _ in range(cfg.layers)])

        def construct(self, x: Any, attention_mask: Any) -> Any:
            for layer in self.layers:
                x = layer(x, attention_mask)
            return x

    class BertModel(nn.Cell):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.bert_embedding_lookup = nn.Embedding(cfg.vocab, cfg.hidden, embedding_table=TruncatedNormal(0.02))
            self.bert_embedding_postprocessor = EmbeddingPostprocessor(cfg)
            self.bert_encoder = BertTransformer(cfg)
            self.dense = nn.Dense(cfg.hidden, cfg.hidden, activation="tanh", weight_init=TruncatedNormal(0.02))

        def construct(self, input_ids: Any, token_type_ids: Any, input_mask: Any) -> Any:
            embeddings = self.bert_embedding_postprocessor(token_type_ids, self.bert_embedding_lookup(input_ids))
            attention_mask = input_mask.astype(mindspore.float32).expand_dims(1)  # [batch, 1, seq]
            sequence_output = self.bert_encoder(embeddings, attention_mask)
            return sequence_output, self.dense(sequence_output[:, 0])

    class BertCLSModel(nn.Cell):
        def __init__(self, cfg: BertConfig) -> None:
            super().__init__()
            self.bert = BertModel(cfg)
            self.dropout = nn.Dropout(p=0.1)
            self.dense_1 = dense(cfg.hidden, cfg.labels)

        def construct(self, input_ids: Any, input_mask: Any, token_type_id: Any) -> Any:
            sequence_output, pooled_output = self.bert(input_ids, token_type_id, input_mask)
            return sequence_output, pooled_output, self.dense_1(self.dropout(pooled_output))

    return SimpleNamespace(BertCLSModel=BertCLSModel)


def _layernorm(ms: str, pt: str) -> GroundTruth:
    return {f"{ms}.gamma": f"{pt}.weight", f"{ms}.beta": f"{pt}.bias"}


def _dense(ms: str, pt: str) -> GroundTruth:
    return {f"{ms}.weight": f"{pt}.weight", f"{ms}.bias": f"{pt}.bias"}


def ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {
        "bert.bert_embedding_lookup.embedding_table": "bert.embeddings.word_embeddings.weight",
        "bert.bert_embedding_postprocessor.token_type_embedding.embedding_table": (
            "bert.embeddings.token_type_embeddings.weight"
        ),
        "bert.bert_embedding_postprocessor.full_position_embedding.embedding_table": (
            "bert.embeddings.position_embeddings.weight"
        ),
        **_layernorm("bert.bert_embedding_postprocessor.layernorm", "bert.embeddings.LayerNorm"),
    }
    for i in range(_CONFIGS[size].layers):
        ms, pt = f"bert.bert_encoder.layers.{i}", f"bert.encoder.layer.{i}"
        for ms_name, pt_name in (("query_layer", "query"), ("key_layer", "key"), ("value_layer", "value")):
            truth |= _dense(f"{ms}.attention.attention.{ms_name}", f"{pt}.attention.self.{pt_name}")
        truth |= _dense(f"{ms}.attention.output.dense", f"{pt}.attention.output.dense")
        truth |= _layernorm(f"{ms}.attention.output.layernorm", f"{pt}.attention.output.LayerNorm")
        truth |= _dense(f"{ms}.intermediate", f"{pt}.intermediate.dense")
        truth |= _dense(f"{ms}.output.dense", f"{pt}.output.dense")
        truth |= _layernorm(f"{ms}.output.layernorm", f"{pt}.output.LayerNorm")
    truth |= _dense("bert.dense", "bert.pooler.dense")
    truth |= _dense("dense_1", "classifier")
    return truth


def inputs(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    cfg, length = _CONFIGS[size], _SEQ[size]
    ids = token_ids(rng, 2, length, cfg.vocab)
    token_types = np.zeros_like(ids)
    token_types[:, length // 2 :] = 1  # a sentence pair
    attention_mask = np.ones_like(ids)
    attention_mask[1, -length // 4 :] = 0  # the second row is padded
    return ids, token_types, attention_mask


def _mindspore_inputs(inputs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The ModelZoo model takes (input_ids, input_mask, token_type_id), as int32."""
    ids, token_types, attention_mask = int32_ids(inputs)
    return ids, attention_mask, token_types


PAIR = ZooPair(
    name="bert_base",
    title="BERT-base (sequence classification)",
    torch_model=lambda size: _torch().BertForSequenceClassification(_CONFIGS[size]),
    mindspore_model=lambda size: _mindspore().BertCLSModel(_CONFIGS[size]),
    ground_truth=ground_truth,
    inputs=inputs,
    optimizer="adamw",
    rtol=1e-3,
    atol=1e-4,
    mindspore_inputs=_mindspore_inputs,
    notes=(
        "HuggingFace BertForSequenceClassification vs ModelZoo BertCLSModel: bert_embedding_lookup/"
        "bert_embedding_postprocessor, query_layer/key_layer/value_layer under attention.attention, the "
        "intermediate Dense without a .dense, pooler as bert.dense, classifier as dense_1, LayerNorm gamma/beta."
    ),
    tags=("language", "encoder", "layernorm"),
)
