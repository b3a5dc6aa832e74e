"""Audio and recurrent models: speech recognition between HF transformers and mindformers (1.x)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth

_VOCAB, _MELS, _FRAMES, _TOKENS, _BATCH = 128, 16, 32, 16, 2


def _mindformers_setup() -> None:
    from benchmarks.realports._setup import mindformers_on_cpu

    mindformers_on_cpu()


# --------------------------------------------------------------------------------------------- Whisper
# HF:          model.encoder.{conv1, conv2 (Conv1d [O, I, k]), embed_positions.weight, layers.N.{self_attn.{q,k,v,
#              out}_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm}, layer_norm}, model.decoder.{embed_tokens,
#              embed_positions, layers.N.{self_attn, encoder_attn, ..._layer_norm}, layer_norm}; proj_out tied to
#              embed_tokens (not in the file).
# mindformers: the same module names; Conv1d weights [O, I, 1, k]; embeddings `embedding_weight`; LayerNorm
#              gamma/beta; k/v listed before q.
_WHISPER = {"hidden": 64, "heads": 4, "ffn": 96, "encoder_layers": 1, "decoder_layers": 2}


def _whisper_inputs(rng: np.random.Generator) -> Inputs:
    features = rng.standard_normal((_BATCH, _MELS, _FRAMES)).astype(np.float32)
    return features, rng.integers(3, _VOCAB, size=(_BATCH, _TOKENS)).astype(np.int64)


def _whisper_torch() -> Any:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=_VOCAB,
        num_mel_bins=_MELS,
        encoder_layers=_WHISPER["encoder_layers"],
        decoder_layers=_WHISPER["decoder_layers"],
        encoder_attention_heads=_WHISPER["heads"],
        decoder_attention_heads=_WHISPER["heads"],
        d_model=_WHISPER["hidden"],
        encoder_ffn_dim=_WHISPER["ffn"],
        decoder_ffn_dim=_WHISPER["ffn"],
        max_source_positions=_FRAMES // 2,
        max_target_positions=_TOKENS,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        activation_function="gelu_new",  # mindformers' GELU is the tanh approximation
        attn_implementation="eager",
    )
    return WhisperForConditionalGeneration(config)


def _whisper_mindspore() -> Any:
    from mindformers.models.whisper.configuration_whisper import WhisperConfig
    from mindformers.models.whisper.modeling_whisper import WhisperForConditionalGeneration

    from benchmarks.realports._setup import mindformers_float32, mindformers_missing_cast

    config = WhisperConfig(
        vocab_size=_VOCAB,
        num_mel_bins=_MELS,
        encoder_layers=_WHISPER["encoder_layers"],
        decoder_layers=_WHISPER["decoder_layers"],
        encoder_attention_heads=_WHISPER["heads"],
        decoder_attention_heads=_WHISPER["heads"],
        d_model=_WHISPER["hidden"],
        encoder_ffn_dim=_WHISPER["ffn"],
        decoder_ffn_dim=_WHISPER["ffn"],
        max_source_positions=_FRAMES // 2,
        max_target_positions=_TOKENS,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        compute_dtype="float32",
        param_init_type="float32",
        embedding_init_type="float32",
    )
    net = mindformers_float32(mindformers_missing_cast(WhisperForConditionalGeneration(config)))
    # HF's convolutional stem applies the exact GELU whatever the config says; mindformers' the tanh one
    from mindformers.modules.activation import GELU

    net.model.encoder.gelu = GELU(approximate=False)
    return net


def _whisper_truth() -> Truth:
    """{HF name: mindformers name} (MindSpore -> PyTorch)."""
    truth: Truth = {}
    for conv in ("conv1", "conv2"):
        name = f"model.encoder.{conv}"
        truth[f"{name}.weight"] = {"source": f"{name}.weight", "transform": [{"op": "squeeze", "axis": 2}]}
        truth[f"{name}.bias"] = f"{name}.bias"
    truth["model.encoder.embed_positions.weight"] = "model.encoder.embed_positions.embedding_weight"
    attentions = {"encoder": ("self_attn",), "decoder": ("self_attn", "encoder_attn")}
    for side, layers in (("encoder", _WHISPER["encoder_layers"]), ("decoder", _WHISPER["decoder_layers"])):
        for n in range(layers):
            layer = f"model.{side}.layers.{n}"
            for attention in attentions[side]:
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    truth[f"{layer}.{attention}.{proj}.weight"] = f"{layer}.{attention}.{proj}.weight"
                    if proj != "k_proj":  # Whisper's key projection has no bias
                        truth[f"{layer}.{attention}.{proj}.bias"] = f"{layer}.{attention}.{proj}.bias"
                truth[f"{layer}.{attention}_layer_norm.weight"] = f"{layer}.{attention}_layer_norm.gamma"
                truth[f"{layer}.{attention}_layer_norm.bias"] = f"{layer}.{attention}_layer_norm.beta"
            for fc in ("fc1", "fc2"):
                truth[f"{layer}.{fc}.weight"] = f"{layer}.{fc}.weight"
                truth[f"{layer}.{fc}.bias"] = f"{layer}.{fc}.bias"
            truth[f"{layer}.final_layer_norm.weight"] = f"{layer}.final_layer_norm.gamma"
            truth[f"{layer}.final_layer_norm.bias"] = f"{layer}.final_layer_norm.beta"
        truth[f"model.{side}.layer_norm.weight"] = f"model.{side}.layer_norm.gamma"
        truth[f"model.{side}.layer_norm.bias"] = f"model.{side}.layer_norm.beta"
    truth["model.decoder.embed_tokens.weight"] = "model.decoder.embed_tokens.embedding_weight"
    truth["model.decoder.embed_positions.weight"] = "model.decoder.embed_positions.embedding_weight"
    return truth


def _whisper_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    features, tokens = (torch.from_numpy(x) for x in inputs)
    with torch.no_grad():
        return [model(input_features=features, decoder_input_ids=tokens).logits.numpy()]


def _whisper_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    features, tokens = inputs
    out = net(mindspore.Tensor(features), decoder_input_ids=mindspore.Tensor(tokens.astype(np.int32)))
    return [out[0].asnumpy()]


WHISPER = RealPair(
    name="whisper_mindformers_hf",
    family="audio-recurrent",
    direction="ms2pt",
    packages=("mindformers", "transformers"),
    torch_model=_whisper_torch,
    mindspore_model=_whisper_mindspore,
    truth=_whisper_truth,
    inputs=_whisper_inputs,
    torch_forward=_whisper_torch_forward,
    mindspore_forward=_whisper_mindspore_forward,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    swap=("model.decoder.layers.0.self_attn.q_proj.weight", "model.decoder.layers.0.encoder_attn.q_proj.weight"),
    setup=_mindformers_setup,
    notes="Whisper (1 encoder, 2 decoder layers, width 64, 16 mel bins). mindformers 1.3.2 on the CPU: cells that "
    "lack the Cast they call get one, float16 compute attributes set to float32; the stem's GELU set to the exact "
    "one HF's stem uses (parameter-free; the layers' tanh GELU matched by HF's config). Conv1d weights squeezed from "
    "MindSpore's [O, I, 1, k]. The decoder takes exactly max_target_positions tokens (its causal mask is built "
    "for that length).",
)

PAIRS = [WHISPER]
