"""Settle a mapping with both networks: numeric resolution, the proof, and repair after a failed proof.

`settle` tries the groups of interchangeable choices in the target network (`_resolve`), then runs the whole
converted model against the source model on fresh inputs and compares the chosen outputs under the tolerance
in force (`_tolerance`). When they differ it locates the first diverging module (`_localise`), offers the
parameters involved (and the source tensors used around theirs) wider choices, resolves again and proves
again, at most twice. Targets without a source keep the target model's own values (constants a model computes
itself); when the proof fails with them, zeros are tried for those named as biases (a counterpart's absent
bias). When the networks still differ as wholes, or their outputs cannot be compared, every parameter is
checked in its own module instead (`_perparam`); where that check shows a layer fed the very input another source
layer of its kind saw (same-shaped norms of two places swapped), the two are swapped back and kept when the
whole-model proof then passes. What it found is handed back as data; the mapping with its
evidence is written from it in `_api`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from automap._types import Array
from automap.records import Alternative, Match, NameMapping, ParamTable

from ._candidates import Group, Option, build_groups, doubtful_targets, option_of
from ._compare import arrangements, best_arrangement
from ._localise import Divergence, locate
from ._perparam import ParameterProof, prove_per_parameter
from ._points import Point
from ._probing import Clock, Probes
from ._resolve import Outcome, Reference, resolve
from ._session import Session
from ._tolerance import compare_named
from ._units import prune_storage
from .networks import OutputComparison

_REPAIRS = 2
_SECONDS = 30.0  # numeric resolution and repairs together; past it, no further repair is started
_WINDOW = 8  # source tensors either side (in execution order) a repair offers an involved target


@dataclass(frozen=True)
class Settled:
    """What settling found.

    Attributes:
        assignment: target checkpoint name -> the option chosen for it.
        outcomes: what numeric resolution found for each group of interchangeable choices.
        proof: the final comparison of both models' outputs (None when no output can be compared).
        divergence: when not proven, the first module whose outputs differ, with the parameters involved.
        per_parameter: when not proven as a whole, every parameter checked in its own module.
        unmatched: targets without a source that the forward pass uses, and the values they kept ("the model's
            own" or "zeros").
        disputed: targets that inference on execution order and inference on file order pair differently.
    """

    assignment: dict[str, Option]
    outcomes: tuple[Outcome, ...]
    proof: OutputComparison | None
    divergence: Divergence | None
    per_parameter: ParameterProof | None = None
    unmatched: tuple[tuple[str, str], ...] = ()
    disputed: tuple[str, ...] = ()


def settle(
    probes: Probes,
    mapping: NameMapping,
    clock: Clock,
    *,
    max_trials: int,
    second: NameMapping | None = None,
) -> Settled:
    """Numeric resolution, proof, and repair of what the proof's localisation points at; the hooks removed after.

    `second` is a second opinion (inference on file order): where it pairs a target otherwise, that target is
    in doubt and its choice is offered.
    """
    session = probes.session
    source_table, target_table = session.source.table, session.target.table
    deadline = time.monotonic() + _SECONDS
    try:
        base = {p.target: o for p in mapping.pairs if (o := option_of(p)) is not None}
        table_shapes = {r.name: r.shape for r in target_table.params}
        pairing = session.source_pairing(unmatched_sources(mapping.pairs, source_table))
        reference = Reference.of(
            probes.reference, probes.probe, probes.line, probes.source_trailing, pairing, probes.tolerance
        )
        doubtful, theirs = _disagreements(mapping, second)
        groups = build_groups(mapping, source_table, target_table, doubtful=doubtful, second=theirs, heads=probes.heads)
        session.load_target(base)
        groups, decided = prune_storage(session, groups, base, reference, table_shapes)
        settled_groups = [g for g in groups if len(g.candidates) == 1]
        groups = [g for g in groups if len(g.candidates) > 1]
        outcomes, assignment = resolve(
            session, groups, base, reference, max_trials=max_trials, target_table_shapes=table_shapes
        )
        outcomes = [*(_stored(g, decided) for g in settled_groups), *outcomes]
        for group in settled_groups:
            assignment.update(group.candidates[0])
        clock.lap("resolve")
        unmatched = _unmatched_used(session, mapping, assignment, probes.target_order)
        proof, kept = _prove(session, assignment, probes, unmatched)
        if proof is not None and not proof.passed and theirs:
            # the second opinion as a whole: where the orders mislead inference, file order may pair them right
            other = {**assignment, **theirs}
            proof_b, kept_b = _prove(session, other, probes, unmatched)
            if proof_b is not None and (proof_b.passed or proof_b.max_rel < proof.max_rel):
                assignment, proof, kept = other, proof_b, kept_b
        divergence = None
        for _ in range(_REPAIRS):
            if proof is None or proof.passed or time.monotonic() > deadline:
                break
            divergence = _locate(session, assignment, reference)
            if divergence is None:
                break
            current = with_assignment(mapping, assignment, source_table)
            suspects, nearby = _suspects(current, divergence, probes.source_order, source_table, target_table)
            repair = build_groups(
                current,
                source_table,
                target_table,
                doubtful=suspects,
                broad=True,
                extra={t: _offers(current, t, names, source_table) for t, names in nearby.items()},
                focus=divergence.parameters,
                heads=probes.heads,
            )
            if not repair:
                break
            more, assignment = resolve(
                session,
                repair,
                assignment,
                reference,
                max_trials=max_trials,
                target_table_shapes=table_shapes,
                seconds=max(deadline - time.monotonic(), 1.0),
            )
            again = {m for o in more for m in o.group.members}
            outcomes = [*(o for o in outcomes if not again & set(o.group.members)), *more]
            proof, kept = _prove(session, assignment, probes, unmatched)
            divergence = None
        per_parameter = None
        if proof is None or not proof.passed:
            if proof is not None and divergence is None:
                divergence = _locate(session, assignment, reference)
            used = [t for t in probes.target_order if t in assignment]
            per_parameter = prove_per_parameter(
                session, assignment, reference, used, _points_of(session, assignment, reference)
            )
            places = per_parameter.places
            # all moves at once, else one at a time: a layer fed by a misplaced one disagrees in place too, and
            # its own move (to the layer that saw that input) is then wrong
            for tried in (places, *([p] for p in places)) if len(places) > 1 else (places,):
                moved = _placed(session, assignment, tried)
                if moved is None:
                    continue
                proof_b, kept_b = _prove(session, moved, probes, unmatched)
                if proof_b is not None and proof_b.passed:  # the proof decides: a move it does not prove is dropped
                    probes.notes.append(_placed_note(tried, session.target.net.backend.title))
                    assignment, proof, kept, divergence, per_parameter = moved, proof_b, kept_b, None, None
                    break
            if (
                per_parameter is not None
                and proof is not None
                and not _explained(per_parameter.free_difference, divergence, reference.line.done)
            ):
                per_parameter = replace(per_parameter, explained=False)
        clock.lap("proof")
    finally:
        probes.close()
    return Settled(
        assignment,
        tuple(outcomes),
        proof,
        divergence,
        per_parameter,
        tuple((t, kept) for t in unmatched),
        tuple(theirs),
    )


def _placed(
    session: Session, assignment: Mapping[str, Option], places: Sequence[tuple[str, str, str]]
) -> dict[str, Option] | None:
    """The assignment with each misplaced layer reading the source layer its input showed, and the two swapped.

    The target layer that read that source layer takes the misplaced layer's former source layer (same kind, so
    the same parameter names below it). None when nothing moves.
    """
    if not places:
        return None
    source = session.source
    moves: dict[str, str] = {}  # source layer -> the source layer that replaces it, for its readers
    for _, current, found in places:
        if current in moves or found in moves:
            continue
        moves[current], moves[found] = found, current
    out = dict(assignment)
    for ckpt, option in assignment.items():
        sources = []
        for name in option.sources:
            net_name = source.from_checkpoint.get(name)
            layer = source.net.owner.get(net_name, "") if net_name is not None else ""
            other = moves.get(layer)
            moved = source.to_checkpoint.get(other + net_name[len(layer) :]) if other is not None and net_name else None
            sources.append(moved if moved is not None else name)
        if tuple(sources) != option.sources:
            out[ckpt] = Option(tuple(sources), option.steps)
    return out if out != dict(assignment) else None


def _placed_note(places: Sequence[tuple[str, str, str]], title: str) -> str:
    """What placing layers by their inputs changed, for the report."""
    shown = "; ".join(f"{title} {layer!r} reads {found!r}, not {current!r}" for layer, current, found in places[:4])
    more = f"; ... ({len(places)} in all)" if len(places) > 4 else ""
    return f"placed by the input each got (then proven): {shown}{more}"


def _explained(free: str | None, divergence: Divergence | None, done: Mapping[str, int]) -> bool:
    """Whether a parameter-free difference comes before the first diverging module (so it can cause it)."""
    if free is None:
        return False
    if divergence is None or free not in done or divergence.module not in done:
        return True
    return done[free] <= done[divergence.module]


def _stored(group: Group, decided: Mapping[str, tuple[str, int, int]]) -> Outcome:
    """The outcome of a group that the storage checks left with one candidate."""
    found = list({decided[m][0]: decided[m] for m in group.members if m in decided}.values())  # once per layer
    layers = sorted(layer for layer, _, _ in found)
    return Outcome(
        group,
        dict(group.candidates[0]),
        "confirmed",
        ", ".join(layers) + " (each fed its source layer's input)",
        "the source layers they read",
        trials=sum(tried for _, tried, _ in found),
        rejected=sum(rejected for _, _, rejected in found),
        difference=0.0,
    )


def _unmatched_used(
    session: Session, mapping: NameMapping, assignment: Mapping[str, Option], order: Sequence[str]
) -> list[str]:
    """Float targets without a source that the forward pass uses."""
    used = set(order)
    out = []
    for pair in mapping.pairs:
        name = session.target.from_checkpoint.get(pair.target)
        if pair.target not in assignment and name is not None and session.target.net.is_float(name):
            if pair.target in used:
                out.append(pair.target)
    return out


def _prove(
    session: Session, assignment: Mapping[str, Option], probes: Probes, unmatched: Sequence[str]
) -> tuple[OutputComparison | None, str]:
    """Run both models on the proof inputs with the assignment's weights and compare the chosen outputs.

    Targets without a source keep the target model's own values; when the outputs then differ, zeros are
    tried for those named as biases. Returns the comparison (None when no output can be compared) and what the
    unmatched targets kept.
    """
    choice = probes.choice
    if not choice.source:
        return None, "the model's own values"
    session.load_target(assignment)
    reference = session.run_source(probes.proof_calls[0])
    by_name = dict(zip(reference.names, reference.outputs, strict=True))
    comparison = _compare(session, probes, by_name)
    biases = [t for t in unmatched if t.rpartition(".")[2].endswith("bias")]
    if comparison.passed or not biases:
        return comparison, "the model's own values"
    net = session.target.net
    names = [session.target.from_checkpoint[t] for t in biases]
    before = {n: net.array(n) for n in names}
    net.load({n: np.zeros_like(before[n]) for n in names}, dict.fromkeys(names, "float32"))
    zeroed = _compare(session, probes, by_name)
    if zeroed.passed:
        return zeroed, "zeros for the biases"
    net.load(before, dict.fromkeys(names, "float32"))
    return comparison, "the model's own values"


def _compare(session: Session, probes: Probes, reference: Mapping[str, Array]) -> OutputComparison:
    """The chosen outputs compared; outputs paired by shape are paired again by value when that makes them agree."""
    candidate = session.run_target(probes.proof_calls[1])
    got = dict(zip(candidate.names, candidate.outputs, strict=True))
    pairs = list(zip(probes.choice.source, probes.choice.target, strict=True))
    comparison = compare_named(reference, got, pairs, probes.tolerance)
    if comparison.passed or not probes.choice.automatic:
        return comparison
    by_value = _paired_by_value(reference, got, pairs)
    if by_value == pairs:
        return comparison
    again = compare_named(reference, got, by_value, probes.tolerance)
    if again.passed:
        probes.choice = replace(
            probes.choice, source=tuple(a for a, _ in by_value), target=tuple(b for _, b in by_value)
        )
        return again
    return comparison


def _paired_by_value(
    reference: Mapping[str, Array], got: Mapping[str, Array], pairs: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The same outputs paired again, each source output with the closest free target output it can be compared with."""
    free = [b for _, b in pairs]
    out = []
    for a, _ in pairs:
        best: tuple[float, str | None] = (float("inf"), None)
        for b in free:
            layout = arrangements(tuple(reference[a].shape), tuple(got[b].shape))
            if layout:
                found = best_arrangement(reference[a].astype(np.float64), got[b].astype(np.float64), layout)[0]
                best = min(best, (found, b), key=lambda item: item[0])
        if best[1] is None:
            return list(pairs)
        free.remove(best[1])
        out.append((a, best[1]))
    return out


