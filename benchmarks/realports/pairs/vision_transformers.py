"""Vision transformers: torchvision and timm against mindcv."""

from __future__ import annotations

from typing import Any

from benchmarks.realports._pair import RealPair, Truth, images, invert, layernorm, transposed, weight_bias

from ._align import like_mindspore_same_padding, mindspore_gelu_and_layernorm

_CLASSES = 10

# ------------------------------------------------------------------------------------ ViT (torchvision)
# torchvision: class_token, conv_proj, encoder.pos_embedding, encoder.layers.encoder_layer_N.{ln_1,
#              self_attention.{in_proj_weight, in_proj_bias, out_proj}, ln_2, mlp.0, mlp.3}, encoder.ln, heads.head.
# mindcv:      cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
#              mlp.fc2}, norm, head; LayerNorm gamma/beta.
_VIT = {"image": 32, "patch": 8, "layers": 2, "heads": 4, "dim": 64, "mlp": 128}


def _vit_torch() -> Any:
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        image_size=_VIT["image"],
        patch_size=_VIT["patch"],
        num_layers=_VIT["layers"],
        num_heads=_VIT["heads"],
        hidden_dim=_VIT["dim"],
        mlp_dim=_VIT["mlp"],
        num_classes=_CLASSES,
    )


def _vit_mindspore() -> Any:
    from functools import partial

    from mindcv.models.vit import VisionTransformer
    from mindspore import nn

    return VisionTransformer(
        image_size=_VIT["image"],
        patch_size=_VIT["patch"],
        embed_dim=_VIT["dim"],
        depth=_VIT["layers"],
        num_heads=_VIT["heads"],
        mlp_ratio=_VIT["mlp"] / _VIT["dim"],
        num_classes=_CLASSES,
        act_layer=partial(nn.GELU, approximate=False),  # torchvision's MLP uses the exact GELU
        norm_layer=partial(nn.LayerNorm, epsilon=1e-6),  # torchvision's LayerNorm epsilon
    )


def _vit_truth() -> Truth:
    truth: Truth = {
        "cls_token": "class_token",
        "pos_embed": "encoder.pos_embedding",
        **weight_bias("patch_embed.proj", "conv_proj"),
    }
    for n in range(_VIT["layers"]):
        ms, pt = f"blocks.{n}", f"encoder.layers.encoder_layer_{n}"
        truth.update(layernorm(f"{ms}.norm1", f"{pt}.ln_1"))
        truth[f"{ms}.attn.qkv.weight"] = f"{pt}.self_attention.in_proj_weight"
        truth[f"{ms}.attn.qkv.bias"] = f"{pt}.self_attention.in_proj_bias"
        truth.update(weight_bias(f"{ms}.attn.proj", f"{pt}.self_attention.out_proj"))
        truth.update(layernorm(f"{ms}.norm2", f"{pt}.ln_2"))
        truth.update(weight_bias(f"{ms}.mlp.fc1", f"{pt}.mlp.0"))
        truth.update(weight_bias(f"{ms}.mlp.fc2", f"{pt}.mlp.3"))
    truth.update(layernorm("norm", "encoder.ln"))
    truth.update(weight_bias("head", "heads.head"))
    return truth


VIT = RealPair(
    name="vit_tv_mindcv",
    family="vision-transformer",
    direction="pt2ms",
    packages=("torchvision", "mindcv"),
    torch_model=_vit_torch,
    mindspore_model=_vit_mindspore,
    truth=_vit_truth,
    inputs=images(_VIT["image"]),
    rtol=1e-4,
    atol=1e-4,
    notes="ViT (2 layers, width 64, patch 8 on 32x32). mindcv built with torchvision's exact GELU and LayerNorm "
    "epsilon (constructor options). torchvision's fused in_proj is mindcv's qkv, same q/k/v order.",
)

