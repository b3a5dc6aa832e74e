"""Score inferred mappings against ground truth, beside two baselines, for the accuracy benchmark.

A ground truth maps each target name to its source name(s) and layout steps. A pair counts as correct when it
names the same source(s) and its transform does the same thing to the data (checked by applying both to a
random array, so `unsqueeze` and an equivalent `reshape` agree). The baselines show how hard a pair is:
*exact name* pairs equal names (shapes permitting), *order* pairs the i-th source with the i-th target.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automap._text import render_table
from automap.engine.shapes import relate
from automap.records import NameMapping, ParamTable
from automap.transforms import Step, apply_steps

__all__ = [
    "BINS",
    "PairResult",
    "Truth",
    "baseline_exact_name",
    "baseline_order",
    "calibration_line",
    "expected_calibration_error",
    "headline",
    "reliability_bins",
    "render_legend",
    "render_results",
    "score_mapping",
]


Truth = Mapping[str, tuple[tuple[str, ...], tuple[Step, ...]]]
Outcome = tuple[float, bool]  # (confidence, right) of a pair that was given a source

BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0001)
"""Confidence bins of the reliability tables: finer at the top, where most pairs are."""


@dataclass
class PairResult:
    """One zoo pair's figures."""

    name: str
    source_params: int
    target_params: int
    total: int = 0
    correct: int = 0
    wrong: int = 0
    unmatched: int = 0
    wrong_flagged: int = 0
    right_above: int = 0
    seconds: float = 0.0
    baselines: dict[str, float] = field(default_factory=dict)
    ablations: dict[str, float] = field(default_factory=dict)
    numeric: str = "not run"
    wrong_pairs: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Share of target parameters mapped exactly right."""
        return self.correct / self.total if self.total else 1.0

    @property
    def wrong_confident(self) -> int:
        """Wrong pairs at or above the confidence threshold: confident and wrong, the worst outcome."""
        return self.wrong - self.wrong_flagged

    def as_json(self) -> dict[str, Any]:
        """Plain data for the results file."""
        return {
            "pair": self.name,
            "source_params": self.source_params,
            "target_params": self.target_params,
            "total": self.total,
            "correct": self.correct,
            "wrong": self.wrong,
            "unmatched": self.unmatched,
            "accuracy": round(self.accuracy, 4),
            "wrong_flagged": self.wrong_flagged,
            "wrong_above_threshold": self.wrong_confident,
            "right_above_threshold": self.right_above,
            "seconds": round(self.seconds, 3),
            "baselines": {k: round(v, 4) for k, v in self.baselines.items()},
            "ablations": {k: round(v, 4) for k, v in self.ablations.items()},
            "numeric_equivalence": self.numeric,
            "wrong_pairs": self.wrong_pairs,
        }


def same_pair(
    truth_sources: Sequence[str],
    truth_steps: Sequence[Step],
    sources: Sequence[str],
    steps: Sequence[Step],
    shapes: Mapping[str, tuple[int, ...]],
) -> bool:
    """Whether a pair reads the same sources and moves their data the same way as the truth."""
    if tuple(sources) != tuple(truth_sources):
        return False
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shapes[s]).astype(np.float32) for s in sources]
    try:
        expected, got = apply_steps(arrays, truth_steps), apply_steps(arrays, steps)
    except Exception:
        return False
    return expected.shape == got.shape and bool(np.array_equal(expected, got))


def score_mapping(
    name: str, mapping: NameMapping, truth: Truth, source: ParamTable, target: ParamTable, seconds: float = 0.0
) -> PairResult:
    """Compare a mapping with the truth, pair by pair, and count how the confidence separates right from wrong."""
    shapes = {r.name: r.shape for r in source.params}
    result = PairResult(name, len(source), len(target), seconds=seconds)
    for pair in mapping.pairs:
        if pair.target not in truth:
            continue
        result.total += 1
        sources, steps = truth[pair.target]
        confident = pair.confidence >= mapping.threshold
        if pair.source is None:
            result.unmatched += 1
            result.wrong_pairs.append(f"{pair.target}: unmatched (truth {', '.join(sources)})")
        elif same_pair(sources, steps, pair.source_names, pair.transform, shapes):
            result.correct += 1
            result.right_above += confident
            result.outcomes.append((float(pair.confidence), True))
        else:
            result.outcomes.append((float(pair.confidence), False))
            result.wrong += 1
            result.wrong_flagged += not confident
            if tuple(pair.source_names) == tuple(sources):
                got, want = [s.to_json() for s in pair.transform], [s.to_json() for s in steps]
                detail = f"right source, wrong transform {got} (truth {want})"
            else:
                detail = f"got {', '.join(pair.source_names)}, truth {', '.join(sources)}"
            result.wrong_pairs.append(f"{pair.target}: {detail} (confidence {pair.confidence:.2f})")
    return result


def reliability_bins(outcomes: Sequence[Outcome]) -> tuple[list[tuple[float, float, int, float, float]], float]:
    """Rows (low, high, pairs, mean confidence, accuracy) of the non-empty confidence bins, and the expected
    calibration error: the bins' gap between mean confidence and accuracy, weighted by their share of pairs."""
    rows = []
    ece = 0.0
    for low, high in itertools.pairwise(BINS):
        inside = [(c, ok) for c, ok in outcomes if low <= c < high]
        if not inside:
            continue
        mean = sum(c for c, _ in inside) / len(inside)
        accuracy = sum(ok for _, ok in inside) / len(inside)
        rows.append((low, min(high, 1.0), len(inside), mean, accuracy))
        ece += len(inside) / len(outcomes) * abs(mean - accuracy)
    return rows, ece


