"""Large problems are solved block by block: one block of each kind, its pairs carried over to the others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest

from automap._decisions import DecidedBy
from automap._types import Framework
from automap.engine.decompose import solve_in_blocks
from automap.engine.inference import infer_mapping
from automap.records import Match, NameMapping, ParamRecord, ParamTable
from automap.transforms import Concat, Reshape
from benchmarks.scale import CONFIGS, listings


def _table(framework: Framework, specs: Sequence[tuple[str, tuple[int, ...]]]) -> ParamTable:
    return ParamTable(framework, framework, tuple(ParamRecord(n, s, "float32", i) for i, (n, s) in enumerate(specs)))


class RenamingSolver:
    """A stand-in dense solver with a known answer: target `layers.` -> source `blocks.`, `dense` -> `fc`.

    It records the size of every problem it is given, so the tests can see how the problem was split.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.blocks: list[dict[str, str]] = []  # the block modules paired on the way to each problem

    def __call__(
        self, source: ParamTable, target: ParamTable, blocks: Mapping[str, str]
    ) -> tuple[dict[str, Match], list[str]]:
        self.calls.append((len(source), len(target)))
        self.blocks.append(dict(blocks))
        out = {}
        for record in target.params:
            name = record.name.replace("layers.", "blocks.").replace("dense", "fc")
            if name in source:
                out[record.name] = Match(record.name, name, 0.9, target_shape=record.shape, source_shape=record.shape)
        return out, [f"dense solve of {len(target)}"]


