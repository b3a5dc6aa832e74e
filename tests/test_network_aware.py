"""Network-aware inference on real tiny PyTorch and MindSpore nets: execution order, numeric resolution, proof,
divergence localisation, and the command line with model factories.

The nets are written to a module in a temporary folder (as a user's model file would be) and imported from
there, so that the CLI's `--torch-model MODULE:FACTORY` is exercised the way a person uses it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from automap import cli
from automap._decisions import DecidedBy
from automap.records import Alternative, Endpoint, Match, NameMapping
from automap.transforms import Step, Transpose
from tests._source_nets import imported, save_checkpoints

pytestmark = [pytest.mark.torch, pytest.mark.mindspore]

NETS = '''
"""Tiny nets: declaration order differs from execution order, a bare parameter is used directly in the
forward pass, the norms' names do not say which runs first, and the MindSpore port stores its square
weight (in, out)."""
import numpy as np


def torch_model():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = nn.Parameter(torch.ones(8))  # declared first, used after `mix`
            self.embed = nn.Linear(6, 8)
            self.head = nn.Linear(8, 3)  # declared early, runs last
            self.second_norm = nn.LayerNorm(8)  # declared before first_norm, runs after it
            self.first_norm = nn.LayerNorm(8)
            self.mix = nn.Linear(8, 8)

        def forward(self, x):
            x = self.first_norm(self.embed(x))
            x = (x + torch.tanh(self.mix(x))) * self.gate
            return self.head(self.second_norm(x))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape) * 0.3)  # no two tensors alike
    return net


def mindspore_model(activation="tanh"):
    from mindspore import Parameter, Tensor, nn, ops

    class Mix(nn.Cell):
        """A linear layer that stores its weight (in, out)."""

        def __init__(self):
            super().__init__()
            self.weight = Parameter(Tensor(np.zeros((8, 8), np.float32)))
            self.bias = Parameter(Tensor(np.zeros((8,), np.float32)))

        def construct(self, x):
            return ops.matmul(x, self.weight) + self.bias

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.embed = nn.Dense(6, 8)
            self.norm1 = nn.LayerNorm((8,), epsilon=1e-5)  # torch's default
            self.norm2 = nn.LayerNorm((8,), epsilon=1e-5)
            self.mix = Mix()
            self.gate = Parameter(Tensor(np.ones((8,), np.float32)))
            self.head = nn.Dense(8, 3)

        def construct(self, x):
            x = self.norm1(self.embed(x))
            squash = ops.tanh if activation == "tanh" else ops.relu
            x = (x + squash(self.mix(x))) * self.gate
            return self.head(self.norm2(x))

    return Net()


def mindspore_model_relu():
    """A port that computes something else (relu for tanh): no mapping can make it agree."""
    return mindspore_model("relu")
'''

TRUTH = {
    "embed.weight": "embed.weight",
    "embed.bias": "embed.bias",
    "norm1.gamma": "first_norm.weight",
    "norm1.beta": "first_norm.bias",
    "norm2.gamma": "second_norm.weight",
    "norm2.beta": "second_norm.bias",
    "mix.weight": "mix.weight",
    "mix.bias": "mix.bias",
    "gate": "gate",
    "head.weight": "head.weight",
    "head.bias": "head.bias",
}
TRANSPOSED = {"mix.weight"}


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    with imported(tmp_path_factory.mktemp("models"), "na_nets", NETS) as module:
        yield module


@pytest.fixture
def checkpoints(nets: ModuleType, tmp_path: Path, mindspore_cpu) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A real torch checkpoint of the trained torch net, and a MindSpore checkpoint of the (untrained) port."""
    return save_checkpoints(nets, tmp_path)


def _truth_pairs(mapping: NameMapping) -> dict[str, tuple[str, bool]]:
    return {
        p.target: (p.source, any(isinstance(s, Transpose) for s in p.transform))  # type: ignore[misc]
        for p in mapping.pairs
    }


def _expected() -> dict[str, tuple[str, bool]]:
    return {t: (s, t in TRANSPOSED) for t, s in TRUTH.items()}


