"""Short coverage of every reader and the mapping parser by mutated valid files (the long run is
`python -m benchmarks.fuzz`). Each target's contract (tests/hostile/fuzzing.py): succeed, or fail with one
`automap: error:` line; nothing else may escape. Inputs the long run found become regression cases here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import catalogue, fuzzing

# Examples per target: enough to touch every structure of the seeds, few enough for seconds per target.
EXAMPLES = {"convert": 60, "torch-legacy": 100}
DEFAULT_EXAMPLES = 150


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzzing.Workspace]:
    yield fuzzing.Workspace(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("name", fuzzing.CI_TARGETS)
def test_mutated_seeds_keep_the_contract(name: str, workspace: fuzzing.Workspace) -> None:
    target = fuzzing.TARGETS[name]
    seeds = target.seeds(workspace.seeds)
    for seed in seeds:
        workspace.check(target, seed)  # the seeds themselves pass

    @settings(
        max_examples=EXAMPLES.get(name, DEFAULT_EXAMPLES),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(index=st.integers(0, len(seeds) - 1), rng=st.randoms(use_true_random=False))
    def check(index: int, rng: Any) -> None:
        workspace.check(target, fuzzing.mutate(seeds[index], rng))

    check()


_DIMS = st.lists(st.integers(0, 5), max_size=4)
_AXIS = st.integers(-5, 5)
_STEP = st.one_of(
    st.fixed_dictionaries({"op": st.just("transpose")}, optional={"axes": st.lists(_AXIS, max_size=4)}),
    st.fixed_dictionaries({"op": st.just("reshape"), "shape": _DIMS}),
    st.fixed_dictionaries({"op": st.sampled_from(["unsqueeze", "squeeze"]), "axis": _AXIS}),
    st.fixed_dictionaries(
        {"op": st.just("split"), "axis": _AXIS, "parts": st.integers(0, 4), "index": st.integers(-1, 4)}
    ),
    st.fixed_dictionaries({"op": st.just("concat")}, optional={"axis": _AXIS}),
    st.fixed_dictionaries(
        {"op": st.just("reorder"), "axis": _AXIS, "parts": st.integers(1, 4), "order": st.lists(st.integers(0, 3))}
    ),
)


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(shapes=st.lists(_DIMS, min_size=1, max_size=3), steps=st.lists(_STEP, max_size=4))
def test_whatever_output_shape_accepts_apply_steps_produces_and_inverse_undoes(
    shapes: list[list[int]], steps: list[dict[str, Any]]
) -> None:
    fuzzing.check_transform(json.dumps({"shapes": shapes, "steps": steps}).encode())


def _zip64_spanning_disks(seeds: catalogue.Seeds) -> bytes:
    # torch.save always writes ZIP64 end records; a locator claiming several disks made zipfile.is_zipfile
    # raise BadZipFile instead of answering (fixed in automap/io/torch.py: _check_zip).
    raw = bytearray(seeds.pth.read_bytes())
    locator = raw.rindex(b"PK\x06\x07")
    raw[locator + 16 : locator + 20] = (0xFB0001).to_bytes(4, "little")
    return bytes(raw)


def _alternatives_not_a_list(seeds: catalogue.Seeds) -> bytes:
    # "alternatives": true escaped as a TypeError from iterating a bool (fixed in automap/mapping.py: _pair).
    document = json.loads(seeds.mapping.read_text())
    document["pairs"][1]["alternatives"] = True
    return json.dumps(document).encode()


def _with_steps(seeds: catalogue.Seeds, steps: list[Any]) -> bytes:
    document = json.loads(seeds.mapping.read_text())
    document["pairs"][0]["transform"] = steps
    return json.dumps(document).encode()


# Inputs the long fuzz run found, each once a crash; rebuilt from the seeds, since no binary files are kept.
REGRESSIONS: list[tuple[str, str, Callable[[catalogue.Seeds], bytes]]] = [
    ("torch-zip", "zip64-locator-spanning-disks", _zip64_spanning_disks),
    ("mapping", "alternatives-not-a-list", _alternatives_not_a_list),
    # An "op" that is a list made the check `op in known_ops` raise TypeError (fixed in automap/transforms.py).
    ("transforms", "op-not-a-string", lambda seeds: b'{"shapes": [[0, 2]], "steps": [{"op": [0, 1, 3, 2]}]}'),
    ("mapping", "op-not-a-string-in-a-mapping", lambda seeds: _with_steps(seeds, [{"op": {"nested": 1}}])),
]


@pytest.mark.parametrize(("name", "why", "make"), REGRESSIONS, ids=[r[1] for r in REGRESSIONS])
def test_fuzzer_findings_stay_fixed(
    name: str, why: str, make: Callable[[catalogue.Seeds], bytes], workspace: fuzzing.Workspace
) -> None:
    data = make(workspace.seeds)
    assert data != fuzzing.TARGETS[name].seeds(workspace.seeds)[0]
    workspace.check(fuzzing.TARGETS[name], data)


def test_a_broken_contract_is_detected(tmp_path: Path, workspace: fuzzing.Workspace) -> None:
    """The harness itself can fail: a target that prints an unencodable name is reported."""
    target = fuzzing.Target("broken", "x", lambda s: [], lambda path, seeds: print("\ud800"))
    with pytest.raises(UnicodeEncodeError), fuzzing.strict_output():
        target.run(tmp_path / "x", workspace.seeds)
