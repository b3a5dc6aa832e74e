"""The confidence is a probability: the map fitted on real ports, what it keeps, and how well it holds.

The map from the solver's share of odds to a probability is fitted on the development half of the real-port
corpus (benchmarks/realports/calibrate.py); the held-out half judges it. It is monotone and lands a share of 0.5
on the default threshold, so it changes no decision: the same pairs are written, the same ones flagged.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from automap.engine.calibration import Calibration, calibration
from automap.engine.inference import infer_mapping
from automap.engine.solver import ORDER_ONLY_CAP
from automap.records import DEFAULT_THRESHOLD
from benchmarks.realports.accuracy import run_real
from benchmarks.realports.calibrate import fit_sharpness, raw_results
from benchmarks.realports.corpus import load_corpus
from benchmarks.scoring import expected_calibration_error


def test_the_map_keeps_the_order_of_shares_and_lands_one_half_on_the_default_threshold() -> None:
    fitted = calibration()
    shares = np.linspace(0.0, 1.0, 1001)
    mapped = [fitted.probability(float(s)) for s in shares]
    assert all(b > a for a, b in itertools.pairwise(mapped))
    assert (mapped[0], mapped[-1]) == (0.0, 1.0)
    assert fitted.probability(0.5) == pytest.approx(DEFAULT_THRESHOLD)
    # a doubt the solver caps below one half stays below the threshold: flagged, never written silently
    assert fitted.probability(ORDER_ONLY_CAP) < DEFAULT_THRESHOLD


def test_a_sharper_map_moves_shares_away_from_the_threshold() -> None:
    soft, sharp = Calibration(1.0), Calibration(3.0)
    assert sharp.probability(0.45) < soft.probability(0.45) < DEFAULT_THRESHOLD
    assert sharp.probability(0.55) > soft.probability(0.55) > DEFAULT_THRESHOLD


@pytest.mark.parametrize("name", ["t5_hf_mindformers", "bert_hf_mindformers", "sam_hf_mindformers"])
def test_the_map_changes_no_decision(name: str) -> None:
    pair = next(p for p in load_corpus() if p.name == name)
    for weights in ({}, {"convention": 0.0}):
        shares = infer_mapping(pair.source, pair.target, weights=weights, calibrate=False)
        probabilities = infer_mapping(pair.source, pair.target, weights=weights)
        assert [(p.source, p.transform) for p in shares.pairs] == [(p.source, p.transform) for p in probabilities.pairs]
        assert [p.target for p in shares.pairs if p.confidence < 0.5] == [p.target for p in probabilities.doubtful]
        for before, after in zip(shares.pairs, probabilities.pairs, strict=True):
            assert [a.source for a in before.alternatives] == [a.source for a in after.alternatives]
            # the rivals share what the choice leaves
            assert after.confidence + sum(a.confidence for a in after.alternatives) <= 1.0 + 1e-3


def test_the_shipped_map_is_the_one_the_development_half_fits() -> None:
    """An engine change that moves the shares needs a refit: `python -m benchmarks.realports.calibrate --write`."""
    outcomes = [o for r in raw_results("dev") for o in r.outcomes]
    assert fit_sharpness(outcomes) == pytest.approx(calibration().sharpness, abs=0.01)


@pytest.mark.parametrize("weights", [{}, {"convention": 0.0}], ids=["tables", "no-tables"])
def test_the_held_out_half_is_calibrated(weights: dict[str, float]) -> None:
    probabilities = [o for r in run_real("test", weights=weights) for o in r.outcomes]
    shares = [o for r in run_real("test", weights=weights, calibrate=False) for o in r.outcomes]
    assert expected_calibration_error(probabilities) < 0.05
    assert expected_calibration_error(probabilities) < expected_calibration_error(shares)
