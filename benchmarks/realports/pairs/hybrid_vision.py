"""Hybrid vision networks (convolutions mixed with attention or pooling token mixers): timm against mindcv.

Each truth is a rename of timm's names into mindcv's, written by hand from the two packages' conventions (rules
below), with MindSpore's norm leaves (`gamma`, `beta`). mindcv builds several of these networks from cells appended
to an empty `CellList`; MindSpore then names their parameters from the list's position alone (`0.1.0.gamma`,
`0.blocks.0.2.fusion.0.0.attn.wq.weight`): that is what `mindspore.save_checkpoint` writes, and what users get.
"""

from __future__ import annotations

import re
from typing import Any

from benchmarks.realports._pair import RealPair, Truth, images, invert, mindspore_names

from ._align import mindspore_gelu_and_layernorm

_CLASSES = 10


def _tanh_gelu(model: Any) -> Any:
    """Every GELU of a torch network becomes the tanh approximation, MindSpore's `nn.GELU()` default (parameter-free),
    wherever it sits (an `act` attribute or a position in a Sequential)."""
    from torch import nn

    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.GELU):
                setattr(module, name, nn.GELU(approximate="tanh"))
    return model


def _split(source: str, parts: int, index: int) -> dict[str, Any]:
    return {"source": source, "transform": [{"op": "split", "axis": 0, "parts": parts, "index": index}]}


# ---------------------------------------------------------------------------------------------------- EdgeNeXt
# timm:   stem.{0 conv, 1 norm}, stages.S.downsample.{0 norm, 1 conv} (S >= 1), stages.S.blocks.J.{gamma, conv_dw,
#         norm, mlp.{fc1, fc2}} (convolution blocks) or {gamma_xca, gamma, convs.K, pos_embd.token_projection,
#         norm_xca, xca.{temperature, qkv, proj}, norm, mlp.*} (split transposed attention), head.{norm, fc}.
# mindcv: its stem and downsampling layers, and its stages, are cells appended to CellLists: stem `0.0`, `0.1`,
#         downsampling `0.S.{0, 1}`, stage 0's blocks `0.J`, later stages' `0.S.J`; convolution blocks name the layer
#         scale `gamma1`, the depthwise convolution `dwconv` and the MLP `pwconv1/2`; the attention blocks keep
#         timm's `gamma` (a layer scale, while `norm.gamma` is a LayerNorm weight); final `norm`, `head`.
def _edgenext_torch() -> Any:
    from timm.models.edgenext import edgenext_xx_small

    return edgenext_xx_small(num_classes=_CLASSES)


def _edgenext_mindspore() -> Any:
    from mindcv.models.edgenext import edgenext_xx_small

    return edgenext_xx_small(num_classes=_CLASSES)


def _edgenext_ms_from_torch() -> Truth:
    """{mindcv name: timm name}."""
    model = _edgenext_torch()
    conv_blocks = {n.rpartition(".conv_dw.")[0] for n in model.state_dict() if ".conv_dw." in n}

    def rename(name: str) -> str:
        if name.startswith("stem."):
            return "0." + name[len("stem.") :]
        if name.startswith("head.norm."):
            return name[len("head.") :]
        if name.startswith("head.fc."):
            return "head." + name[len("head.fc.") :]
        down = re.fullmatch(r"stages\.(\d+)\.downsample\.(.+)", name)
        if down:
            return f"0.{down[1]}.{down[2]}"
        block = re.fullmatch(r"(stages\.(\d+)\.blocks\.(\d+))\.(.+)", name)
        assert block is not None, name
        prefix = f"0.{block[3]}" if block[2] == "0" else f"0.{block[2]}.{block[3]}"
        rest = block[4].replace("mlp.fc1", "pwconv1").replace("mlp.fc2", "pwconv2")
        if block[1] in conv_blocks:
            rest = {"gamma": "gamma1"}.get(rest, rest).replace("conv_dw", "dwconv")
        return f"{prefix}.{rest}"

    return mindspore_names(model, rename)


EDGENEXT = RealPair(
    name="edgenext_mindcv_timm",
    family="hybrid-vision",
    direction="ms2pt",
    packages=("mindcv", "timm"),
    torch_model=_edgenext_torch,
    mindspore_model=_edgenext_mindspore,
    truth=lambda: invert(_edgenext_ms_from_torch()),
    inputs=images(64),
    rtol=1e-4,
    atol=1e-4,
    notes="EdgeNeXt-XXS (the real 4 stages of 2-2-6-2 blocks, split depthwise-transposed attention in the last three). "
    "mindcv's file names the stem, downsampling layers and stages by CellList position only (`0.1.0.gamma`, "
    "`0.2.3.xca.qkv.weight`); the convolution blocks' layer scale is `gamma1` there and `gamma` in timm, while the "
    "attention blocks' layer scale is `gamma` on both sides and every LayerNorm weight is mindcv's `gamma` too.",
)