def _locate(session: Session, assignment: Mapping[str, Option], reference: Reference) -> Divergence | None:
    """Run the target with the assignment, every module recorded, and find the first module that differs."""
    session.load_target(assignment)
    run = session.run_target(reference.call, capture=None, trace=True, capture_inputs=None)
    return locate(
        session.target.net,
        reference.run,
        run,
        session.source_names(assignment),
        reference.pairing,
        source_trailing=reference.trailing,
        bound=reference.bound,
        to_checkpoint=session.target.to_checkpoint,
        source_to_checkpoint=session.source.to_checkpoint,
        reference_framework=session.source.net.framework,
    )


def _points_of(session: Session, assignment: Mapping[str, Option], reference: Reference) -> dict[str, Point | None]:
    """The point of comparison of every target module holding a parameter, up to the first comparable one."""
    names = session.source_names(assignment)
    net = session.target.net
    out: dict[str, Point | None] = {}
    for name in net.params:
        path = net.owner[name]
        while True:
            if path not in out:
                out[path] = reference.point(session, path, names)
            if out[path] is not None or path == "":
                break
            path = path.rpartition(".")[0]
    return out


def _disagreements(mapping: NameMapping, second: NameMapping | None) -> tuple[list[str], dict[str, Option]]:
    """The doubtful targets, with those the second opinion pairs otherwise added, and its choice for them."""
    doubtful = doubtful_targets(mapping)
    theirs: dict[str, Option] = {}
    if second is None:
        return doubtful, theirs
    for pair in mapping.pairs:
        other = second.pair_for(pair.target)
        mine, choice = option_of(pair), option_of(other) if other is not None else None
        if mine is None or choice is None or mine == choice or pair.pinned:
            continue
        theirs[pair.target] = choice
        if pair.target not in doubtful:
            doubtful.append(pair.target)
    return doubtful, theirs


