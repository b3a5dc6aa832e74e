"""The per-parameter proof where two ports differ in parameter-free code: a norm applied before the pool in one
and after it in the other cannot be compared in place, so it is checked on its function (fed its source norm's
input), and that counts only as the one norm of its kind not confirmed in place, with every source norm of its kind
read. Norms that read each other's weights are placed by the input each got in the teacher-forced run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from automap.records import Endpoint, Match, NameMapping
from tests._source_nets import imported, save_checkpoints

pytestmark = [pytest.mark.torch, pytest.mark.mindspore]

NETS = '''
"""PyTorch normalises before pooling, the MindSpore port after (as PoolFormer's ports of timm and mindcv do)."""
import numpy as np


def torch_model():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 1)
            self.norm_a = nn.GroupNorm(1, 8)
            self.mix = nn.Conv2d(8, 8, 1)
            self.norm_b = nn.GroupNorm(1, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            x = self.mix(self.norm_a(self.embed(x)))
            return self.head(self.norm_b(x).mean((2, 3)))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape) * 0.3)
    return net


def mindspore_model(eps=1e-5):
    from mindspore import nn, ops

    class Pool(nn.Cell):
        def construct(self, x):
            return ops.mean(x, (2, 3), keep_dims=True)

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 1, has_bias=True)
            self.norm1 = nn.GroupNorm(1, 8, eps=1e-5)
            self.mix = nn.Conv2d(8, 8, 1, has_bias=True)
            self.pool = Pool()
            self.norm2 = nn.GroupNorm(1, 8, eps=eps)
            self.head = nn.Dense(8, 3)

        def construct(self, x):
            x = self.mix(self.norm1(self.embed(x)))
            return self.head(self.norm2(self.pool(x)).reshape(x.shape[0], 8))

    return Net()


def mindspore_model_other_norm():
    """The norm after the pool computes something else too (another epsilon): its function check must fail."""
    return mindspore_model(eps=0.5)
'''

TRUTH = {
    "embed.weight": "embed.weight",
    "embed.bias": "embed.bias",
    "norm1.gamma": "norm_a.weight",
    "norm1.beta": "norm_a.bias",
    "mix.weight": "mix.weight",
    "mix.bias": "mix.bias",
    "norm2.gamma": "norm_b.weight",
    "norm2.beta": "norm_b.bias",
    "head.weight": "head.weight",
    "head.bias": "head.bias",
}


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    with imported(tmp_path_factory.mktemp("models"), "na_pool_nets", NETS) as module:
        yield module


@pytest.fixture
def checkpoints(nets: ModuleType, tmp_path: Path, mindspore_cpu) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    return save_checkpoints(nets, tmp_path)


def _mapping(torch_path: Path, ms_path: Path, truth: dict[str, str]) -> NameMapping:
    from automap import load_checkpoint

    source, target = load_checkpoint(torch_path), load_checkpoint(ms_path)
    pairs = tuple(
        Match(t, s, 1.0, labels={"decided_by": "names and structure"}) for t, s in truth.items() if t in target.names
    )
    return NameMapping(
        Endpoint(str(torch_path), "pytorch", len(source)), Endpoint(str(ms_path), "mindspore", len(target)), pairs
    )


def _check(nets: ModuleType, checkpoints: tuple[Path, Path], truth: dict[str, str], model: object):  # type: ignore[no-untyped-def]
    from automap.netaware import check_with_networks

    torch_path, ms_path = checkpoints
    return check_with_networks(
        _mapping(torch_path, ms_path, truth), torch_path, ms_path, torch_model=nets.torch_model(),
        mindspore_model=model, inputs=["2x3x6x6:float32"],
    )  # fmt: skip


def test_a_norm_after_a_pool_is_confirmed_on_its_function(nets: ModuleType, checkpoints: tuple[Path, Path]) -> None:
    result = _check(nets, checkpoints, TRUTH, nets.mindspore_model())
    assert not result.proven  # the ports pool at different places
    assert result.confirmed_per_parameter, result.lines()
    proof = result.per_parameter
    assert proof is not None
    assert sorted(proof.confirmed) == sorted(TRUTH)
    assert sorted(proof.by_function) == ["norm2.beta", "norm2.gamma"]
    assert proof.free_difference == "pool"
    text = "\n".join(result.lines())
    assert f"all {len(TRUTH)} parameters confirmed" in text and "parameter-free module MindSpore 'pool'" in text
    norm2 = next(p for p in result.mapping.pairs if p.target == "norm2.gamma")
    assert norm2.labels["proof"].startswith("confirmed on its layer's function")
    norm1 = next(p for p in result.mapping.pairs if p.target == "norm1.gamma")
    assert norm1.labels["proof"].startswith("confirmed in its own module")


def test_a_norm_that_computes_otherwise_is_not_confirmed_on_its_function(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    result = _check(nets, checkpoints, TRUTH, nets.mindspore_model_other_norm())
    assert not result.confirmed_per_parameter
    proof = result.per_parameter
    assert proof is not None and not proof.by_function
    assert "norm2.gamma" not in proof.confirmed
    assert "norm1.gamma" in proof.confirmed  # in place, before the difference


def test_a_norm_is_not_confirmed_on_its_function_while_another_of_its_kind_is_open(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    # both norms read norm_b's weights: norm2 agrees on its function, but norm1 fails in place, so which
    # source norm2's weights belong to is not settled by elimination
    wrong = {**TRUTH, "norm1.gamma": "norm_b.weight", "norm1.beta": "norm_b.bias"}
    result = _check(nets, checkpoints, wrong, nets.mindspore_model())
    proof = result.per_parameter
    assert proof is not None and not result.confirmed_per_parameter
    assert not proof.by_function
    assert "norm2.gamma" not in proof.confirmed


def test_a_norm_is_not_confirmed_on_its_function_while_a_source_norm_of_its_kind_is_unread(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    # norm2 reads norm_a's weights, as norm1 does, and agrees on its function; norm_b, read by nothing, is where
    # it might belong as well
    wrong = {**TRUTH, "norm2.gamma": "norm_a.weight", "norm2.beta": "norm_a.bias"}
    result = _check(nets, checkpoints, wrong, nets.mindspore_model())
    proof = result.per_parameter
    norm2 = next(p for p in result.mapping.pairs if p.target == "norm2.gamma")
    assert norm2.source == "norm_a.weight", "the mapping was not left as given"
    assert proof is not None and not result.confirmed_per_parameter
    assert not proof.by_function and "norm2.gamma" not in proof.confirmed
    assert norm2.confidence < result.mapping.threshold


def test_swapped_norms_are_placed_by_the_input_each_got(nets: ModuleType, checkpoints: tuple[Path, Path]) -> None:
    # the two norms read each other's weights: fed the modules before it the source's values, norm1 got the
    # input norm_a got in the source run, and norm_a is the only other norm of its kind that saw it
    from automap.netaware._candidates import Option
    from automap.netaware._perparam import prove_per_parameter
    from automap.netaware._probing import Calling, prepare
    from automap.netaware._resolve import Reference
    from automap.netaware._settle import _placed, _points_of

    torch_path, ms_path = checkpoints
    probes = prepare(
        torch_path, ms_path, nets.torch_model(), nets.mindspore_model(), ["2x3x6x6:float32"],
        Calling(None, None, None, None, None), 0,
    )  # fmt: skip
    try:
        session = probes.session
        swapped = {**TRUTH, "norm1.gamma": "norm_b.weight", "norm1.beta": "norm_b.bias"}
        swapped |= {"norm2.gamma": "norm_a.weight", "norm2.beta": "norm_a.bias"}
        assignment = {t: Option((s,)) for t, s in swapped.items()}
        reference = Reference.of(
            probes.reference, probes.probe, probes.line, probes.source_trailing, session.source_pairing(()),
            probes.tolerance,
        )  # fmt: skip
        used = [t for t in probes.target_order if t in assignment]
        proof = prove_per_parameter(session, assignment, reference, used, _points_of(session, assignment, reference))
        assert ("norm1", "norm_b", "norm_a") in proof.places
        moved = _placed(session, assignment, proof.places)
        assert moved is not None
        assert {t: o.sources[0] for t, o in moved.items()} == TRUTH
    finally:
        probes.close()


BRANCHES = '''
"""Two branches built alike (a norm, then a linear layer), fed different values, as CrossViT's two scales are."""