# ------------------------------------------------------------------------------------------------------ ConViT
# timm:   cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1, attn.{gating_param, qk (fused q, k), v, proj,
#         pos_proj}, norm2, mlp.{fc1, fc2}} for the gated positional self-attention blocks, attn.{qkv, proj} for the
#         plain ones after them; norm, head.
# mindcv: the same names, with q, k (and v) as separate layers, the classifier `classifier`.
_CONVIT = {"image": 56, "patch": 4, "heads": 4, "head_dim": 16, "depth": 4, "local": 2}


def _convit_torch() -> Any:
    from timm.models.convit import ConVit

    model = ConVit(
        img_size=_CONVIT["image"],
        patch_size=_CONVIT["patch"],
        num_classes=_CLASSES,
        embed_dim=_CONVIT["head_dim"],  # per head: timm multiplies it by the number of heads
        depth=_CONVIT["depth"],
        num_heads=_CONVIT["heads"],
        local_up_to_layer=_CONVIT["local"],
    )
    return mindspore_gelu_and_layernorm(model, layernorm_eps=1e-7)  # mindcv: MindSpore's nn.GELU, nn.LayerNorm


def _convit_mindspore() -> Any:
    from mindcv.models.convit import ConViT

    return ConViT(
        num_classes=_CLASSES,
        image_size=_CONVIT["image"],
        patch_size=_CONVIT["patch"],
        embed_dim=_CONVIT["heads"] * _CONVIT["head_dim"],
        num_heads=_CONVIT["heads"],
        depth=_CONVIT["depth"],
        local_up_to_layer=_CONVIT["local"],
    )


def _convit_truth() -> Truth:
    """{mindcv name: timm name} (PyTorch -> MindSpore)."""
    fused = mindspore_names(_convit_torch(), lambda n: "classifier." + n[5:] if n.startswith("head.") else n)
    truth: Truth = {}
    for target, source in fused.items():
        assert isinstance(source, str)
        layer = re.fullmatch(r"(blocks\.\d+\.attn)\.(qk|qkv)\.weight", target)
        if layer is None:
            truth[target] = source
            continue
        for index, part in enumerate(layer[2]):
            truth[f"{layer[1]}.{part}.weight"] = _split(source, len(layer[2]), index)
    return truth


CONVIT = RealPair(
    name="convit_timm_mindcv",
    family="hybrid-vision",
    direction="pt2ms",
    packages=("timm", "mindcv"),
    torch_model=_convit_torch,
    mindspore_model=_convit_mindspore,
    truth=_convit_truth,
    inputs=images(_CONVIT["image"]),
    rtol=1e-4,
    atol=1e-4,
    notes="ConViT (4 blocks of width 64, the first 2 with gated positional self-attention, patch 4 on 56x56: mindcv "
    "fixes 14x14 patches). "
    "timm fuses q and k (`attn.qk`, the positional blocks) or q, k and v (`attn.qkv`, the plain ones); mindcv keeps "
    "them apart (split on the output axis). timm's GELU and LayerNorm epsilon set to MindSpore's defaults that "
    "mindcv uses (parameter-free).",
)


# -------------------------------------------------------------------------------------------------- PoolFormer
# timm:   stem.conv, stages.S.downsample.conv (S >= 1), stages.S.blocks.J.{norm1, layer_scale1.scale, norm2,
#         mlp.{fc1, fc2}, layer_scale2.scale}, head.{norm, fc} (MetaFormer).
# mindcv: patch_embed.proj, one `network` list alternating stages and downsampling layers: network.2S.J.{layer_scale_1,
#         layer_scale_2, norm1, norm2, mlp.*}, network.2S-1.proj; norm, head.
_POOLFORMER = {"depths": (1, 1, 2, 1), "dims": (16, 32, 48, 64)}


def _poolformer_torch() -> Any:
    from timm.layers import GroupNorm1
    from timm.models.metaformer import MetaFormer
    from torch import nn

    model = MetaFormer(  # poolformer_s12's settings (timm), at a smaller depth and width
        num_classes=_CLASSES,
        depths=_POOLFORMER["depths"],
        dims=_POOLFORMER["dims"],
        downsample_norm=None,
        mlp_act=nn.GELU,
        mlp_bias=True,
        norm_layers=GroupNorm1,
        layer_scale_init_values=1e-5,
        res_scale_init_values=None,
        use_mlp_head=False,
        output_norm=GroupNorm1,  # mindcv's final norm is a GroupNorm too (see _poolformer_torch_forward)
    )
    return _tanh_gelu(model)  # mindcv's MLP uses MindSpore's nn.GELU (parameter-free)


