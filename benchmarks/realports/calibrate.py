"""Fit the map from the solver's share of odds to a probability (automap/engine/calibration.json), and check it.

The map has one free number, its sharpness (see automap/engine/calibration.py). It is fitted by maximum
likelihood on the development half of the real-port corpus only, inferred with and without the published
rename tables (the second run holds most of the doubtful pairs a new model brings). Two checks say whether it
holds beyond the pairs it was fitted on: leave one family out (refit without a development family, judge on
it) and the held-out half, which the fit never sees.

Run from the repository root: `python -m benchmarks.realports.calibrate` prints the fit and the checks;
`--write` stores the fitted sharpness in the package's calibration.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from scipy.optimize import minimize_scalar

from automap._text import render_table
from automap._version import __version__
from automap.engine.calibration import Calibration, calibration
from automap.records import DEFAULT_THRESHOLD
from benchmarks.realports.accuracy import RealResult, run_real
from benchmarks.scoring import expected_calibration_error

__all__ = ["fit_sharpness", "leave_one_family_out", "raw_results"]

Outcome = tuple[float, bool]  # (share of odds, right)


def raw_results(split: str) -> list[RealResult]:
    """The half's pairs scored with the solver's own share of odds, with and without the published tables."""
    return [
        *run_real(split, calibrate=False),
        *run_real(split, calibrate=False, weights={"convention": 0.0}),
    ]


def fit_sharpness(outcomes: Sequence[Outcome]) -> float:
    """The sharpness that makes the mapped shares the most likely explanation of which pairs were right."""

    def loss(sharpness: float) -> float:
        fitted = Calibration(sharpness)
        total = 0.0
        for share, right in outcomes:
            p = min(max(fitted.probability(share), 1e-9), 1.0 - 1e-9)
            total -= math.log(p if right else 1.0 - p)
        return total

    found = minimize_scalar(loss, bounds=(0.05, 20.0), method="bounded", options={"xatol": 1e-4})
    return float(found.x)


def _mapped(outcomes: Sequence[Outcome], fitted: Calibration) -> list[Outcome]:
    return [(fitted.probability(share), right) for share, right in outcomes]


def leave_one_family_out(results: Sequence[RealResult]) -> list[tuple[str, int, float, float]]:
    """Per family: (family, pairs, ECE with the shipped map, ECE with the map refit on the other families)."""
    rows = []
    for family in sorted({r.family for r in results}):
        held = [o for r in results if r.family == family for o in r.outcomes]
        rest = [o for r in results if r.family != family for o in r.outcomes]
        if not held or not rest:
            continue
        refit = Calibration(fit_sharpness(rest))
        shipped = expected_calibration_error(_mapped(held, calibration()))
        rows.append((family, len(held), shipped, expected_calibration_error(_mapped(held, refit))))
    return rows


def _write(sharpness: float, fitted_on: list[RealResult]) -> Path:
    path = Path(__file__).resolve().parents[2] / "automap" / "engine" / "calibration.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["sharpness"] = round(sharpness, 3)
    document["fitted_on"] = {
        "corpus": "real-port corpus, development half (benchmarks/realports), with and without the published tables",
        "families": sorted({r.family for r in fitted_on}),
        "pairs": len({r.pair for r in fitted_on}),
        "outcomes": sum(len(r.outcomes) for r in fitted_on),
        "automap": __version__,
    }
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realports.calibrate", description=__doc__)
    parser.add_argument("--write", action="store_true", help="store the fitted sharpness in calibration.json")
    args = parser.parse_args(argv)
    dev = raw_results("dev")
    sharpness = fit_sharpness([o for r in dev for o in r.outcomes])
    shipped = calibration()
    print(f"fitted sharpness {sharpness:.3f} (shipped {shipped.sharpness:.3f}), threshold {DEFAULT_THRESHOLD:g}")
    rows = [[f, str(n), f"{a:.3f}", f"{b:.3f}"] for f, n, a, b in leave_one_family_out(dev)]
    print("development half, leave one family out (with and without the published tables):")
    print(render_table(["family", "pairs", "ECE shipped", "ECE refit without it"], rows, right=(1, 2, 3)))
    fitted = Calibration(sharpness)
    for half, results in (("development", dev), ("held-out", raw_results("test"))):
        outcomes = [o for r in results for o in r.outcomes]
        print(
            f"{half} half: ECE of the share of odds {expected_calibration_error(outcomes):.3f}, "
            f"after the fitted map {expected_calibration_error(_mapped(outcomes, fitted)):.3f}"
        )
    if args.write:
        print(f"written: {_write(sharpness, dev)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