# -------------------------------------------------------------------------- ViT (timm, mean pooling)
# timm:        cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1, attn.qkv (fused), attn.proj, norm2, mlp.fc1,
#              mlp.fc2}, fc_norm, head (global average pooling, as MAE fine-tuning uses).
# mindformers: vit.cls_tokens, vit.pos_embed, vit.patch_embed.proj, vit.blocks.N.{layernorm1, attention.{dense1,
#              dense2, dense3 (q/k/v, (out, in)), projection ((in, out))}, layernorm2, output.{mapping, projection}
#              ((in, out))}, vit.fc_norm, head; the attention projection listed before q/k/v.
_MF_VIT = {"image": 32, "patch": 8, "layers": 2, "heads": 4, "dim": 64, "mlp": 128}


def _timm_vit() -> Any:
    from functools import partial

    from timm.models.vision_transformer import VisionTransformer
    from torch import nn

    return VisionTransformer(
        img_size=_MF_VIT["image"],
        patch_size=_MF_VIT["patch"],
        embed_dim=_MF_VIT["dim"],
        depth=_MF_VIT["layers"],
        num_heads=_MF_VIT["heads"],
        mlp_ratio=_MF_VIT["mlp"] / _MF_VIT["dim"],
        num_classes=_CLASSES,
        global_pool="avg",
        act_layer=partial(nn.GELU, approximate="tanh"),  # mindformers' GELU is the tanh approximation
    )


def _mindformers_vit() -> Any:
    from mindformers import ViTConfig, ViTForImageClassification

    from benchmarks.realports._setup import mindformers_float32, mindformers_on_cpu

    mindformers_on_cpu()
    config = ViTConfig(
        image_size=_MF_VIT["image"],
        patch_size=_MF_VIT["patch"],
        hidden_size=_MF_VIT["dim"],
        num_hidden_layers=_MF_VIT["layers"],
        num_attention_heads=_MF_VIT["heads"],
        intermediate_size=_MF_VIT["mlp"],
        num_classes=_CLASSES,
        layer_norm_eps=1e-6,  # timm's LayerNorm epsilon
        drop_path_rate=0.0,
    )
    return mindformers_float32(ViTForImageClassification(config))


def _mindformers_vit_truth() -> Truth:
    """{mindformers name: timm name} (PyTorch -> MindSpore)."""
    truth: Truth = {
        "vit.cls_tokens": "cls_token",
        "vit.pos_embed": "pos_embed",
        **weight_bias("vit.patch_embed.proj", "patch_embed.proj"),
    }
    for n in range(_MF_VIT["layers"]):
        ms, pt = f"vit.blocks.{n}", f"blocks.{n}"
        truth.update(layernorm(f"{ms}.layernorm1", f"{pt}.norm1"))
        for index, dense in enumerate(("dense1", "dense2", "dense3")):
            split = [{"op": "split", "axis": 0, "parts": 3, "index": index}]
            truth[f"{ms}.attention.{dense}.weight"] = {"source": f"{pt}.attn.qkv.weight", "transform": split}
            truth[f"{ms}.attention.{dense}.bias"] = {"source": f"{pt}.attn.qkv.bias", "transform": split}
        truth[f"{ms}.attention.projection.weight"] = transposed(f"{pt}.attn.proj.weight")
        truth[f"{ms}.attention.projection.bias"] = f"{pt}.attn.proj.bias"
        truth.update(layernorm(f"{ms}.layernorm2", f"{pt}.norm2"))
        truth[f"{ms}.output.mapping.weight"] = transposed(f"{pt}.mlp.fc1.weight")
        truth[f"{ms}.output.mapping.bias"] = f"{pt}.mlp.fc1.bias"
        truth[f"{ms}.output.projection.weight"] = transposed(f"{pt}.mlp.fc2.weight")
        truth[f"{ms}.output.projection.bias"] = f"{pt}.mlp.fc2.bias"
    truth.update(layernorm("vit.fc_norm", "fc_norm"))
    truth.update(weight_bias("head", "head"))
    return truth


def _mindformers_vit_forward(net: Any, inputs: Any) -> list[Any]:
    import mindspore

    return [net(mindspore.Tensor(inputs[0]))[0].asnumpy()]


