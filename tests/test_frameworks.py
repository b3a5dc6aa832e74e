"""The framework interface of `automap.netaware._frameworks`: one `Backend` per framework, the same verbs for both.

Real torch modules and MindSpore cells; each verb is checked on both backends with the same expectations.
"""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict, namedtuple
from typing import Any

import numpy as np
import pytest

from automap._errors import AutomapError, ConversionError

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

from automap.netaware._frameworks import backend_of, get_backend, leaves, named_leaves, rebuild  # noqa: E402
from automap.netaware._nets import wrap  # noqa: E402

FRAMEWORKS = ["pytorch", "mindspore"]


def _model(framework: str) -> Any:
    """A linear layer, a layer norm and a bare parameter: weights in float32 and, in `extra`, bfloat16."""
    if framework == "pytorch":
        from torch import nn

        class TorchModel(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.dense = nn.Linear(4, 3)
                self.norm = nn.LayerNorm(3)
                self.extra = nn.Parameter(torch.randn(3, dtype=torch.bfloat16))

            def forward(self, x: Any) -> Any:
                return self.norm(self.dense(x)) * self.extra.float()

        return TorchModel()
    from mindspore import Parameter, Tensor, nn

    class MsModel(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Dense(4, 3)
            self.norm = nn.LayerNorm((3,))
            self.extra = Parameter(Tensor(np.random.default_rng(0).standard_normal(3), ms.bfloat16), name="extra")

        def construct(self, x: Any) -> Any:
            return self.norm(self.dense(x)) * self.extra.astype(ms.float32)

    return MsModel()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_state_loads_back_bit_exact_into_a_fresh_model(framework: str, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    backend = get_backend(framework)  # type: ignore[arg-type]
    source, fresh = _model(framework), _model(framework)
    state = backend.state(source)
    assert state["extra"].dtype == np.uint16  # bfloat16 as its raw bits, as checkpoints hold it
    dtypes = {name: backend.dtype(t) or "" for name, t in backend.parameters(source).items()}
    assert dtypes["extra"] == "bfloat16" and dtypes["dense.weight"] == "float32"
    backend.load(backend.parameters(fresh), state, dtypes, complete=True)
    again = backend.state(fresh)
    assert list(again) == list(state)
    for name, array in state.items():
        assert again[name].dtype == array.dtype and again[name].tobytes() == array.tobytes(), name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_arrays_without_dtypes_hold_their_own_values_or_the_parameters_bits(framework: str, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    backend = get_backend(framework)  # type: ignore[arg-type]
    model = _model(framework)
    params = backend.parameters(model)
    weight = np.arange(12, dtype=np.float64).reshape(3, 4) / 8  # float64 values for a float32 weight
    bits = backend.state(_model(framework))["extra"]  # raw bfloat16 bits for the bfloat16 parameter
    backend.load(params, {"dense.weight": weight, "extra": bits})
    assert np.array_equal(backend.values(params["dense.weight"]), weight.astype(np.float32))
    assert backend.storage(params["extra"]).tobytes() == bits.tobytes()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_load_that_does_not_fit_lists_every_problem_and_changes_nothing(framework: str, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    backend = get_backend(framework)  # type: ignore[arg-type]
    model = _model(framework)
    params = backend.parameters(model)
    before = backend.state(model)
    arrays = {name: np.zeros(a.shape, a.dtype) for name, a in before.items() if not name.startswith("norm.")}
    arrays["dense.weight"] = np.zeros((4, 3), np.float32)
    arrays["no.such"] = np.zeros(1, np.float32)
    with pytest.raises(ConversionError) as caught:
        backend.load(params, arrays, complete=True)
    text = str(caught.value)
    unit = "module" if framework == "pytorch" else "cell"
    assert text.startswith(f"cannot load the weights into the {backend.network}: ")
    assert "no.such: not a parameter of the network" in text
    assert f"dense.weight: shape [4, 3], the {unit} expects [3, 4]" in text
    assert text.count("no value given") == 2  # both norm parameters
    after = backend.state(model)
    assert all(after[n].tobytes() == before[n].tobytes() for n in before)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_run_is_in_eval_mode_reports_every_use_and_restores_the_training_mode(framework: str, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    backend = get_backend(framework)  # type: ignore[arg-type]
    model = _model(framework)
    if framework == "pytorch":
        model.train()
    else:
        model.set_train(True)
    extra = backend.parameters(model)["extra"]
    seen: list[object] = []
    output = backend.run(model, [np.ones((2, 4), np.float32)], uses=seen.append)
    assert [a.shape for a in backend.outputs(output)] == [(2, 3)]
    assert any(value is extra for value in seen)  # a bare parameter, used outside any layer
    assert model.training
    assert backend.run(model, [np.ones((2, 4), np.float32)]) is not None


def test_backends_are_found_by_model_and_tensor_and_neither_is_refused(mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    assert backend_of(_model("pytorch")) is get_backend("pytorch")
    assert backend_of(torch.zeros(1)) is get_backend("pytorch")
    assert backend_of(_model("mindspore")) is get_backend("mindspore")
    assert backend_of(ms.Tensor(np.zeros(1, np.float32))) is get_backend("mindspore")
    assert backend_of(np.zeros(1)) is None
    with pytest.raises(AutomapError, match=r"a dict is neither a torch\.nn\.Module nor a mindspore\.nn\.Cell"):
        wrap({})


def test_nested_outputs_flatten_and_rebuild_in_one_stable_order() -> None:
    pair = namedtuple("pair", "first second")  # a model may return a plain namedtuple
    value = {"b": [1, (2, 3)], "a": pair(4, OrderedDict(z=5, y=6))}  # mappings keep their own order
    assert list(leaves(value)) == [1, 2, 3, 4, 5, 6]
    assert [name for name, _ in named_leaves(value)] == ["b.0", "b.1.0", "b.1.1", "a.0", "a.1.z", "a.1.y"]
    rebuilt: Any = rebuild(value, lambda leaf: leaf * 10)  # type: ignore[operator]
    assert isinstance(rebuilt["a"], pair) and isinstance(rebuilt["a"].second, OrderedDict)
    assert list(leaves(rebuilt)) == [10, 20, 30, 40, 50, 60]


def test_the_interface_imports_no_framework_until_a_backend_is_asked_for() -> None:
    code = (
        "import sys\n"
        "import automap.netaware._frameworks as f, automap.netaware.networks, automap.netaware._nets\n"
        "print(sorted(m for m in ('torch', 'mindspore') if m in sys.modules))\n"
        "f.get_backend('pytorch')\n"
        "print(sorted(m for m in ('torch', 'mindspore') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "['torch']"]
