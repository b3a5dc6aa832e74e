"""Turn the solver's share of odds into a probability that the pair is right, fitted on real ports.

The solver's confidence is the chosen pair's share of odds against its rivals, with doubtful decisions capped
below 0.5. On ports nobody here wrote that share is too modest: pairs at 0.55 are right every time, and pairs
capped at 0.45 because only order decided them are right about nine times in ten. A person reading "0.45"
would think them coin flips. So the share is mapped to a probability, `logit(p) = sharpness * logit(share) +
logit(threshold)`: monotone, so no ranking or decision changes, and a share of 0.5 (where the caps hold doubts
below) lands exactly on the default threshold. Only `sharpness` is fitted, on the development half of the
real-port corpus (`python -m benchmarks.realports.calibrate`); the held-out half judges it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

from automap.records import DEFAULT_THRESHOLD, Alternative, Match

__all__ = ["Calibration", "calibrate_match", "calibration"]

_THRESHOLD_LOGIT = math.log(DEFAULT_THRESHOLD / (1.0 - DEFAULT_THRESHOLD))


@dataclass(frozen=True)
class Calibration:
    """The fitted map from a share of odds to a probability."""

    sharpness: float = 1.0

    def probability(self, share: float) -> float:
        """The probability that a pair with this share is right (0 and 1 stay put, 0.5 on the default threshold)."""
        if share <= 0.0 or share >= 1.0:
            return min(max(share, 0.0), 1.0)
        logit = self.sharpness * math.log(share / (1.0 - share)) + _THRESHOLD_LOGIT
        return 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0


@cache
def calibration() -> Calibration:
    """The map shipped with the package (`calibration.json`)."""
    text = resources.files("automap.engine").joinpath("calibration.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return Calibration(float(data["sharpness"]))


def calibrate_match(match: Match, fitted: Calibration) -> Match:
    """A pair with its confidence made a probability; its rivals share what is left, in their proportions."""
    if match.source is None:
        return match
    share = match.confidence
    probability = fitted.probability(share)
    # a cap lowers the choice without handing its share to the rivals: they never hold more than what is left
    rivals = max(sum(a.confidence for a in match.alternatives), 1.0 - share)
    scale = (1.0 - probability) / rivals if rivals > 0.0 else 0.0
    alternatives = tuple(Alternative(a.source, round(a.confidence * scale, 4), a.transform) for a in match.alternatives)
    return replace(match, confidence=probability, alternatives=alternatives)
