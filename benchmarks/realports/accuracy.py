"""Checkpoint-only accuracy and calibration on the real-port corpus: the headline figures of the engine.

Every pair of the corpus (third-party model code on both sides, truth proven numerically) is inferred from its
two listings alone, and each target is scored against the truth: right means the same source(s) *and* a
transform that moves the data the same way; a target the truth leaves without a source is right only when the
engine leaves it unmatched too. What matters most is the wrong pairs at or above the threshold: those are the
ones `convert --like` would write without a word.

The confidence is meant as a probability, so the figures include a reliability table (pairs binned by
confidence, observed accuracy per bin) and the expected calibration error (ECE): the bins' gap between mean
confidence and accuracy, weighted by how many pairs fall in each (pairs that were given a source). The map that
makes the solver's share of odds a probability is fitted on the development half only
(benchmarks/realports/calibrate.py) and checked across families there.

Run from the repository root: `automap bench --real [--split dev|test|all]` (or `python -m benchmarks.run
--real`). The test half is the headline; the development half is what the engine was tuned on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from automap.conversion.plan import is_restored_by_loader
from automap.records import DEFAULT_THRESHOLD, NameMapping
from benchmarks.realports.corpus import CorpusPair, load_corpus
from benchmarks.scoring import reliability_bins, same_pair

__all__ = ["RealResult", "reliability", "render_real", "run_real", "score_real"]


@dataclass
class RealResult:
    """One corpus pair's figures under checkpoint-only inference."""

    pair: str
    family: str
    direction: str
    split: str
    source_params: int
    target_params: int
    threshold: float = DEFAULT_THRESHOLD
    total: int = 0
    right: int = 0
    wrong: int = 0
    unmatched: int = 0  # targets with a true source that the engine left without one (flagged, never written)
    wrong_above: int = 0
    right_above: int = 0
    seconds: float = 0.0
    wrong_pairs: list[str] = field(default_factory=list)
    outcomes: list[tuple[float, bool]] = field(default_factory=list)  # (confidence, right) of every pair with a source

    @property
    def accuracy(self) -> float:
        """Share of targets mapped right."""
        return self.right / self.total if self.total else 1.0

    def as_json(self) -> dict[str, Any]:
        """Plain data for a results file."""
        return {
            "pair": self.pair,
            "family": self.family,
            "direction": self.direction,
            "split": self.split,
            "params": [self.source_params, self.target_params],
            "total": self.total,
            "right": self.right,
            "wrong": self.wrong,
            "unmatched": self.unmatched,
            "wrong_at_or_above_threshold": self.wrong_above,
            "right_at_or_above_threshold": self.right_above,
            "accuracy": round(self.accuracy, 4),
            "seconds": round(self.seconds, 3),
            "wrong_pairs": self.wrong_pairs,
        }


def score_real(pair: CorpusPair, mapping: NameMapping, seconds: float = 0.0) -> RealResult:
    """Compare a mapping with a corpus pair's truth, target by target."""
    shapes = {record.name: record.shape for record in pair.source.params}
    result = RealResult(
        pair.name,
        pair.family,
        pair.direction,
        pair.split,
        len(pair.source),
        len(pair.target),
        threshold=mapping.threshold,
        seconds=seconds,
    )
    for match in mapping.pairs:
        result.total += 1
        confident = match.confidence >= mapping.threshold and match.source is not None
        sources = pair.sources_of(match.target)
        if not sources:
            right = match.source is None
            # a counter the target's own loader restores needs no source and no review (audit: "no action needed")
            confident = confident or (right and is_restored_by_loader(match.target, mapping.target.framework))
            detail = f"got {', '.join(match.source_names)}, truth: no source"
        elif match.source is None:
            right = False
            result.unmatched += 1
            detail = f"unmatched, truth {', '.join(sources)}"
        else:
            steps = pair.steps_of(match.target)
            right = same_pair(sources, steps, match.source_names, match.transform, shapes)
            if match.source_names == sources:
                got, want = [s.to_json() for s in match.transform], [s.to_json() for s in steps]
                detail = f"right source, wrong transform {got} (truth {want})"
            else:
                detail = f"got {', '.join(match.source_names)}, truth {', '.join(sources)}"
        if match.source is not None:  # a target left without a source carries no confidence in a source
            result.outcomes.append((float(match.confidence), right))
        if right:
            result.right += 1
            result.right_above += confident
            continue
        if match.source is not None:
            result.wrong += 1
            result.wrong_above += confident
        marker = "WRONG AT OR ABOVE THE THRESHOLD: " if confident else ""
        decided = match.decided_by.value if match.decided_by is not None else "-"
        result.wrong_pairs.append(
            f"{marker}{match.target}: {detail} (confidence {match.confidence:.3f}, decided by {decided})"
        )
    return result