MF_VIT = RealPair(
    name="vit_timm_mindformers",
    family="vision-transformer",
    direction="pt2ms",
    packages=("timm", "mindformers"),
    torch_model=_timm_vit,
    mindspore_model=_mindformers_vit,
    truth=_mindformers_vit_truth,
    inputs=images(_MF_VIT["image"]),
    mindspore_forward=_mindformers_vit_forward,
    rtol=1e-4,
    atol=1e-4,
    notes="ViT with global average pooling and fc_norm (MAE fine-tuning style; 2 layers, width 64). timm's fused "
    "qkv is split into mindformers' dense1/2/3; the attention projection and MLP weights are stored (in, out) by "
    "mindformers. mindformers built with timm's LayerNorm epsilon, timm with mindformers' tanh GELU (config options).",
)

# --------------------------------------------------------------------------------------------------- Swin
# mindcv: patch_embed.{proj, norm}; stage 0 as `0.blocks.J`, its patch merging `0.downsample.{reduction, norm}` (at
#         the end of the stage), stage 1 as `0.blocks.1.blocks.J` (mindcv's nesting); blocks {norm1,
#         attn.{q, k, v, proj, relative_bias.relative_position_bias_table}, norm2, mlp.fc1, mlp.fc2}; the relative
#         position index and the shifted windows' attention mask stored as parameters; norm, classifier.
# timm:   patch_embed.{proj, norm}, layers.S.blocks.J.{norm1, attn.{qkv (fused), proj,
#         relative_position_bias_table}, norm2, mlp.fc1, mlp.fc2}, the patch merging at the start of the next stage
#         (layers.1.downsample), norm, head.fc.
_SWIN = {"image": 32, "patch": 4, "dim": 32, "depths": (2, 2), "heads": (2, 4), "window": 4}


def _swin_torch() -> Any:
    from timm.models.swin_transformer import SwinTransformer

    model = SwinTransformer(
        img_size=_SWIN["image"],
        patch_size=_SWIN["patch"],
        num_classes=_CLASSES,
        embed_dim=_SWIN["dim"],
        depths=_SWIN["depths"],
        num_heads=_SWIN["heads"],
        window_size=_SWIN["window"],
    )
    return mindspore_gelu_and_layernorm(model)  # MindSpore's nn.GELU, which mindcv uses, is the tanh one


def _swin_mindspore() -> Any:
    from mindcv.models.swintransformer import SwinTransformer

    return SwinTransformer(
        image_size=_SWIN["image"],
        patch_size=_SWIN["patch"],
        in_chans=3,
        num_classes=_CLASSES,
        embed_dim=_SWIN["dim"],
        depths=list(_SWIN["depths"]),
        num_heads=list(_SWIN["heads"]),
        window_size=_SWIN["window"],
    )


def _swin_truth() -> Truth:
    """{timm name: mindcv name} (MindSpore -> PyTorch)."""
    truth: Truth = {
        "patch_embed.proj.weight": "patch_embed.proj.weight",
        "patch_embed.proj.bias": "patch_embed.proj.bias",
        "patch_embed.norm.weight": "patch_embed.norm.gamma",
        "patch_embed.norm.bias": "patch_embed.norm.beta",
    }
    stages = ["0.blocks", "0.blocks.1.blocks"]
    for stage, depth in enumerate(_SWIN["depths"]):
        for j in range(depth):
            pt, ms = f"layers.{stage}.blocks.{j}", f"{stages[stage]}.{j}"
            for norm in ("norm1", "norm2"):
                truth[f"{pt}.{norm}.weight"] = f"{ms}.{norm}.gamma"
                truth[f"{pt}.{norm}.bias"] = f"{ms}.{norm}.beta"
            table = f"{ms}.attn.relative_bias.relative_position_bias_table"
            truth[f"{pt}.attn.relative_position_bias_table"] = table
            for kind in ("weight", "bias"):
                truth[f"{pt}.attn.qkv.{kind}"] = {
                    "source": [f"{ms}.attn.{p}.{kind}" for p in "qkv"],
                    "transform": [{"op": "concat", "axis": 0}],
                }
                for layer in ("attn.proj", "mlp.fc1", "mlp.fc2"):
                    truth[f"{pt}.{layer}.{kind}"] = f"{ms}.{layer}.{kind}"
    truth["layers.1.downsample.reduction.weight"] = "0.downsample.reduction.weight"
    truth["layers.1.downsample.norm.weight"] = "0.downsample.norm.gamma"
    truth["layers.1.downsample.norm.bias"] = "0.downsample.norm.beta"
    truth["norm.weight"] = "norm.gamma"
    truth["norm.bias"] = "norm.beta"
    truth["head.fc.weight"] = "classifier.weight"
    truth["head.fc.bias"] = "classifier.bias"
    return truth


