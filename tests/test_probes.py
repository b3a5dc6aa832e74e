"""Input specs (`1x3x224x224:float32`, `1x16:int64:0-1000`): parsing, errors, and the arrays made from them."""

from __future__ import annotations

import numpy as np
import pytest

from automap._errors import AutomapError
from automap.netaware.probes import InputSpec, make_input, parse_input_spec


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("1x3x224x224", InputSpec((1, 3, 224, 224), "float32")),
        ("2x8:float16", InputSpec((2, 8), "float16")),
        ("1x16:int64:0-1000", InputSpec((1, 16), "int64", 0, 1000)),
        ("4:int32:-5..5", InputSpec((4,), "int32", -5, 5)),
        ("2x2:float32:-1-1", InputSpec((2, 2), "float32", -1, 1)),
    ],
)
def test_input_specs_parse(text: str, spec: InputSpec) -> None:
    assert parse_input_spec(text) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected SHAPE"),
        ("1x0x3", "must be positive integers"),
        ("1xax3", "must be positive integers"),
        ("1x3:float128", "unknown dtype 'float128'"),
        ("1x3:int64:10-0", "is empty"),
        ("1x3:int8:0-1000", "does not fit int8"),
        ("1x3:int64:0.5-2", "needs an integer range"),
        ("1x3:int64:zero-ten", "must look like LOW-HIGH"),
        ("100000x100000x100", "too large"),
        ("1:2:3:4", "expected SHAPE"),
    ],
)
def test_bad_input_specs_are_explained(text: str, message: str) -> None:
    with pytest.raises(AutomapError, match=message):
        parse_input_spec(text)


def test_inputs_follow_their_spec_and_seed() -> None:
    ids = make_input(parse_input_spec("3x50:int64:10-20"), np.random.default_rng(0))
    assert ids.dtype == np.int64 and ids.shape == (3, 50)
    assert ids.min() >= 10 and ids.max() < 20
    again = make_input(parse_input_spec("3x50:int64:10-20"), np.random.default_rng(0))
    np.testing.assert_array_equal(ids, again)
    halves = make_input(parse_input_spec("2x3:float16:-1-1"), np.random.default_rng(1))
    assert halves.dtype == np.float16 and np.all(np.abs(halves) <= 1)
