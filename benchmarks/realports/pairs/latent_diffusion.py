"""Latent-diffusion parts beyond the denoiser (VAE, ControlNet) and newer denoisers (SD3's MMDiT, PixArt):
diffusers against mindone.diffusers, the diffusers version mindone 0.5.0 ports.

As in `diffusion.py`, these pairs run with the environment's `site-mindone` folder first on sys.path (transformers
4.57.1, huggingface_hub 0.36.0, diffusers 0.35.1), and mindone keeps diffusers' module names exactly (its documented
convention: diffusers checkpoints load as they are), so each truth is the identity on diffusers' parameter names.
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


def _same_names(build: Any) -> Truth:
    """{name: name} over the names diffusers' model has (mindone's documented convention)."""
    return {name: name for name in build().state_dict()}


def _torch(*arrays: np.ndarray) -> list[Any]:
    import torch

    return [torch.from_numpy(x) for x in arrays]


def _mindspore(*arrays: np.ndarray) -> list[Any]:
    import mindspore

    return [mindspore.Tensor(x.astype(np.int32) if x.dtype == np.int64 else x) for x in arrays]


def _timesteps() -> np.ndarray:
    return np.array([3, 17], dtype=np.int64)


# ------------------------------------------------------------------------------------------------ AutoencoderKL
_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 16,
}


def _vae_torch() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**_VAE)


def _vae_mindspore() -> Any:
    from mindone.diffusers import AutoencoderKL

    return AutoencoderKL(**_VAE)


def _vae_inputs(rng: np.random.Generator) -> Inputs:
    return (rng.standard_normal((_BATCH, 3, 16, 16)).astype(np.float32),)


def _vae_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    """The posterior's mean and log-variance (encoder) and the reconstruction from the mean (decoder)."""
    import torch

    with torch.no_grad():
        posterior = model.encode(*_torch(*inputs)).latent_dist
        decoded = model.decode(posterior.mean).sample
    return [posterior.mean.numpy(), posterior.logvar.numpy(), decoded.numpy()]


def _vae_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    """As `_vae_torch_forward`; mindone's encoder returns the posterior's parameters, split by its `diag_gauss_dist`."""
    from mindspore import ops

    moments = net.encode(*_mindspore(*inputs))[0]
    mean, logvar = ops.chunk(moments, 2, axis=1)
    decoded = net.decode(mean)[0]
    return [mean.asnumpy(), ops.clamp(logvar, -30.0, 20.0).asnumpy(), decoded.asnumpy()]


VAE = RealPair(
    name="vae_kl_mindone_diffusers",
    family="diffusion",
    direction="ms2pt",
    packages=("mindone", "diffusers"),
    torch_model=_vae_torch,
    mindspore_model=_vae_mindspore,
    truth=lambda: _same_names(_vae_torch),
    inputs=_vae_inputs,
    torch_forward=_vae_torch_forward,
    mindspore_forward=_vae_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    site=_SITE,
    setup=_mindone_setup,
    notes="Stable-Diffusion-style AutoencoderKL (2 levels, widths 16/32, 4 latent channels, mid-block attention). "
    "Identical names on both sides; encoder (posterior mean and log-variance) and decoder (from the mean) compared.",
)


# -------------------------------------------------------------------------------------------------- ControlNet
_CONTROLNET = {
    "in_channels": 4,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
    "conditioning_embedding_out_channels": (16, 32),
}


def _controlnet_torch() -> Any:
    from diffusers import ControlNetModel

    return ControlNetModel(**_CONTROLNET)


def _controlnet_mindspore() -> Any:
    from mindone.diffusers import ControlNetModel

    return ControlNetModel(**_CONTROLNET)


def _controlnet_inputs(rng: np.random.Generator) -> Inputs:
    sample = rng.standard_normal((_BATCH, 4, 8, 8)).astype(np.float32)
    context = rng.standard_normal((_BATCH, 4, _CONTROLNET["cross_attention_dim"])).astype(np.float32)
    condition = rng.standard_normal((_BATCH, 3, 16, 16)).astype(np.float32)  # the control image, at twice the latents
    return sample, _timesteps(), context, condition


def _controlnet_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    """Every residual the ControlNet adds to a UNet: the down blocks' and the mid block's."""
    import torch

    sample, timesteps, context, condition = _torch(*inputs)
    with torch.no_grad():
        out = model(sample, timesteps, encoder_hidden_states=context, controlnet_cond=condition, return_dict=False)
    return [x.numpy() for x in (*out[0], out[1])]


def _controlnet_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    sample, timesteps, context, condition = _mindspore(*inputs)
    out = net(sample, timesteps, encoder_hidden_states=context, controlnet_cond=condition, return_dict=False)
    return [x.asnumpy() for x in (*out[0], out[1])]


CONTROLNET = RealPair(
    name="controlnet_diffusers_mindone",
    family="diffusion",
    direction="pt2ms",
    packages=("diffusers", "mindone"),
    torch_model=_controlnet_torch,
    mindspore_model=_controlnet_mindspore,
    truth=lambda: _same_names(_controlnet_torch),
    inputs=_controlnet_inputs,
    torch_forward=_controlnet_torch_forward,
    mindspore_forward=_controlnet_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    site=_SITE,
    setup=_mindone_setup,
    notes="ControlNetModel for an SD-style UNet (2 levels, widths 32/64, cross-attention width 32, conditioning "
    "embedding 16/32): the encoder half of a UNet plus zero convolutions (`controlnet_down_blocks.N`, "
    "`controlnet_mid_block`), many of one shape. Identical names on both sides; all residuals compared.",
)


