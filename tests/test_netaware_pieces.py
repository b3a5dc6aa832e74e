"""A model parameter made of several checkpoint tensors: experts stacked into one tensor, gate and up projections
joined, where the checkpoint keeps them apart (as a checkpoint saved before a package fused its experts does).

Network-aware inference must find where each checkpoint tensor lies in the parameter, load it there (on the side
of the reference network and on the side of the network being filled) and prove the mapping; without that, the
model would not fit its checkpoint at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.torch, pytest.mark.mindspore]

_EXPERTS, _HIDDEN, _FFN = 3, 8, 6


def _torch_fused() -> Any:
    """The installed package's model: experts stacked, each expert's gate and up projections joined."""
    import torch
    from torch import nn

    class Experts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate_up_proj = nn.Parameter(torch.zeros(_EXPERTS, 2 * _FFN, _HIDDEN))
            self.down_proj = nn.Parameter(torch.zeros(_EXPERTS, _HIDDEN, _FFN))

        def forward(self, x: Any) -> Any:
            out = 0
            for e in range(_EXPERTS):
                gate, up = (x @ self.gate_up_proj[e].T).chunk(2, dim=-1)
                out = out + (nn.functional.silu(gate) * up) @ self.down_proj[e].T
            return out

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(6, _HIDDEN)
            self.experts = Experts()
            self.head = nn.Linear(_HIDDEN, 3)

        def forward(self, x: Any) -> Any:
            return self.head(self.experts(self.embed(x)))

    return Net()


def _old_names_state(seed: int) -> dict[str, np.ndarray]:
    """A checkpoint of the same model saved before its experts were fused: `experts.N.w1/w2/w3` (gate, down, up)."""
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.4).astype(np.float32)

    state = {"embed.weight": weight(_HIDDEN, 6), "embed.bias": weight(_HIDDEN)}
    for e in range(_EXPERTS):
        state |= {
            f"experts.{e}.w1.weight": weight(_FFN, _HIDDEN),
            f"experts.{e}.w2.weight": weight(_HIDDEN, _FFN),
            f"experts.{e}.w3.weight": weight(_FFN, _HIDDEN),
        }
    return state | {"head.weight": weight(3, _HIDDEN), "head.bias": weight(3)}


def _mindspore_apart() -> Any:
    """The port: one layer per projection and expert."""
    from mindspore import nn, ops

    class Expert(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = nn.Dense(_HIDDEN, _FFN, has_bias=False)
            self.w2 = nn.Dense(_FFN, _HIDDEN, has_bias=False)
            self.w3 = nn.Dense(_HIDDEN, _FFN, has_bias=False)

        def construct(self, x: Any) -> Any:
            return self.w2(ops.silu(self.w1(x)) * self.w3(x))

    class Net(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Dense(6, _HIDDEN)
            self.experts = nn.CellList([Expert() for _ in range(_EXPERTS)])
            self.head = nn.Dense(_HIDDEN, 3)

        def construct(self, x: Any) -> Any:
            y = self.embed(x)
            out = self.experts[0](y)
            for e in range(1, _EXPERTS):
                out = out + self.experts[e](y)
            return self.head(out)

    return Net()


def _files(tmp_path: Path, ms_seed: int) -> tuple[Path, Path]:
    """(the torch checkpoint with the experts apart, a MindSpore checkpoint of the port)."""
    import mindspore
    import torch

    torch_path, ms_path = tmp_path / "old-names.pth", tmp_path / "port.ckpt"
    torch.save({k: torch.from_numpy(v) for k, v in _old_names_state(0).items()}, torch_path)
    net = _mindspore_apart()
    for name, value in _old_names_state(ms_seed).items():
        net.parameters_dict()[name].set_data(mindspore.Tensor(value))
    mindspore.save_checkpoint(net, str(ms_path))
    return torch_path, ms_path


@pytest.mark.parametrize("direction", ["pytorch->mindspore", "mindspore->pytorch"])
def test_a_parameter_stacked_from_checkpoint_tensors_is_assembled_and_proven(
    tmp_path: Path, direction: str, mindspore_cpu: Any
) -> None:
    from automap.netaware import infer_with_networks

    torch_path, ms_path = _files(tmp_path, ms_seed=1)
    source, target = (torch_path, ms_path) if direction == "pytorch->mindspore" else (ms_path, torch_path)
    result = infer_with_networks(
        source, target, torch_model=_torch_fused(), mindspore_model=_mindspore_apart(), inputs=["4x6:float32"]
    )
    lines = "\n".join(result.lines())
    assert result.proven, lines
    assert {p.target: p.source for p in result.mapping.pairs} == {n: n for n in _old_names_state(0)}
    assert all(p.confidence >= 0.99 for p in result.mapping.pairs), lines
    # where each piece went, shown; a piece put in the wrong place would make the nets disagree on these names
    assert (
        "experts.0.w1.weight -> experts.gate_up_proj[0, 0:6], experts.0.w3.weight -> experts.gate_up_proj[0, 6:12]"
        in lines
    ), lines
