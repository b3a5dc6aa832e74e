"""Tiny model factories for `automap verify` runs of the catalogue (`tests.hostile.models:torch_linear`)."""

from __future__ import annotations

from typing import Any


def torch_linear() -> Any:
    """A PyTorch Linear(4, 2)."""
    import torch

    return torch.nn.Linear(4, 2)


def mindspore_dense() -> Any:
    """A MindSpore Dense(4, 2)."""
    import mindspore

    return mindspore.nn.Dense(4, 2)