# ------------------------------------------------------------------------------------------------ SD3 (MMDiT)
_SD3 = {
    "sample_size": 8,
    "patch_size": 2,
    "in_channels": 4,
    "num_layers": 2,
    "attention_head_dim": 8,
    "num_attention_heads": 2,
    "joint_attention_dim": 16,
    "caption_projection_dim": 16,
    "pooled_projection_dim": 12,
    "out_channels": 4,
    "pos_embed_max_size": 8,
}


def _sd3_torch() -> Any:
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(**_SD3)


def _sd3_mindspore() -> Any:
    from mindone.diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(**_SD3)


def _sd3_inputs(rng: np.random.Generator) -> Inputs:
    latents = rng.standard_normal((_BATCH, 4, 8, 8)).astype(np.float32)
    text = rng.standard_normal((_BATCH, 5, _SD3["joint_attention_dim"])).astype(np.float32)
    pooled = rng.standard_normal((_BATCH, _SD3["pooled_projection_dim"])).astype(np.float32)
    return latents, text, pooled, _timesteps()


def _sd3_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    latents, text, pooled, timesteps = _torch(*inputs)
    with torch.no_grad():
        out = model(latents, encoder_hidden_states=text, pooled_projections=pooled, timestep=timesteps)
    return [out.sample.numpy()]


def _sd3_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    latents, text, pooled, timesteps = _mindspore(*inputs)
    out = net(latents, encoder_hidden_states=text, pooled_projections=pooled, timestep=timesteps, return_dict=False)
    return [out[0].asnumpy()]


SD3 = RealPair(
    name="sd3_mmdit_mindone_diffusers",
    family="diffusion",
    direction="ms2pt",
    packages=("mindone", "diffusers"),
    torch_model=_sd3_torch,
    mindspore_model=_sd3_mindspore,
    truth=lambda: _same_names(_sd3_torch),
    inputs=_sd3_inputs,
    torch_forward=_sd3_torch_forward,
    mindspore_forward=_sd3_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    site=_SITE,
    setup=_mindone_setup,
    notes="SD3Transformer2DModel (MMDiT: 2 joint blocks of 2 heads of 8, patch 2 on 8x8 latents, text width 16): two "
    "token streams with twin projections (`attn.to_q` / `attn.add_q_proj`, `norm1` / `norm1_context`, `ff` / "
    "`ff_context`), all of one shape. Identical names on both sides.",
)


# ------------------------------------------------------------------------------------------------------ PixArt
_PIXART = {
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 2,
    "sample_size": 8,
    "patch_size": 2,
    "cross_attention_dim": 16,
    "caption_channels": 12,
    "use_additional_conditions": False,
}


def _pixart_torch() -> Any:
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(**_PIXART)


def _pixart_mindspore() -> Any:
    from mindone.diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(**_PIXART)


def _pixart_inputs(rng: np.random.Generator) -> Inputs:
    latents = rng.standard_normal((_BATCH, 4, 8, 8)).astype(np.float32)
    caption = rng.standard_normal((_BATCH, 5, _PIXART["caption_channels"])).astype(np.float32)
    return latents, caption, _timesteps()


def _pixart_torch_forward(model: Any, inputs: Inputs) -> list[np.ndarray]:
    import torch

    latents, caption, timesteps = _torch(*inputs)
    conditions = {"resolution": None, "aspect_ratio": None}
    with torch.no_grad():
        out = model(latents, encoder_hidden_states=caption, timestep=timesteps, added_cond_kwargs=conditions)
    return [out.sample.numpy()]


def _pixart_mindspore_forward(net: Any, inputs: Inputs) -> list[np.ndarray]:
    latents, caption, timesteps = _mindspore(*inputs)
    conditions = {"resolution": None, "aspect_ratio": None}
    out = net(
        latents, encoder_hidden_states=caption, timestep=timesteps, added_cond_kwargs=conditions, return_dict=False
    )
    return [out[0].asnumpy()]


PIXART = RealPair(
    name="pixart_diffusers_mindone",
    family="diffusion",
    direction="pt2ms",
    packages=("diffusers", "mindone"),
    torch_model=_pixart_torch,
    mindspore_model=_pixart_mindspore,
    truth=lambda: _same_names(_pixart_torch),
    inputs=_pixart_inputs,
    torch_forward=_pixart_torch_forward,
    mindspore_forward=_pixart_mindspore_forward,
    torch_format="safetensors",
    mindspore_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    site=_SITE,
    setup=_mindone_setup,
    notes="PixArt-alpha transformer (2 blocks of 2 heads of 8, patch 2 on 8x8 latents, caption width 12, "
    "adaLN-single): self- and cross-attention per block (`attn1`, `attn2`, same shapes), a shared `adaln_single` "
    "and per-block `scale_shift_table`. Identical names on both sides.",
)

PAIRS = [VAE, CONTROLNET, SD3, PIXART]