def _suspects(
    mapping: NameMapping, divergence: Divergence, source_order: Sequence[str], source: ParamTable, target: ParamTable
) -> tuple[list[str], dict[str, list[str]]]:
    """What to re-examine after a failed proof: the first divergence's parameters and their neighbours.

    Besides the parameters involved, the targets holding the source tensors used around theirs (in the source's
    execution order) are in doubt too: any of those tensors may be the one that belongs there.

    Returns:
        The doubtful targets, and for each involved target the nearby source tensors to offer it.
    """
    holder = {p.source: p.target for p in mapping.pairs if isinstance(p.source, str)}
    position = {name: i for i, name in enumerate(source_order)}
    window = _WINDOW + len(divergence.parameters)
    doubtful = list(divergence.parameters)
    nearby: dict[str, list[str]] = {}
    for involved in divergence.parameters:
        pair = mapping.pair_for(involved)
        if pair is None or involved not in target or not pair.source_names or pair.source_names[0] not in position:
            continue
        at = position[pair.source_names[0]]
        shape, stored = sorted(target[involved].shape), source[pair.source_names[0]].shape
        around = [*source_order[max(0, at - window) : at + window + 1], *_kin(pair.source_names[0], source)]
        nearby[involved] = list(
            dict.fromkeys(
                n for n in around if n in source and (sorted(source[n].shape) == shape or source[n].shape == stored)
            )
        )
        doubtful += [holder[n] for n in nearby[involved] if n in holder and holder[n] not in doubtful]
    return doubtful, nearby


