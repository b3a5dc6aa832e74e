"""The assignment solver on hand-set costs, plus the candidates and feature registry that feed it.

Costs are written by hand per (target, source) pair: a total cost, the part of it that strong features
(names, numbers, structure, shape) carry, and optionally the part of that the shape (layout) alone carries;
the rest is weak evidence (file order). That makes each solver rule visible:
unmatched handling, part/whole conflicts, complete part sets, confidence from margins and its caps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from automap._decisions import DecidedBy
from automap._types import Framework
from automap.engine.features import FEATURES, FeatureContext, feature, score_candidates
from automap.engine.names import TokenWeights
from automap.engine.sides import Side, build_sides, candidate_pairs
from automap.engine.solver import candidate_costs, solve
from automap.records import ParamRecord, ParamTable

Spec = tuple[str, tuple[int, ...]] | tuple[str, tuple[int, ...], str]
Choice = tuple[str | None, float, DecidedBy | None, bool]  # source node name, confidence, doubt, order only

UNMATCHED = 7.0
FAR = (5.0, 5.0)  # a pair no test wants: costs much more than a good pair, less than staying unmatched


def _table(framework: Framework, specs: Sequence[Spec]) -> ParamTable:
    records = tuple(ParamRecord(s[0], s[1], s[2] if len(s) > 2 else "float32", i) for i, s in enumerate(specs))
    return ParamTable(framework, f"{framework}-side", records)


def _name(side: Side, node: int) -> str:
    """A node as the tests write it: `qkv.weight`, or `qkv.weight[1/3 on axis 0]` for a part."""
    item = side.nodes[node]
    base = side.table.params[item.base].name
    if item.part is None:
        return base
    return f"{base}[{item.part.index}/{item.part.parts} on axis {item.part.axis}]"


def _solve(
    source: Sequence[Spec],
    target: Sequence[Spec],
    costs: Mapping[tuple[str, str], tuple[float, ...]],
    *,
    default: tuple[float, float] = FAR,
    templates: Sequence[str] | None = None,
) -> dict[str, Choice]:
    """Solve with hand-set (total, strong[, layout]) costs per (target, source) node name; others get `default`.

    `templates` stand for the source nodes' names with container indices blanked: equal templates are the same
    tensor of two repeated blocks.
    """
    s_side, t_side = build_sides(_table("pytorch", source), _table("mindspore", target))
    candidates = candidate_pairs(s_side, t_side)
    pairs = [
        (_name(t_side, int(t)), _name(s_side, int(s)))
        for t, s in zip(candidates.target, candidates.source, strict=True)
    ]
    total = np.array([costs.get(p, default)[0] for p in pairs])
    strong = np.array([[*costs.get(p, default)[1:], 0.0][:2] for p in pairs])
    repeated = None if templates is None else (lambda a, b: templates[a] == templates[b])
    solution = solve(s_side, t_side, candidates, total, strong, UNMATCHED, repeated=repeated)
    return {
        _name(t_side, a.target): (
            None if a.source is None else _name(s_side, a.source),
            a.confidence,
            a.doubt,
            a.order_only,
        )
        for a in solution.assignments.values()
    }


TWO_SOURCES: list[Spec] = [("x", (4,)), ("y", (4,))]
TWO_TARGETS: list[Spec] = [("p", (4,)), ("q", (4,))]


def _two_by_two(
    right: tuple[float, float], crossed: tuple[float, float], templates: Sequence[str] | None = None
) -> dict[str, Choice]:
    """p~x and q~y cost `right`; p~y and q~x cost `crossed`."""
    costs = {("p", "x"): right, ("q", "y"): right, ("p", "y"): crossed, ("q", "x"): crossed}
    return _solve(TWO_SOURCES, TWO_TARGETS, costs, templates=templates)


# --- assignment ----------------------------------------------------------------------------------------------


def test_minimum_cost_assignment() -> None:
    # p's cheapest source is x, but giving x to p leaves q with y at 6.0: the optimum is p~y + q~x (3.5 < 7.0)
    costs = {("p", "x"): (1.0, 1.0), ("p", "y"): (2.0, 2.0), ("q", "x"): (1.5, 1.5), ("q", "y"): (6.0, 6.0)}
    chosen = _solve(TWO_SOURCES, TWO_TARGETS, costs)
    assert chosen["p"][0] == "y" and chosen["q"][0] == "x"


def test_a_target_whose_candidates_all_cost_more_than_staying_unmatched_stays_unmatched() -> None:
    costs = {("p", "x"): (UNMATCHED + 1, UNMATCHED + 1), ("q", "y"): (1.0, 1.0)}
    chosen = _solve(TWO_SOURCES, TWO_TARGETS, costs, default=(UNMATCHED + 2, UNMATCHED + 2))
    assert chosen["p"] == (None, 0.0, None, False)
    assert chosen["q"][0] == "y"


def test_a_source_is_used_at_most_once() -> None:
    chosen = _solve([("x", (4,))], TWO_TARGETS, {("p", "x"): (1.0, 1.0), ("q", "x"): (1.2, 1.2)})
    assert chosen["p"][0] == "x"
    assert chosen["q"][0] is None


def test_a_source_is_not_used_whole_and_in_parts() -> None:
    # Two fused [24, 8] tensors; one target takes a whole tensor by reshape, three take [8, 8] thirds. Cheapest
    # without the rule: everything from `a.fused` (0.5). The costlier use of `a.fused` (whole, 0.5 per pair
    # against 0 per part) is forbidden, and the rest re-solved around it.
    source: list[Spec] = [("a.fused", (24, 8)), ("b.fused", (24, 8))]
    target: list[Spec] = [("big", (12, 16)), ("q", (8, 8)), ("k", (8, 8)), ("v", (8, 8))]
    costs = {("big", "a.fused"): (0.5, 0.5), ("big", "b.fused"): (3.0, 3.0)}
    for i, name in enumerate("qkv"):
        costs[(name, f"a.fused[{i}/3 on axis 0]")] = (0.0, 0.0)
        costs[(name, f"b.fused[{i}/3 on axis 0]")] = (1.0, 1.0)
    chosen = _solve(source, target, costs)
    assert chosen["big"][0] == "b.fused"
    assert [chosen[n][0] for n in "qkv"] == [f"a.fused[{i}/3 on axis 0]" for i in range(3)]


def test_a_target_built_from_parts_needs_every_part() -> None:
    # qkv [24, 8] can only be built from three [8, 8] sources; with two, nothing is built at all
    chosen = _solve([("q", (8, 8)), ("k", (8, 8))], [("qkv", (24, 8))], {}, default=(0.0, 0.0))
    assert all(choice[0] is None for choice in chosen.values())
    assert "qkv[0/3 on axis 0]" in chosen


def test_a_complete_set_of_parts_builds_the_target() -> None:
    source: list[Spec] = [("q", (8, 8)), ("k", (8, 8)), ("v", (8, 8)), ("o", (8, 8))]
    costs = {("qkv[0/3 on axis 0]", "q"): (0.0, 0.0), ("qkv[1/3 on axis 0]", "k"): (0.0, 0.0)}
    costs |= {("qkv[2/3 on axis 0]", "v"): (0.0, 0.0), ("o", "o"): (0.0, 0.0)}
    chosen = _solve(source, [("qkv", (24, 8)), ("o", (8, 8))], costs)
    assert chosen["qkv"][0] is None  # not taken whole...
    assert [chosen[f"qkv[{i}/3 on axis 0]"][0] for i in range(3)] == ["q", "k", "v"]  # ...but built from parts
    assert chosen["o"][0] == "o"


# --- confidence ----------------------------------------------------------------------------------------------


def test_confidence_grows_with_the_margin_over_the_best_exchange() -> None:
    confidences = [_two_by_two((0.0, 0.0), (margin, margin))["p"][1] for margin in (0.2, 0.4, 1.0, 3.0)]
    assert confidences == sorted(confidences)
    assert confidences[0] < 0.9 < confidences[-1]
    assert all(0.0 <= c <= 1.0 for c in confidences)


def test_a_tie_is_said_and_stays_below_the_threshold() -> None:
    chosen = _two_by_two((1.0, 1.0), (1.0, 1.0))
    for target in "pq":
        _, confidence, doubt, _ = chosen[target]
        assert doubt is DecidedBy.TIE
        assert confidence < 0.5


def test_a_decision_only_weak_features_make_is_capped_as_order_only() -> None:
    # the crossed pairs cost more, but only through weak features: strong costs are equal
    chosen = _two_by_two((1.0, 1.0), (3.0, 1.0))
    for target in "pq":
        _, confidence, doubt, order_only = chosen[target]
        assert order_only
        assert doubt is DecidedBy.ORDER_ONLY
        assert confidence < 0.5
    # the same margin carried by strong features is trusted
    strong = _two_by_two((1.0, 1.0), (3.0, 3.0))
    assert strong["p"][1] > 0.9 and strong["p"][2] is None


def test_block_order_is_trusted() -> None:
    # Rivals that are the same tensor of another repeated block (`blocks.#.w`): ports enumerate blocks in order
    chosen = _two_by_two((1.0, 1.0), (3.0, 1.0), templates=["blocks.#.w", "blocks.#.w"])
    assert chosen["p"][2] is None and not chosen["p"][3]
    assert chosen["p"][1] > 0.9


def test_names_and_order_disagreeing_is_capped_unless_the_names_are_decisive() -> None:
    # strong features favour the chosen pairs a little (0.7 over the exchange), weak ones favour the rival (0.5)
    mild = _two_by_two((1.0, 1.0), (1.1, 1.35))
    assert mild["p"][0] == "x"
    assert mild["p"][2] is DecidedBy.NAMES_AND_ORDER_DISAGREE
    assert mild["p"][1] < 0.5
    # a strong margin of 2 (a leaf or number mismatch) outweighs order: no cap
    decisive = _two_by_two((1.0, 1.0), (1.2, 2.0))
    assert decisive["p"][2] is None
    assert decisive["p"][1] > 0.5


def test_a_decision_only_the_layout_makes_is_capped() -> None:
    # the right pairs are cheaper through strong features, but all of that margin is the shape feature's (an exact
    # shape against a transposed one): ports store layers either way round, so that is no evidence
    right, crossed = (1.0, 1.0, 0.0), (3.0, 3.0, 2.0)
    costs = {("p", "x"): right, ("q", "y"): right, ("p", "y"): crossed, ("q", "x"): crossed}
    chosen = _solve(TWO_SOURCES, TWO_TARGETS, costs)
    assert chosen["p"][0] == "x" and chosen["p"][2] is DecidedBy.LAYOUT_ONLY and chosen["p"][1] < 0.5
    # the same margin with names behind it (strong margin beyond the layout's) is trusted
    named = {("p", "x"): right, ("q", "y"): right, ("p", "y"): (3.0, 3.0, 0.5), ("q", "x"): (3.0, 3.0, 0.5)}
    chosen = _solve(TWO_SOURCES, TWO_TARGETS, named)
    assert chosen["p"][2] is None and chosen["p"][1] > 0.9


# --- candidates and features ---------------------------------------------------------------------------------


def test_candidates_need_compatible_shapes_and_the_same_kind_of_dtype() -> None:
    source: list[Spec] = [("w", (8, 6)), ("steps", (8,), "int64"), ("scale", (8,)), ("odd", (7,))]
    target: list[Spec] = [("w", (6, 8)), ("ids", (8,), "int64"), ("gamma", (8,), "float16"), ("half", (8,), "bfloat16")]
    s_side, t_side = build_sides(_table("pytorch", source), _table("mindspore", target))
    candidates = candidate_pairs(s_side, t_side)
    pairs = {
        (_name(t_side, int(t)), _name(s_side, int(s)))
        for t, s in zip(candidates.target, candidates.source, strict=True)
    }
    assert pairs == {("w", "w"), ("ids", "steps"), ("gamma", "scale"), ("half", "scale")}
    relation = candidates.relation[
        next(
            i
            for i, (t, s) in enumerate(zip(candidates.target, candidates.source, strict=True))
            if _name(t_side, int(t)) == "w"
        )
    ]
    assert relation.kind == "transpose"


def test_fused_tensors_are_offered_as_parts_only_when_the_other_side_needs_them() -> None:
    fused = _table("pytorch", [("attn.qkv.weight", (24, 8)), ("mlp.fc.weight", (32, 8))])
    separate = _table("mindspore", [(f"attn.{p}.weight", (8, 8)) for p in "qkv"] + [("mlp.fc.weight", (32, 8))])
    s_side, t_side = build_sides(fused, separate)
    parts = [_name(s_side, i) for i, n in enumerate(s_side.nodes) if n.part is not None]
    assert parts == [f"attn.qkv.weight[{i}/3 on axis 0]" for i in range(3)]  # the [32, 8] both sides have stays whole
    assert all(n.part is None for n in t_side.nodes)
    # each piece of `qkv` takes the name of its word: q, k, v
    pieces = [s_side.node_tokens[i] for i, n in enumerate(s_side.nodes) if n.part is not None]
    assert ["=query" in p.path for p in pieces] == [True, False, False]
    assert ["=value" in p.path for p in pieces] == [False, False, True]


def test_every_feature_scores_every_candidate_in_the_unit_interval() -> None:
    source = _table("pytorch", [("bn.weight", (4,)), ("bn.bias", (4,)), ("fc.weight", (3, 4)), ("proj.weight", (4, 4))])
    target = _table("mindspore", [("bn.gamma", (4,)), ("bn.beta", (4,)), ("fc.weight", (4, 3)), ("out.weight", (4, 4))])
    s_side, t_side = build_sides(source, target)
    candidates = candidate_pairs(s_side, t_side)
    ctx = FeatureContext(s_side, t_side, candidates, TokenWeights(s_side.tokens, t_side.tokens))
    scores = score_candidates(ctx)
    assert set(scores) == set(FEATURES)
    for name, values in scores.items():
        assert values.shape == (len(candidates.target),), name
        assert np.all((values >= 0) & (values <= 1)), name
    assert set(score_candidates(ctx, {"order": 0.0})) == set(FEATURES) - {"order"}
    total, strong = candidate_costs(scores, {})
    assert strong.shape == (len(total), 2)
    assert np.all(strong[:, 0] <= total + 1e-12)
    assert np.all(strong[:, 1] <= strong[:, 0] + 1e-12)  # the layout's part is a part of the strong cost
    gamma = t_side.table.names.index("bn.gamma")
    by_source = {
        _name(s_side, int(s)): total[i]
        for i, (t, s) in enumerate(zip(candidates.target, candidates.source, strict=True))
        if t == gamma
    }
    assert by_source["bn.weight"] < by_source["bn.bias"]  # the lexicon makes gamma a weight


def test_registering_a_feature_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'shape' is registered twice"):
        feature("shape", weight=1.0)(lambda ctx: np.zeros(0))
    assert FEATURES["shape"].compute.__name__ == "shape_feature"
