"""Parameter-free settings that make a PyTorch network compute what its MindSpore port computes.

Ports differ in ways that hold no weight (how a strided convolution pads, which GELU, a norm's epsilon); the
proof needs both networks to compute the same function, so the PyTorch side is set the port's way. None of this
changes a parameter or a name.
"""

from __future__ import annotations

from typing import Any


def like_mindspore_same_padding(model: Any, *, depthwise_only: bool, batchnorm_eps: float | None = None) -> Any:
    """Make torchvision's strided convolutions pad the way mindcv's `pad_mode="same"` ones do.

    MindSpore's "same" padding is TensorFlow's: for a strided convolution it pads less at the top/left than at the
    bottom/right, where torchvision pads both sides alike, so the two ports compute shifted windows. A forward
    pre-hook pads each strided convolution's input TensorFlow's way (and the convolution itself no longer pads):
    no parameter changes. `batchnorm_eps` sets torchvision's BatchNorm epsilon to mindcv's where they differ.
    """
    import math

    import torch
    from torch import nn

    def pad_same(conv: nn.Conv2d, args: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        x = args[0]
        pads = []
        for size, kernel, stride, dilation in zip(
            reversed(x.shape[-2:]),
            reversed(conv.kernel_size),
            reversed(conv.stride),
            reversed(conv.dilation),
            strict=True,
        ):
            total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return (nn.functional.pad(x, pads),)

    for module in model.modules():
        if isinstance(module, nn.Conv2d) and max(module.stride) > 1 and (module.groups > 1 or not depthwise_only):
            module.padding = (0, 0)
            module.register_forward_pre_hook(pad_same)
        if batchnorm_eps is not None and isinstance(module, nn.BatchNorm2d):
            module.eps = batchnorm_eps
    return model


def mindspore_gelu_and_layernorm(model: Any, *, layernorm_eps: float | None = None) -> Any:
    """MindSpore's `nn.GELU` (the tanh approximation by default) for every `act` GELU; `layernorm_eps` for every
    LayerNorm when given (MindSpore's `nn.LayerNorm` defaults to 1e-7)."""
    from torch import nn

    for module in model.modules():
        if isinstance(getattr(module, "act", None), nn.GELU):
            module.act = nn.GELU(approximate="tanh")
        if layernorm_eps is not None and isinstance(module, nn.LayerNorm):
            module.eps = layernorm_eps
    return model
