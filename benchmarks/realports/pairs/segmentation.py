"""Promptable segmentation (Segment Anything): HF transformers against mindformers.

mindformers ports Meta's original SAM code and keeps its names (`blocks`, `norm1`, `neck.0..3`, `pe_layer`,
`mask_downscaling.N`, `output_upscaling.N`, MLPs as `layers.0..2`); HF renamed nearly every container (`layers`,
`layer_norm1`, `neck.conv1`, `shared_image_embedding`, `mask_embed.convN`, `upscale_conv1`, MLPs as `proj_in`,
`layers.0`, `proj_out`), so the same word often names different tensors on the two sides.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth, layernorm, weight_bias

_SAM = {"image": 64, "patch": 8, "width": 32, "depth": 2, "heads": 2, "window": 4, "out": 16, "mask_channels": 4}
_DECODER = {"width": 16, "mlp": 32, "heads": 2, "depth": 2, "masks": 4}
_BATCH = 2


def _hf_sam() -> Any:
    from torch import nn
    from transformers import SamConfig, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, SamVisionConfig

    tanh = "gelu_pytorch_tanh"  # mindformers' layers use MindSpore's nn.GELU, the tanh approximation
    vision = SamVisionConfig(
        hidden_size=_SAM["width"],
        num_hidden_layers=_SAM["depth"],
        num_attention_heads=_SAM["heads"],
        image_size=_SAM["image"],
        patch_size=_SAM["patch"],
        output_channels=_SAM["out"],
        window_size=_SAM["window"],
        global_attn_indexes=[1],
        mlp_dim=4 * _SAM["width"],
        num_pos_feats=_DECODER["width"] // 2,
        layer_norm_eps=1e-6,
        hidden_act=tanh,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=_DECODER["width"],
        image_size=_SAM["image"],
        patch_size=_SAM["patch"],
        mask_input_channels=_SAM["mask_channels"],
        hidden_act=tanh,
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=_DECODER["width"],
        mlp_dim=_DECODER["mlp"],
        num_attention_heads=_DECODER["heads"],
        num_hidden_layers=_DECODER["depth"],
        iou_head_hidden_dim=_DECODER["width"],
    )
    model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder))
    model.mask_decoder.activation = nn.GELU(approximate="tanh")  # the upscaling's GELU (parameter-free)
    return model


def _mindformers_sam() -> Any:
    from mindformers.models.sam import SamConfig, SamModel
    from mindformers.tools.register import MindFormerConfig

    from benchmarks.realports._setup import mindformers_on_cpu

    mindformers_on_cpu()

    def part(network: str, config: str, **settings: Any) -> Any:  # how mindformers' SAM builds its three parts
        return MindFormerConfig(arch={"type": network}, model_config={"type": config, **settings})

    float32 = {"compute_dtype": "float32"}
    image_encoder = part(
        "SamImageEncoder",
        "ImageEncoderConfig",
        img_size=_SAM["image"],
        patch_size=_SAM["patch"],
        embed_dim=_SAM["width"],
        depth=_SAM["depth"],
        num_heads=_SAM["heads"],
        out_chans=_SAM["out"],
        window_size=_SAM["window"],
        global_attn_indexes=(1,),
        layer_norm_eps=1e-6,
        **float32,
    )
    grid = _SAM["image"] // _SAM["patch"]
    prompt_encoder = part(
        "SamPromptEncoder",
        "PromptEncoderConfig",
        prompt_embed_dim=_DECODER["width"],
        image_embedding_size=(grid, grid),
        input_image_size=(_SAM["image"], _SAM["image"]),
        mask_in_chans=_SAM["mask_channels"],
        **float32,
    )
    mask_decoder = part(
        "SamMaskDecoder",
        "MaskDecoderConfig",
        decoder_embed_dim=_DECODER["width"],
        decoder_mlp_dim=_DECODER["mlp"],
        decoder_num_heads=_DECODER["heads"],
        decoder_depth=_DECODER["depth"],
        transformer_dim=_DECODER["width"],
        iou_head_hidden_dim=_DECODER["width"],
        layer_norm_eps=1e-6,
        **float32,
    )
    return SamModel(SamConfig(image_encoder=image_encoder, prompt_config=prompt_encoder, decoder_config=mask_decoder))


def _sam_truth() -> Truth:
    """{mindformers name: HF name} (PyTorch -> MindSpore)."""
    ms, hf = "image_encoder", "vision_encoder"
    truth: Truth = {
        f"{ms}.pos_embed": f"{hf}.pos_embed",
        **weight_bias(f"{ms}.patch_embed.proj", f"{hf}.patch_embed.projection"),
    }
    for n in range(_SAM["depth"]):
        block, layer = f"{ms}.blocks.{n}", f"{hf}.layers.{n}"
        truth.update(layernorm(f"{block}.norm1", f"{layer}.layer_norm1"))
        for tensor in ("rel_pos_h", "rel_pos_w"):
            truth[f"{block}.attn.{tensor}"] = f"{layer}.attn.{tensor}"
        for linear in ("attn.qkv", "attn.proj", "mlp.lin1", "mlp.lin2"):
            truth.update(weight_bias(f"{block}.{linear}", f"{layer}.{linear}"))
        truth.update(layernorm(f"{block}.norm2", f"{layer}.layer_norm2"))
    truth[f"{ms}.neck.0.weight"] = f"{hf}.neck.conv1.weight"
    truth.update(weight_bias(f"{ms}.neck.1", f"{hf}.neck.layer_norm1"))  # LayerNorm2d: weight/bias on both sides
    truth[f"{ms}.neck.2.weight"] = f"{hf}.neck.conv2.weight"
    truth.update(weight_bias(f"{ms}.neck.3", f"{hf}.neck.layer_norm2"))

    ms, hf = "prompt_encoder", "prompt_encoder"
    truth[f"{ms}.pe_layer.positional_encoding_gaussian_matrix"] = "shared_image_embedding.positional_embedding"
    for k in range(4):
        truth[f"{ms}.point_embeddings.{k}.embedding_table"] = f"{hf}.point_embed.{k}.weight"
    truth[f"{ms}.not_a_point_embed.embedding_table"] = f"{hf}.not_a_point_embed.weight"
    for index, layer in ((0, "conv1"), (1, "layer_norm1"), (3, "conv2"), (4, "layer_norm2"), (6, "conv3")):
        truth.update(weight_bias(f"{ms}.mask_downscaling.{index}", f"{hf}.mask_embed.{layer}"))
    truth[f"{ms}.no_mask_embed.embedding_table"] = f"{hf}.no_mask_embed.weight"

    ms = hf = "mask_decoder"
    attentions = ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
    for n in range(_DECODER["depth"]):
        layer = f"transformer.layers.{n}"
        for attention in attentions:
            for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
                truth.update(
                    weight_bias(f"{ms}.{layer}.{attention}.{projection}", f"{hf}.{layer}.{attention}.{projection}")
                )
        for norm in range(1, 5):
            truth.update(layernorm(f"{ms}.{layer}.norm{norm}", f"{hf}.{layer}.layer_norm{norm}"))
        for linear in ("lin1", "lin2"):
            truth.update(weight_bias(f"{ms}.{layer}.mlp.{linear}", f"{hf}.{layer}.mlp.{linear}"))
    final = "transformer.final_attn_token_to_image"
    for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
        truth.update(weight_bias(f"{ms}.{final}.{projection}", f"{hf}.{final}.{projection}"))
    truth.update(layernorm(f"{ms}.transformer.norm_final_attn", f"{hf}.transformer.layer_norm_final_attn"))
    truth[f"{ms}.iou_token.embedding_table"] = f"{hf}.iou_token.weight"
    truth[f"{ms}.mask_tokens.embedding_table"] = f"{hf}.mask_tokens.weight"
    for index, layer in ((0, "upscale_conv1"), (1, "upscale_layer_norm"), (3, "upscale_conv2")):
        truth.update(weight_bias(f"{ms}.output_upscaling.{index}", f"{hf}.{layer}"))
    heads = [f"output_hypernetworks_mlps.{k}" for k in range(_DECODER["masks"])] + ["iou_prediction_head"]
    for head in heads:  # original: layers.0..2; HF: proj_in, layers.0, proj_out
        for index, layer in ((0, "proj_in"), (1, "layers.0"), (2, "proj_out")):
            truth.update(weight_bias(f"{ms}.{head}.layers.{index}", f"{hf}.{head}.{layer}"))
    return truth


def _sam_inputs(rng: np.random.Generator) -> Inputs:
    size = _SAM["image"]
    image = rng.standard_normal((_BATCH, 3, size, size)).astype(np.float32)
    points = rng.uniform(0, size, (_BATCH, 1, 2, 2)).astype(np.float32)  # [batch, prompts, points, xy]
    labels = np.array([[[1, 0]], [[1, 1]]], dtype=np.int64)  # foreground / background points
    masks = rng.standard_normal((_BATCH, 1, 4 * size // _SAM["patch"], 4 * size // _SAM["patch"])).astype(np.float32)
    return image, points, labels, masks


def _hf_sam_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    """Masks and their predicted quality from two points, without and with a mask prompt."""
    import torch

    image, points, labels, masks = (torch.from_numpy(x) for x in inputs)
    outputs = []
    with torch.no_grad():
        for mask in (None, masks):
            out = model(pixel_values=image, input_points=points, input_labels=labels, input_masks=mask)
            outputs += [out.pred_masks[:, 0].numpy(), out.iou_scores[:, 0].numpy()]
    return outputs


def _mindformers_sam_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    """As `_hf_sam_forward`, through the three parts as mindformers' SamModel calls them, one image at a time as
    the original code does (its mask decoder repeats one image's embedding for each prompt; its own construct then
    resizes the masks to the input image, which HF leaves to its processor)."""
    import mindspore

    image, points, labels, masks = inputs
    outputs: list[list[np.ndarray]] = [[], [], [], []]
    for i in range(len(image)):
        features = net.image_encoder(mindspore.Tensor(image[i : i + 1]))
        coords, point_labels = mindspore.Tensor(points[i]), mindspore.Tensor(labels[i].astype(np.int32))
        for m, mask in enumerate((None, mindspore.Tensor(masks[i : i + 1]))):
            sparse, dense = net.prompt_encoder(
                point_coords=coords, point_labels=point_labels, boxes=None, mask_inputs=mask
            )
            low_res, quality = net.mask_decoder(
                image_embeddings=features,
                image_pe=net.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
            outputs[2 * m].append(low_res.asnumpy())
            outputs[2 * m + 1].append(quality.asnumpy())
    return [np.concatenate(parts) for parts in outputs]


SAM = RealPair(
    name="sam_hf_mindformers",
    family="segmentation",
    direction="pt2ms",
    packages=("transformers", "mindformers"),
    torch_model=_hf_sam,
    mindspore_model=_mindformers_sam,
    truth=_sam_truth,
    inputs=_sam_inputs,
    torch_forward=_hf_sam_forward,
    mindspore_forward=_mindformers_sam_forward,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    # the MLP layers whose numbering the two packages shift (the relative position tables barely move these outputs)
    swap=(
        "mask_decoder.output_hypernetworks_mlps.1.layers.0.weight",
        "mask_decoder.output_hypernetworks_mlps.1.layers.1.weight",
    ),
    notes="Segment Anything (ViT image encoder of 2 blocks, width 32, windowed attention with relative positions, "
    "patch 8 on 64x64; prompt encoder and two-way mask decoder of width 16). HF renamed Meta's containers (see the "
    "module docstring): `layers.0` of an HF MLP is the original's `layers.1`, HF's `layer_norm1..4` are `norm1..4`, "
    "embeddings are MindSpore `embedding_table`s. Two point prompts, run without and with a mask prompt so that "
    "both the mask embedding and `no_mask_embed` are exercised. HF's GELUs set to the tanh approximation of "
    "MindSpore's nn.GELU that mindformers uses (config option and the mask decoder's activation, parameter-free). "
    "mindformers creates the prompt encoder's random Gaussian matrix in float16 (hard-coded; its file stores it so) "
    "and projects point coordinates with it in float16: the outputs' relative difference (about 6e-4) is that "
    "rounding.",
)

PAIRS = [SAM]
