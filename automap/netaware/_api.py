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

This module holds the two entry points and what they return: step 1 is `_probing`, steps 3 and 4 are
`_settle`, and the mapping is written here with the evidence each pair earned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from automap._decisions import DECIDED_BY, DecidedBy
from automap._errors import MappingFileError
from automap._types import StrPath
from automap.records import NameMapping, ParamTable

from ._candidates import Group, Option, option_of
from ._localise import Divergence
from ._probing import Clock, MindSporeInputs, Probes, prepare, table_of
from ._resolve import MAX_TRIALS, Outcome
from ._settle import Settled, settle, with_assignment
from .networks import OutputComparison
from .probes import ProbeInput

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

    def __repr__(self) -> str:
        confirmed = sum(1 for o in self.outcomes if o.status == "confirmed")
        return (
            f"<NetworkInference {'proven' if self.proven else 'NOT proven'}: {len(self.mapping.pairs)} pairs, "
            f"{len(self.changed)} changed by the probes, {confirmed} of {len(self.outcomes)} groups confirmed, "
            f"{self.trials} trials in {self.runs} forward passes>"
        )

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
    mindspore_inputs: MindSporeInputs | None = None,
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
        pins: a mapping whose reviewed pairs are kept as they are.
        rtol: relative tolerance of the final proof (elementwise, as `automap verify`).
        atol: absolute tolerance of the final proof.
        seed: seed of the random probe inputs (the proof uses the next seed).
        max_trials: candidate assignments tried per group of interchangeable choices at most.

    Returns:
        The mapping with its proof, the numeric resolution's outcomes and the figures.

    Raises:
        AutomapError: the models do not fit the checkpoints, the inputs cannot be guessed, or a model fails on
            the inputs (the message says how to give them).

    Example:
        >>> result = infer_with_networks("vit.pth", "vit.ckpt", torch_model=vit_pt, mindspore_model=vit_ms,
        ...                              inputs=["1x3x224x224:float32"])  # doctest: +SKIP
        >>> result.proven  # doctest: +SKIP
        True
    """
    from automap.engine.inference import infer_mapping

    clock = Clock()
    probes = prepare(source, target, torch_model, mindspore_model, inputs, mindspore_inputs, seed)
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
        settled = settle(probes, mapping, clock, rtol=rtol, atol=atol, max_trials=max_trials, second=second)
    finally:
        probes.close()
    return _result(probes, mapping, settled, clock)


def check_with_networks(
    mapping: NameMapping,
    source: ParamTable | StrPath,
    target: ParamTable | StrPath,
    *,
    torch_model: object,
    mindspore_model: object,
    inputs: Sequence[ProbeInput] | None = None,
    mindspore_inputs: MindSporeInputs | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    seed: int = 0,
    max_trials: int = MAX_TRIALS,
) -> NetworkInference:
    """Settle an existing mapping's doubtful pairs numerically and prove it (a mapping from a file, say).

    The same as `infer_with_networks` without the inference: the mapping's doubtful pairs (below its
    threshold, or decided by order only) and the orientation of its square matrices are tried in the target
    model; then the whole model is proven, and a failed proof leads to the first diverging module, whose
    parameters are re-examined with wider choices. Reviewed pairs are kept.

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
    clock = Clock()
    source_table, target_table = table_of(source), table_of(target)
    _check_names(mapping, source_table, target_table)
    probes = prepare(source_table, target_table, torch_model, mindspore_model, inputs, mindspore_inputs, seed)
    try:
        clock.lap("trace")
        settled = settle(probes, mapping, clock, rtol=rtol, atol=atol, max_trials=max_trials)
    finally:
        probes.close()
    return _result(probes, mapping, settled, clock)


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


def _result(probes: Probes, mapping: NameMapping, settled: Settled, clock: Clock) -> NetworkInference:
    """The outcome: the mapping with the choices and their evidence in place, and the figures."""
    session = probes.session
    proof, outcomes = settled.proof, settled.outcomes
    used = set(probes.target_order)
    result, changed = _final_mapping(
        mapping, settled.assignment, session.source.table, outcomes, proof, used, probes.described
    )
    return NetworkInference(
        mapping=result,
        proven=proof is not None and proof.passed,
        proof=proof,
        divergence=settled.divergence,
        outcomes=outcomes,
        runs=session.runs,
        module_runs=session.module_runs,
        trials=sum(o.trials for o in outcomes),
        inputs=tuple(probes.described),
        seconds=dict(clock.laps),
        changed=changed,
    )


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
    for pair in with_assignment(mapping, assignment, source).pairs:
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