# ------------------------------------------------------------------------------------------------ execution order


def test_execution_order_follows_the_forward_pass_not_the_declarations(nets: ModuleType, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    from automap.netaware._nets import wrap

    x = [np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)]
    torch_net, ms_net = wrap(nets.torch_model()), wrap(nets.mindspore_model())
    try:
        torch_order = torch_net.execution_order(torch_net.run(x, trace=True))
        ms_order = ms_net.execution_order(ms_net.run(x, trace=True))
    finally:
        torch_net.close()
        ms_net.close()
    assert torch_order == [
        "embed.weight", "embed.bias", "first_norm.weight", "first_norm.bias", "mix.weight", "mix.bias", "gate",
        "second_norm.weight", "second_norm.bias", "head.weight", "head.bias",
    ]  # fmt: skip
    assert ms_order == [
        "embed.weight", "embed.bias", "norm1.gamma", "norm1.beta", "mix.weight", "mix.bias", "gate",
        "norm2.gamma", "norm2.beta", "head.weight", "head.bias",
    ]  # fmt: skip
    assert list(torch_net.params)[:3] == ["gate", "embed.weight", "embed.bias"]  # declared otherwise


def test_hooks_are_removed_and_the_nets_still_run(nets: ModuleType, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    from automap.netaware._nets import wrap

    module = nets.torch_model()
    net = wrap(module)
    net.run([np.zeros((1, 6), np.float32)], capture=None, trace=True)
    net.close()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


# ------------------------------------------------------------------------------------- inference, resolution, proof


@pytest.mark.parametrize("direction", ["pytorch->mindspore", "mindspore->pytorch"])
def test_network_aware_inference_proves_what_checkpoints_alone_cannot_settle(
    nets: ModuleType, checkpoints: tuple[Path, Path], tmp_path: Path, direction: str
) -> None:
    import mindspore

    from automap.netaware import infer_with_networks

    torch_path, ms_path = checkpoints
    if direction == "pytorch->mindspore":
        result = infer_with_networks(
            torch_path, ms_path, torch_model=nets.torch_model(), mindspore_model=nets.mindspore_model(),
            inputs=["2x6:float32"],
        )  # fmt: skip
        assert _truth_pairs(result.mapping) == _expected()
    else:
        trained = nets.mindspore_model()
        torch_state = nets.torch_model().state_dict()
        for target, source in TRUTH.items():
            value = torch_state[source].numpy()
            dict(trained.parameters_and_names())[target].set_data(
                mindspore.Tensor(value.T.copy() if target in TRANSPOSED else value)
            )
        ms_trained = tmp_path / "trained.ckpt"
        mindspore.save_checkpoint(trained, str(ms_trained))
        result = infer_with_networks(
            ms_trained, torch_path, torch_model=nets.torch_model(), mindspore_model=nets.mindspore_model(),
            inputs=["2x6:float32"],
        )  # fmt: skip
        back = {t: (s, t in TRANSPOSED) for s, t in TRUTH.items()}
        assert _truth_pairs(result.mapping) == {t: (s, flag) for t, (s, flag) in back.items()}
    assert result.proven, result.lines()
    assert result.proof is not None and result.proof.passed
    assert all(p.confidence >= 0.99 for p in result.mapping.pairs)
    assert all(p.labels["proof"].startswith("proven") for p in result.mapping.pairs)
    square = next(p for p in result.mapping.pairs if p.target.startswith("mix.weight"))
    assert square.labels["numeric"].startswith("confirmed numerically")
    assert square.decided_by is DecidedBy.CONFIRMED_NUMERICALLY
    assert result.trials >= 2 and result.runs >= 4
    assert any(note.startswith("proven") for note in result.mapping.notes)


def test_a_checkpoint_whose_names_carry_a_prefix_the_model_lacks(
    nets: ModuleType, checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch

    from automap.netaware import infer_with_networks

    _, ms_path = checkpoints
    wrapped = tmp_path / "wrapped.pth"
    torch.save({f"model.{k}": v for k, v in nets.torch_model().state_dict().items()}, wrapped)
    result = infer_with_networks(
        wrapped, ms_path, torch_model=nets.torch_model(), mindspore_model=nets.mindspore_model(),
        inputs=["2x6:float32"],
    )  # fmt: skip
    assert result.proven
    assert _truth_pairs(result.mapping) == {t: (f"model.{s}", flag) for t, (s, flag) in _expected().items()}


def test_a_model_that_is_not_the_checkpoints_is_refused(
    nets: ModuleType, checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch

    from automap import AutomapError
    from automap.netaware import infer_with_networks

    _, ms_path = checkpoints
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)}, other)
    with pytest.raises(AutomapError, match=r"does not fit .*other\.pth.*give the model the checkpoint was saved from"):
        infer_with_networks(
            other, ms_path, torch_model=nets.torch_model(), mindspore_model=nets.mindspore_model(),
            inputs=["2x6:float32"],
        )  # fmt: skip


