"""Network-aware inference: the checkpoints plus both model definitions, run on small probe inputs.

1. Execution order: one forward pass per network with parameter use traced gives the order in which each
   parameter is first used; it replaces file order as the inference engine's order signal.
2. Inference (`automap.engine.inference.infer_mapping`) with those orders, and a second opinion on file order: where
   the two pair a target differently, the target is in doubt and both choices are tried.
3. Numeric resolution (`_resolve`): what the checkpoints cannot settle (same-shaped siblings, the pieces of a
   fused tensor, the orientation of square matrices) is tried in the target network module by module.
4. Proof: the whole converted model runs against the source model on fresh inputs. When the outputs agree
   within tolerance the mapping is proven. When they do not, the first diverging module is located; its
   parameters are re-examined once or twice with wider choices, and the proof is repeated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from automap._decisions import DECIDED_BY, DecidedBy
from automap._errors import AutomapError, MappingFileError
from automap._types import Array, StrPath
from automap.records import Alternative, Match, NameMapping, ParamTable

from ._candidates import Group, Option, build_groups, doubtful_targets, option_of
from ._compare import ModulePairing
from ._localise import Divergence, locate
from ._nets import Net, Run, wrap
from ._resolve import MAX_TRIALS, Outcome, Timeline, resolve, timeline
from ._session import Session, side
from .networks import OutputComparison, compare_outputs
from .probes import InputSpec, make_input

ProbeInput = Array | InputSpec | str
_REPAIRS = 2
_WINDOW = 8  # source tensors either side (in execution order) a repair offers an involved target
_CONFIRMED = 0.995
_PROVEN = 0.99


@dataclass(frozen=True)
class NetworkInference:
    """The outcome of network-aware inference.

    Attributes:
        mapping: the mapping; pairs settled by a probe say so in their evidence ("numeric", "proof").
        proven: the converted model's outputs agree with the source model's within tolerance.
        proof: the final comparison of both models' outputs (None when the mapping leaves targets unmatched).
        divergence: when not proven, the first module whose outputs differ, with the parameters involved.
        outcomes: what numeric resolution found for each group of interchangeable choices.
        runs: forward passes of either network.
        module_runs: runs of the target network's test modules on their own (later rounds of trials).
        trials: candidate assignments tried, over all groups.
        inputs: the probe inputs, as specs.
        seconds: time spent per phase (trace, infer, resolve, proof).
        changed: targets whose source or transform the probes changed from what inference chose.
    """

    mapping: NameMapping
    proven: bool
    proof: OutputComparison | None
    divergence: Divergence | None
    outcomes: tuple[Outcome, ...]
    runs: int
    trials: int
    inputs: tuple[str, ...]
    module_runs: int = 0
    seconds: Mapping[str, float] = field(default_factory=dict)
    changed: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """A short human-readable account of the probes and the proof."""
        out = [f"probe input {i}: {text}" for i, text in enumerate(self.inputs)]
        confirmed = [o for o in self.outcomes if o.status == "confirmed"]
        out.append(
            f"numeric resolution: {len(self.outcomes)} groups of interchangeable choices, {len(confirmed)} confirmed; "
            f"{self.trials} trials in {self.runs} forward passes and {self.module_runs} runs of single modules"
        )
        for outcome in self.outcomes:
            if outcome.status != "confirmed":
                out.append(f"  {outcome.status}: {', '.join(outcome.group.members[:4])}")
        if self.changed:
            moved = self.changed
            shown = ", ".join(moved[:6]) + (f", ... ({len(moved)} in all)" if len(moved) > 6 else "")
            out.append(f"  the probes changed {len(moved)} pair{'s' if len(moved) != 1 else ''}: {shown}")
        if self.proof is not None:
            out.extend(f"  {line}" for line in self.proof.detail)
        if self.proven:
            assert self.proof is not None
            out.append(
                f"PROVEN: the converted model reproduces the source model (max rel diff {self.proof.max_rel:.3g})"
            )
        elif self.proof is None:
            missing = sum(1 for p in self.mapping.pairs if p.source is None)
            out.append(f"NOT PROVEN: {missing} target parameters have no source, so the converted model cannot run")
        else:
            out.append("NOT PROVEN: the converted model's outputs differ from the source model's")
            if self.divergence is not None:
                out.append(self.divergence.describe())
        spent = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        out.append(f"time: {spent}")
        return out


def infer_with_networks(
    source: ParamTable | StrPath,
    target: ParamTable | StrPath,
    *,
    torch_model: object,
    mindspore_model: object,
    inputs: Sequence[ProbeInput] | None = None,
    mindspore_inputs: Callable[[tuple[Array, ...]], Sequence[Array]] | None = None,
    threshold: float = 0.5,
    pins: NameMapping | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    seed: int = 0,
    max_trials: int = MAX_TRIALS,
) -> NetworkInference:
    """Infer a mapping with both model definitions at hand, settle its doubtful pairs numerically, and prove it.

    Which network is the source follows from the checkpoints' frameworks: with a PyTorch source checkpoint
    the torch model is the source (either direction works). The source model runs with the source
    checkpoint's weights; the target model receives weights converted through candidate mappings.

    Args:
        source: the checkpoint (or table) whose values will be converted.
        target: the target checkpoint, listing or table (names, shapes and order of the result).
        torch_model: the `torch.nn.Module` of the PyTorch side (its weights are replaced).
        mindspore_model: the `mindspore.nn.Cell` of the MindSpore side (its weights are replaced).
        inputs: probe inputs, one per positional argument of the models: numpy arrays, `InputSpec`s or specs
            such as "1x3x224x224:float32" or "1x16:int64:0-1000". Default: guessed from the torch model's
            first layer.
        mindspore_inputs: turns the probe inputs into the MindSpore model's arguments, when its signature
            differs (another argument order, int32 token ids). Default: the same arrays.
        threshold: confidence below which a pair needs review.
        pins: pairs a person fixed; they are kept as they are.
        rtol: relative tolerance of the final proof (elementwise, as `automap verify`).
        atol: absolute tolerance of the final proof.
        seed: seed of the random probe inputs (the proof uses the next seed).
        max_trials: candidate assignments tried per group of interchangeable choices at most.

    Returns:
        The mapping with its proof, the numeric resolution's outcomes and the figures.

    Raises:
        AutomapError: the models do not fit the checkpoints, the inputs cannot be guessed, or a model fails on
            the inputs (the message says to give --input).

    Example:
        >>> result = infer_with_networks("vit.pth", "vit.ckpt", torch_model=vit_pt, mindspore_model=vit_ms,
        ...                              inputs=["1x3x224x224:float32"])  # doctest: +SKIP
        >>> result.proven  # doctest: +SKIP
        True
    """
    from automap.engine.inference import infer_mapping

    clock = _Clock()
    probes = _prepare(source, target, torch_model, mindspore_model, inputs, mindspore_inputs, seed)
    try:
        clock.lap("trace")
        mapping = infer_mapping(
            probes.session.source.table,
            probes.session.target.table,
            threshold=threshold,
            pins=pins,
            source_order=probes.source_order,
            target_order=probes.target_order,
        )
        second = infer_mapping(
            probes.session.source.table, probes.session.target.table, threshold=threshold, pins=pins
        )  # file order: where the two orders lead to different pairs, the numbers decide
        clock.lap("infer")
        return _settle(probes, mapping, clock, rtol=rtol, atol=atol, max_trials=max_trials, second=second)
    finally:
        probes.close()


def check_with_networks(
    mapping: NameMapping,
    source: ParamTable | StrPath,
    target: ParamTable | StrPath,
    *,
    torch_model: object,
    mindspore_model: object,
    inputs: Sequence[ProbeInput] | None = None,
    mindspore_inputs: Callable[[tuple[Array, ...]], Sequence[Array]] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    seed: int = 0,
    max_trials: int = MAX_TRIALS,
) -> NetworkInference:
    """Settle an existing mapping's doubtful pairs numerically and prove it (a mapping from a file, say).

    The same as `infer_with_networks` without the inference: the mapping's doubtful pairs (below its
    threshold, or decided by order only) and the orientation of its square matrices are tried in the target
    model; then the whole model is proven, and a failed proof leads to the first diverging module, whose
    parameters are re-examined with wider choices. Pinned pairs are kept.

    Args:
        mapping: the mapping to check (its source and target must be `source` and `target`).
        source: the source checkpoint (or table).
        target: the target checkpoint, listing or table.
        torch_model: the `torch.nn.Module` of the PyTorch side.
        mindspore_model: the `mindspore.nn.Cell` of the MindSpore side.
        inputs: probe inputs, as for `infer_with_networks`.
        mindspore_inputs: turns the probe inputs into the MindSpore model's arguments.
        rtol: relative tolerance of the final proof.
        atol: absolute tolerance of the final proof.
        seed: seed of the random probe inputs.
        max_trials: candidate assignments tried per group at most.

    Returns:
        The settled mapping with its proof.

    Raises:
        AutomapError: the models do not fit the checkpoints or fail on the inputs.

    Example:
        >>> result = check_with_networks(load_mapping("m.json"), "a.pth", "b.ckpt", torch_model=pt,
        ...                              mindspore_model=ms, inputs=["1x16:int64:0-1000"])  # doctest: +SKIP
    """
    clock = _Clock()
    source_table, target_table = _table(source), _table(target)
    _check_names(mapping, source_table, target_table)
    probes = _prepare(source_table, target_table, torch_model, mindspore_model, inputs, mindspore_inputs, seed)
    try:
        clock.lap("trace")
        return _settle(probes, mapping, clock, rtol=rtol, atol=atol, max_trials=max_trials)
    finally:
        probes.close()


def _check_names(mapping: NameMapping, source: ParamTable, target: ParamTable) -> None:
    """Every name a mapping uses must exist in its checkpoints.

    Raises:
        MappingFileError: a target or source name is unknown.
    """
    unknown = [p.target for p in mapping.pairs if p.target not in target]
    unknown += [n for p in mapping.pairs for n in p.source_names if n not in source]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 5 else "")
        msg = (
            f"the mapping names {shown}, which {source.source} and {target.source} lack; "
            "is it the mapping of these checkpoints?"
        )
        raise MappingFileError(msg)


@dataclass
class _Probes:
    """Both networks set up, the probe inputs and what the first traced runs showed."""

    session: Session
    reference: Run
    line: Timeline
    source_order: list[str]
    target_order: list[str]
    probe: list[Array]
    proof_inputs: tuple[list[Array], list[Array]]
    described: list[str]

    def close(self) -> None:
        """Take the hooks off both models."""
        self.session.source.net.close()
        self.session.target.net.close()


def _prepare(
    source: ParamTable | StrPath,
    target: ParamTable | StrPath,
    torch_model: object,
    mindspore_model: object,
    inputs: Sequence[ProbeInput] | None,
    mindspore_inputs: Callable[[tuple[Array, ...]], Sequence[Array]] | None,
    seed: int,
) -> _Probes:
    """Wrap and check both models, load the source weights, and trace one forward pass of each."""
    source_table, target_table = _table(source), _table(target)
    torch_net, mindspore_net = wrap(torch_model), wrap(mindspore_model)
    if torch_net.framework != "pytorch" or mindspore_net.framework != "mindspore":
        msg = "torch_model must be a torch.nn.Module and mindspore_model a mindspore.nn.Cell"
        raise AutomapError(msg)
    if source_table.framework == target_table.framework:
        msg = (
            f"network-aware inference maps between the frameworks, but {source_table.source} and "
            f"{target_table.source} are both {source_table.framework} checkpoints"
        )
        raise AutomapError(msg)
    source_net, target_net = (
        (torch_net, mindspore_net) if source_table.framework == "pytorch" else (mindspore_net, torch_net)
    )
    session = Session(
        side(source_net, source_table, "source", _what(source_net)),
        side(target_net, target_table, "target", _what(target_net)),
    )
    torch_probe, described = _inputs(inputs, torch_net, seed)
    source_probe, probe = _per_side(torch_probe, mindspore_inputs, source_net.framework)
    session.load_source()
    try:
        reference = session.run_source(source_probe, capture=None, trace=True)
        shapes_run = session.run_target(probe, capture=None, trace=True)
    except BaseException:
        source_net.close()  # the hooks stay for the runs to come, unless there are none
        target_net.close()
        raise
    fresh = _proof_inputs(inputs, torch_probe, torch_net, seed + 1)
    return _Probes(
        session=session,
        reference=reference,
        line=timeline(shapes_run, target_net.owner),
        source_order=_order(source_net, reference, session.source.to_checkpoint),
        target_order=_order(target_net, shapes_run, session.target.to_checkpoint),
        probe=probe,
        proof_inputs=_per_side(fresh, mindspore_inputs, source_net.framework),
        described=described,
    )


def _settle(
    probes: _Probes,
    mapping: NameMapping,
    clock: _Clock,
    *,
    rtol: float,
    atol: float,
    max_trials: int,
    second: NameMapping | None = None,
) -> NetworkInference:
    """Numeric resolution, proof, and repair of what the proof's localisation points at.

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
            current = _with_assignment(mapping, assignment, source_table)
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
    proven = proof is not None and proof.passed
    used = set(probes.target_order)
    result, changed = _final_mapping(mapping, assignment, source_table, outcomes, proof, used, probes.described)
    return NetworkInference(
        mapping=result,
        proven=proven,
        proof=proof,
        divergence=divergence,
        outcomes=tuple(outcomes),
        runs=session.runs,
        module_runs=session.module_runs,
        trials=sum(o.trials for o in outcomes),
        inputs=tuple(probes.described),
        seconds=dict(clock.laps),
        changed=changed,
    )


