"""Diffusion models: diffusers against mindone.diffusers (MindSpore), the diffusers version mindone ports.

mindone 0.5.0 ports diffusers 0.35.1 and imports transformers 4.57.1 (through mindone.transformers), which need
huggingface_hub < 1; the environment's transformers 5 needs huggingface_hub 2. These pairs therefore run with
their own package folder (`site-mindone` in the environment: transformers 4.57.1, tokenizers 0.22.1,
huggingface_hub 0.36.0, diffusers 0.35.1) first on sys.path; see env.sh.

mindone keeps diffusers' module names exactly (its documented convention: diffusers checkpoints load as they
are), so the truth is the identity on diffusers' own parameter names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth

_SITE = "site-mindone"
_BATCH = 2


def _mindone_setup() -> None:
    from benchmarks.realports._setup import mint_cpu_fallbacks

    mint_cpu_fallbacks()


def _identity_truth(build: Any) -> Truth:
    """{name: name} over the names diffusers' model has (mindone's documented convention)."""
    return {name: name for name in build().state_dict()}


# -------------------------------------------------------------------------------------- UNet (SD-style)
_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}


def _unet_torch() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**_UNET)


def _unet_mindspore() -> Any:
    from mindone.diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**_UNET)


def _unet_inputs(rng: np.random.Generator) -> Inputs:
    sample = rng.standard_normal((_BATCH, 4, 8, 8)).astype(np.float32)
    timesteps = np.array([3, 17], dtype=np.int64)
    context = rng.standard_normal((_BATCH, 4, _UNET["cross_attention_dim"])).astype(np.float32)
    return sample, timesteps, context


def _unet_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    sample, timesteps, context = (torch.from_numpy(x) for x in inputs)
    with torch.no_grad():
        return [model(sample, timesteps, encoder_hidden_states=context).sample.numpy()]


def _unet_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    sample, timesteps, context = inputs
    out = net(
        mindspore.Tensor(sample),
        mindspore.Tensor(timesteps.astype(np.int32)),
        encoder_hidden_states=mindspore.Tensor(context),
        return_dict=False,
    )
    return [out[0].asnumpy()]


UNET = RealPair(
    name="unet2d_diffusers_mindone",
    family="diffusion",
    direction="pt2ms",
    packages=("diffusers", "mindone"),
    torch_model=_unet_torch,
    mindspore_model=_unet_mindspore,
    truth=lambda: _identity_truth(_unet_torch),
    inputs=_unet_inputs,
    torch_forward=_unet_torch_forward,
    mindspore_forward=_unet_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    site=_SITE,
    setup=_mindone_setup,
    notes="Stable-Diffusion-style UNet2DConditionModel (2 levels, widths 32/64, cross-attention width 32). "
    "Identical names on both sides.",
)


# -------------------------------------------------------------------------------------------------- DiT
_DIT = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 2,
    "sample_size": 8,
    "patch_size": 2,
    "num_embeds_ada_norm": 10,
    "norm_num_groups": 8,
}


def _dit_torch() -> Any:
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(**_DIT)


def _dit_mindspore() -> Any:
    from mindone.diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(**_DIT)


def _dit_inputs(rng: np.random.Generator) -> Inputs:
    sample = rng.standard_normal((_BATCH, 4, 8, 8)).astype(np.float32)
    return sample, np.array([5, 40], dtype=np.int64), np.array([1, 7], dtype=np.int64)


def _dit_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    sample, timesteps, labels = (torch.from_numpy(x) for x in inputs)
    with torch.no_grad():
        return [model(sample, timestep=timesteps, class_labels=labels).sample.numpy()]


def _dit_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    import mindspore

    sample, timesteps, labels = inputs
    out = net(
        mindspore.Tensor(sample),
        timestep=mindspore.Tensor(timesteps.astype(np.int32)),
        class_labels=mindspore.Tensor(labels.astype(np.int32)),
        return_dict=False,
    )
    return [out[0].asnumpy()]


DIT = RealPair(
    name="dit_mindone_diffusers",
    family="diffusion",
    direction="ms2pt",
    packages=("mindone", "diffusers"),
    torch_model=_dit_torch,
    mindspore_model=_dit_mindspore,
    truth=lambda: _identity_truth(_dit_torch),
    inputs=_dit_inputs,
    torch_forward=_dit_torch_forward,
    mindspore_forward=_dit_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    site=_SITE,
    setup=_mindone_setup,
    notes="DiT (DiTTransformer2DModel: 2 layers, 2 heads of 16, patch 2 on 8x8 latents, adaLN-Zero, 10 classes). "
    "Identical names on both sides.",
)

PAIRS = [UNET, DIT]
