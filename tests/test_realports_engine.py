"""The promise on ports nobody here wrote: no wrong pair at or above the threshold, and convert --like never
writes a wrong tensor unflagged, on every pair of the real-port corpus (third-party model code on both sides,
truth proven by running both networks; see benchmarks/realports/README.md).

The corpus is committed as listings, so these tests need no model package and no framework.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from automap import load_checkpoint
from automap.engine.inference import infer_mapping
from automap.records import NameMapping
from benchmarks.realports.accuracy import score_real
from benchmarks.realports.convert_check import check_pair
from benchmarks.realports.corpus import CorpusPair, load_corpus

PAIRS = load_corpus()


def _ids(pair: CorpusPair) -> str:
    return pair.name


@pytest.mark.parametrize("pair", PAIRS, ids=_ids)
def test_no_wrong_pair_is_at_or_above_the_threshold(pair: CorpusPair) -> None:
    for weights in ({}, {"convention": 0.0}):  # with and without the published rename tables
        result = score_real(pair, infer_mapping(pair.source, pair.target, weights=weights))
        confident = [w for w in result.wrong_pairs if w.startswith("WRONG AT OR ABOVE")]
        assert confident == [], (weights, confident)


@pytest.mark.parametrize("pair", PAIRS, ids=_ids)
def test_convert_like_converts_right_or_refuses(pair: CorpusPair, tmp_path) -> None:  # type: ignore[no-untyped-def]
    outcome = check_pair(pair, tmp_path)
    assert outcome.wrong_written == ()
    assert outcome.converted or outcome.refused, outcome.detail
    if outcome.converted:  # what was written is the template's, nothing else
        written = load_checkpoint(next(p for p in tmp_path.glob("*-converted.*") if not p.name.endswith(".json")))
        assert set(written.names) <= set(pair.target.names)


def _without(mapping: NameMapping, leaf: str) -> tuple[NameMapping, int]:
    """The mapping less its pairs for targets named `...leaf` that it left unmatched; how many it dropped."""
    kept = tuple(p for p in mapping.pairs if not (p.source is None and p.target.endswith(leaf)))
    return replace(mapping, pairs=kept), len(mapping.pairs) - len(kept)


@pytest.mark.parametrize(
    ("name", "leaf", "need_no_review"),
    [
        ("densenet_mindcv_tv", ".num_batches_tracked", True),  # PyTorch's loader restores the counters
        ("swin_hf_mindformers", ".relative_position_index", False),  # a buffer left for the person to decide
    ],
)
def test_a_right_unmatched_target_needs_no_review_only_when_the_loader_restores_it(
    name: str, leaf: str, need_no_review: bool
) -> None:
    pair = next(p for p in PAIRS if p.name == name)
    mapping = infer_mapping(pair.source, pair.target)
    fewer, dropped = _without(mapping, leaf)
    assert dropped and all(not pair.sources_of(p.target) for p in mapping.pairs if p.target.endswith(leaf))
    counted, less = score_real(pair, mapping), score_real(pair, fewer)
    assert counted.right - less.right == dropped
    assert counted.right_above - less.right_above == (dropped if need_no_review else 0)
