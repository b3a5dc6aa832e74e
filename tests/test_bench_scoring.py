"""Benchmark scoring: right/wrong/unmatched/flagged counts, the two baselines, and the runner end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from automap._types import Framework
from automap.records import Endpoint, Match, NameMapping, ParamRecord, ParamTable
from automap.transforms import Concat, Reshape, Squeeze, Transpose, Unsqueeze
from benchmarks.scoring import (
    PairResult,
    Truth,
    baseline_exact_name,
    baseline_order,
    calibration_line,
    headline,
    render_results,
    same_pair,
    score_mapping,
)


def _table(framework: Framework, specs: list[tuple[str, tuple[int, ...]]]) -> ParamTable:
    return ParamTable(framework, framework, tuple(ParamRecord(n, s, "float32", i) for i, (n, s) in enumerate(specs)))


SOURCE = _table(
    "pytorch",
    [
        ("conv1d.weight", (6, 4, 3)),
        ("bn.weight", (6,)),
        ("bn.bias", (6,)),
        ("fc.weight", (5, 6)),
        ("fc.bias", (5,)),
        ("proj.weight", (6, 6)),
        ("extra", (7,)),
    ],
)
TARGET = _table(
    "mindspore",
    [
        ("conv1d.weight", (6, 4, 1, 3)),
        ("bn.gamma", (6,)),
        ("bn.beta", (6,)),
        ("fc.weight", (5, 6)),
        ("fc.bias", (5,)),
        ("proj.weight", (6, 6)),
        ("not_scored", (3,)),
    ],
)
UNSQUEEZE = (Unsqueeze(2),)
TRUTH: Truth = {
    "conv1d.weight": (("conv1d.weight",), UNSQUEEZE),
    "bn.gamma": (("bn.weight",), ()),
    "bn.beta": (("bn.bias",), ()),
    "fc.weight": (("fc.weight",), ()),
    "fc.bias": (("fc.bias",), ()),
    "proj.weight": (("proj.weight",), (Transpose(),)),
}


def _mapping(pairs: list[Match]) -> NameMapping:
    return NameMapping(
        Endpoint("s", "pytorch", len(SOURCE)), Endpoint("t", "mindspore", len(TARGET)), tuple(pairs), threshold=0.5
    )


def test_score_mapping_counts_every_outcome() -> None:
    mapping = _mapping(
        [
            # right, written as a reshape instead of the truth's unsqueeze: the data moves the same way
            Match("conv1d.weight", "conv1d.weight", 0.9, (Reshape((6, 4, 1, 3)),)),
            Match("bn.gamma", "bn.bias", 0.8),  # wrong and confident
            Match("bn.beta", "bn.weight", 0.3),  # wrong and flagged
            Match("fc.weight", "fc.weight", 0.2),  # right but below the threshold
            Match("fc.bias", None, 0.0),  # unmatched
            Match("proj.weight", "proj.weight", 0.95),  # right source, transpose missing: wrong
            Match("not_scored", "extra", 0.1),  # not in the truth: not counted at all
        ]
    )
    result = score_mapping("tiny", mapping, TRUTH, SOURCE, TARGET, seconds=1.5)
    assert (result.total, result.correct, result.wrong, result.unmatched) == (6, 2, 3, 1)
    assert (result.wrong_flagged, result.right_above) == (1, 1)
    # every pair given a source, with its confidence and whether it is right (unmatched and unscored left out)
    assert result.outcomes == [(0.9, True), (0.8, False), (0.3, False), (0.2, True), (0.95, False)]
    # bins [0.9, 0.99): 0.925 said, 1/2 right; [0.8, 0.9): 0.8, 0; [0.3, 0.4): 0.3, 0; [0.2, 0.3): 0.2, 1
    assert calibration_line([result]) == "calibration error (ECE) 0.550 over 5 pairs with a source"
    assert result.accuracy == pytest.approx(2 / 6)
    assert (result.source_params, result.target_params, result.seconds) == (7, 7, 1.5)
    assert result.wrong_pairs == [
        "bn.gamma: got bn.bias, truth bn.weight (confidence 0.80)",
        "bn.beta: got bn.weight, truth bn.bias (confidence 0.30)",
        "fc.bias: unmatched (truth fc.bias)",
        "proj.weight: right source, wrong transform [] (truth [{'op': 'transpose'}]) (confidence 0.95)",
    ]
    document = result.as_json()
    assert (document["pair"], document["accuracy"], document["wrong_flagged"]) == ("tiny", 0.3333, 1)


def test_a_perfect_mapping_scores_everything_right() -> None:
    pairs = [Match(t, s[0] if len(s) == 1 else s, 1.0, steps) for t, (s, steps) in TRUTH.items()]
    result = score_mapping("perfect", _mapping(pairs), TRUTH, SOURCE, TARGET)
    assert (result.correct, result.wrong, result.unmatched, result.right_above) == (6, 0, 0, 6)
    assert result.accuracy == 1.0 and result.wrong_pairs == []


def test_same_pair_compares_what_the_steps_do_to_the_data() -> None:
    shapes = {"w": (6, 4, 3), "sq": (4, 4), "a": (2,), "b": (2,)}
    unsqueeze, reshape = [Unsqueeze(2)], [Reshape((6, 4, 1, 3))]
    assert same_pair(["w"], unsqueeze, ["w"], reshape, shapes)
    assert same_pair(["w"], reshape, ["w"], unsqueeze, shapes)
    # same shape out, different data: a transpose is not a reshape
    assert not same_pair(["sq"], [Transpose()], ["sq"], [Reshape((4, 4))], shapes)
    assert not same_pair(["w"], unsqueeze, ["w"], [Unsqueeze(1)], shapes)
    assert not same_pair(["a", "b"], [Concat(0)], ["b", "a"], [Concat(0)], shapes)
    assert not same_pair(["w"], unsqueeze, ["w"], [Squeeze(0)], shapes)  # cannot apply: not equal


def test_exact_name_baseline() -> None:
    # same names with compatible shapes: conv1d.weight (unsqueeze, but the plain pair lacks it: still counted
    # by source), fc.weight, fc.bias, proj.weight; gamma/beta have no same-named source
    assert baseline_exact_name(SOURCE, TARGET, TRUTH) == pytest.approx(4 / 6)


def test_order_baseline() -> None:
    # i-th target takes the next source whose shape fits, in file order
    source = _table("pytorch", [("a.w", (4,)), ("skip", (9,)), ("a.b", (4,)), ("c", (2, 3))])
    target = _table("mindspore", [("x.b", (4,)), ("x.w", (4,)), ("y", (3, 2))])
    truth: Truth = {"x.b": (("a.b",), ()), "x.w": (("a.w",), ()), "y": (("c",), (Transpose(),))}
    # x.b -> a.w (wrong), x.w -> a.b (wrong), y -> c (right source)
    assert baseline_order(source, target, truth) == pytest.approx(1 / 3)
    assert baseline_exact_name(source, target, truth) == 0.0


def test_render_results_has_a_row_per_pair_and_totals() -> None:
    first = PairResult("alpha", 10, 9, total=9, correct=9, right_above=9, baselines={"exact_name": 0.5, "order": 0.25})
    second = PairResult("beta", 4, 4, total=4, correct=2, wrong=2, wrong_flagged=1, ablations={"no_lexicon": 0.5})
    table = render_results([first, second]).split("\n\n")[0]
    assert table.splitlines()[0].split() == [
        "pair", "params", "s/t", "right", "wrong", "wrong>=thr", "unmatched", "accuracy", "right>=thr", "seconds"
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["alpha"][:7] == ["alpha", "10/9", "9", "0", "0", "0", "100.0%"]
    assert rows["beta"][:8] == ["beta", "4/4", "2", "2", "1", "0", "50.0%", "0/2"]
    assert rows["TOTAL"][:6] == ["TOTAL", "11", "2", "1", "0", "84.6%"]


def test_results_fit_a_terminal_with_a_legend_and_confident_wrong_pairs_up_front() -> None:
    long = PairResult(
        "square_transposed", 224, 187, total=187, correct=180, wrong=7, wrong_flagged=4, right_above=150,
        baselines={"exact_name": 0.011, "order": 0.604}, ablations={"checkpoint_only": 0.406},
        numeric="NOT proven; model.encoder.layers.11.self_attention.output_projection diverges",
    )  # fmt: skip
    text = render_results([long])
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert "checkpoint only" in text and "Columns:" in text
    assert headline([long]) == (
        "180/187 right (96.3%); 3 wrong at or above the threshold; 4 wrong flagged below it; 0 unmatched"
    )
    assert long.as_json()["wrong_above_threshold"] == 3


@pytest.mark.slow
def test_benchmark_runner_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], mindspore_cpu: Any) -> None:
    """Two zoo pairs through `python -m benchmarks.run`, table parsed.

    resnet50 (BatchNorm statistics listed apart, gamma/beta names; file order alone gets 61% right) and lstm_seq
    (weights grouped by kind) are both mapped 100% right by the engine; the bound is 100% so that any lost
    pair shows up here.
    """
    from benchmarks import run

    results = tmp_path / "results.json"
    argv = ["--size", "ci", "--pairs", "resnet50,lstm_seq", "--no-numeric", "--cache", str(tmp_path / "cache")]
    assert run.main([*argv, "--json", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PyTorch -> MindSpore, size ci")
    rows = {}
    for line in out.split("\n\n")[0].splitlines():  # the first table: accuracy
        found = re.match(r"^(resnet50|lstm_seq|TOTAL)\s.*?(\d+\.\d)%", line)
        if found:
            rows[found.group(1)] = float(found.group(2))
    assert rows == {"lstm_seq": 100.0, "resnet50": 100.0, "TOTAL": 100.0}
    document = json.loads(results.read_text(encoding="utf-8"))
    by_pair = {r["pair"]: r for r in document["forward"]}
    assert set(by_pair) == {"resnet50", "lstm_seq"}
    for name, pair in by_pair.items():
        assert pair["correct"] == pair["total"] > 0, name
        assert pair["wrong"] == pair["unmatched"] == 0
        assert pair["numeric_equivalence"] == "not run"
    assert by_pair["resnet50"]["baselines"]["order"] < 1.0  # not a case file order solves