def _mapping(torch_path: Path, ms_path: Path, *, swap: float | None) -> NameMapping:
    """The true mapping, with the two norms' sources swapped at the given confidence (None: not swapped)."""
    pairs = []
    for target, source in TRUTH.items():
        steps: tuple[Step, ...] = (Transpose(),) if target in TRANSPOSED else ()
        pairs.append(Match(target, source, 1.0, steps, labels={"decided_by": "names and structure"}))
    if swap is not None:
        by_target = {p.target: p for p in pairs}
        for a, b in (("norm1.gamma", "norm2.gamma"), ("norm1.beta", "norm2.beta")):
            first, second = by_target[a], by_target[b]
            alternatives = swap < 0.5
            by_target[a] = replace(
                first, source=second.source, confidence=swap,
                alternatives=(Alternative(first.source, swap * 0.9),) if alternatives else (),
            )  # fmt: skip
            by_target[b] = replace(
                second, source=first.source, confidence=swap,
                alternatives=(Alternative(second.source, swap * 0.9),) if alternatives else (),
            )  # fmt: skip
        pairs = list(by_target.values())
    from automap import load_checkpoint

    source, target = load_checkpoint(torch_path), load_checkpoint(ms_path)
    order = {name: i for i, name in enumerate(target.names)}
    pairs.sort(key=lambda p: order[p.target])
    return NameMapping(
        Endpoint(str(torch_path), "pytorch", len(source)),
        Endpoint(str(ms_path), "mindspore", len(target)),
        tuple(pairs),
    )