def _poolformer_torch_forward(model: Any, inputs: Any) -> list[Any]:
    """timm's head pools, then normalises; mindcv's (as the original PoolFormer) normalises the feature map, then
    pools: the same layers, called in mindcv's order."""
    import torch

    with torch.no_grad():
        features = model.head.norm(model.forward_features(torch.from_numpy(inputs[0])))
        return [model.head.fc(features.mean((2, 3))).numpy()]


def _poolformer_mindspore() -> Any:
    from mindcv.models.poolformer import PoolFormer

    return PoolFormer(layers=list(_POOLFORMER["depths"]), embed_dims=_POOLFORMER["dims"], num_classes=_CLASSES)


def _poolformer_rename(name: str) -> str:
    if name.startswith("stem.conv."):
        return "patch_embed.proj." + name[len("stem.conv.") :]
    if name.startswith("head.norm."):
        return name[len("head.") :]
    if name.startswith("head.fc."):
        return "head." + name[len("head.fc.") :]
    down = re.fullmatch(r"stages\.(\d+)\.downsample\.conv\.(\w+)", name)
    if down:
        return f"network.{2 * int(down[1]) - 1}.proj.{down[2]}"
    block = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", name)
    assert block is not None, name
    rest = re.sub(r"layer_scale(\d)\.scale", r"layer_scale_\1", block[3])
    return f"network.{2 * int(block[1])}.{block[2]}.{rest}"


POOLFORMER = RealPair(
    name="poolformer_mindcv_timm",
    family="hybrid-vision",
    direction="ms2pt",
    packages=("mindcv", "timm"),
    torch_model=_poolformer_torch,
    mindspore_model=_poolformer_mindspore,
    truth=lambda: invert(mindspore_names(_poolformer_torch(), _poolformer_rename)),
    inputs=images(64),
    torch_forward=_poolformer_torch_forward,
    rtol=1e-4,
    atol=1e-4,
    notes="PoolFormer (PoolFormer-S12's layers at depths 1-1-2-1, widths 16-64): timm builds it as a MetaFormer with "
    "nested stages, mindcv as one `network` list in which stages (even) and downsampling layers (odd) alternate. "
    "Layer scales are `layer_scale1.scale` against `layer_scale_1`, next to GroupNorm weights that mindcv calls "
    "`gamma`; four same-shaped vectors per block. timm's GELU set to the tanh one of MindSpore's nn.GELU, its "
    "final norm built as a GroupNorm like mindcv's and applied before the pooling as mindcv does (parameter-free).",
)


# ---------------------------------------------------------------------------------------------------- CrossViT
# timm:   pos_embed_B, cls_token_B, patch_embed.B.proj, blocks.K.{blocks.B.J.{norm1, attn.{qkv, proj}, norm2, mlp.*},
#         projs.B.{0 norm, 2 linear}, fusion.B.{norm1, attn.{wq, wk, wv, proj}}, revert_projs.B.{0, 2}}, norm.B, head.B.
# mindcv: pos_embed.B, cls_token.B, patch_embed.B.proj, the multi-scale blocks appended to a CellList: block 0 named
#         `0.*`, block K >= 1 `0.blocks.0.K.*`; each cross-attention layer one deeper (`fusion.B.0`); norm.B, head.B.
_CROSSVIT = {"image": 48, "patches": (12, 16), "dims": (32, 64), "depth": ((1, 2, 0), (1, 2, 0)), "heads": (2, 2)}


def _crossvit_torch() -> Any:
    from timm.models.crossvit import CrossVit
    from torch import nn

    model = CrossVit(
        img_size=_CROSSVIT["image"],
        img_scale=(1.0, 1.0),  # both branches see the input as it is (no resizing, which the packages do differently)
        patch_size=_CROSSVIT["patches"],
        embed_dim=_CROSSVIT["dims"],
        depth=_CROSSVIT["depth"],
        num_heads=_CROSSVIT["heads"],
        mlp_ratio=(3.0, 3.0, 1.0),
        num_classes=_CLASSES,
    )
    for name, module in model.named_modules():  # mindcv's blocks use MindSpore's LayerNorm epsilon (1e-7)
        if isinstance(module, nn.LayerNorm) and name.rpartition(".")[2] in ("norm1", "norm2"):
            module.eps = 1e-7
    return _tanh_gelu(model)  # and MindSpore's nn.GELU (parameter-free)