SWIN = RealPair(
    name="swin_mindcv_timm",
    family="vision-transformer",
    direction="ms2pt",
    packages=("mindcv", "timm"),
    torch_model=_swin_torch,
    mindspore_model=_swin_mindspore,
    truth=_swin_truth,
    inputs=images(_SWIN["image"]),
    rtol=1e-4,
    atol=1e-4,
    constants=("attn_mask", "relative_bias.index"),
    notes="Swin (two stages of two blocks, width 32, window 4 on 32x32). mindcv names stage 1 `0.blocks.1.blocks.J`, "
    "so `0.blocks.1.norm1` (stage 0) and `0.blocks.1.blocks.1.norm1` (stage 1) coexist; its separate q/k/v are "
    "timm's fused qkv; its patch merging closes stage 0 where timm's opens stage 1. mindcv's index table and "
    "attention mask are parameters in its file (unused by the truth). timm's GELU set to the tanh one mindcv gets "
    "from MindSpore's nn.GELU (parameter-free).",
)


# ---------------------------------------------------------------------------------------- Swin (HF)
# HF (as save_pretrained writes it): swin.embeddings.{patch_embeddings.projection, norm}, swin.encoder.layers.S.
#     blocks.J.{layernorm_before, attention.self.{query, key, value, relative_position_bias_table},
#     attention.output.dense, layernorm_after, intermediate.dense, output.dense}, layers.S.downsample.{reduction,
#     norm}, swin.layernorm, classifier.
# mindformers: encoder.patch_embed.{projection, norm}, encoder.layers.S.blocks.J.{norm1, attn.{q, k, v, proj,
#     relative_position_bias.relative_position_bias_table}, norm2, mlp.{mapping, projection} ((in, out))},
#     encoder.layers.S.downsample.*, encoder.norm, head; the relative position index and the shifted windows'
#     attention mask stored as parameters (no HF counterpart).
def _hf_swin() -> Any:
    from transformers import SwinConfig, SwinForImageClassification

    config = SwinConfig(
        image_size=_SWIN["image"],
        patch_size=_SWIN["patch"],
        embed_dim=_SWIN["dim"],
        depths=list(_SWIN["depths"]),
        num_heads=list(_SWIN["heads"]),
        window_size=_SWIN["window"],
        num_labels=_CLASSES,
        drop_path_rate=0.0,
        hidden_act="gelu_pytorch_tanh",  # mindformers' GELU is the tanh approximation
    )
    return SwinForImageClassification(config)


def _mindformers_swin() -> Any:
    from mindformers import SwinConfig, SwinForImageClassification

    from benchmarks.realports._setup import (
        mindformers_float32,
        mindformers_missing_cast,
        mindformers_on_cpu,
        mindspore_cpu_batch_matmul,
    )

    mindformers_on_cpu()
    config = SwinConfig(
        image_size=_SWIN["image"],
        patch_size=_SWIN["patch"],
        embed_dim=_SWIN["dim"],
        depths=list(_SWIN["depths"]),
        num_heads=list(_SWIN["heads"]),
        window_size=_SWIN["window"],
        num_labels=_CLASSES,
        drop_path_rate=0.0,
    )
    net = SwinForImageClassification(config)
    return mindspore_cpu_batch_matmul(mindformers_float32(mindformers_missing_cast(net)))