def _blocks(prefix: str, layer: str, count: int, *, extra_every: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    specs = [("embed.weight", (10, 4))]
    for i in range(count):
        specs += [(f"{prefix}.{i}.{layer}.weight", (4, 4)), (f"{prefix}.{i}.{layer}.bias", (4,))]
        if extra_every and i % extra_every == 0:
            specs.append((f"{prefix}.{i}.gate.weight", (2, 4)))
    return [*specs, ("head.weight", (3, 4))]


def test_small_problems_go_to_the_dense_solver_unchanged() -> None:
    source, target = _table("pytorch", _blocks("blocks", "fc", 6)), _table("mindspore", _blocks("layers", "dense", 6))
    solver = RenamingSolver()
    matches, notes = solve_in_blocks(source, target, solver)
    assert solver.calls == [(len(source), len(target))]
    assert notes == [f"dense solve of {len(target)}"]
    assert len(matches) == len(target)


def test_one_block_per_kind_is_solved_and_carried_over() -> None:
    # blocks 0, 3, 6 hold an extra gate: two kinds of block
    source = _table("pytorch", _blocks("blocks", "fc", 9, extra_every=3))
    target = _table("mindspore", _blocks("layers", "dense", 9, extra_every=3))
    solver = RenamingSolver()
    matches, notes = solve_in_blocks(source, target, solver, limit=4)
    # the first kind's lead (block 0, with a gate) is solved together with everything outside the blocks; the
    # second kind (blocks without a gate) holds only tensors block 0 already decided, so it needs no solve at all
    assert solver.calls == [(3 + 2, 3 + 2)]
    assert set(matches) == set(target.names)
    for name, match in matches.items():
        assert match.source == name.replace("layers.", "blocks.").replace("dense", "fc")
    assert matches["layers.1.dense.weight"].labels["block"] == "same as block 0 (repeated structure)"
    assert matches["layers.7.dense.weight"].labels["block"] == "same as block 1 (repeated structure)"
    assert matches["layers.6.gate.weight"].labels["block"] == "same as block 0 (repeated structure)"
    assert "block" not in matches["layers.0.dense.weight"].labels
    assert notes[-1] == (
        "solved block by block: 9 blocks under 'layers' paired in index order with 'blocks', 2 kind(s) of block"
    )


def test_shared_tensors_take_the_earlier_kinds_decision() -> None:
    # Kind A: fc only; kind B: fc and gate. Block 1 (lead of kind B) shares its fc with kind A: that decision is
    # carried over and only the gate is solved for it.
    target_specs = _blocks("layers", "dense", 8)
    source_specs = _blocks("blocks", "fc", 8)
    for specs, prefix in ((source_specs, "blocks"), (target_specs, "layers")):
        for i in range(1, 8, 2):
            specs.insert(-1, (f"{prefix}.{i}.gate.weight", (2, 4)))
    source, target = _table("pytorch", source_specs), _table("mindspore", target_specs)
    solver = RenamingSolver()
    matches, _ = solve_in_blocks(source, target, solver, limit=4)
    assert solver.calls == [(2 + 2, 2 + 2), (1, 1)]
    assert matches["layers.1.dense.weight"].source == "blocks.1.fc.weight"
    assert matches["layers.1.dense.weight"].labels["block"] == "same as block 0 (repeated structure)"
    assert matches["layers.1.gate.weight"].source == "blocks.1.gate.weight"


def test_concatenated_sources_are_renamed_into_every_block() -> None:
    source_specs = [(f"blocks.{i}.experts.{e}.w", (3, 4)) for i in range(4) for e in range(2)]
    target_specs = [(f"layers.{i}.experts_w", (2, 3, 4)) for i in range(4)]
    source, target = _table("pytorch", source_specs), _table("mindspore", target_specs)

    def stacked(
        sub_source: ParamTable, sub_target: ParamTable, blocks: Mapping[str, str]
    ) -> tuple[dict[str, Match], list[str]]:
        (record,) = sub_target.params
        index = record.name.split(".")[1]
        names = tuple(f"blocks.{index}.experts.{e}.w" for e in range(2))
        assert all(n in sub_source for n in names)
        steps = (Concat(0), Reshape((2, 3, 4)))
        return {record.name: Match(record.name, names, 0.9, steps, (2, 3, 4), ((3, 4), (3, 4)))}, []

    matches, _ = solve_in_blocks(source, target, stacked, limit=2)
    assert matches["layers.3.experts_w"].source == ("blocks.3.experts.0.w", "blocks.3.experts.1.w")
    assert matches["layers.3.experts_w"].transform == matches["layers.0.experts_w"].transform


def test_sides_with_different_block_counts_are_solved_whole() -> None:
    source, target = _table("pytorch", _blocks("blocks", "fc", 6)), _table("mindspore", _blocks("layers", "dense", 5))
    solver = RenamingSolver()
    solve_in_blocks(source, target, solver, limit=4)
    assert solver.calls == [(len(source), len(target))]


LargeMoe = tuple[ParamTable, ParamTable, dict[str, str], NameMapping]


@pytest.fixture(scope="module")
def large_moe() -> LargeMoe:
    """A DeepSeek-style MoE listing of 3,000+ tensors per side (tiny dimensions): two dense layers, then MoE layers."""
    config = replace(
        CONFIGS["deepseek-v3"],
        name="tiny-moe",
        layers=16,
        hidden=16,
        intermediate=32,
        heads=4,
        kv_heads=2,
        vocab=64,
        experts=36,
        expert_intermediate=8,
        dense_layers=2,
        shared_experts=1,
        fp8_scales=True,
    )
    source, target, truth = listings(config)
    return source, target, truth, infer_mapping(source, target)


def test_a_3000_tensor_model_is_solved_block_by_block_and_nothing_wrong_is_confident(large_moe: LargeMoe) -> None:
    source, target, truth, mapping = large_moe
    assert len(source) == len(target) > 3000
    assert any(n.startswith("solved block by block: 16 blocks under 'model.layers'") for n in mapping.notes)
    wrong = [p for p in mapping.pairs if p.source != truth[p.target] or p.transform]
    assert mapping.unmatched_source == ()
    assert len(wrong) < 0.12 * len(mapping.pairs)
    # a HuggingFace checkpoint lists its names sorted, so nothing but the published tables tells an expert's
    # gate_proj from its up_proj (w1 from w3): those are flagged ties, never confident
    for pair in wrong:
        assert pair.confidence < mapping.threshold
        assert pair.target.rsplit(".", 2)[-2] in ("w1", "w3") and pair.decided_by is DecidedBy.TIE, pair.target


def test_block_kinds_that_share_tensors_read_them_the_same_way(large_moe: LargeMoe) -> None:
    mapping = large_moe[3]
    pairs = {p.target: p for p in mapping.pairs}
    attention = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj"}
    for layer in range(16):  # layers 0-1 dense, 2-15 MoE: one decision for the attention of both kinds
        for port, hf in attention.items():
            for leaf in ("weight", "weight_scale_inv"):
                pair = pairs[f"model.layers.{layer}.attention.{port}.{leaf}"]
                assert pair.source == f"model.layers.{layer}.self_attn.{hf}.{leaf}"
                assert pair.transform == ()
    # the MoE kind's lead block took the dense kind's attention decision instead of solving it again
    assert pairs["model.layers.2.attention.wq.weight"].labels["block"] == "same as block 0 (repeated structure)"
