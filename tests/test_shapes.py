"""Shape relations: which layout transform turns a source shape into a target shape, and concatenated parts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from automap.engine.shapes import LAYOUT, RESHAPE, TRANSPOSE, Part, concat_steps, part_shape, relate
from automap.transforms import Concat, Reshape, Squeeze, Transpose, Unsqueeze, apply_steps

RNG = np.random.default_rng(11)


@pytest.mark.parametrize(
    ("source", "target", "kind", "steps"),
    [
        ((6, 6), (6, 6), "exact", ()),
        ((), (), "exact", ()),
        ((64, 3, 7), (64, 3, 1, 7), "layout", (Unsqueeze(2),)),  # torch Conv1d -> MindSpore
        ((64, 3, 1, 7), (64, 3, 7), "layout", (Squeeze(2),)),
        ((1,), (), "layout", (Squeeze(0),)),
        ((8,), (8, 1, 1), "layout", (Reshape((8, 1, 1)),)),  # more than one length-1 axis
        ((4, 6), (6, 4), "transpose", (Transpose(),)),  # (out, in) vs (in, out) storage
        ((4, 6), (3, 8), "reshape", (Reshape((3, 8)),)),
        ((2, 3, 4), (4, 3, 2), "reshape", (Reshape((4, 3, 2)),)),  # not a 2-D transpose
    ],
)
def test_relate(source: tuple[int, ...], target: tuple[int, ...], kind: str, steps: tuple[object, ...]) -> None:
    relation = relate(source, target)
    assert relation is not None
    assert relation.kind == kind
    assert relation.steps == steps


@pytest.mark.parametrize(("source", "target"), [((4, 6), (4, 7)), ((8,), (9,)), ((2, 3), ())])
def test_unrelated_shapes_are_never_candidates(source: tuple[int, ...], target: tuple[int, ...]) -> None:
    assert relate(source, target) is None


def test_plausibility_ranks_exact_then_layout_then_transpose_then_reshape() -> None:
    relations = [relate(s, t) for s, t in [((4, 6), (4, 6)), ((4, 6), (4, 1, 6)), ((4, 6), (6, 4)), ((4, 6), (3, 8))]]
    scores = [r.score for r in relations if r is not None]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == 4
    assert scores[1:] == [LAYOUT, TRANSPOSE, RESHAPE]


@pytest.mark.parametrize(("source", "target"), [((64, 3, 7), (64, 3, 1, 7)), ((4, 6), (6, 4)), ((2, 12), (4, 6))])
def test_relation_steps_produce_the_target_shape_and_keep_the_data(
    source: tuple[int, ...], target: tuple[int, ...]
) -> None:
    array = RNG.standard_normal(source).astype(np.float32)
    relation = relate(source, target)
    assert relation is not None
    out = apply_steps([array], relation.steps)
    assert out.shape == target
    if relation.kind == "transpose":
        np.testing.assert_array_equal(out, array.T)
    else:
        np.testing.assert_array_equal(out.ravel(), array.ravel())


def test_part_shape() -> None:
    assert part_shape((24, 8), 0, 3) == (8, 8)
    assert part_shape((8, 24), 1, 3) == (8, 8)
    assert part_shape((16, 6, 4), 0, 16) == (1, 6, 4)


def _expected_concat(sources: list[np.ndarray], per_part: Callable[[np.ndarray], np.ndarray], axis: int) -> np.ndarray:
    """The target built by hand: each source transformed into its part, parts joined along `axis`."""
    return np.concatenate([per_part(s) for s in sources], axis=axis)


def test_concat_of_exact_parts() -> None:
    sources = [RNG.standard_normal((8, 8)).astype(np.float32) for _ in range(3)]
    relation = relate((8, 8), (8, 8))
    assert relation is not None
    steps = concat_steps(Part(0, 3, 0), relation, (24, 8), [(8, 8)] * 3)
    assert steps == (Concat(0),)
    np.testing.assert_array_equal(apply_steps(sources, steps), _expected_concat(sources, lambda s: s, 0))


def test_concat_of_transposed_parts_concatenates_on_the_other_axis_then_transposes() -> None:
    # a [6, 4] target made of three [2, 4] row blocks, each source stored the other way round as [4, 2]
    sources = [RNG.standard_normal((4, 2)).astype(np.float32) for _ in range(3)]
    relation = relate((4, 2), (2, 4))
    assert relation is not None and relation.kind == "transpose"
    steps = concat_steps(Part(0, 3, 0), relation, (6, 4), [(4, 2)] * 3)
    assert steps == (Concat(1), Transpose())
    np.testing.assert_array_equal(apply_steps(sources, steps), _expected_concat(sources, lambda s: s.T, 0))


def test_stacking_slices_concatenates_then_reshapes() -> None:
    # E separate [f, d] experts become one [E, f, d] tensor
    sources = [RNG.standard_normal((6, 4)).astype(np.float32) for _ in range(5)]
    relation = relate((6, 4), (1, 6, 4))
    assert relation is not None and relation.kind == "layout"
    steps = concat_steps(Part(0, 5, 0), relation, (5, 6, 4), [(6, 4)] * 5)
    assert steps == (Concat(0), Reshape((5, 6, 4)))
    np.testing.assert_array_equal(apply_steps(sources, steps), np.stack(sources))


def test_parts_that_no_concatenation_can_build_give_none() -> None:
    # two [4, 3] sources as the [4, 1, 3] slices along axis 1 of a [4, 2, 3] target: that is a stack on a
    # middle axis, which one concatenation followed by one reshape cannot express
    relation = relate((4, 3), (4, 1, 3))
    assert relation is not None and relation.kind == "layout"
    assert concat_steps(Part(1, 2, 0), relation, (4, 2, 3), [(4, 3)] * 2) is None