def run_real(split: str | None = None, *, pairs: Sequence[str] | None = None, **infer_options: Any) -> list[RealResult]:
    """Infer and score every corpus pair (one half with `split`, or the named `pairs`)."""
    from automap.engine.inference import infer_mapping

    results = []
    for pair in load_corpus(split=split):
        if pairs and pair.name not in pairs:
            continue
        start = time.perf_counter()
        mapping = infer_mapping(pair.source, pair.target, **infer_options)
        results.append(score_real(pair, mapping, time.perf_counter() - start))
    return results


def reliability(results: Sequence[RealResult]) -> tuple[list[tuple[float, float, int, float, float]], float]:
    """Rows (low, high, pairs, mean confidence, accuracy) of the confidence bins, and the ECE over all of them."""
    return reliability_bins([o for r in results for o in r.outcomes])


def render_real(results: Sequence[RealResult], title: str) -> str:
    """A table per pair, the totals, and the reliability table."""
    from automap._text import render_table

    header = [
        "pair",
        "family",
        "dir",
        "half",
        "params s/t",
        "right",
        "wrong",
        "unmatched",
        "accuracy",
        "WRONG >= thr",
        "right >= thr",
        "s",
    ]
    rows = [
        [
            r.pair,
            r.family,
            r.direction,
            r.split,
            f"{r.source_params}/{r.target_params}",
            str(r.right),
            str(r.wrong),
            str(r.unmatched),
            f"{r.accuracy:.1%}",
            str(r.wrong_above),
            f"{r.right_above}/{r.right}",
            f"{r.seconds:.2f}",
        ]
        for r in results
    ]
    total = sum(r.total for r in results)
    right = sum(r.right for r in results)
    wrong_above = sum(r.wrong_above for r in results)
    right_above = sum(r.right_above for r in results)
    rows.append(
        [
            "total",
            "",
            "",
            "",
            "",
            str(right),
            str(sum(r.wrong for r in results)),
            str(sum(r.unmatched for r in results)),
            f"{right / total:.1%}" if total else "-",
            str(wrong_above),
            f"{right_above}/{right} ({right_above / right:.1%})" if right else "-",
            f"{sum(r.seconds for r in results):.2f}",
        ]
    )
    bins, ece = reliability(results)
    calibration = render_table(
        ["confidence", "pairs", "mean confidence", "observed accuracy"],
        [[f"[{lo:.2f}, {hi:.2f})", str(n), f"{mean:.3f}", f"{acc:.3f}"] for lo, hi, n, mean, acc in bins],
        right=(1, 2, 3),
    )
    legend = (
        "right: same source(s) and a transform that moves the data the same way (a target without a true source is\n"
        "right when left unmatched); wrong: a source or transform the truth does not have; unmatched: a true source\n"
        "the engine did not find (flagged, never written); WRONG >= thr: wrong pairs at or above the threshold, which\n"
        "convert --like would write without a word (must be 0); right >= thr: right pairs that need no review (a\n"
        "PyTorch num_batches_tracked counter left unmatched needs none either: PyTorch's loader restores it)."
    )
    return (
        f"{title}\n{render_table(header, rows, right=(5, 6, 7, 8, 9, 10, 11))}\n\n{legend}\n\n"
        f"reliability (expected calibration error {ece:.3f}):\n{calibration}\n"
    )