def _hf_swin_truth() -> Truth:
    """{mindformers name: HF name} (PyTorch -> MindSpore)."""
    truth: Truth = {
        **weight_bias("encoder.patch_embed.projection", "swin.embeddings.patch_embeddings.projection"),
        **layernorm("encoder.patch_embed.norm", "swin.embeddings.norm"),
    }
    for stage, depth in enumerate(_SWIN["depths"]):
        for j in range(depth):
            ms, hf = f"encoder.layers.{stage}.blocks.{j}", f"swin.encoder.layers.{stage}.blocks.{j}"
            truth.update(layernorm(f"{ms}.norm1", f"{hf}.layernorm_before"))
            truth[f"{ms}.attn.relative_position_bias.relative_position_bias_table"] = (
                f"{hf}.attention.self.relative_position_bias_table"
            )
            truth[f"{ms}.attn.relative_position_bias.relative_position_index"] = None
            resolution = _SWIN["image"] // _SWIN["patch"] // 2**stage
            if j % 2 == 1 and resolution > _SWIN["window"]:  # shifted windows (none where one window covers all)
                truth[f"{ms}.attn_mask"] = None
            for ms_part, hf_part in (("q", "query"), ("k", "key"), ("v", "value")):
                truth.update(weight_bias(f"{ms}.attn.{ms_part}", f"{hf}.attention.self.{hf_part}"))
            truth.update(weight_bias(f"{ms}.attn.proj", f"{hf}.attention.output.dense"))
            truth.update(layernorm(f"{ms}.norm2", f"{hf}.layernorm_after"))
            truth[f"{ms}.mlp.mapping.weight"] = transposed(f"{hf}.intermediate.dense.weight")
            truth[f"{ms}.mlp.mapping.bias"] = f"{hf}.intermediate.dense.bias"
            truth[f"{ms}.mlp.projection.weight"] = transposed(f"{hf}.output.dense.weight")
            truth[f"{ms}.mlp.projection.bias"] = f"{hf}.output.dense.bias"
        if stage < len(_SWIN["depths"]) - 1:
            down_ms, down_hf = f"encoder.layers.{stage}.downsample", f"swin.encoder.layers.{stage}.downsample"
            truth[f"{down_ms}.reduction.weight"] = f"{down_hf}.reduction.weight"
            truth.update(layernorm(f"{down_ms}.norm", f"{down_hf}.norm"))
    truth.update(layernorm("encoder.norm", "swin.layernorm"))
    truth.update(weight_bias("head", "classifier"))
    return truth


def _mindformers_first_output(net: Any, inputs: Any) -> list[Any]:
    import mindspore

    return [net(mindspore.Tensor(inputs[0]))[0].asnumpy()]


HF_SWIN = RealPair(
    name="swin_hf_mindformers",
    family="vision-transformer",
    direction="pt2ms",
    packages=("transformers", "mindformers"),
    torch_model=_hf_swin,
    mindspore_model=_mindformers_swin,
    truth=_hf_swin_truth,
    inputs=images(_SWIN["image"]),
    mindspore_forward=_mindformers_first_output,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    constants=("relative_position_index", "attn_mask"),
    notes="Swin (as swin_mindcv_timm) from HF transformers, whose files keep BERT-style names (attention.self.query, "
    "intermediate.dense, output.dense, layernorm_before/after), against mindformers' port (norm1/norm2, q/k/v, "
    "mlp.mapping/projection stored (in, out)). mindformers' relative position index and attention masks are "
    "parameters in its file with no HF counterpart. HF built with mindformers' tanh GELU (config option).",
)

