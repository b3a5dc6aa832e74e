"""Settle a mapping with both networks: numeric resolution, the proof, and repair after a failed proof.

`settle` tries the groups of interchangeable choices in the target network (`_resolve`), then runs the whole
converted model against the source model on fresh inputs. When their outputs differ it locates the first
diverging module (`_localise`), offers the parameters involved (and the source tensors used around theirs)
wider choices, resolves again and proves again, at most twice. What it found is handed back as data; the
mapping with its evidence is written from it in `_api`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from automap._types import Array
from automap.records import Alternative, Match, NameMapping, ParamTable

from ._candidates import Option, build_groups, doubtful_targets, option_of
from ._compare import ModulePairing
from ._localise import Divergence, locate
from ._nets import Run
from ._probing import Clock, Probes
from ._resolve import Outcome, resolve
from ._session import Session
from .networks import OutputComparison, compare_outputs

_REPAIRS = 2
_WINDOW = 8  # source tensors either side (in execution order) a repair offers an involved target


@dataclass(frozen=True)
class Settled:
    """What settling found.

    Attributes:
        assignment: target checkpoint name -> the option chosen for it.
        outcomes: what numeric resolution found for each group of interchangeable choices.
        proof: the final comparison of both models' outputs (None when a target has no source).
        divergence: when not proven, the first module whose outputs differ, with the parameters involved.
    """

    assignment: dict[str, Option]
    outcomes: tuple[Outcome, ...]
    proof: OutputComparison | None
    divergence: Divergence | None


def settle(
    probes: Probes,
    mapping: NameMapping,
    clock: Clock,
    *,
    rtol: float,
    atol: float,
    max_trials: int,
    second: NameMapping | None = None,
) -> Settled:
    """Numeric resolution, proof, and repair of what the proof's localisation points at; the hooks removed after.

    `second` is a second opinion (inference on file order): where it pairs a target otherwise, that target is
    in doubt and its choice is offered.
    """
    session = probes.session
    source_table, target_table = session.source.table, session.target.table
    try:
        base = {p.target: o for p in mapping.pairs if (o := option_of(p)) is not None}
        table_shapes = {r.name: r.shape for r in target_table.params}
        pairing = session.source_pairing(_unmatched(mapping.pairs, source_table))
        doubtful, theirs = _disagreements(mapping, second)
        groups = build_groups(mapping, source_table, target_table, doubtful=doubtful, second=theirs)
        session.load_target(base)
        outcomes, assignment = resolve(
            session,
            groups,
            base,
            probes.reference,
            probes.line,
            probes.probe,
            pairing,
            max_trials=max_trials,
            target_table_shapes=table_shapes,
        )
        clock.lap("resolve")
        proof = _prove(session, assignment, mapping, probes.proof_inputs, rtol, atol)
        divergence = None
        for _ in range(_REPAIRS):
            if proof is None or proof.passed:
                break
            divergence = _locate(session, assignment, probes.reference, probes.probe, pairing)
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
                extra={t: [Option((n,)) for n in names] for t, names in nearby.items()},
                focus=divergence.parameters,
            )
            if not repair:
                break
            more, assignment = resolve(
                session,
                repair,
                assignment,
                probes.reference,
                probes.line,
                probes.probe,
                pairing,
                max_trials=max_trials,
                target_table_shapes=table_shapes,
            )
            again = {m for o in more for m in o.group.members}
            outcomes = [*(o for o in outcomes if not again & set(o.group.members)), *more]
            proof = _prove(session, assignment, mapping, probes.proof_inputs, rtol, atol)
            divergence = None
        if proof is not None and not proof.passed and divergence is None:
            divergence = _locate(session, assignment, probes.reference, probes.probe, pairing)
        clock.lap("proof")
    finally:
        probes.close()
    return Settled(assignment, tuple(outcomes), proof, divergence)


def _prove(
    session: Session,
    assignment: Mapping[str, Option],
    mapping: NameMapping,
    inputs: tuple[list[Array], list[Array]],
    rtol: float,
    atol: float,
) -> OutputComparison | None:
    """Run both models on the proof inputs with the assignment's weights and compare their outputs."""
    unmatched = [session.target.from_checkpoint.get(p.target) for p in mapping.pairs if p.target not in assignment]
    if any(n is not None and session.target.net.is_float(n) for n in unmatched):
        return None  # a target with no source keeps the model's own values: nothing to prove
    session.load_target(assignment)
    reference = session.run_source(inputs[0])
    candidate = session.run_target(inputs[1])
    return compare_outputs(
        [a.astype(np.float64) for a in reference.outputs],
        [a.astype(np.float64) for a in candidate.outputs],
        rtol=rtol,
        atol=atol,
    )


def _locate(
    session: Session, assignment: Mapping[str, Option], reference: Run, inputs: Sequence[Array], pairing: ModulePairing
) -> Divergence | None:
    """Run the target with the assignment, every module recorded, and find the first module that differs."""
    session.load_target(assignment)
    run = session.run_target(inputs, capture=None, trace=True)
    return locate(
        session.target.net,
        reference,
        run,
        session.source_names(assignment),
        pairing,
        to_checkpoint=session.target.to_checkpoint,
        source_to_checkpoint=session.source.to_checkpoint,
        reference_framework=session.source.net.framework,
    )


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
        shape = sorted(target[involved].shape)
        around = source_order[max(0, at - window) : at + window + 1]
        nearby[involved] = [n for n in around if n in source and sorted(source[n].shape) == shape]
        doubtful += [holder[n] for n in nearby[involved] if n in holder and holder[n] not in doubtful]
    return doubtful, nearby


def with_assignment(mapping: NameMapping, assignment: Mapping[str, Option], source: ParamTable) -> NameMapping:
    """The mapping with the assignment's options in place (evidence kept)."""
    pairs = []
    for pair in mapping.pairs:
        option = assignment.get(pair.target)
        if option is not None and option != option_of(pair):
            pair = _moved(pair, option, source)
        pairs.append(pair)
    return replace(mapping, pairs=tuple(pairs), unmatched_source=_unmatched(pairs, source))


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


def _unmatched(pairs: Sequence[Match], source: ParamTable) -> tuple[str, ...]:
    """Source names no pair uses, in file order."""
    used = {n for p in pairs for n in p.source_names}
    return tuple(n for n in source.names if n not in used)