# ------------------------------------------------------------------------------------------------------ helpers


class _Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.start
        self.start = now


def _table(value: ParamTable | StrPath) -> ParamTable:
    if isinstance(value, ParamTable):
        return value
    from automap.io import load_checkpoint

    return load_checkpoint(Path(value))


def _what(net: Net) -> str:
    return type(net.module).__name__


def _inputs(inputs: Sequence[ProbeInput] | None, torch_net: Net, seed: int) -> tuple[list[Array], list[str]]:
    from .verify import guess_input, make_inputs

    rng = np.random.default_rng(seed)
    if inputs is None:
        try:
            spec = guess_input(torch_net.module)
        except AutomapError as error:
            msg = f"network-aware inference needs probe inputs: {error}"
            raise AutomapError(msg) from None
        return [make_input(spec, rng)], [f"{spec} (guessed from the first layer; give --input to choose)"]
    return make_inputs(inputs, rng)


def _per_side(
    arrays: list[Array], mindspore_inputs: Callable[[tuple[Array, ...]], Sequence[Array]] | None, source: str
) -> tuple[list[Array], list[Array]]:
    """(source inputs, target inputs) from the torch model's inputs."""
    for_mindspore = list(mindspore_inputs(tuple(arrays))) if mindspore_inputs is not None else arrays
    return (arrays, for_mindspore) if source == "pytorch" else (for_mindspore, arrays)