def torch_model():
    import torch
    from torch import nn

    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(8)
            self.proj = nn.Linear(8, 8)

        def forward(self, x):
            return self.proj(self.norm(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 8)
            self.branches = nn.ModuleList([Branch(), Branch()])

        def forward(self, x):
            h = self.embed(x)
            return self.branches[0](h) + self.branches[1](h * h)

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape) * 0.3)
    return net


def mindspore_model():
    from mindspore import nn

    class Branch(nn.Cell):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm((8,), epsilon=1e-5)
            self.proj = nn.Dense(8, 8)

        def construct(self, x):
            return self.proj(self.norm(x))

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.embed = nn.Dense(4, 8)
            self.branches = nn.CellList([Branch(), Branch()])

        def construct(self, x):
            h = self.embed(x)
            return self.branches[0](h) + self.branches[1](h * h)

    return Net()
'''


def test_swapped_norms_followed_by_alike_layers_are_placed_one_move_at_a_time(
    tmp_path_factory: pytest.TempPathFactory,
    mindspore_cpu,  # type: ignore[no-untyped-def]
) -> None:
    # each norm reads the other branch's weights: the linear layer after it, fed the wrong norm's values, disagrees in
    # place as well and "saw" the other branch's input; moving both norms and layers proves nothing, moving the
    # norms does
    from automap.netaware import check_with_networks

    truth = {"embed.weight": "embed.weight", "embed.bias": "embed.bias"}
    for b in (0, 1):
        truth |= {
            f"branches.{b}.norm.gamma": f"branches.{b}.norm.weight",
            f"branches.{b}.norm.beta": f"branches.{b}.norm.bias",
        }
        truth |= {
            f"branches.{b}.proj.weight": f"branches.{b}.proj.weight",
            f"branches.{b}.proj.bias": f"branches.{b}.proj.bias",
        }
    swapped = dict(truth)
    for leaf, torch_leaf in (("gamma", "weight"), ("beta", "bias")):
        swapped[f"branches.0.norm.{leaf}"] = f"branches.1.norm.{torch_leaf}"
        swapped[f"branches.1.norm.{leaf}"] = f"branches.0.norm.{torch_leaf}"
    with imported(tmp_path_factory.mktemp("models"), "na_branch_nets", BRANCHES) as nets:
        torch_path, ms_path = save_checkpoints(nets, tmp_path_factory.mktemp("checkpoints"))
        result = check_with_networks(
            _mapping(torch_path, ms_path, swapped), torch_path, ms_path, torch_model=nets.torch_model(),
            mindspore_model=nets.mindspore_model(), inputs=["2x3x4:float32"],
        )  # fmt: skip
    assert result.proven, result.lines()
    assert {p.target: p.source for p in result.mapping.pairs} == truth