def _offers(mapping: NameMapping, target: str, names: Sequence[str], source: ParamTable) -> list[Option]:
    """Nearby source tensors as options for a target, with its current source's steps where stored alike.

    A MindSpore Conv1d's extra axis is squeezed away for a neighbour as for the current source.
    """
    pair = mapping.pair_for(target)
    current = option_of(pair) if pair is not None else None
    stored = source[current.sources[0]].shape if current is not None and len(current.sources) == 1 else None
    return [
        Option((n,), current.steps) if current is not None and source[n].shape == stored else Option((n,))
        for n in names
    ]


def _kin(name: str, source: ParamTable) -> list[str]:
    """Source tensors held, at any depth, by the module above `name`'s own.

    A weight-norm cell's `weight` sits beside its owner's `weight_v`; a tensor the source's forward pass never reads
    has no place in its execution order, so the neighbourhood in that order misses it.
    """
    above = name.rpartition(".")[0].rpartition(".")[0]
    return [n for n in source.names if n != name and (not above or n.startswith(above + "."))] if above else []


def with_assignment(mapping: NameMapping, assignment: Mapping[str, Option], source: ParamTable) -> NameMapping:
    """The mapping with the assignment's options in place (evidence kept)."""
    pairs = []
    for pair in mapping.pairs:
        option = assignment.get(pair.target)
        if option is not None and option != option_of(pair):
            pair = _moved(pair, option, source)
        pairs.append(pair)
    return replace(mapping, pairs=tuple(pairs), unmatched_source=unmatched_sources(pairs, source))


def _moved(pair: Match, option: Option, source: ParamTable) -> Match:
    previous = option_of(pair)
    shapes = [source[s].shape for s in option.sources]
    alternatives = list(pair.alternatives)
    if previous is not None:
        old = previous.sources[0] if len(previous.sources) == 1 else previous.sources
        alternatives.insert(0, Alternative(old, round(pair.confidence, 4), previous.steps))
    return replace(
        pair,
        source=option.sources[0] if len(option.sources) == 1 else option.sources,
        transform=option.steps,
        source_shape=shapes[0] if len(shapes) == 1 else tuple(shapes),
        alternatives=tuple(alternatives[:3]),
    )


def unmatched_sources(pairs: Sequence[Match], source: ParamTable) -> tuple[str, ...]:
    """Source names no pair uses, in file order."""
    used = {n for p in pairs for n in p.source_names}
    return tuple(n for n in source.names if n not in used)
