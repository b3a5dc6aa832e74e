"""Models called through another method (`--torch-method`, `--mindspore-method`): where one model's `forward`
returns features and the other's `construct` logits (open_clip against MindFormers' CLIP), a method that computes
the logits makes the two comparable, and the parameters applied after the features (a bare projection, the logit
scale) are proven instead of left untestable. The model object is left as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from automap._errors import AutomapError
from tests._source_nets import imported, save_checkpoints

pytestmark = [pytest.mark.torch, pytest.mark.mindspore]

NETS = '''
"""Two-tower models: the PyTorch one returns normalised features and the scale, the MindSpore one logits."""
import numpy as np


def torch_model():
    import torch
    from torch import nn

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.image_tower = nn.Linear(6, 4)
            self.text_tower = nn.Linear(5, 4)
            self.text_projection = nn.Parameter(torch.randn(4, 4))
            self.logit_scale = nn.Parameter(torch.tensor(0.7))

        def encode(self, image, text):
            image = self.image_tower(image)
            text = self.text_tower(text) @ self.text_projection
            return image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)

        def forward(self, image, text):
            image, text = self.encode(image, text)
            return image, text, self.logit_scale.exp()

        def get_logits(self, image, text):
            image, text = self.encode(image, text)
            logits = self.logit_scale.exp() * image @ text.T
            return logits, logits.T

        def logits_of_forward(self, image, text):
            image, text, scale = self(image, text)  # the model's own forward, inside the chosen method
            logits = scale * image @ text.T
            return logits, logits.T

    torch.manual_seed(0)
    return Pair()


def mindspore_model(loss_only=False):
    import mindspore
    from mindspore import nn, ops

    class Pair(nn.Cell):
        def __init__(self):
            super().__init__()
            self.visual = nn.Dense(6, 4)
            self.text = nn.Dense(5, 4)
            self.text_projection = mindspore.Parameter(mindspore.Tensor(np.eye(4, dtype=np.float32)))
            self.logit_scale = mindspore.Parameter(mindspore.Tensor(np.float32(0.0)))

        def pair_logits(self, image, text):
            image = self.visual(image)
            text = ops.matmul(self.text(text), self.text_projection)
            image = image / ops.norm(image, dim=-1, keepdim=True)
            text = text / ops.norm(text, dim=-1, keepdim=True)
            logits = ops.exp(self.logit_scale) * ops.matmul(image, text.T)
            return logits, logits.T

        def construct(self, image, text):
            logits, _ = self.pair_logits(image, text)
            return logits.mean() if loss_only else self.pair_logits(image, text)

    return Pair()


def mindspore_loss_model():
    """Returns a loss only (as a training model would): its `pair_logits` method computes the logits."""
    return mindspore_model(loss_only=True)
'''

TRUTH = {
    "visual.weight": "image_tower.weight",
    "visual.bias": "image_tower.bias",
    "text.weight": "text_tower.weight",
    "text.bias": "text_tower.bias",
    "text_projection": "text_projection",
    "logit_scale": "logit_scale",
}
INPUTS = ["3x6:float32", "3x5:float32"]


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    with imported(tmp_path_factory.mktemp("models"), "na_method_nets", NETS) as module:
        yield module


@pytest.fixture
def checkpoints(nets: ModuleType, tmp_path: Path, mindspore_cpu) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    return save_checkpoints(nets, tmp_path)


def _infer(nets: ModuleType, checkpoints: tuple[Path, Path], torch_model: object, **calling: object):  # type: ignore[no-untyped-def]
    from automap.netaware import infer_with_networks

    torch_path, ms_path = checkpoints
    mindspore_model = calling.pop("mindspore_model", None) or nets.mindspore_model()
    return infer_with_networks(
        torch_path, ms_path, torch_model=torch_model, mindspore_model=mindspore_model, inputs=INPUTS, **calling
    )


def _right(result) -> None:  # type: ignore[no-untyped-def]
    chosen = {p.target: p.source for p in result.mapping.pairs}
    assert chosen == TRUTH, result.lines()


def test_features_against_logits_compare_nothing_and_leave_the_end_parameters_untestable(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    result = _infer(nets, checkpoints, nets.torch_model())
    assert not result.proven and not result.confirmed_per_parameter
    text = "\n".join(result.lines())
    assert "no output of one model can be compared" in text, text
    proof = result.per_parameter
    assert proof is not None and {"text_projection", "logit_scale"} <= set(proof.untestable), text


def test_a_method_computing_the_logits_makes_the_models_comparable_and_proves_every_pair(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    model = nets.torch_model()
    result = _infer(nets, checkpoints, model, torch_method="get_logits")
    assert result.proven, result.lines()
    _right(result)
    assert not result.untestable, result.lines()
    assert "PyTorch model called through its method get_logits (instead of forward)" in result.lines()
    assert "forward" not in vars(model)  # the model is left as it was: its forward returns features again
    import torch

    assert len(model(torch.zeros(3, 6), torch.zeros(3, 5))) == 3


def test_a_method_that_calls_the_model_itself_runs_the_models_own_forward_there(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    result = _infer(nets, checkpoints, nets.torch_model(), torch_method="logits_of_forward")
    assert result.proven, result.lines()
    _right(result)


def test_the_mindspore_model_called_through_a_method_when_its_construct_returns_a_loss(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    cell = nets.mindspore_loss_model()
    result = _infer(
        nets, checkpoints, nets.torch_model(), torch_method="get_logits", mindspore_method="pair_logits",
        mindspore_model=cell,
    )  # fmt: skip
    assert result.proven, result.lines()
    _right(result)
    assert "construct" not in vars(cell)
    import mindspore

    loss = cell(mindspore.Tensor(np.zeros((3, 6), np.float32)), mindspore.Tensor(np.zeros((3, 5), np.float32)))
    assert loss.shape == ()


def test_a_method_the_model_lacks_is_named_with_the_ones_it_has_and_changes_nothing(
    nets: ModuleType, checkpoints: tuple[Path, Path]
) -> None:
    model = nets.torch_model()
    with pytest.raises(AutomapError) as raised:
        _infer(nets, checkpoints, model, torch_method="get_logit")
    message = str(raised.value)
    assert "has no method 'get_logit'" in message and "get_logits" in message and "torch_method" in message
    assert "forward" not in vars(model) and not model._forward_hooks  # nothing left on the model


def test_the_command_line_calls_the_chosen_methods(nets: ModuleType, checkpoints: tuple[Path, Path]) -> None:
    torch_path, ms_path = checkpoints
    folder = Path(nets.__file__).parent
    mapping = torch_path.parent / "mapping.json"
    command = [
        *(sys.executable, "-m", "automap", "infer", str(torch_path), str(ms_path), "-o", str(mapping)),
        *("--torch-model", "na_method_nets:torch_model", "--mindspore-model", "na_method_nets:mindspore_loss_model"),
        *("--input", INPUTS[0], "--input", INPUTS[1], "--torch-method", "get_logits"),
    ]

    def run(method: str) -> subprocess.CompletedProcess[str]:  # the model module found beside the user, as documented
        return subprocess.run(
            [*command, "--mindspore-method", method], capture_output=True, text=True, check=False, cwd=folder
        )

    wrong = run("logits")
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr, wrong.stderr
    assert "has no method 'logits'" in wrong.stderr and "pair_logits" in wrong.stderr, wrong.stderr
    assert "--mindspore-method" in wrong.stderr, wrong.stderr  # the option as the command line spells it
    assert not mapping.exists()
    done = run("pair_logits")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "called through its method pair_logits" in done.stdout and "PROVEN" in done.stdout, done.stdout
    written = {p["target"]: p["source"] for p in json.loads(mapping.read_text())["pairs"]}
    assert written == TRUTH


def test_method_options_need_both_models(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "automap", "infer", "a.pth", "b.ckpt", "--torch-method", "get_logits"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2 and "need --torch-model and --mindspore-model" in done.stderr, done.stderr
