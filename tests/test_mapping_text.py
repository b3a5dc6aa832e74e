"""The one-pass mapping writer gives the same bytes as the writer it replaced, for every kind of content.

The reference below is the earlier writer, kept verbatim: `json.dumps` of each value, and of every value inside
it again at each level, to decide what stays on one line. The mappings cover every transform kind, alternatives
with and without transforms, notes, unicode and very long names (which take the general road instead of the
pairs' fast one), scores shared between pairs, signed zeros and non-finite scores, the flat form, and mappings
the engine really infers.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from automap._mapping_text import compact, layout
from automap.engine.inference import infer_mapping
from automap.mapping import flat_problems, load_mapping, mapping_to_json, save_mapping
from automap.records import Alternative, Endpoint, Match, NameMapping
from automap.transforms import Concat, Reorder, Reshape, Split, Squeeze, Transpose, Unsqueeze
from benchmarks.scale import CONFIGS, listings
from tests.test_mapping import MAPPING, STEP_KINDS


def _reference(value: Any, level: int) -> str:
    """The earlier writer's layout, unchanged."""
    compact_text = json.dumps(value, ensure_ascii=False)
    if len(compact_text) + 2 * level <= 110 or not isinstance(value, dict | list) or not value:
        return compact_text
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, list):
        items = [inner + _reference(v, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_reference(v, level + 1)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + pad + "}"


def _reference_bytes(mapping: NameMapping, *, flat: bool = False) -> bytes:
    document = mapping.flat() if flat else mapping_to_json(mapping)
    return (_reference(document, 0) + "\n").encode("utf-8")


LONG = "encoder.very_long_module_name_that_goes_on.and_on_and_on_so_that_it_cannot_fit_on_one_line.weight"
SHARED_SCORES = {"shape": 1.0, "leaf": 0.123456, "path": 0.5, "numbers": 1, "order": -0.0, "odd": float("nan")}

EDGES = NameMapping(
    source=Endpoint("caf\u00e9/mod\u00e8le.pth", "pytorch", 9, "00aa"),
    target=Endpoint("\u6a21\u578b.ckpt", "mindspore", 9, "bb11"),
    pairs=(
        # unicode names and a quote and backslash, which JSON escapes
        Match("\u5c42.\u6743\u91cd", 'src."quoted"\\name', 0.5, target_shape=(3,), source_shape=(3,)),
        # a source list too long for its line, and a long transform chain
        Match(
            "fused.weight",
            (LONG, LONG + "2", LONG + "3"),
            0.7,
            (
                Concat(0),
                Reshape((3, 4, 5)),
                Transpose((2, 0, 1)),
                Unsqueeze(0),
                Squeeze(0),
                Reorder(0, 5, (4, 3, 2, 1, 0)),
            ),
            (5, 3, 4),
            ((4, 5), (4, 5), (4, 5)),
        ),
        # signed zeros, which are one key of a dict but two texts
        Match(
            "a.weight",
            "b.weight",
            -0.0,
            target_shape=(2, 2),
            source_shape=(2, 2),
            alternatives=(Alternative("c.weight", 0.0), Alternative("d.weight", -0.0)),
        ),
        # alternatives one per line: each just fits (102 columns), then one just does not (103)
        Match("a1.weight", "b1.weight", 0.5, alternatives=(Alternative("n" * 68, 0.25), Alternative("m" * 68, 0.25))),
        Match("a1.bias", "b1.bias", 0.5, alternatives=(Alternative("n" * 69, 0.25), Alternative("m" * 68, 0.25))),
        Match("a3.weight", "b3.weight", 0.5, alternatives=(Alternative(LONG, 0.25),)),
        # evidence that just fits its line (104 columns), then just does not (105)
        Match("e.1", "f.1", 0.5, labels={"note": "x" * 92}),
        Match("e.2", "f.2", 0.5, labels={"note": "x" * 93}),
        Match(
            "a2.weight",
            "b2.weight",
            0.0,
            target_shape=(2, 2),
            source_shape=(2, 2),
            alternatives=(
                Alternative(LONG[:60], 0.1),
                Alternative(LONG[:61], 0.2, (Split(0, 2, 1), Transpose())),
                Alternative(None, 0.3),
            ),
        ),
        # scores shared by several pairs (as carried-over blocks share them), with different labels each
        Match("s.0", "t.0", 1, evidence=SHARED_SCORES, labels={"decided_by": "names and structure"}),
        Match("s.1", "t.1", 0.99999, evidence=SHARED_SCORES, labels={"block": "same as block 0", "note": "x" * 120}),
        Match("s.2", "t.2", float("inf"), evidence=SHARED_SCORES),
        Match("s.3", None, 0.0, target_shape=tuple(range(40))),
        Match("s.4", (), 0.2, source_shape=()),
        Match("s.5", "t.5", 0.3, target_shape=(1,) * 40, source_shape=((1,) * 30, (2,) * 30)),
    ),
    threshold=0.25,
    unmatched_source=tuple(f"unused.{i}.weight" for i in range(30)),
    excluded_source=("global_step",),
    notes=("a note", "n\u00f6te " * 40),
)
EMPTY = NameMapping(Endpoint("a", "pytorch", 0), Endpoint("b", "mindspore", 0), ())
TINY_FLAT = NameMapping(Endpoint("a", "pytorch", 1), Endpoint("b", "mindspore", 1), (Match("x", "y", 1.0),))


def _inferred(name: str) -> NameMapping:
    source, target, _ = listings(CONFIGS[name])
    return infer_mapping(source, target)


@pytest.mark.parametrize("mapping", [MAPPING, STEP_KINDS, EDGES, EMPTY, TINY_FLAT], ids=lambda m: m.target.path)
@pytest.mark.parametrize("flat", [False, True])
def test_written_bytes_are_the_earlier_writers(mapping: NameMapping, flat: bool, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    if flat:  # a flat file holds only the pairs it can state fully
        problems = flat_problems(mapping)
        mapping = replace(mapping, pairs=tuple(p for p in mapping.pairs if p not in problems))
    save_mapping(mapping, out, flat=flat)
    assert out.read_bytes() == _reference_bytes(mapping, flat=flat)


@pytest.mark.parametrize("name", ["llama-7b", "mixtral-8x7b", "deepseek-v3-6l"])
def test_inferred_mappings_are_written_as_before(name: str, tmp_path: Path) -> None:
    mapping = _inferred(name)
    out = tmp_path / "m.json"
    save_mapping(mapping, out)
    assert out.read_bytes() == _reference_bytes(mapping)
    save_mapping(load_mapping(out), tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == out.read_bytes()


def _random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -3, 7, 2**70, rng.randrange(10**6)])
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.5, 1e-7, 1e22, float("nan"), float("-inf"), rng.random()])
    if kind in (3, 4):
        return "".join(rng.choice('ab"\\\n\u00e9\u6a21 .') for _ in range(rng.randrange(0, 40)))
    if kind in (5, 6):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 8))]
    if kind == 7:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5)))
    return {str(_random_value(rng, 4)): _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 8))}


def test_any_json_value_is_laid_out_as_before() -> None:
    rng = random.Random(18)
    for _ in range(3000):
        value = _random_value(rng, 0)
        level = rng.randrange(4)
        assert compact(value) == json.dumps(value, ensure_ascii=False)
        assert layout(value, level) == _reference(value, level)


def test_keys_that_are_not_text_are_laid_out_as_before() -> None:
    value = {1: "x" * 60, None: [1.5] * 20, 2.5: {"k": "v"}, False: True}
    assert layout(value, 1) == _reference(value, 1)
    assert layout({1: 2}) == _reference({1: 2}, 0)