def _proof_inputs(inputs: Sequence[ProbeInput] | None, probe: list[Array], torch_net: Net, seed: int) -> list[Array]:
    """Fresh inputs of the same specs for the proof; given arrays are reused."""
    if inputs is not None and any(isinstance(v, np.ndarray) for v in inputs):
        return probe
    return _inputs(inputs, torch_net, seed)[0]


def _order(net: Net, run: Run, to_checkpoint: Mapping[str, str]) -> list[str]:
    """Checkpoint names in the order a traced run first used them."""
    return [to_checkpoint[n] for n in net.execution_order(run) if n in to_checkpoint]


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


def _with_assignment(mapping: NameMapping, assignment: Mapping[str, Option], source: ParamTable) -> NameMapping:
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
    used = {n for p in pairs for n in p.source_names}
    return tuple(n for n in source.names if n not in used)


def _final_mapping(
    mapping: NameMapping,
    assignment: Mapping[str, Option],
    source: ParamTable,
    outcomes: Sequence[Outcome],
    proof: OutputComparison | None,
    used: set[str],
    inputs: Sequence[str],
) -> tuple[NameMapping, tuple[str, ...]]:
    """The mapping with the numeric choices in place, their evidence, and the proof; the targets the probes changed."""
    settled: dict[str, tuple[Outcome, Group]] = {}
    for outcome in outcomes:
        for member in outcome.group.members:
            settled[member] = (outcome, outcome.group)
    proven = proof is not None and proof.passed
    inferred = {p.target: p for p in mapping.pairs}
    pairs = []
    changed = []
    for pair in _with_assignment(mapping, assignment, source).pairs:
        before = inferred[pair.target]
        evidence, labels = dict(pair.evidence), dict(pair.labels)
        confidence = pair.confidence
        if option_of(before) != option_of(pair):  # the engine's scores speak of the source it chose
            first = option_of(before)
            changed.append(pair.target)
            evidence = {}
            labels = {"note": f"inference chose {first.describe() if first else 'nothing'}; the probe chose this"}
        found = settled.get(pair.target)
        if found is not None:
            outcome, group = found
            labels["numeric"] = _numeric_text(outcome, group)
            if outcome.status == "confirmed":
                confidence = max(confidence, _CONFIRMED)
                labels[DECIDED_BY] = DecidedBy.CONFIRMED_NUMERICALLY.value
        if proven and pair.source is not None:
            if pair.target in used:
                assert proof is not None
                labels["proof"] = (
                    f"proven: the converted model reproduces the source model (max rel diff {proof.max_rel:.2g})"
                )
                confidence = max(confidence, _PROVEN)
            else:
                labels["proof"] = "not covered: the forward pass on the probe inputs does not use this parameter"
        pairs.append(replace(pair, confidence=round(confidence, 4), evidence=evidence, labels=labels))
    notes = list(mapping.notes)
    notes.append("network-aware: parameters ordered by first use in one forward pass per model on " + ", ".join(inputs))
    confirmed = sum(1 for o in outcomes if o.status == "confirmed")
    if outcomes:
        notes.append(
            f"numeric resolution: {confirmed} of {len(outcomes)} groups of interchangeable choices confirmed "
            f"({sum(o.trials for o in outcomes)} trials)"
        )
    if proof is not None:
        verdict = "proven" if proof.passed else "NOT proven"
        notes.append(
            f"{verdict}: the converted model's outputs against the source model's, max abs diff "
            f"{proof.max_abs:.3g}, max rel diff {proof.max_rel:.3g}"
        )
    return replace(mapping, pairs=tuple(pairs), notes=tuple(notes)), tuple(changed)


def _numeric_text(outcome: Outcome, group: Group) -> str:
    where = f"{outcome.module or '(the whole model)'} vs {outcome.reference or '(the whole model)'}"
    if outcome.status == "confirmed":
        return (
            f"confirmed numerically: {where} agree (max rel diff {outcome.difference:.2g}); "
            f"{outcome.rejected} other candidate{'s' if outcome.rejected != 1 else ''} disagree; "
            f"{outcome.trials} trials"
        )
    if outcome.status == "indistinguishable":
        return f"indistinguishable numerically: several candidates agree at {where}"
    if outcome.status == "untestable":
        return "not testable: no module output to compare encloses it"
    return f"unresolved: no candidate agreed at {where} within {outcome.trials} trials"
