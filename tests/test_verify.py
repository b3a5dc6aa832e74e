"""`automap verify` and `automap.verify`: both networks on the same input; a wrong weight fails with exit 3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automap import cli
from automap._errors import AutomapError

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

import _convert_nets as nets  # noqa: E402  # after the skips: it builds networks of both frameworks


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The torch net's weights and a MindSpore checkpoint converted from them with the ground-truth mapping."""
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    folder = tmp_path_factory.mktemp("verify")
    pth, template, out = folder / "net.pth", folder / "template.ckpt", folder / "net.ckpt"
    torch.save(nets.torch_net().state_dict(), pth)
    ms.save_checkpoint(nets.mindspore_net(), str(template))
    mapping = folder / "m.json"
    mapping.write_text(json.dumps(nets.flat_mapping(nets.NET_TO_MINDSPORE)))
    assert cli.main(["convert", str(pth), "-m", str(mapping), "--target", str(template), "-o", str(out), "-q"]) == 0
    return {"pth": pth, "ckpt": out}


def _args(weights: dict[str, Path], *extra: str) -> list[str]:
    return [
        "verify",
        "--torch-model",
        "_convert_nets:torch_net",
        "--mindspore-model",
        "_convert_nets:mindspore_net",
        "--torch-weights",
        str(weights["pth"]),
        "--mindspore-weights",
        str(weights["ckpt"]),
        *extra,
    ]


def test_converted_weights_pass(weights, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(_args(weights, "--input", "2x3x6x6:float32")) == 0
    out = capsys.readouterr().out
    assert "input 0: 2x3x6x6:float32" in out
    assert "PASS: max abs diff" in out


def test_a_wrong_weight_fails_with_exit_3(weights, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    params = ms.load_checkpoint(str(weights["ckpt"]))
    wrong = {name: param.asnumpy() for name, param in params.items()}
    wrong["head.weight"] = wrong["head.weight"] + 0.1
    broken = tmp_path / "broken.ckpt"
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(v)} for n, v in wrong.items()], str(broken))
    code = cli.main(_args({"pth": weights["pth"], "ckpt": broken}, "--input", "2x3x6x6:float32"))
    out = capsys.readouterr().out
    assert code == 3
    assert "FAIL: max abs diff" in out


def test_the_input_is_guessed_from_the_first_layer(weights, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(_args(weights)) == 0
    out = capsys.readouterr().out
    assert "input 0: 1x3x32x32:float32 (guessed from the first layer" in out


def _bare_torch() -> Any:
    class Scale(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))

        def forward(self, x: Any) -> Any:
            return x * self.scale

    return Scale()


def test_an_input_that_cannot_be_guessed_is_asked_for(mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    from automap.netaware.verify import verify

    with pytest.raises(AutomapError, match=r"cannot guess the input of the Scale model .*inputs=\['SHAPE:DTYPE'\]"):
        verify(_bare_torch(), nets.mindspore_net())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input", "2x3x6x6:complex"], "unknown dtype 'complex'"),
        (["--input", "2x7x6x6"], "the PyTorch model failed on input 2x7x6x6:float32: RuntimeError"),
        (["--torch-model", "_convert_nets:no_such_factory"], "has no attribute 'no_such_factory'"),
    ],
)
def test_bad_verify_arguments_fail_in_one_line(weights, capsys, extra, message, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(_args(weights, *extra)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_python_api_with_objects_and_arrays(weights, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    from automap.netaware.verify import verify

    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    report = verify(
        nets.torch_net(), nets.mindspore_net(), inputs=[x], mindspore_weights=weights["ckpt"], rtol=1e-4, atol=1e-5
    )
    assert report.passed and report.comparison.max_abs < 1e-5
    unloaded = verify(nets.torch_net(), nets.mindspore_net(), inputs=[x])  # MindSpore's own random weights
    assert not unloaded.passed
