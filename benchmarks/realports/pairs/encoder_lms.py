"""Encoder language models: HF transformers against mindformers (1.x)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth, invert, layernorm, transposed, weight_bias

_VOCAB, _LENGTH, _BATCH = 128, 16, 2


def _bert_inputs(rng: np.random.Generator) -> Inputs:
    ids = rng.integers(1, _VOCAB, size=(_BATCH, _LENGTH)).astype(np.int64)
    types = rng.integers(0, 2, size=(_BATCH, _LENGTH)).astype(np.int64)
    return ids, types, np.ones((_BATCH, _LENGTH), dtype=np.int64)


def _mindformers_setup() -> None:
    from benchmarks.realports._setup import mindformers_on_cpu

    mindformers_on_cpu()


# ------------------------------------------------------------------------------------------------ BERT
# HF:          embeddings.{word,position,token_type}_embeddings, embeddings.LayerNorm,
#              encoder.layer.N.attention.self.{query,key,value}, attention.output.{dense, LayerNorm},
#              intermediate.dense, output.{dense, LayerNorm}, pooler.dense.
# mindformers: word_embedding.embedding_table, embedding_postprocessor.{full_position_embedding,
#              token_type_embedding}.embedding_table, embedding_postprocessor.layernorm,
#              bert_encoder.encoder.blocks.N.attention.{dense1 (q), dense2 (k), dense3 (v), projection},
#              layernorm2 (after attention), output.{mapping, projection}, layernorm1 (after the MLP), dense
#              (pooler). q/k/v stored (out, in); both projections and the MLP's mapping stored (in, out). The
#              attention projection is listed before q/k/v.
_BERT = {"hidden": 64, "layers": 2, "heads": 4, "ffn": 96, "positions": 32}


def _bert_torch() -> Any:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=_VOCAB,
        hidden_size=_BERT["hidden"],
        num_hidden_layers=_BERT["layers"],
        num_attention_heads=_BERT["heads"],
        intermediate_size=_BERT["ffn"],
        max_position_embeddings=_BERT["positions"],
        hidden_act="gelu_pytorch_tanh",  # mindformers' GELU is the tanh approximation
        layer_norm_eps=1e-5,  # mindformers' LayerNorm epsilon
        attn_implementation="eager",
    )
    return BertModel(config)


def _bert_mindspore() -> Any:
    from mindformers import BertConfig, BertModel

    config = BertConfig(
        batch_size=_BATCH,
        seq_length=_LENGTH,
        vocab_size=_VOCAB,
        hidden_size=_BERT["hidden"],
        num_hidden_layers=_BERT["layers"],
        num_attention_heads=_BERT["heads"],
        intermediate_size=_BERT["ffn"],
        max_position_embeddings=_BERT["positions"],
        compute_dtype="float32",
        dropout_prob=0.0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    from benchmarks.realports._setup import mindformers_float32

    return mindformers_float32(BertModel(config))


def _bert_truth() -> Truth:
    """{mindformers name: HF name} (PyTorch -> MindSpore)."""
    truth: Truth = {
        "word_embedding.embedding_table": "embeddings.word_embeddings.weight",
        "embedding_postprocessor.token_type_embedding.embedding_table": "embeddings.token_type_embeddings.weight",
        "embedding_postprocessor.full_position_embedding.embedding_table": "embeddings.position_embeddings.weight",
        **layernorm("embedding_postprocessor.layernorm", "embeddings.LayerNorm"),
    }
    for n in range(_BERT["layers"]):
        mf, hf = f"bert_encoder.encoder.blocks.{n}", f"encoder.layer.{n}"
        for dense, part in (("dense1", "query"), ("dense2", "key"), ("dense3", "value")):
            truth.update(weight_bias(f"{mf}.attention.{dense}", f"{hf}.attention.self.{part}"))
        truth[f"{mf}.attention.projection.weight"] = transposed(f"{hf}.attention.output.dense.weight")
        truth[f"{mf}.attention.projection.bias"] = f"{hf}.attention.output.dense.bias"
        truth.update(layernorm(f"{mf}.layernorm2", f"{hf}.attention.output.LayerNorm"))
        truth[f"{mf}.output.mapping.weight"] = transposed(f"{hf}.intermediate.dense.weight")
        truth[f"{mf}.output.mapping.bias"] = f"{hf}.intermediate.dense.bias"
        truth[f"{mf}.output.projection.weight"] = transposed(f"{hf}.output.dense.weight")
        truth[f"{mf}.output.projection.bias"] = f"{hf}.output.dense.bias"
        truth.update(layernorm(f"{mf}.layernorm1", f"{hf}.output.LayerNorm"))
    truth.update(weight_bias("dense", "pooler.dense"))
    return truth


def _bert_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    ids, types, mask = (torch.from_numpy(x) for x in inputs)
    with torch.no_grad():
        out = model(input_ids=ids, token_type_ids=types, attention_mask=mask)
    return [out.last_hidden_state.numpy(), out.pooler_output.numpy()]


def _bert_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    ids, types, mask = (mindspore.Tensor(x.astype(np.int32)) for x in inputs)
    sequence, pooled, _ = net(ids, types, mask)
    return [sequence.asnumpy(), pooled.asnumpy()]


BERT = RealPair(
    name="bert_hf_mindformers",
    family="encoder-lm",
    direction="pt2ms",
    packages=("transformers", "mindformers"),
    torch_model=_bert_torch,
    mindspore_model=_bert_mindspore,
    truth=_bert_truth,
    inputs=_bert_inputs,
    torch_forward=_bert_torch_forward,
    mindspore_forward=_bert_mindspore_forward,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    swap=("bert_encoder.encoder.blocks.0.layernorm1.gamma", "bert_encoder.encoder.blocks.0.layernorm2.gamma"),
    setup=_mindformers_setup,
    notes="BERT (2 layers, width 64). HF built with the tanh GELU and LayerNorm epsilon 1e-5 that mindformers uses "
    "(config options); mindformers' encoder, which hard-codes float16 compute, set to float32 for the proof. "
    "mindformers stores q/k/v (out, in) but the attention projection and the MLP weights (in, out); its "
    "layernorm1 is HF's output.LayerNorm and layernorm2 the attention's. Sequence and pooled outputs compared.",
)


# ------------------------------------------------------------------------ BERT for question answering
# The same encoder names under `bert.` on both sides, plus the span head `qa_outputs`; HF's question-answering
# model has no pooler, mindformers' keeps one (`bert.dense`, unused by the truth).
def _bert_qa_torch() -> Any:
    from transformers import BertForQuestionAnswering

    return BertForQuestionAnswering(_bert_torch().config)


def _bert_qa_mindspore() -> Any:
    from mindformers import BertConfig, BertForQuestionAnswering

    from benchmarks.realports._setup import mindformers_float32

    config = BertConfig(
        batch_size=_BATCH,
        seq_length=_LENGTH,
        vocab_size=_VOCAB,
        hidden_size=_BERT["hidden"],
        num_hidden_layers=_BERT["layers"],
        num_attention_heads=_BERT["heads"],
        intermediate_size=_BERT["ffn"],
        max_position_embeddings=_BERT["positions"],
        compute_dtype="float32",
        dropout_prob=0.0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return mindformers_float32(BertForQuestionAnswering(config))


def _prefixed(entry: Any, prefix: str) -> Any:
    if isinstance(entry, str):
        return prefix + entry
    return {**entry, "source": prefix + entry["source"]}


def _bert_qa_truth() -> Truth:
    """{HF name: mindformers name} (MindSpore -> PyTorch): the encoder's correspondence seen the other way."""
    ms_from_torch: Truth = {
        f"bert.{target}": _prefixed(source, "bert.")
        for target, source in _bert_truth().items()
        if not target.startswith("dense.")  # the pooler: HF's question-answering model has none
    }
    ms_from_torch.update(weight_bias("qa_outputs", "qa_outputs"))
    return invert(ms_from_torch)