def _crossvit_mindspore() -> Any:
    from mindcv.models.crossvit import VisionTransformer

    return VisionTransformer(
        img_size=[_CROSSVIT["image"]] * 2,
        patch_size=list(_CROSSVIT["patches"]),
        embed_dim=list(_CROSSVIT["dims"]),
        depth=[list(d) for d in _CROSSVIT["depth"]],
        num_heads=list(_CROSSVIT["heads"]),
        mlp_ratio=[3, 3, 1],
        qkv_bias=True,
        num_classes=_CLASSES,
    )


def _crossvit_rename(name: str) -> str:
    token = re.fullmatch(r"(pos_embed|cls_token)_(\d)", name)
    if token:
        return f"{token[1]}.{token[2]}"
    block = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    if block is None:
        return name  # patch_embed, norm, head
    prefix = "0" if block[1] == "0" else f"0.blocks.0.{block[1]}"
    rest = re.sub(r"^fusion\.(\d+)\.", r"fusion.\1.0.", block[2])
    return f"{prefix}.{rest}"


CROSSVIT = RealPair(
    name="crossvit_timm_mindcv",
    family="hybrid-vision",
    direction="pt2ms",
    packages=("timm", "mindcv"),
    torch_model=_crossvit_torch,
    mindspore_model=_crossvit_mindspore,
    truth=lambda: mindspore_names(_crossvit_torch(), _crossvit_rename),
    inputs=images(_CROSSVIT["image"]),
    rtol=1e-4,
    atol=1e-4,
    swap=("0.fusion.0.0.attn.wq.weight", "0.fusion.0.0.attn.wk.weight"),
    notes="CrossViT (two branches of widths 32/64, patches 12/16 on 48x48, two multi-scale blocks). mindcv's file "
    "names the multi-scale blocks by CellList position (`0.*` for the first, `0.blocks.0.1.*` for the second, so "
    "`0.blocks.0.0` is a branch block of the first), its tokens `pos_embed.0` against timm's `pos_embed_0`. Both "
    "branches run at the input size (timm's img_scale 1, 1), as the packages resize differently. timm's GELU and "
    "its blocks' LayerNorm epsilon set to MindSpore's defaults that mindcv uses (parameter-free).",
)


# ---------------------------------------------------------------------------------------------------------- PiT
# timm:   pos_embed, cls_token, patch_embed.conv, transformers.S.{pool.{conv, fc} (S >= 1), blocks.J.{norm1,
#         attn.{qkv (fused), proj}, norm2, mlp.{fc1, fc2}}}, norm, head.
# mindcv: the stages are appended to a CellList: stage 0's blocks `0.blocks.J`, later stages' `0.blocks.S.blocks.J`
#         (so `0.blocks.1.norm1` is stage 0's second block and `0.blocks.1.blocks.0.norm1` stage 1's first); the
#         pooling layers between stages `0.{conv, fc}`, `1.{conv, fc}`; q, k, v apart.
_PIT = {"image": 64, "patch": 8, "stride": 4, "dims": (16, 16, 16), "depth": (1, 2, 1), "heads": (1, 2, 4)}


def _pit_torch() -> Any:
    from timm.models.pit import PoolingVisionTransformer

    model = PoolingVisionTransformer(
        img_size=_PIT["image"],
        patch_size=_PIT["patch"],
        stride=_PIT["stride"],
        base_dims=_PIT["dims"],
        depth=_PIT["depth"],
        heads=_PIT["heads"],
        mlp_ratio=4,
        num_classes=_CLASSES,
    )
    return _tanh_gelu(model)  # mindcv's blocks use MindSpore's nn.GELU (parameter-free)


def _pit_mindspore() -> Any:
    from mindcv.models.pit import PoolingTransformer

    return PoolingTransformer(
        image_size=_PIT["image"],
        patch_size=_PIT["patch"],
        stride=_PIT["stride"],
        base_dims=list(_PIT["dims"]),
        depth=list(_PIT["depth"]),
        heads=list(_PIT["heads"]),
        mlp_ratio=4,
        num_classes=_CLASSES,
    )


def _pit_truth() -> Truth:
    """{timm name: mindcv name} (MindSpore -> PyTorch)."""
    truth: Truth = {}
    for target, source in invert(mindspore_names(_pit_torch(), _pit_rename)).items():
        assert isinstance(source, str)
        fused = re.fullmatch(r"(.+\.attn)\.qkv\.(weight|bias)", source)
        if fused:
            parts = [f"{fused[1]}.{p}.{fused[2]}" for p in "qkv"]
            truth[target] = {"source": parts, "transform": [{"op": "concat", "axis": 0}]}
        else:
            truth[target] = source
    return truth