# ------------------------------------------------------------------------------------------------- PVTv2
# mindcv: patch_embed_list.S.{proj, norm} for every stage, block_list.S.J.{norm1, attn.{q, kv, proj, sr, norm}, norm2,
#         mlp.{fc1, dwconv.dwconv, fc2}}, norm_list.S, head.
# timm:   patch_embed.{proj, norm} for stage 0, stages.S.downsample.{proj, norm} for the others, stages.S.blocks.J.{...,
#         mlp.dwconv}, stages.S.norm, head.
_PVT = {
    "dims": (16, 32, 48, 64),
    "heads": (1, 2, 2, 4),
    "mlp": (2, 2, 2, 2),
    "depths": (1, 1, 1, 1),
    "sr": (8, 4, 2, 1),
}


def _pvt_torch() -> Any:
    from timm.models.pvt_v2 import PyramidVisionTransformerV2

    model = PyramidVisionTransformerV2(
        num_classes=_CLASSES,
        embed_dims=_PVT["dims"],
        num_heads=_PVT["heads"],
        mlp_ratios=_PVT["mlp"],
        depths=_PVT["depths"],
        sr_ratios=_PVT["sr"],
        qkv_bias=True,
    )
    # mindcv's layers are MindSpore's nn.GELU (tanh), nn.LayerNorm (eps 1e-7) and "same"-padded convolutions
    mindspore_gelu_and_layernorm(model, layernorm_eps=1e-7)
    return like_mindspore_same_padding(model, depthwise_only=False)


def _pvt_mindspore() -> Any:
    from mindcv.models.pvtv2 import PyramidVisionTransformerV2

    return PyramidVisionTransformerV2(
        img_size=64,
        num_classes=_CLASSES,
        embed_dims=list(_PVT["dims"]),
        num_heads=list(_PVT["heads"]),
        mlp_ratios=list(_PVT["mlp"]),
        depths=list(_PVT["depths"]),
        sr_ratios=list(_PVT["sr"]),
        qkv_bias=True,
    )


def _pvt_ms_from_torch() -> Truth:
    """{mindcv name: timm name}."""
    truth: Truth = {}
    for stage, depth in enumerate(_PVT["depths"]):
        embed = "patch_embed" if stage == 0 else f"stages.{stage}.downsample"
        truth.update(weight_bias(f"patch_embed_list.{stage}.proj", f"{embed}.proj"))
        truth.update(layernorm(f"patch_embed_list.{stage}.norm", f"{embed}.norm"))
        for j in range(depth):
            ms, pt = f"block_list.{stage}.{j}", f"stages.{stage}.blocks.{j}"
            layers = ["attn.q", "attn.kv", "attn.proj", "mlp.fc1", "mlp.fc2"]
            if _PVT["sr"][stage] > 1:
                layers.append("attn.sr")
                truth.update(layernorm(f"{ms}.attn.norm", f"{pt}.attn.norm"))
            for layer in layers:
                truth.update(weight_bias(f"{ms}.{layer}", f"{pt}.{layer}"))
            truth.update(weight_bias(f"{ms}.mlp.dwconv.dwconv", f"{pt}.mlp.dwconv"))
            truth.update(layernorm(f"{ms}.norm1", f"{pt}.norm1"))
            truth.update(layernorm(f"{ms}.norm2", f"{pt}.norm2"))
        truth.update(layernorm(f"norm_list.{stage}", f"stages.{stage}.norm"))
    truth.update(weight_bias("head", "head"))
    return truth


PVT = RealPair(
    name="pvt_v2_mindcv_timm",
    family="vision-transformer",
    direction="ms2pt",
    packages=("mindcv", "timm"),
    torch_model=_pvt_torch,
    mindspore_model=_pvt_mindspore,
    truth=lambda: invert(_pvt_ms_from_torch()),
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="PVTv2 (four stages of one block, widths 16-64, spatial reduction 8/4/2/1). mindcv keeps per-stage lists "
    "(patch_embed_list, block_list, norm_list) where timm nests stages (the first patch embedding outside them). "
    "timm's GELU, LayerNorm epsilon and strided convolutions' padding set to the MindSpore defaults mindcv uses "
    "(parameter-free).",
)

