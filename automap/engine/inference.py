"""Infer a `NameMapping` from two parameter tables: the entry point, and the order in which the passes run.

Pinned pairs are set aside (`pins`), and large models are cut into blocks (`decompose`). Each block is then
solved in passes: both sides and their candidates are built (`sides`), modules are paired by content before
anything is matched (`seeds`), and pass 1 scores the candidates (`features`) and solves (`solver`). What its
confident pairs show (token correspondences, module pairs, number rules, order anchors) is fed back into the
scores, and the problem is solved again until the assignment stops changing (`passes`). Finally order settles
name-versus-order conflicts, the pieces of fused tensors are ordered (`fused`), and each target gets its
source, layout transform, confidence, evidence and alternatives (`result`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from automap._collector import collector_paused
from automap._errors import CheckpointFormatError
from automap._types import Array, StrPath
from automap.mapping import fingerprint
from automap.records import DEFAULT_THRESHOLD, Endpoint, Match, NameMapping, ParamTable
from automap.transforms import Transpose

from .calibration import calibrate_match, calibration
from .containers import doubt_renumbered_containers
from .conventions import ConventionIndex
from .decompose import solve_in_blocks
from .features import FeatureContext, score_candidates, total_weight
from .fused import order_parts
from .names import TokenWeights, index_template
from .ordinals import rank_numbered_siblings
from .passes import (
    confident_pairs,
    contradicted_number_keys,
    layout_conventions,
    learn_number_slots,
    learn_tokens,
    module_affinity,
    predicted_positions,
    settle_layout_doubts,
    transposed_share,
)
from .pins import pinned_pairs
from .result import build_matches
from .seeds import renumbered_keys, signature_seeds
from .sides import Side, build_sides, candidate_pairs
from .solver import Solution, candidate_costs, solve

__all__ = ["infer_mapping"]

_UNMATCHED_SHARE = 0.62  # a target stays unmatched rather than take a candidate this bad (share of all weight)
_REFINEMENTS = 3  # passes that feed what confident pairs showed back into the scores


@collector_paused()  # the mapping of a large model is millions of objects that live on: see automap/_collector.py
def infer_mapping(
    source: ParamTable | StrPath,
    target: ParamTable | StrPath,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    pins: NameMapping | None = None,
    weights: Mapping[str, float] | None = None,
    learn: bool = True,
    lexicon: bool = True,
    calibrate: bool = True,
    source_order: Sequence[str] | None = None,
    target_order: Sequence[str] | None = None,
) -> NameMapping:
    """Infer which source parameter feeds each target parameter, with a confidence for every pair.

    Args:
        source: the checkpoint (or table) whose values will be converted.
        target: the checkpoint, listing or table whose names, shapes and order the result must have; its
            values are never read.
        threshold: confidence below which a pair is reported as needing review.
        pins: a (partial, possibly hand-edited) mapping whose pairs are kept as they are; everything else is
            solved around them.
        weights: feature weights overriding the defaults (0 switches a feature off), for ablations; e.g.
            `{"convention": 0}` infers without the libraries' published rename tables.
        learn: feed correspondences learned from confident pairs into a second pass.
        lexicon: use the lexicon of naming conventions and the published rename tables (switch off only to
            measure what they contribute).
        calibrate: report each confidence as a probability fitted on real ports (`calibration`); switch off
            only to refit that map, which needs the solver's own share of odds.
        source_order: source parameter names in the order a forward pass first uses them (execution order);
            replaces file order as the order signal. Parameters not listed keep their file position.
        target_order: the same for the target.

    Returns:
        One pair per target parameter, in target order.

    Raises:
        CheckpointFormatError: a path cannot be read, or a parameter name has an empty component (`a..b`).
        MappingFileError: a reviewed pair of `pins` names a parameter that does not exist.

    Example:
        >>> mapping = infer_mapping("model.pth", "template.ckpt")  # doctest: +SKIP
        >>> [(p.target, p.source, round(p.confidence, 2)) for p in mapping.pairs][:1]  # doctest: +SKIP
        [('conv1.weight', 'conv1.weight', 1.0)]
    """
    source_table, target_table = _table(source), _table(target)
    for table in (source_table, target_table):
        if any(not name or name.startswith(".") or name.endswith(".") or ".." in name for name in table.names):
            bad = next(n for n in table.names if not n or n.startswith(".") or n.endswith(".") or ".." in n)
            msg = f"{table.source}: parameter name {bad!r} has an empty component; names look like 'layer.weight'"
            raise CheckpointFormatError(msg)
    pinned = pinned_pairs(pins, source_table, target_table)
    free_source = _subtable(source_table, {n for m in pinned.values() for n in m.source_names})
    free_target = _subtable(target_table, set(pinned))
    inferred: dict[str, Match] = {}
    notes: list[str] = []
    if len(free_target) and len(free_source):
        orders = (source_order, target_order)
        # what reviewed pairs show about how each layer family is stored settles pairs only the layout decides
        reviewed = layout_conventions(
            (m.target, m.target_shape, any(isinstance(step, Transpose) for step in m.transform))
            for m in pinned.values()
        )

        def dense(
            sub_source: ParamTable, sub_target: ParamTable, blocks: Mapping[str, str]
        ) -> tuple[dict[str, Match], list[str]]:
            matches, notes = _infer(
                sub_source, sub_target, dict(weights or {}), learn, lexicon, orders, reviewed, blocks
            )
            if calibrate:  # here, not on the whole result: the pairs of repeated blocks are copies of these
                fitted = calibration()
                matches = {name: calibrate_match(match, fitted) for name, match in matches.items()}
            return matches, notes

        inferred, notes = solve_in_blocks(free_source, free_target, dense)
    pairs = []
    for record in target_table.params:
        match = (
            pinned.get(record.name)
            or inferred.get(record.name)
            or Match(record.name, None, 0.0, target_shape=record.shape)
        )
        pairs.append(match)
    used = {n for m in pairs for n in m.source_names}
    return NameMapping(
        source=Endpoint(source_table.source, source_table.framework, len(source_table), fingerprint(source_table)),
        target=Endpoint(target_table.source, target_table.framework, len(target_table), fingerprint(target_table)),
        pairs=tuple(pairs),
        threshold=threshold,
        unmatched_source=tuple(n for n in source_table.names if n not in used),
        excluded_source=tuple(r.name for r in source_table.excluded),
        excluded_target=tuple(r.name for r in target_table.excluded),
        notes=tuple(notes),
    )


def _table(value: ParamTable | StrPath) -> ParamTable:
    if isinstance(value, ParamTable):
        return value
    from automap.io import load_checkpoint

    return load_checkpoint(Path(value))


def _subtable(table: ParamTable, drop: set[str]) -> ParamTable:
    if not drop:
        return table
    kept = [r for r in table.params if r.name not in drop]
    return ParamTable(
        table.framework, table.source, tuple(r.with_index(i) for i, r in enumerate(kept)), format=table.format
    )


def _infer(
    source: ParamTable,
    target: ParamTable,
    weights: dict[str, float],
    learn: bool,
    lexicon: bool,
    orders: tuple[Sequence[str] | None, Sequence[str] | None] = (None, None),
    layouts: Mapping[str, bool] | None = None,
    blocks: Mapping[str, str] | None = None,
) -> tuple[dict[str, Match], list[str]]:
    s_side, t_side = build_sides(source, target, lexicon=lexicon, source_order=orders[0], target_order=orders[1])
    candidates = candidate_pairs(s_side, t_side)
    if len(candidates.target) == 0:
        return {}, ["no source tensor has a shape compatible with any target"]
    token_weights = TokenWeights(s_side.tokens, t_side.tokens)
    ctx = FeatureContext(s_side, t_side, candidates, token_weights)
    if lexicon and weights.get("convention", 1.0) > 0:
        ctx.conventions = ConventionIndex(source.names, target.names, source.framework, target.framework)
    unmatched = _UNMATCHED_SHARE * total_weight()
    seeds = signature_seeds(s_side, t_side)
    # blocks the decomposition paired are the same module on both sides
    seeds.update(
        {pair: 1.0 for pair in (blocks or {}).items() if pair[0] in t_side.tree.graph and pair[1] in s_side.tree.graph}
    )
    ctx.module_affinity = seeds
    offsets = renumbered_keys(seeds, s_side, t_side, lexicon)
    ctx.untrusted_numbers = offsets
    solution, scores = _solve_pass(ctx, weights if seeds else {**weights, "module": 0.0}, unmatched)
    notes: list[str] = []
    if learn:
        # Token correspondences are learned once, from the first pass, which no learned signal has shaped yet:
        # learning them again from later passes would let a pair confirm itself.
        ctx.learned = learn_tokens(confident_pairs(solution, s_side, t_side), s_side, t_side)
        previous: dict[int, int | None] = {}
        for _ in range(_REFINEMENTS):
            confident = confident_pairs(solution, s_side, t_side)
            ctx.module_affinity = {**module_affinity(confident, s_side, t_side), **seeds}
            ctx.predicted_position = predicted_positions(confident, s_side, t_side)
            ctx.number_slots = learn_number_slots(confident, s_side, t_side)
            ctx.transposed_share = transposed_share(confident, s_side, t_side)
            ctx.untrusted_numbers = offsets | contradicted_number_keys(confident, s_side, t_side, lexicon)
            solution, scores = _solve_pass(ctx, weights, unmatched)
            current = {t: a.source for t, a in solution.assignments.items()}
            if current == previous:
                break
            previous = current
        if ctx.learned:
            shown = ", ".join(f"{t}~{c.most_common(1)[0][0]}" for t, c in sorted(ctx.learned.items())[:8])
            notes.append(f"learned name correspondences: {shown}")
    settle_layout_doubts(solution, ctx, layouts or {})
    order_parts(solution, ctx)
    doubt_renumbered_containers(solution, s_side, t_side, candidates)
    rank_numbered_siblings(solution, s_side, t_side, candidates)
    matches = build_matches(solution, scores, ctx, notes)
    return matches, notes


def _solve_pass(
    ctx: FeatureContext, weights: Mapping[str, float], unmatched: float
) -> tuple[Solution, dict[str, Array]]:
    scores = score_candidates(ctx, weights)
    costs, strong = candidate_costs(scores, weights)
    repeated = repeated_blocks(ctx.source)
    return solve(ctx.source, ctx.target, ctx.candidates, costs, strong, unmatched, repeated=repeated), scores


def repeated_blocks(side: Side) -> Callable[[int, int], bool]:
    """Whether two nodes are the same tensor of two *repeated* blocks (`layers.3.q` and `layers.4.q`).

    Their names differ only in container indices, and the numbered modules where they differ are built alike
    (most of their parameters have the same relative names). Every port enumerates repeated blocks in order,
    so their order is evidence. Numbered children built differently (T5's `layer.0` self-attention, `layer.1`
    cross-attention, `layer.2` MLP) are siblings with different roles, whose declaration order a port may change.
    """
    names = [side.table.params[n.base].name for n in side.nodes]
    templates = [index_template(name) for name in names]
    members: dict[str, set[str]] = {}
    for name in side.table.names:
        parts = name.split(".")
        for position, component in enumerate(parts[:-1]):
            if component.isdigit():
                members.setdefault(".".join(parts[: position + 1]), set()).add(".".join(parts[position + 1 :]))

    def repeated(a: int, b: int) -> bool:
        if templates[a] != templates[b]:
            return False
        first, second = names[a].split("."), names[b].split(".")
        for position, (x, y) in enumerate(zip(first, second, strict=True)):
            if x != y:
                left = members.get(".".join(first[: position + 1]), set())
                right = members.get(".".join(second[: position + 1]), set())
                return 2 * len(left & right) >= len(left | right)
        return True

    return repeated