def _pit_rename(name: str) -> str:
    """timm's name (MindSpore leaves) -> mindcv's; a fused qkv keeps its name here (split by `_pit_truth`)."""
    pool = re.fullmatch(r"transformers\.(\d+)\.pool\.(.+)", name)
    if pool:
        return f"{int(pool[1]) - 1}.{pool[2]}"
    block = re.fullmatch(r"transformers\.(\d+)\.blocks\.(.+)", name)
    if block:
        return f"0.blocks.{block[2]}" if block[1] == "0" else f"0.blocks.{block[1]}.blocks.{block[2]}"
    return name  # pos_embed, cls_token, patch_embed, norm, head


PIT = RealPair(
    name="pit_mindcv_timm",
    family="hybrid-vision",
    direction="ms2pt",
    packages=("mindcv", "timm"),
    torch_model=_pit_torch,
    mindspore_model=_pit_mindspore,
    truth=_pit_truth,
    inputs=images(_PIT["image"]),
    rtol=1e-4,
    atol=1e-4,
    notes="PiT (pooling-based vision transformer: stages of 1, 2, 1 blocks, 1/2/4 heads of 16, depthwise-convolution "
    "pooling between stages, patch 8 stride 4 on 64x64). mindcv's file names its stages by CellList position: "
    "`0.blocks.1` is stage 0's second block while `0.blocks.1.blocks.0` is stage 1's first; its pooling layers are "
    "`0.*` and `1.*` where timm's are `transformers.1.pool` and `transformers.2.pool`. mindcv's separate q, k, v "
    "are timm's fused qkv (concatenated). timm's GELU set to the tanh one of MindSpore's nn.GELU (parameter-free).",
)


# ---------------------------------------------------------------------------------------------------- Visformer
# timm and mindcv: stem.{0 conv, 1 bn}, patch_embedS.{proj, norm}, pos_embedS, stageS.J.{norm1, attn.{qkv, proj},
#         norm2, mlp.{conv1, conv2, conv3}}, norm, head: the same names, BatchNorms with MindSpore's leaves. mindcv
#         counts four stages (the first empty), timm three.
_VISFORMER = {"image": 64, "stem": 16, "width": 48, "depth": (1, 1, 1), "heads": 3}


def _visformer_torch() -> Any:
    from timm.models.visformer import Visformer
    from torch import nn

    model = Visformer(  # visformer_tiny's settings, smaller
        img_size=_VISFORMER["image"],
        init_channels=_VISFORMER["stem"],
        embed_dim=_VISFORMER["width"],
        depth=_VISFORMER["depth"],
        num_heads=_VISFORMER["heads"],
        mlp_ratio=4.0,
        group=8,
        attn_stage="011",
        spatial_conv="100",
        norm_layer=nn.BatchNorm2d,
        conv_init=True,
        embed_norm=nn.BatchNorm2d,
        num_classes=_CLASSES,
    )
    return _tanh_gelu(model)  # mindcv uses MindSpore's nn.GELU (parameter-free)


def _visformer_mindspore() -> Any:
    from mindcv.models.visformer import Visformer

    return Visformer(
        img_size=_VISFORMER["image"],
        init_channels=_VISFORMER["stem"],
        embed_dim=_VISFORMER["width"],
        depth=[0, *_VISFORMER["depth"]],
        num_heads=[_VISFORMER["heads"]] * 4,
        mlp_ratio=4.0,
        group=8,
        attn_stage="0011",
        spatial_conv="1100",
        drop_path_rate=0.0,
        conv_init=True,
        num_classes=_CLASSES,
    )


VISFORMER = RealPair(
    name="visformer_timm_mindcv",
    family="hybrid-vision",
    direction="pt2ms",
    packages=("timm", "mindcv"),
    torch_model=_visformer_torch,
    mindspore_model=_visformer_mindspore,
    truth=lambda: mindspore_names(_visformer_torch(), lambda name: name),
    inputs=images(_VISFORMER["image"]),
    rtol=1e-4,
    atol=1e-4,
    notes="Visformer (Visformer-Tiny's layout at width 48, one block per stage: convolution-only first stage, "
    "attention in the other two, BatchNorm throughout, 64x64). mindcv keeps timm's names; only the BatchNorm "
    "leaves differ (a control pair with many same-shaped BatchNorms). timm's GELU set to the tanh one of "
    "MindSpore's nn.GELU (parameter-free).",
)

PAIRS = [EDGENEXT, CONVIT, POOLFORMER, CROSSVIT, PIT, VISFORMER]