# --------------------------------------------------------------------------------------------- MLP-Mixer
# mindcv: to_patch_embedding.0 (no bias), block 0 as `0.{token_mix.{0 norm, 2 mlp}, channel_mix.{0 norm, 1 mlp}}` and
#         block 1 nested as `0.token_mix.1.*` (mindcv's naming of its nested sequential cells); MLPs `net.0`/`net.3`;
#         layer_norm, mlp_head.
# timm:   stem.proj (with bias), blocks.J.{norm1, mlp_tokens.{fc1, fc2}, norm2, mlp_channels.{fc1, fc2}}, norm, head.
_MIXER = {"image": 32, "patch": 8, "dim": 64, "tokens": 32, "channels": 128}


def _mixer_torch() -> Any:
    from timm.models.mlp_mixer import MlpMixer

    model = MlpMixer(
        num_classes=_CLASSES,
        img_size=_MIXER["image"],
        patch_size=_MIXER["patch"],
        num_blocks=2,
        embed_dim=_MIXER["dim"],
        mlp_ratio=(_MIXER["tokens"] / _MIXER["dim"], _MIXER["channels"] / _MIXER["dim"]),
    )
    return mindspore_gelu_and_layernorm(model, layernorm_eps=1e-7)  # MindSpore's nn.GELU and nn.LayerNorm defaults


def _mixer_mindspore() -> Any:
    from mindcv.models.mlpmixer import MLPMixer

    patches = (_MIXER["image"] // _MIXER["patch"]) ** 2
    return MLPMixer(
        depth=2,
        patch_size=_MIXER["patch"],
        n_patches=patches,
        n_channels=_MIXER["dim"],
        token_dim=_MIXER["tokens"],
        channel_dim=_MIXER["channels"],
        num_classes=_CLASSES,
    )


def _mixer_truth() -> Truth:
    """{timm name: mindcv name} (MindSpore -> PyTorch)."""
    truth: Truth = {"stem.proj.weight": "to_patch_embedding.0.weight", "stem.proj.bias": None}
    for block, ms in enumerate(("0", "0.token_mix.1")):
        pt = f"blocks.{block}"
        for norm, part in (("norm1", "token_mix.0"), ("norm2", "channel_mix.0")):
            truth[f"{pt}.{norm}.weight"] = f"{ms}.{part}.gamma"
            truth[f"{pt}.{norm}.bias"] = f"{ms}.{part}.beta"
        for mlp, part in (("mlp_tokens", "token_mix.2"), ("mlp_channels", "channel_mix.1")):
            for fc, index in (("fc1", 0), ("fc2", 3)):
                truth[f"{pt}.{mlp}.{fc}.weight"] = f"{ms}.{part}.net.{index}.weight"
                truth[f"{pt}.{mlp}.{fc}.bias"] = f"{ms}.{part}.net.{index}.bias"
    truth["norm.weight"] = "layer_norm.gamma"
    truth["norm.bias"] = "layer_norm.beta"
    truth["head.weight"] = "mlp_head.weight"
    truth["head.bias"] = "mlp_head.bias"
    return truth


MIXER = RealPair(
    name="mlp_mixer_mindcv_timm",
    family="vision-transformer",
    direction="ms2pt",
    packages=("mindcv", "timm"),
    torch_model=_mixer_torch,
    mindspore_model=_mixer_mindspore,
    truth=_mixer_truth,
    inputs=images(_MIXER["image"]),
    rtol=1e-4,
    atol=1e-4,
    fill={"stem.proj.bias": 0.0},
    swap=("blocks.0.mlp_channels.fc1.weight", "blocks.1.mlp_channels.fc1.weight"),
    notes="MLP-Mixer (two blocks, width 64, patch 8 on 32x32), the patch-token family of the vision transformers. "
    "mindcv names its second block `0.token_mix.1` (nested sequential cells) and its patch embedding has no bias: "
    "timm's stem bias has no source (zero for the proof). timm's GELU and LayerNorm epsilon set to MindSpore's "
    "defaults that mindcv uses (parameter-free).",
)

PAIRS = [VIT, MF_VIT, SWIN, HF_SWIN, PVT, MIXER]
