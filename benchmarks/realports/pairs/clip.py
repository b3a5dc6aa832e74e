"""CLIP-like models: HF transformers and open_clip against mindformers (1.x)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth, invert, layernorm, transposed, weight_bias

_VOCAB, _CONTEXT, _IMAGE, _PATCH, _WIDTH, _HEADS, _LAYERS, _EMBED, _BATCH = 128, 16, 32, 8, 64, 4, 2, 32, 2


def _clip_inputs(rng: np.random.Generator) -> Inputs:
    """Images and token ids whose largest id (the end-of-text token, where both sides pool) is unique."""
    images = rng.standard_normal((_BATCH, 3, _IMAGE, _IMAGE)).astype(np.float32)
    tokens = rng.integers(1, _VOCAB - 1, size=(_BATCH, _CONTEXT)).astype(np.int64)
    for row, end in enumerate((_CONTEXT - 1, _CONTEXT // 2)):
        tokens[row, end] = _VOCAB - 1
    return images, tokens


def _mindformers_setup() -> None:
    from benchmarks.realports._setup import mindformers_on_cpu

    mindformers_on_cpu()


def _mindformers_clip() -> Any:
    from mindformers import CLIPConfig, CLIPModel
    from mindformers.models.clip.clip_config import CLIPTextConfig, CLIPVisionConfig

    from benchmarks.realports._setup import mindformers_float32, mindformers_missing_cast

    text = CLIPTextConfig(
        vocab_size=_VOCAB,
        hidden_size=_WIDTH,
        intermediate_size=4 * _WIDTH,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        max_position_embeddings=_CONTEXT,
    )
    vision = CLIPVisionConfig(
        hidden_size=_WIDTH,
        intermediate_size=4 * _WIDTH,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        image_size=_IMAGE,
        patch_size=_PATCH,
    )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=_EMBED, dtype="float32")
    return mindformers_float32(mindformers_missing_cast(CLIPModel(config)))


def _mindformers_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    images, tokens = mindspore.Tensor(inputs[0]), mindspore.Tensor(inputs[1].astype(np.int32))
    logits_per_image, _ = net(images, tokens)
    return [
        net.get_image_features(images).asnumpy(),
        net.get_text_features(tokens).asnumpy(),
        logits_per_image.asnumpy(),
    ]


# mindformers (OpenAI CLIP's names): token_embedding.embedding_table, positional_embedding, transformer.resblocks.N.
#   {ln_1, attn.in_proj (fused q|k|v), attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_final, text_projection
#   [W, E]; visual.{class_embedding, positional_embedding, conv1, ln_pre, transformer.resblocks.N.*, ln_post,
#   proj [W, E]}, logit_scale. Attention projections listed out_proj first.
def _resblocks(prefix: str) -> list[str]:
    return [f"{prefix}.resblocks.{n}" for n in range(_LAYERS)]


# ------------------------------------------------------------------------------------------- HF CLIP
# HF: text_model.embeddings.{token,position}_embedding, text_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj,
#     layer_norm1, mlp.fc1, mlp.fc2, layer_norm2}, text_model.final_layer_norm, text_projection (Linear [E, W]);
#     vision_model.embeddings.{class_embedding, patch_embedding, position_embedding}, vision_model.pre_layrnorm,
#     vision_model.encoder.layers.N.*, vision_model.post_layernorm, visual_projection; logit_scale.
def _hf_clip() -> Any:
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={
            "vocab_size": _VOCAB,
            "hidden_size": _WIDTH,
            "intermediate_size": 4 * _WIDTH,
            "num_hidden_layers": _LAYERS,
            "num_attention_heads": _HEADS,
            "max_position_embeddings": _CONTEXT,
            "eos_token_id": _VOCAB - 1,
        },
        vision_config={
            "hidden_size": _WIDTH,
            "intermediate_size": 4 * _WIDTH,
            "num_hidden_layers": _LAYERS,
            "num_attention_heads": _HEADS,
            "image_size": _IMAGE,
            "patch_size": _PATCH,
        },
        projection_dim=_EMBED,
    )
    config._attn_implementation = "eager"
    return CLIPModel(config)


def _hf_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    images, tokens = torch.from_numpy(inputs[0]), torch.from_numpy(inputs[1])
    with torch.no_grad():
        image_features = model.get_image_features(pixel_values=images)
        text_features = model.get_text_features(input_ids=tokens)
        logits = model(input_ids=tokens, pixel_values=images).logits_per_image
    features = [getattr(f, "pooler_output", f) for f in (image_features, text_features)]
    return [features[0].numpy(), features[1].numpy(), logits.numpy()]


def _hf_truth() -> Truth:
    """{mindformers name: HF name} (PyTorch -> MindSpore)."""
    truth: Truth = {
        "token_embedding.embedding_table": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "text_projection": transposed("text_projection.weight"),
        "logit_scale": "logit_scale",
        "visual.class_embedding": "vision_model.embeddings.class_embedding",
        "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
        "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual.proj": transposed("visual_projection.weight"),
        **layernorm("visual.ln_pre", "vision_model.pre_layrnorm"),
        **layernorm("visual.ln_post", "vision_model.post_layernorm"),
        **layernorm("ln_final", "text_model.final_layer_norm"),
    }
    for ms_tower, hf_tower in (("transformer", "text_model"), ("visual.transformer", "vision_model")):
        for n, block in enumerate(_resblocks(ms_tower)):
            layer = f"{hf_tower}.encoder.layers.{n}"
            qkv = [f"{layer}.self_attn.{p}_proj" for p in "qkv"]
            truth[f"{block}.attn.in_proj.weight"] = {
                "source": [f"{p}.weight" for p in qkv],
                "transform": [{"op": "concat", "axis": 0}],
            }
            truth[f"{block}.attn.in_proj.bias"] = {
                "source": [f"{p}.bias" for p in qkv],
                "transform": [{"op": "concat", "axis": 0}],
            }
            truth.update(weight_bias(f"{block}.attn.out_proj", f"{layer}.self_attn.out_proj"))
            truth.update(layernorm(f"{block}.ln_1", f"{layer}.layer_norm1"))
            truth.update(weight_bias(f"{block}.mlp.c_fc", f"{layer}.mlp.fc1"))
            truth.update(weight_bias(f"{block}.mlp.c_proj", f"{layer}.mlp.fc2"))
            truth.update(layernorm(f"{block}.ln_2", f"{layer}.layer_norm2"))
    return truth


HF_CLIP = RealPair(
    name="clip_hf_mindformers",
    family="clip",
    direction="pt2ms",
    packages=("transformers", "mindformers"),
    torch_model=_hf_clip,
    mindspore_model=_mindformers_clip,
    truth=_hf_truth,
    inputs=_clip_inputs,
    torch_forward=_hf_forward,
    mindspore_forward=_mindformers_forward,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    swap=("transformer.resblocks.0.ln_1.gamma", "transformer.resblocks.0.ln_2.gamma"),
    setup=_mindformers_setup,
    notes="CLIP (2-layer towers, width 64, patch 8 on 32x32, projection 32). HF's separate q/k/v are "
    "mindformers' fused in_proj (concatenated); the projections are stored (in, out) by mindformers. Image "
    "features, text features and logits compared; text pooled at the largest token id on both sides.",
)


# --------------------------------------------------------------------------------------------- open_clip
# open_clip: OpenAI's names with torch's MultiheadAttention (`attn.in_proj_weight`, `attn.in_proj_bias`) and LayerNorm
#            `weight`/`bias`; token_embedding.weight.
def _open_clip() -> Any:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(
        layers=_LAYERS, width=_WIDTH, head_width=_WIDTH // _HEADS, patch_size=_PATCH, image_size=_IMAGE, mlp_ratio=4.0
    )
    text = CLIPTextCfg(context_length=_CONTEXT, vocab_size=_VOCAB, width=_WIDTH, heads=_HEADS, layers=_LAYERS)
    return CLIP(embed_dim=_EMBED, vision_cfg=vision, text_cfg=text, quick_gelu=True)


def _open_clip_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    images, tokens = torch.from_numpy(inputs[0]), torch.from_numpy(inputs[1])
    with torch.no_grad():
        image_features = model.encode_image(images)
        text_features = model.encode_text(tokens)
        normalised = [f / f.norm(dim=1, keepdim=True) for f in (image_features, text_features)]
        logits = model.logit_scale.exp() * normalised[0] @ normalised[1].T
    return [image_features.numpy(), text_features.numpy(), logits.numpy()]


def _open_clip_ms_from_torch() -> Truth:
    """{mindformers name: open_clip name}."""
    truth: Truth = {
        "token_embedding.embedding_table": "token_embedding.weight",
        "positional_embedding": "positional_embedding",
        "text_projection": "text_projection",
        "logit_scale": "logit_scale",
        "visual.class_embedding": "visual.class_embedding",
        "visual.positional_embedding": "visual.positional_embedding",
        "visual.conv1.weight": "visual.conv1.weight",
        "visual.proj": "visual.proj",
        **layernorm("visual.ln_pre", "visual.ln_pre"),
        **layernorm("visual.ln_post", "visual.ln_post"),
        **layernorm("ln_final", "ln_final"),
    }
    for tower in ("transformer", "visual.transformer"):
        for block in _resblocks(tower):
            truth[f"{block}.attn.in_proj.weight"] = f"{block}.attn.in_proj_weight"
            truth[f"{block}.attn.in_proj.bias"] = f"{block}.attn.in_proj_bias"
            truth.update(weight_bias(f"{block}.attn.out_proj", f"{block}.attn.out_proj"))
            for norm in ("ln_1", "ln_2"):
                truth.update(layernorm(f"{block}.{norm}", f"{block}.{norm}"))
            for fc in ("c_fc", "c_proj"):
                truth.update(weight_bias(f"{block}.mlp.{fc}", f"{block}.mlp.{fc}"))
    return truth


OPEN_CLIP = RealPair(
    name="clip_mindformers_openclip",
    family="clip",
    direction="ms2pt",
    packages=("mindformers", "open_clip_torch"),
    torch_model=_open_clip,
    mindspore_model=_mindformers_clip,
    truth=lambda: invert(_open_clip_ms_from_torch()),
    inputs=_clip_inputs,
    torch_forward=_open_clip_forward,
    mindspore_forward=_mindformers_forward,
    rtol=1e-4,
    atol=1e-4,
    swap=("visual.transformer.resblocks.0.ln_1.weight", "visual.transformer.resblocks.0.ln_2.weight"),
    setup=_mindformers_setup,
    notes="CLIP (as clip_hf_mindformers) against open_clip with QuickGELU: both keep OpenAI's names; open_clip's "
    "attention is torch's MultiheadAttention (`in_proj_weight`), LayerNorm weight/bias against gamma/beta.",
)

PAIRS = [HF_CLIP, OPEN_CLIP]
