"""Training state is set aside from model parameters: names alone, and real checkpoints saved mid-training
by MindSpore's TrainOneStepCell (Momentum, Adam, AdamWeightDecay, loss scaling) and by PyTorch optimizers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automap import load_checkpoint
from automap.io.training_state import is_training_state


@pytest.mark.parametrize(
    "name",
    [
        "global_step",
        "learning_rate",
        "momentum",
        "beta1_power",
        "beta2_power",
        "scale_sense",
        "current_iterator_step",
        "last_overflow_iterator_step",
        "epoch_num",
        "step_num",
        "moments.fc.weight",
        "moment1.encoder.layer.0.weight",
        "moment2.encoder.layer.0.weight",
        "adam_m.layers.0.wq.weight",
        "adam_v.layers.0.wq.weight",
        "accum.conv1.weight",
        "stat.conv1.weight",
    ],
)
def test_training_state_names(name: str) -> None:
    assert is_training_state(name)


@pytest.mark.parametrize(
    "name",
    [
        "fc.weight",
        "bn.moving_mean",
        "bn.moving_variance",
        "momentum_encoder.fc.weight",  # MoCo's momentum encoder is a model
        "moments_head.weight",
        "encoder.moments.weight",  # only a leading component marks optimizer slots
        "stats.weight",
        "learning_rate_predictor.bias",
        "global_step_embedding.weight",
        "layers.0.momentum",
    ],
)
def test_model_parameter_names(name: str) -> None:
    assert not is_training_state(name)


def _train_one_step(ms: Any, make_optimizer: Any) -> tuple[Any, Any]:
    nn = ms.nn

    class Net(nn.Cell):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Dense(4, 3)
            self.bn = nn.BatchNorm1d(3)

        def construct(self, x: Any) -> Any:
            return self.bn(self.fc(x))

    net = Net()
    train = nn.TrainOneStepCell(nn.WithLossCell(net, nn.MSELoss()), make_optimizer(nn, net.trainable_params()))
    train.set_train()
    rng = np.random.default_rng(0)
    train(ms.Tensor(rng.standard_normal((5, 4)).astype(np.float32)), ms.Tensor(np.zeros((5, 3), np.float32)))
    return net, train


OPTIMIZERS = {
    "Momentum": (lambda nn, p: nn.Momentum(p, 0.1, 0.9), {"moments"}),
    "Adam": (lambda nn, p: nn.Adam(p, 1e-3), {"moment1", "moment2", "beta1_power", "beta2_power"}),
    "AdamWeightDecay": (lambda nn, p: nn.AdamWeightDecay(p, 1e-3), {"adam_m", "adam_v"}),
}


@pytest.mark.mindspore
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_mindspore_training_checkpoint(optimizer: str, tmp_path: Path, mindspore_cpu: Any) -> None:
    ms = mindspore_cpu
    make_optimizer, families = OPTIMIZERS[optimizer]
    net, train = _train_one_step(ms, make_optimizer)
    path = tmp_path / "train.ckpt"
    ms.save_checkpoint(train, str(path), append_dict={"epoch_num": 3, "step_num": 12})

    everything = ms.load_checkpoint(str(path))  # in file order
    model_names = [name for name in everything if name in dict(net.parameters_and_names())]
    state_names = [name for name in everything if name not in model_names]
    assert len(model_names) == len(list(net.parameters_and_names()))
    assert {name.split(".")[0] for name in state_names} >= families | {"global_step", "epoch_num", "step_num"}

    table = load_checkpoint(path)
    assert table.names == tuple(model_names)
    assert [r.name for r in table.excluded] == state_names
    assert [r.index for r in table.excluded] == list(range(len(state_names)))
    for record in (*table.params, *table.excluded):
        np.testing.assert_array_equal(record.read(), everything[record.name].asnumpy(), err_msg=record.name)
    # The optimizer really stepped: its state is not all zeros.
    slots = [r for r in table.excluded if r.name.split(".")[0] in families and r.shape == (3, 4)]
    assert slots
    assert any(np.abs(r.read()).sum() > 0 for r in slots)


@pytest.mark.mindspore
def test_loss_scale_state_is_set_aside(tmp_path: Path, mindspore_cpu: Any) -> None:
    ms = mindspore_cpu
    nn = ms.nn
    net = nn.Dense(4, 3)
    optimizer = nn.Momentum(net.trainable_params(), 0.1, 0.9)
    scale = ms.Tensor(1024.0, ms.float32)
    train = nn.TrainOneStepWithLossScaleCell(nn.WithLossCell(net, nn.MSELoss()), optimizer, scale_sense=scale)
    ms.save_checkpoint(train, str(tmp_path / "scaled.ckpt"))
    table = load_checkpoint(tmp_path / "scaled.ckpt")
    assert table.names == ("weight", "bias")
    assert "scale_sense" in {r.name for r in table.excluded}
    assert table.get("scale_sense") is None


def _torch_after_one_step(optimizer_class: Any, **kwargs: Any) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = optimizer_class(model.parameters(), **kwargs)
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()
    return model, optimizer


def _optimizer_tensor_count(optimizer: torch.optim.Optimizer) -> int:
    return sum(isinstance(v, torch.Tensor) for slot in optimizer.state_dict()["state"].values() for v in slot.values())


@pytest.mark.parametrize(
    ("optimizer_class", "kwargs", "container"),
    [
        (torch.optim.Adam, {"lr": 1e-3}, "optimizer"),
        (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, "optimizer_state_dict"),
        (torch.optim.AdamW, {"lr": 1e-3}, "optimizer_states"),
    ],
    ids=["Adam", "SGD-momentum", "AdamW-lightning-style"],
)
def test_torch_optimizer_state_beside_the_model(
    optimizer_class: Any, kwargs: dict[str, Any], container: str, tmp_path: Path
) -> None:
    model, optimizer = _torch_after_one_step(optimizer_class, **kwargs)
    state = optimizer.state_dict()
    assert _optimizer_tensor_count(optimizer) > 0
    model_key = "state_dict" if container == "optimizer_states" else "model"
    saved = {model_key: model.state_dict(), container: [state] if container == "optimizer_states" else state}
    torch.save({**saved, "epoch": 4}, tmp_path / "train.pth")

    table = load_checkpoint(tmp_path / "train.pth")
    assert table.names == tuple(model.state_dict())
    assert len(table.excluded) == _optimizer_tensor_count(optimizer)
    assert any(f"{len(table.excluded)} optimizer/training-state tensors set aside" in n for n in table.notes)
    slot = "exp_avg" if optimizer_class is not torch.optim.SGD else "momentum_buffer"
    first = next(r for r in table.excluded if r.name.endswith(f".0.{slot}"))
    np.testing.assert_array_equal(first.read(), state["state"][0][slot].numpy())