def test_numeric_resolution_settles_a_deliberately_swapped_doubtful_pair(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    from automap.netaware import check_with_networks

    torch_path, ms_path = checkpoints
    swapped = _mapping(torch_path, ms_path, swap=0.3)
    assert swapped.pair_for("norm1.gamma").source == "second_norm.weight"  # type: ignore[union-attr]
    result = check_with_networks(
        swapped, torch_path, ms_path, torch_model=nets.torch_model(), mindspore_model=nets.mindspore_model(),
        inputs=["2x6:float32"],
    )  # fmt: skip
    assert _truth_pairs(result.mapping) == _expected()
    assert result.proven
    norm = result.mapping.pair_for("norm1.gamma")
    assert norm is not None and norm.confidence >= 0.995
    assert norm.labels["numeric"].startswith("confirmed numerically")
    assert norm.decided_by is DecidedBy.CONFIRMED_NUMERICALLY
    assert norm.alternatives[0].source == "second_norm.weight"  # the inferred choice, now the runner-up
    # the probes changed the swapped pairs, and say so in the pairs and in the summary
    assert {"norm1.gamma", "norm2.gamma", "norm1.beta", "norm2.beta"} <= set(result.changed)
    assert norm.labels["note"].startswith("inference chose second_norm.weight")
    assert f"the probes changed {len(result.changed)} pairs" in "\n".join(result.lines())
    settled = [o for o in result.outcomes if "norm1.gamma" in o.group.members]
    assert settled and settled[0].status == "confirmed" and settled[0].rejected >= 1


def test_a_confidently_wrong_pair_fails_the_proof_is_located_and_repaired(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    from automap.netaware import check_with_networks

    torch_path, ms_path = checkpoints
    wrong = _mapping(torch_path, ms_path, swap=1.0)  # nothing marks it doubtful: only the proof can tell
    result = check_with_networks(
        wrong, torch_path, ms_path, torch_model=nets.torch_model(), mindspore_model=nets.mindspore_model(),
        inputs=["2x6:float32"],
    )  # fmt: skip
    assert result.proven, result.lines()
    assert _truth_pairs(result.mapping) == _expected()


def test_models_that_compute_different_things_are_not_proven_and_the_report_says_where(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    from automap.netaware import check_with_networks

    torch_path, ms_path = checkpoints
    result = check_with_networks(
        _mapping(torch_path, ms_path, swap=None), torch_path, ms_path, torch_model=nets.torch_model(),
        mindspore_model=nets.mindspore_model_relu(), inputs=["2x6:float32"],
    )  # fmt: skip
    assert not result.proven
    assert result.divergence is not None
    assert result.divergence.module == "norm2"  # the first paired module after the activation
    assert "gate" in result.divergence.parameters  # used between the last agreement (mix) and norm2
    assert "first diverging module" in "\n".join(result.lines())
    assert not any(p.labels.get("proof", "").startswith("proven") for p in result.mapping.pairs)


# ------------------------------------------------------------------------------------------------ localisation


def _ms_net_with(nets: ModuleType, mapping: dict[str, tuple[str, bool]]):  # type: ignore[no-untyped-def]
    import mindspore

    state = {k: v.detach().numpy() for k, v in nets.torch_model().state_dict().items()}
    net = nets.mindspore_model()
    params = dict(net.parameters_and_names())
    for target, (source, transposed) in mapping.items():
        value = state[source].T.copy() if transposed else state[source]
        params[target].set_data(mindspore.Tensor(value))
    return net


@pytest.mark.parametrize(
    ("broken", "module", "parameter"),
    [
        ({"mix.weight": ("mix.weight", False)}, "mix", "mix.weight"),
        (
            {
                "norm1.gamma": ("second_norm.weight", False),
                "norm1.beta": ("second_norm.bias", False),
                "norm2.gamma": ("first_norm.weight", False),
                "norm2.beta": ("first_norm.bias", False),
            },
            "norm1",
            "norm1.gamma",
        ),
        # norm1 then holds values of no single torch module, so it cannot be compared; mix is the first to differ,
        # and the parameters used since the last agreement (embed) name the culprit
        ({"gate": ("first_norm.bias", False), "norm1.beta": ("gate", False)}, "mix", "norm1.beta"),
    ],
    ids=["untransposed-square", "swapped-norms", "swapped-gate"],
)
def test_localisation_names_the_first_module_a_broken_mapping_breaks(
    nets: ModuleType,
    mindspore_cpu,
    broken: dict[str, tuple[str, bool]],
    module: str,
    parameter: str,  # type: ignore[no-untyped-def]
) -> None:
    from automap.netaware import locate_divergence

    x = [np.random.default_rng(1).standard_normal((2, 6)).astype(np.float32)]
    right = _expected()
    assert locate_divergence(nets.torch_model(), _ms_net_with(nets, right), x) is None
    found = locate_divergence(nets.torch_model(), _ms_net_with(nets, {**right, **broken}), x)
    assert found is not None
    assert found.module == module
    assert parameter in found.parameters
    assert found.difference > 1e-3
    assert module in found.describe()


# ------------------------------------------------------------------------------------------------ command line


def test_cli_infer_with_model_factories(
    nets: ModuleType, checkpoints: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch_path, ms_path = checkpoints
    out = tmp_path / "mapping.json"
    status = cli.main([
        "infer", str(torch_path), str(ms_path), "-o", str(out),
        "--torch-model", "na_nets:torch_model", "--mindspore-model", "na_nets:mindspore_model",
        "--input", "2x6:float32", "--strict",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "PROVEN" in printed
    document = json.loads(out.read_text(encoding="utf-8"))
    pairs = {p["target"]: p for p in document["pairs"]}
    assert pairs["mix.weight"]["transform"] == [{"op": "transpose"}]
    assert pairs["norm1.gamma"]["source"] == "first_norm.weight"


def test_cli_convert_with_model_factories_writes_a_proven_checkpoint(
    nets: ModuleType, checkpoints: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch_path, ms_path = checkpoints
    out = tmp_path / "converted.ckpt"
    status = cli.main([
        "convert", str(torch_path), "--like", str(ms_path), "-o", str(out), "-q",
        "--torch-model", "na_nets:torch_model", "--mindspore-model", "na_nets:mindspore_model",
        "--input", "2x6:float32",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "PROVEN" in printed and out.exists()
    status = cli.main([
        "verify", "--torch-model", "na_nets:torch_model", "--mindspore-model", "na_nets:mindspore_model",
        "--torch-weights", str(torch_path), "--mindspore-weights", str(out), "--input", "2x6:float32",
    ])  # fmt: skip
    assert status == 0, capsys.readouterr().out


def test_cli_verify_names_the_first_diverging_module(
    nets: ModuleType, checkpoints: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mindspore

    torch_path, _ = checkpoints
    broken = tmp_path / "broken.ckpt"
    mindspore.save_checkpoint(_ms_net_with(nets, {**_expected(), "mix.weight": ("mix.weight", False)}), str(broken))
    status = cli.main([
        "verify", "--torch-model", "na_nets:torch_model", "--mindspore-model", "na_nets:mindspore_model",
        "--torch-weights", str(torch_path), "--mindspore-weights", str(broken), "--input", "2x6:float32",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 3
    assert "first diverging module" in printed and "'mix'" in printed and "mix.weight" in printed


def test_cli_asks_for_inputs_it_cannot_guess(
    nets: ModuleType, checkpoints: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    torch_path, ms_path = checkpoints
    status = cli.main([
        "infer", str(torch_path), str(ms_path),
        "--torch-model", "na_nets:torch_model", "--mindspore-model", "na_nets:mindspore_model",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("automap: error:") and "--input" in err and "Traceback" not in err


def test_cli_wrong_inputs_fail_with_one_line_naming_the_fix(
    nets: ModuleType, checkpoints: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    torch_path, ms_path = checkpoints
    status = cli.main([
        "infer", str(torch_path), str(ms_path), "--input", "2x7:float32",
        "--torch-model", "na_nets:torch_model", "--mindspore-model", "na_nets:mindspore_model",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert "failed on input 2x7:float32" in err and "--input" in err


def test_cli_model_flags_come_together(checkpoints: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    torch_path, ms_path = checkpoints
    status = cli.main(["infer", str(torch_path), str(ms_path), "--torch-model", "na_nets:torch_model"])
    assert status == 2
    assert "--mindspore-model" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------- the zoo

ZOO_CASES = ["llama_reordered", "vit_misnumbered", "square_transposed", "gpt2_small"]


@pytest.mark.parametrize("name", ZOO_CASES)
def test_zoo_pairs_checkpoints_alone_get_wrong_are_mapped_and_proven(
    name: str,
    tmp_path: Path,
    mindspore_cpu,  # type: ignore[no-untyped-def]
) -> None:
    from automap import load_checkpoint
    from automap.netaware import infer_with_networks
    from benchmarks.scoring import score_mapping
    from benchmarks.zoo import get_pair, normalise_ground_truth, write_checkpoints

    pair = get_pair(name)
    torch_path, ms_path = write_checkpoints(pair, "ci", tmp_path)
    source, target = load_checkpoint(torch_path), load_checkpoint(ms_path)
    result = infer_with_networks(
        source, target, torch_model=pair.torch_model("ci"), mindspore_model=pair.mindspore_model("ci"),
        inputs=list(pair.inputs("ci", np.random.default_rng(0))), mindspore_inputs=pair.mindspore_inputs,
        rtol=pair.rtol, atol=pair.atol,
    )  # fmt: skip
    score = score_mapping(name, result.mapping, normalise_ground_truth(pair.ground_truth("ci")), source, target)
    assert score.correct == score.total, score.wrong_pairs
    assert result.proven
    assert all(p.confidence >= 0.99 for p in result.mapping.pairs)
