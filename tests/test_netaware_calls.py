"""The argument specs of `--torch-args` / `--mindspore-args`: probe inputs, items of them, and constants of any
kind (tuples included), and one readable error for each way a spec can be malformed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from automap._errors import AutomapError
from automap.netaware._calls import parse_arguments

_ROOT = Path(__file__).resolve().parents[1]


def _inputs() -> list[np.ndarray]:
    return [np.arange(6, dtype=np.float32).reshape(1, 2, 3), np.arange(8).reshape(2, 4)]


def test_probe_inputs_and_plain_constants_as_before() -> None:
    args, kwargs = parse_arguments("0,decoder_input_ids=1,use_cache=false,past=none,scale=0.5").build(_inputs())
    assert [a.shape for a in args] == [(1, 2, 3)]  # type: ignore[attr-defined]
    assert kwargs["decoder_input_ids"].shape == (2, 4)  # type: ignore[attr-defined]
    assert (kwargs["use_cache"], kwargs["past"], kwargs["scale"]) == (False, None, 0.5)


def test_tuples_strings_and_signed_integers_are_constants() -> None:
    spec = "image=0,input_size=(64, 64),nested=((1,2),(true,none)),one=(3,),empty=(),mode='bilinear',k=-1,n=+5"
    _, kwargs = parse_arguments(spec).build(_inputs())
    assert kwargs["input_size"] == (64, 64)
    assert all(type(v) is int for v in kwargs["input_size"])  # type: ignore[attr-defined]
    assert kwargs["nested"] == ((1, 2), (True, None))
    assert (kwargs["one"], kwargs["empty"], kwargs["mode"]) == ((3,), (), "bilinear")
    assert (kwargs["k"], kwargs["n"]) == (-1, 5)
    assert type(kwargs["k"]) is int


def test_an_item_of_a_probe_input() -> None:
    spec = parse_arguments("0[0],last=1[1][3]")
    args, kwargs = spec.build(_inputs())
    np.testing.assert_array_equal(args[0], _inputs()[0][0])  # type: ignore[arg-type]
    assert kwargs["last"] == 7
    assert spec.inputs_used == {0, 1}


def test_an_item_a_probe_input_lacks_is_named() -> None:
    with pytest.raises(AutomapError, match=r"item 1\[2\] of probe input 1, which is shaped \[2, 4\]: no such item"):
        parse_arguments("0,1[2]").build(_inputs())
    with pytest.raises(AutomapError, match="use probe input 3, but there are 2 inputs"):
        parse_arguments("3[0]").build(_inputs())


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("size=(64,64", "a tuple's '(' has no ')'"),
        ("size=64)", "')' where a comma should end the value"),
        ("size=(64 64)", "'64' in a tuple where a comma or ')' should be"),
        ("size=[64,64]", "'[' where a value should be"),
        ("mode='bilinear", "an unclosed quote"),
        ("0,x=1,2", "positional '2' after a keyword"),
        ("1=2", "'1' is not a keyword"),
        ("x=", "a value is missing at the end"),
        ("x=,0", "no value after x="),
        ("x=abc", "'abc' is neither a probe input number nor true, false, none"),
        ("x=(abc)", "'abc' is neither a constant nor true, false, none"),
        ("0[a]", "probe input 0's item is not a whole number in brackets, as in 0[0]"),
        ("x=(1[0])", "'[' in a tuple where a comma or ')' should be"),
    ],
)
def test_malformed_specs_say_what_and_where(spec: str, reason: str) -> None:
    with pytest.raises(AutomapError) as raised:
        parse_arguments(spec)
    message = str(raised.value)
    assert f"arguments {spec!r}: {reason}" in message
    assert "\n" not in message
    assert "e.g." in message  # the expected form


def test_the_command_line_refuses_a_malformed_spec_in_one_line(tmp_path: Path) -> None:
    command = [
        *(sys.executable, "-m", "automap", "infer", str(tmp_path / "a.pt"), str(tmp_path / "b.ckpt")),
        *("--torch-model", "m:f", "--mindspore-model", "m:f", "--mindspore-args", "image=0,size=(64,64"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "arguments 'image=0,size=(64,64': a tuple's '(' has no ')'" in lines[0]
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())  # nothing written
