"""`automap bench --real`: the engine on the real-port corpus, checkpoint-only, the held-out half first.

For each half (test: the headline; dev: what the engine was tuned on): accuracy per pair and in total, wrong pairs
at or above the threshold, right pairs above it, the same totals without the libraries' published rename
tables, the reliability table with its expected calibration error, a leave-one-family-out check of the map that
makes the confidence a probability, and `convert --like` on every pair. Needs no third-party model package: the
corpus is committed as listings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from automap._text import render_table
from benchmarks.realports.accuracy import RealResult, render_real, run_real
from benchmarks.realports.calibrate import leave_one_family_out, raw_results
from benchmarks.realports.convert_check import ConvertOutcome, check_pair
from benchmarks.realports.corpus import load_corpus


def _totals(results: list[RealResult]) -> dict[str, Any]:
    total = sum(r.total for r in results)
    right = sum(r.right for r in results)
    return {
        "pairs": len(results),
        "targets": total,
        "right": right,
        "accuracy": round(right / total, 4) if total else None,
        "wrong_at_or_above_threshold": sum(r.wrong_above for r in results),
        "right_at_or_above_threshold": sum(r.right_above for r in results),
    }


def _headline(half: str, results: list[RealResult], plain: list[RealResult]) -> str:
    t, p = _totals(results), _totals(plain)
    share = t["right_at_or_above_threshold"] / t["right"] if t["right"] else 0.0
    return (
        f"{half} half, {t['pairs']} pairs: {t['right']}/{t['targets']} right ({t['accuracy']:.1%}); "
        f"{t['wrong_at_or_above_threshold']} wrong at or above the threshold; {share:.1%} of right pairs above it. "
        f"Without the published rename tables: {p['accuracy']:.1%}, {p['wrong_at_or_above_threshold']} wrong at or "
        "above the threshold."
    )


def _convert_table(outcomes: list[ConvertOutcome]) -> str:
    rows = [
        [
            o.pair,
            "converted" if o.converted else ("refused" if o.refused else "FAILED"),
            str(len(o.wrong_written)),
            str(o.doubtful),
            o.detail[:60],
        ]
        for o in outcomes
    ]
    header = ["pair", "convert --like", "wrong written", "flagged", "detail"]
    return render_table(header, rows, right=(2, 3))


def run(args: argparse.Namespace) -> int:
    """Run the real-port benchmark with parsed `automap bench` options."""
    halves = ["test", "dev"] if args.split == "all" else [args.split]
    document: dict[str, Any] = {}
    bad = 0
    for half in halves:
        results = run_real(half)
        plain = run_real(half, weights={"convention": 0.0})
        print(_headline(half, results, plain), file=sys.stderr)
        print(render_real(results, f"Real ports, {half} half, checkpoint-only (automap infer SOURCE TARGET):"))
        print(render_real(plain, "The same without the published rename tables (weights={'convention': 0}):"))
        lofo = leave_one_family_out(raw_results(half))
        print(
            "calibration across families (the map from the solver's share of odds to a probability, as shipped:\n"
            "fitted on the development half only; and refit without the family it is judged on):"
        )
        print(
            render_table(
                ["family", "pairs", "ECE shipped", "ECE refit without it"],
                [[f, str(n), f"{shipped:.3f}", f"{refit:.3f}"] for f, n, shipped, refit in lofo],
                right=(1, 2, 3),
            )
        )
        outcomes = [] if args.no_convert else [check_pair(p) for p in load_corpus(split=half)]
        if outcomes:
            print(f"\nconvert --like on every pair of the {half} half:\n{_convert_table(outcomes)}\n")
        bad += sum(not o.ok for o in outcomes) + sum(r.wrong_above for r in results)
        document[half] = {
            "totals": _totals(results),
            "without_published_tables": _totals(plain),
            "pairs": [r.as_json() for r in results],
            "calibration": [
                {"family": f, "pairs": n, "ece": shipped, "ece_refit": refit} for f, n, shipped, refit in lofo
            ],
            "convert_like": [
                {"pair": o.pair, "converted": o.converted, "refused": o.refused, "wrong_written": list(o.wrong_written)}
                for o in outcomes
            ],
        }
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return 3 if bad else 0
