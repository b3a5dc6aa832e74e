"""The committed real-port corpus is consistent: listings, truth and split fit together.

The data under tests/data/realports was written by `python -m benchmarks.realports.generate` (third-party
environment) after proving each truth by running both networks; these checks need automap alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from automap.transforms import apply_steps
from benchmarks.realports._pair import FAMILIES
from benchmarks.realports.corpus import ROOT, load_corpus, load_split

PAIRS = load_corpus()


def test_the_corpus_is_there() -> None:
    assert len(PAIRS) >= 24
    assert len({p.family for p in PAIRS}) >= 8
    assert sum(p.direction == "ms2pt" for p in PAIRS) >= 6
    assert len({p.name for p in PAIRS}) == len(PAIRS)
    assert {p.direction for p in PAIRS} == {"pt2ms", "ms2pt"}
    assert all(p.name == p.folder.name for p in PAIRS)


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_every_target_has_a_truth_entry_or_is_declared_sourceless(pair) -> None:  # type: ignore[no-untyped-def]
    listed = [r.name for r in (*pair.target.params, *pair.target.excluded)]
    assert pair.truth
    assert set(pair.truth).isdisjoint(pair.no_source)
    assert set(pair.truth) | set(pair.no_source) == set(listed)


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_truth_sources_exist_and_transforms_give_the_target_shape(pair) -> None:  # type: ignore[no-untyped-def]
    sources = {r.name: r for r in (*pair.source.params, *pair.source.excluded)}
    targets = {r.name: r for r in pair.target.params}
    for target in pair.truth:
        names = pair.sources_of(target)
        assert names, f"{pair.name}: {target} has an empty source"
        missing = [n for n in names if n not in sources]
        assert not missing, f"{pair.name}: {target} from {missing}, not in the source listing"
        arrays = [np.zeros(sources[n].shape, dtype=np.float32) for n in names]
        made = apply_steps(arrays, pair.steps_of(target))
        assert made.shape == targets[target].shape, (
            f"{pair.name}: {target} is {targets[target].shape}, the truth makes {made.shape}"
        )


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_the_recorded_proof_held_and_a_swap_broke_it(pair) -> None:  # type: ignore[no-untyped-def]
    proof = pair.document["proof"]
    assert proof["scope"] in ("network", "per-block")
    # the outputs' scale is max_abs / max_rel; agreement means max_abs <= atol + rtol * scale (3 digits kept)
    scale = proof["max_abs_diff"] / proof["max_rel_diff"] if proof["max_rel_diff"] else 0.0
    assert proof["max_abs_diff"] <= 1.01 * (proof["atol"] + proof["rtol"] * scale)
    swap = proof["swap"]
    assert swap["broke_agreement"] is True
    assert swap["max_rel_diff"] > 10 * proof["max_rel_diff"]
    assert len(set(swap["targets"])) == 2 and set(swap["targets"]) <= set(pair.truth)
    assert pair.document["packages"], "package versions are recorded"
    assert set(pair.document["fill"]) <= set(pair.no_source), "only sourceless targets are filled for the proof"


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_listings_name_bare_files_and_their_framework(pair) -> None:  # type: ignore[no-untyped-def]
    frameworks = {"pt2ms": ("pytorch", "mindspore"), "ms2pt": ("mindspore", "pytorch")}[pair.direction]
    assert (pair.source.framework, pair.target.framework) == frameworks
    for side in ("source", "target"):
        listing = json.loads((pair.folder / f"{side}.json").read_text())
        assert "/" not in listing["source"], "a listing names the file, not a path of the machine that made it"


def test_the_split_covers_every_family_and_both_halves_mix_directions() -> None:
    split = load_split()
    assert set(split.values()) <= {"dev", "test"}
    assert set(FAMILIES) <= set(split)
    assert {p.family for p in PAIRS} <= set(split)
    for half in ("dev", "test"):
        directions = {p.direction for p in PAIRS if p.split == half}
        assert directions == {"pt2ms", "ms2pt"}, f"the {half} half has pairs in directions {directions} only"


def test_corpus_root_is_the_committed_data_folder() -> None:
    assert ROOT.parts[-3:] == ("tests", "data", "realports")
    assert all(p.folder.parent == ROOT for p in PAIRS)