def _bert_qa_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    ids, types, mask = (torch.from_numpy(x) for x in inputs)
    with torch.no_grad():
        out = model(input_ids=ids, token_type_ids=types, attention_mask=mask)
    return [out.start_logits.numpy(), out.end_logits.numpy()]


def _bert_qa_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    ids, types, mask = (mindspore.Tensor(x.astype(np.int32)) for x in inputs)
    _, start, end = net(ids, mask, types)
    return [start.asnumpy(), end.asnumpy()]


BERT_QA = RealPair(
    name="bert_qa_mindformers_hf",
    family="encoder-lm",
    direction="ms2pt",
    packages=("mindformers", "transformers"),
    torch_model=_bert_qa_torch,
    mindspore_model=_bert_qa_mindspore,
    truth=_bert_qa_truth,
    inputs=_bert_inputs,
    torch_forward=_bert_qa_torch_forward,
    mindspore_forward=_bert_qa_mindspore_forward,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    swap=("bert.encoder.layer.1.attention.output.LayerNorm.weight", "bert.encoder.layer.1.output.LayerNorm.weight"),
    setup=_mindformers_setup,
    notes="BERT for extractive question answering (as bert_hf_mindformers, with a span head), MindSpore to PyTorch: "
    "start and end logits compared. mindformers' pooler has no counterpart in HF's question-answering model.",
)

PAIRS = [BERT, BERT_QA]
