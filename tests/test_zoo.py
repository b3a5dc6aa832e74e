"""Every zoo pair's ground truth is proven by numerical equivalence, and the proof can fail."""

from __future__ import annotations

import pytest

from benchmarks.zoo import all_pairs, normalise_ground_truth, prove

PAIRS = all_pairs()


def test_zoo_has_the_required_pairs() -> None:
    assert len(PAIRS) >= 14
    assert len({p.name for p in PAIRS}) == len(PAIRS)


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_ground_truth_is_numerically_equivalent(pair, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    proof = prove(pair, "ci")
    assert proof.passed, proof.comparison.detail


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_swapping_two_same_shaped_targets_breaks_the_proof(pair, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    """The proof is only worth something if a wrong mapping fails it."""
    truth = normalise_ground_truth(pair.ground_truth("ci"))
    shapes = {name: tuple(p.shape) for name, p in pair.mindspore_model("ci").parameters_and_names()}
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for target in truth:
        if not target.endswith(("moving_mean", "moving_variance")):
            by_shape.setdefault(shapes[target], []).append(target)
    swappable = [names for names in by_shape.values() if len(names) >= 2]
    if not swappable:
        pytest.skip("no two same-shaped parameters to swap")
    # Prefer matrices: two biases that are only ever added together (an RNN's b_ih + b_hh) swap harmlessly.
    first, second = max(swappable, key=lambda names: (len(shapes[names[0]]) >= 2, len(names)))[:2]
    broken = {t: {"source": list(s), "transform": [x.to_json() for x in steps]} for t, (s, steps) in truth.items()}
    broken[first], broken[second] = broken[second], broken[first]
    assert not prove(pair, "ci", mapping=broken).passed
