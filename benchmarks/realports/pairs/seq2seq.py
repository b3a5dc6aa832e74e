"""Sequence-to-sequence models: HF transformers against mindformers (1.x)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth, transposed

_VOCAB, _SOURCE, _TARGET, _BATCH = 128, 8, 8, 2  # distances below 8: see the notes


def _mindformers_setup() -> None:
    from benchmarks.realports._setup import mindformers_on_cpu

    mindformers_on_cpu()


# -------------------------------------------------------------------------------------------------- T5
# HF:          shared, encoder.block.N.layer.0.{SelfAttention.{q,k,v,o}, layer_norm}, layer.1.{DenseReluDense.{wi,
#              wo}, layer_norm} (decoder: layer.1 EncDecAttention, layer.2 the MLP); the relative position bias
#              only in block 0 (shared by the later blocks); final_layer_norm; lm_head tied to shared.
# mindformers: t5_model.tfm_embedding_lookup.embedding_table, t5_model.tfm_{encoder,decoder}.blocks.N.{layernorm1,
#              attention.{dense1,dense2,dense3,projection}, [cross_attention_layernorm, cross_attention.*],
#              layernorm2, output.{mapping, projection} (stored (in, out))}; the bias table in block 0, and a
#              `cross_bias` in decoder block 0 (zero: T5 has no cross-attention position bias);
#              {encoder,decoder}_layernorm.
_T5 = {"hidden": 64, "d_kv": 16, "ffn": 96, "layers": 2, "heads": 4}


def _t5_inputs(rng: np.random.Generator) -> Inputs:
    return (
        rng.integers(3, _VOCAB, size=(_BATCH, _SOURCE)).astype(np.int64),
        rng.integers(3, _VOCAB, size=(_BATCH, _TARGET)).astype(np.int64),
    )


def _t5_torch() -> Any:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=_VOCAB,
        d_model=_T5["hidden"],
        d_kv=_T5["d_kv"],
        d_ff=_T5["ffn"],
        num_layers=_T5["layers"],
        num_decoder_layers=_T5["layers"],
        num_heads=_T5["heads"],
        relative_attention_num_buckets=32,
        dropout_rate=0.0,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    return T5ForConditionalGeneration(config)


def _t5_mindspore() -> Any:
    from mindformers import T5Config, T5ForConditionalGeneration

    from benchmarks.realports._setup import mindformers_float32, mindformers_missing_cast

    config = T5Config(
        batch_size=_BATCH,
        seq_length=_SOURCE,
        max_decode_length=_TARGET,
        vocab_size=_VOCAB,
        hidden_size=_T5["hidden"],
        d_kv=_T5["d_kv"],
        d_ff=_T5["ffn"],
        num_layers=_T5["layers"],
        num_decoder_layers=_T5["layers"],
        num_heads=_T5["heads"],
        relative_attention_num_buckets=32,
        hidden_dropout_rate=0.0,
        attention_dropout_rate=0.0,
        embedding_dropout_prob=0.0,
        compute_dtype="float32",
        max_position_embeddings=_SOURCE,
    )
    return mindformers_float32(mindformers_missing_cast(T5ForConditionalGeneration(config)))


def _attention(truth: Truth, mf: str, hf: str) -> None:
    for dense, part in (("dense1", "q"), ("dense2", "k"), ("dense3", "v")):
        truth[f"{mf}.{dense}.weight"] = f"{hf}.{part}.weight"
    truth[f"{mf}.projection.weight"] = transposed(f"{hf}.o.weight")


def _t5_truth() -> Truth:
    """{mindformers name: HF name} (PyTorch -> MindSpore)."""
    truth: Truth = {"t5_model.tfm_embedding_lookup.embedding_table": "shared.weight"}
    for side in ("encoder", "decoder"):
        bias = f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        mlp = 1 if side == "encoder" else 2
        for n in range(_T5["layers"]):
            mf, hf = f"t5_model.tfm_{side}.blocks.{n}", f"{side}.block.{n}"
            truth[f"{mf}.layernorm1.gamma"] = f"{hf}.layer.0.layer_norm.weight"
            _attention(truth, f"{mf}.attention", f"{hf}.layer.0.SelfAttention")
            if n == 0:
                truth[f"{mf}.attention.bias_generator.embeddings_table"] = bias
            if side == "decoder":
                truth[f"{mf}.cross_attention_layernorm.gamma"] = f"{hf}.layer.1.layer_norm.weight"
                _attention(truth, f"{mf}.cross_attention", f"{hf}.layer.1.EncDecAttention")
                if n == 0:
                    truth[f"{mf}.cross_attention.cross_bias"] = None
            truth[f"{mf}.layernorm2.gamma"] = f"{hf}.layer.{mlp}.layer_norm.weight"
            truth[f"{mf}.output.mapping.weight"] = transposed(f"{hf}.layer.{mlp}.DenseReluDense.wi.weight")
            truth[f"{mf}.output.projection.weight"] = transposed(f"{hf}.layer.{mlp}.DenseReluDense.wo.weight")
    truth["t5_model.encoder_layernorm.gamma"] = "encoder.final_layer_norm.weight"
    truth["t5_model.decoder_layernorm.gamma"] = "decoder.final_layer_norm.weight"
    return truth


def _t5_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    source, target = (torch.from_numpy(x) for x in inputs)
    with torch.no_grad():
        logits = model(input_ids=source, decoder_input_ids=target).logits
    return [logits.reshape(-1, logits.shape[-1]).numpy()]


def _t5_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    source, target = inputs
    logits = net(
        mindspore.Tensor(source.astype(np.int32)),
        mindspore.Tensor(np.ones(source.shape, dtype=np.float32)),
        decoder_input_ids=mindspore.Tensor(target.astype(np.int32)),
        decoder_attention_mask=mindspore.Tensor(np.ones(target.shape, dtype=np.float32)),
    )
    return [logits.asnumpy()]


T5 = RealPair(
    name="t5_hf_mindformers",
    family="seq2seq",
    direction="pt2ms",
    packages=("transformers", "mindformers"),
    torch_model=_t5_torch,
    mindspore_model=_t5_mindspore,
    truth=_t5_truth,
    inputs=_t5_inputs,
    torch_forward=_t5_torch_forward,
    mindspore_forward=_t5_mindspore_forward,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    fill={"t5_model.tfm_decoder.blocks.0.cross_attention.cross_bias": 0.0},
    setup=_mindformers_setup,
    notes="T5 (2+2 layers, width 64, ReLU MLP). mindformers has a cross-attention position bias with no HF "
    "counterpart (set to zero for the proof). mindformers 1.3.2 buckets relative distances of 8 and more with "
    "log(max_distance / 16) where HF uses log(max_distance / 8), so the probe sequences are 8 tokens long (all "
    "distances exact). mindformers stores the attention output and MLP weights (in, out).",
)

PAIRS = [T5]