def expected_calibration_error(outcomes: Sequence[Outcome]) -> float:
    """The ECE of (confidence, right) outcomes over `BINS`."""
    return reliability_bins(outcomes)[1]


def _accuracy(pairs: Mapping[str, str], truth: Truth) -> float:
    plain = {t: s[0] for t, (s, _) in truth.items() if len(s) == 1}
    if not truth:
        return 1.0
    return sum(1 for t, s in plain.items() if pairs.get(t) == s) / len(truth)


def baseline_exact_name(source: ParamTable, target: ParamTable, truth: Truth) -> float:
    """Accuracy of pairing equal names whose shapes are compatible."""
    pairs = {r.name: r.name for r in target.params if r.name in source and relate(source[r.name].shape, r.shape)}
    return _accuracy(pairs, truth)


def baseline_order(source: ParamTable, target: ParamTable, truth: Truth) -> float:
    """Accuracy of pairing the i-th source with the i-th target, skipping sources whose shape cannot fit."""
    pairs: dict[str, str] = {}
    position = 0
    for record in target.params:
        for j in range(position, len(source)):
            if relate(source.params[j].shape, record.shape):
                pairs[record.name] = source.params[j].name
                position = j + 1
                break
    return _accuracy(pairs, truth)


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Call and measure wall time (for the benchmark table; never asserted in tests)."""
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


WIDTH = 100
"""Columns a terminal is assumed to have: the tables fit in it."""

_LEGEND = {
    "params s/t": "parameters in the source / in the target checkpoint",
    "right": "target parameters mapped to the right source(s), with the right transform",
    "wrong": "target parameters mapped to a wrong source or with a wrong transform",
    "wrong>=thr": "wrong pairs at or above the confidence threshold: confident and wrong (the worst)",
    "unmatched": "target parameters left without a source",
    "accuracy": "right / all target parameters of the ground truth",
    "right>=thr": "right pairs at or above the threshold (the others ask for a needless review)",
    "seconds": "time to infer the mapping",
    "exact-name": "baseline: pair equal names whose shapes fit (share right)",
    "order-only": "baseline: pair the i-th source with the i-th target in file order, if shapes fit",
    "no lexicon": "the engine with its lexicon of naming conventions switched off (share right)",
    "checkpoint only": "inference from the checkpoints alone, without the models (share right)",
    "mapping runs": "both nets agree when run with the inferred mapping (largest relative difference)",
}


def headline(results: Sequence[PairResult]) -> str:
    """One line of totals, confident wrong pairs first among the failures: they are what must never happen."""
    total = sum(r.total for r in results)
    correct = sum(r.correct for r in results)
    share = f"{correct / total:.1%}" if total else "-"
    return (
        f"{correct}/{total} right ({share}); {sum(r.wrong_confident for r in results)} wrong at or above the "
        f"threshold; {sum(r.wrong_flagged for r in results)} wrong flagged below it; "
        f"{sum(r.unmatched for r in results)} unmatched"
    )


def calibration_line(results: Sequence[PairResult]) -> str:
    """The expected calibration error of the pairs given a source: is the confidence a probability?"""
    outcomes = [o for r in results for o in r.outcomes]
    return (
        f"calibration error (ECE) {expected_calibration_error(outcomes):.3f} over {len(outcomes)} pairs with a source"
    )


def render_results(results: Sequence[PairResult], *, legend: bool = True) -> str:
    """The benchmark tables, one row per pair and totals, fitting `WIDTH` columns; then a legend of the columns.

    The first table is the accuracy, the second the baselines, the ablation and whether the mapping runs.
    """
    header = ["pair", "params s/t", "right", "wrong", "wrong>=thr", "unmatched", "accuracy", "right>=thr", "seconds"]
    rows = [
        [
            r.name,
            f"{r.source_params}/{r.target_params}",
            str(r.correct),
            str(r.wrong),
            str(r.wrong_confident),
            str(r.unmatched),
            f"{r.accuracy:.1%}",
            f"{r.right_above}/{r.correct}",
            f"{r.seconds:.2f}",
        ]
        for r in results
    ]
    total = sum(r.total for r in results)
    correct = sum(r.correct for r in results)
    rows.append(
        [
            "TOTAL",
            "",
            str(correct),
            str(sum(r.wrong for r in results)),
            str(sum(r.wrong_confident for r in results)),
            str(sum(r.unmatched for r in results)),
            f"{correct / total:.1%}" if total else "-",
            f"{sum(r.right_above for r in results)}/{correct}",
            f"{sum(r.seconds for r in results):.2f}",
        ]
    )
    accuracy = render_table(header, rows, right=tuple(range(1, len(header))))
    aware = any("checkpoint_only" in r.ablations for r in results)
    ablation = "checkpoint only" if aware else "no lexicon"  # network-aware runs compare with checkpoint-only inference
    key = "checkpoint_only" if aware else "no_lexicon"
    header = ["pair", "exact-name", "order-only", ablation, "mapping runs"]
    rows = [
        [
            r.name,
            f"{r.baselines.get('exact_name', 0):.1%}",
            f"{r.baselines.get('order', 0):.1%}",
            f"{r.ablations.get(key, float('nan')):.1%}",
            r.numeric,
        ]
        for r in results
    ]
    rows.append(
        [
            "TOTAL (mean)",
            _mean(results, "baselines", "exact_name"),
            _mean(results, "baselines", "order"),
            _mean(results, "ablations", key),
            _numeric_total(results),
        ]
    )
    room = WIDTH - sum(max(len(row[i]) for row in [header, *rows]) + 2 for i in range(4))
    for row in rows:
        row[-1] = row[-1] if len(row[-1]) <= room else row[-1][: room - 3] + "..."
    parts = [accuracy, "", render_table(header, rows, right=(1, 2, 3))]
    if legend:
        parts += ["", render_legend(network_aware=aware)]
    return "\n".join(parts)


def render_legend(*, network_aware: bool = False) -> str:
    """What each column of `render_results` counts, one line per column."""
    names = [h for h in _LEGEND if h != ("no lexicon" if network_aware else "checkpoint only")]
    width = max(len(n) for n in names)
    return "\n".join(["Columns:", *(f"  {n.ljust(width)}  {_LEGEND[n]}" for n in names)])


def _numeric_total(results: Sequence[PairResult]) -> str:
    ran = [r for r in results if r.numeric.startswith(("yes", "no"))]
    return f"{sum(r.numeric.startswith('yes') for r in ran)}/{len(ran)} yes" if ran else "-"


def _mean(results: Sequence[PairResult], kind: str, key: str) -> str:
    values = [getattr(r, kind).get(key) for r in results if key in getattr(r, kind)]
    return f"{sum(values) / len(values):.1%}" if values else "-"
