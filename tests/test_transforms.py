"""Layout transform steps: checking untrusted JSON, shapes without data, applying, inverting, describing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from automap._errors import MappingFileError
from automap.transforms import (
    Concat,
    Reorder,
    Reshape,
    Split,
    Squeeze,
    Step,
    Transpose,
    Unsqueeze,
    apply_steps,
    describe,
    inverse_steps,
    output_shape,
    parse_steps,
    register_step,
)

RNG = np.random.default_rng(5)


def _array(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# --- parse_steps ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, []])
def test_no_transform(raw: Any) -> None:
    assert parse_steps(raw) == ()


def test_good_steps_become_typed_steps() -> None:
    raw = [{"op": "split", "axis": 0, "parts": 3, "index": 1}, {"op": "transpose"}, {"op": "reshape", "shape": [4, 2]}]
    assert parse_steps(raw) == (Split(0, 3, 1), Transpose(), Reshape((4, 2)))


# every kind of step, as JSON and typed; the JSON is what mapping files hold
STEPS_AND_JSON = [
    (Transpose(), {"op": "transpose"}),
    (Transpose((2, 0, 1)), {"op": "transpose", "axes": [2, 0, 1]}),
    (Transpose(()), {"op": "transpose", "axes": []}),
    (Reshape((3, 8)), {"op": "reshape", "shape": [3, 8]}),
    (Unsqueeze(-2), {"op": "unsqueeze", "axis": -2}),
    (Squeeze(2), {"op": "squeeze", "axis": 2}),
    (Split(1, 4, 3), {"op": "split", "axis": 1, "parts": 4, "index": 3}),
    (Concat(1), {"op": "concat", "axis": 1}),
    (Reorder(0, 4, (0, 1, 3, 2)), {"op": "reorder", "axis": 0, "parts": 4, "order": [0, 1, 3, 2]}),
]


@pytest.mark.parametrize(("step", "raw"), STEPS_AND_JSON)
def test_json_form_round_trips_with_keys_in_order(step: Step, raw: dict[str, Any]) -> None:
    assert parse_steps([raw]) == (step,)
    assert step.to_json() == raw
    assert list(step.to_json()) == list(raw)  # key order: mapping files stay byte-identical


def test_a_concat_without_axis_joins_along_axis_0() -> None:
    assert parse_steps([{"op": "concat"}]) == (Concat(0),)


def test_steps_are_immutable_and_hashable() -> None:
    step = Split(0, 3, 1)
    with pytest.raises(AttributeError):
        step.index = 2  # type: ignore[misc]
    assert len({Split(0, 3, 1), step, Transpose()}) == 2


def test_registering_a_second_step_under_a_known_name_is_refused() -> None:
    class Rotate(Transpose):
        op = "transpose"

    with pytest.raises(ValueError, match="'transpose' is already registered"):
        register_step(Rotate)
    assert parse_steps([{"op": "transpose"}]) == (Transpose(),)  # the registry is unchanged


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("transpose", "must be null or a list"),
        ([{"op": "transpose"}] * 17, "at most 16 steps"),
        ([{"op": "rotate"}], "unknown step"),
        ([3], "unknown step"),
        ([{"op": "split", "axis": 0}], "step 'split' takes ['axis', 'index', 'parts']"),
        ([{"op": "transpose", "axis": 1}], "step 'transpose' takes ['axes']"),
        ([{"op": "squeeze", "axis": "1"}], "'squeeze' needs a small integer 'axis'"),
        ([{"op": "squeeze", "axis": True}], "'squeeze' needs a small integer 'axis'"),
        ([{"op": "unsqueeze", "axis": 1000}], "'unsqueeze' needs a small integer 'axis'"),
        ([{"op": "reshape", "shape": [2, "a"]}], "'reshape' needs 'shape' as a list of integers"),
        ([{"op": "reorder", "axis": 0, "parts": 2, "order": "01"}], "'reorder' needs 'order' as a list of integers"),
    ],
)
def test_bad_steps_raise_naming_the_entry(raw: Any, problem: str) -> None:
    with pytest.raises(MappingFileError, match=r"^m\.json: pair 3: ") as error:
        parse_steps(raw, where="m.json: pair 3")
    assert problem in str(error.value)


# --- output_shape --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "steps", "expected"),
    [
        ([(6, 4, 3)], [Unsqueeze(2)], (6, 4, 1, 3)),
        ([(6, 4, 1, 3)], [Squeeze(-2)], (6, 4, 3)),
        ([(6, 4)], [Transpose()], (4, 6)),
        ([(2, 3, 4)], [Transpose((2, 0, 1))], (4, 2, 3)),
        ([(8, 8)] * 3, [Concat(0)], (24, 8)),
        ([(4, 8)] * 2, [Concat(1), Transpose()], (16, 4)),
        ([(24, 8)], [Split(0, 3, 2)], (8, 8)),
        ([(12, 5)], [Reorder(0, 4, (1, 0, 3, 2))], (12, 5)),
        ([(6, 4)], [Reshape((3, 8))], (3, 8)),
        ([(6, 4)], [], (6, 4)),
    ],
)
def test_output_shape(shapes: list[tuple[int, ...]], steps: list[Step], expected: tuple[int, ...]) -> None:
    assert output_shape(shapes, steps) == expected
    # and the data agrees with the computed shape
    assert apply_steps([_array(*s) for s in shapes], steps).shape == expected


@pytest.mark.parametrize(
    ("shapes", "steps", "problem"),
    [
        ([(4, 3)], [Split(0, 3, 0)], "does not split into 3 equal parts"),
        ([(4, 3)], [Split(0, 2, 2)], "split index 2 is not in 0..1"),
        ([(4, 3)], [Squeeze(0)], "cannot squeeze axis 0 of length 4"),
        ([(4, 3)], [Reshape((5,))], "cannot reshape [4, 3] to [5]"),
        ([(4, 3)], [Unsqueeze(5)], "axis 5 is out of range for a 3-D tensor"),
        ([(4, 3)], [Transpose((0, 0))], "are not a permutation of the 2 axes"),
        ([(8, 3)], [Reorder(0, 4, (0, 1, 1, 2))], "not a permutation of 0..3"),
        ([(4, 3)] * 2, [Transpose()], "2 sources need a first step"),
        ([(4, 3), (4, 2)], [Concat(0)], "cannot concatenate shapes [[4, 3], [4, 2]] along axis 0"),
    ],
)
def test_impossible_steps_are_refused_before_any_data(
    shapes: list[tuple[int, ...]], steps: list[Step], problem: str
) -> None:
    with pytest.raises(MappingFileError) as error:
        output_shape(shapes, steps, where="pair 'x'")
    assert str(error.value).startswith("pair 'x'")
    assert problem in str(error.value)
    with pytest.raises(MappingFileError):
        apply_steps([np.zeros(s, np.float32) for s in shapes], steps)


# --- apply_steps ---------------------------------------------------------------------------------------------


def test_apply_moves_data_as_numpy_would() -> None:
    a = _array(6, 4)
    np.testing.assert_array_equal(apply_steps([a], [Transpose()]), a.T)
    qkv = _array(24, 8)
    np.testing.assert_array_equal(apply_steps([qkv], [Split(0, 3, 1)]), qkv[8:16])
    parts = [_array(8, 8) for _ in range(3)]
    np.testing.assert_array_equal(apply_steps(parts, [Concat(0)]), np.vstack(parts))
    conv1d = _array(6, 4, 3)
    np.testing.assert_array_equal(apply_steps([conv1d], [Unsqueeze(2)]), conv1d[:, :, None, :])
    gates = _array(8, 3)
    reordered = apply_steps([gates], [Reorder(0, 4, (0, 1, 3, 2))])
    np.testing.assert_array_equal(reordered, np.concatenate([gates[0:2], gates[2:4], gates[6:8], gates[4:6]]))


def test_apply_returns_contiguous_arrays_and_keeps_dtype_and_scalars() -> None:
    out = apply_steps([np.arange(6, dtype=np.int64).reshape(2, 3)], [Transpose()])
    assert out.flags.c_contiguous
    assert out.dtype == np.int64
    assert apply_steps([np.array(3.0, np.float32)], []).shape == ()


# --- inverse_steps -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "steps"),
    [
        ((6, 4, 3), [Unsqueeze(2)]),
        ((6, 4, 1, 3), [Squeeze(2)]),
        ((4, 6), [Transpose()]),
        ((2, 3, 4), [Transpose((2, 0, 1))]),
        ((8, 3), [Reorder(0, 4, (1, 2, 3, 0))]),
        ((4, 6), [Reshape((3, 8)), Transpose()]),
        ((5,), []),
    ],
)
def test_inverse_undoes_the_steps(shape: tuple[int, ...], steps: list[Step]) -> None:
    a = _array(*shape)
    back = inverse_steps([shape], steps)
    assert back is not None
    np.testing.assert_array_equal(apply_steps([apply_steps([a], steps)], back), a)


def test_split_and_concat_have_no_single_tensor_inverse() -> None:
    assert inverse_steps([(24, 8)], [Split(0, 3, 2)]) is None
    assert inverse_steps([(8, 8)] * 3, [Concat(0)]) is None


# --- describe ------------------------------------------------------------------------------------------------


def test_describe() -> None:
    assert describe([Split(0, 3, 1), Transpose()]) == ("split(axis 0, 3 parts)[1] -> transpose")
    assert (
        describe(
            [
                Concat(0),
                Reshape((4, 6, 4)),
                Unsqueeze(2),
                Reorder(0, 4, (0, 1, 3, 2)),
                Transpose((1, 0)),
            ]
        )
        == "concat(axis 0) -> reshape(4, 6, 4) -> unsqueeze(axis 2) -> reorder(axis 0, [0, 1, 3, 2]) -> transpose(1, 0)"
    )
    assert describe([]) == ""
