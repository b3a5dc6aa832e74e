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

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from automap._decisions import DECIDED_BY, DecidedBy
from automap._errors import MappingFileError
from automap._types import StrPath
from automap.records import DEFAULT_THRESHOLD, Match, NameMapping, ParamTable

from ._calls import OutputChoice
from ._candidates import Group, option_of
from ._localise import Divergence
from ._perparam import ParameterProof
from ._probing import ArgumentSpec, Calling, Clock, MindSporeInputs, OutputSpec, Probes, prepare, table_of
from ._resolve import MAX_TRIALS, Outcome
from ._settle import Settled, settle, unmatched_sources, with_assignment
from ._tolerance import Tolerance
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
        proof: the final comparison of both models' outputs (None when no output of one can be compared with an
            output of the other).
        divergence: when not proven, the first module whose outputs differ, with the parameters involved.
        outcomes: what numeric resolution found for each group of interchangeable choices.
        runs: forward passes of either network.
        module_runs: runs of the target network's test modules on their own (later rounds of trials).
        trials: candidate assignments tried, over all groups.
        inputs: the probe inputs, as specs.
        seconds: time spent per phase (trace, infer, resolve, proof).
        changed: targets whose source or transform the probes changed from what inference chose.
        per_parameter: when not proven as a whole, every parameter checked in its own module.
        tolerance: the bounds used (final proof and module checks) and the precision they were chosen for.
        outputs: which outputs of the two models were compared.
        notes: what was done to run the models (caching switched off, names mapped, stateful arguments copied).
        unmatched: used targets without a source, and what they kept for the proof.
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
    per_parameter: ParameterProof | None = None
    tolerance: Tolerance | None = None
    outputs: OutputChoice | None = None
    notes: tuple[str, ...] = ()
    unmatched: tuple[tuple[str, str], ...] = ()

    @property
    def confirmed_per_parameter(self) -> bool:
        """Not proven as a whole, but every parameter used was confirmed in its own module."""
        return not self.proven and self.per_parameter is not None and self.per_parameter.complete

    @property
    def status(self) -> str:
        """The verdict: proven, confirmed per parameter, or not proven."""
        if self.proven:
            return "proven"
        return "confirmed per parameter" if self.confirmed_per_parameter else "not proven"

    @property
    def untestable(self) -> tuple[str, ...]:
        """Targets in groups that no module could test (their confidence was not raised by numeric resolution)."""
        return tuple(m for o in self.outcomes if o.status == "untestable" for m in o.group.members)

    def __repr__(self) -> str:
        confirmed = sum(1 for o in self.outcomes if o.status == "confirmed")
        return (
            f"<NetworkInference {self.status.replace('not proven', 'NOT proven')}: {len(self.mapping.pairs)} pairs, "
            f"{len(self.changed)} changed by the probes, {confirmed} of {len(self.outcomes)} groups confirmed, "
            f"{self.trials} trials in {self.runs} forward passes>"
        )

    def lines(self) -> list[str]:
        """A short human-readable account of the probes and the proof."""
        out = [f"probe input {i}: {text}" for i, text in enumerate(self.inputs)]
        out.extend(self.notes)
        if self.outputs is not None and (self.outputs.automatic or self.outputs.left_out):
            out.extend(self.outputs.lines())
        if self.tolerance is not None:
            out.append(self.tolerance.describe())
        confirmed = [o for o in self.outcomes if o.status == "confirmed"]
        untestable = [o for o in self.outcomes if o.status == "untestable"]
        out.append(
            f"numeric resolution: {len(self.outcomes)} groups of interchangeable choices, {len(confirmed)} confirmed"
            f"{f', {len(untestable)} untestable' if untestable else ''}; {self.trials} trials in {self.runs} "
            f"forward passes and {self.module_runs} runs of single modules"
        )
        for outcome in self.outcomes:
            if outcome.status != "confirmed":
                out.append(f"  {outcome.status}: {', '.join(outcome.group.members[:4])}")
        if self.changed:
            moved = self.changed
            shown = ", ".join(moved[:6]) + (f", ... ({len(moved)} in all)" if len(moved) > 6 else "")
            out.append(f"  the probes changed {len(moved)} pair{'s' if len(moved) != 1 else ''}: {shown}")
        for name, kept in self.unmatched:
            out.append(f"  {name} has no source; the proof ran with {kept}")
        if self.proof is not None:
            out.extend(f"  {line}" for line in self.proof.detail)
        if self.proven:
            assert self.proof is not None
            out.append(
                f"PROVEN: the converted model reproduces the source model (max rel diff {self.proof.max_rel:.3g})"
            )
        elif self.per_parameter is not None and self.per_parameter.complete:
            why = (
                "the models' outputs cannot be compared"
                if self.proof is None
                else "the converted model's outputs differ from the source model's"
            )
            out.append(f"CONFIRMED PER PARAMETER ({why}): {self.per_parameter.describe()}")
        else:
            if self.proof is None:
                out.append("NOT PROVEN: no output of one model can be compared with an output of the other")
            else:
                out.append("NOT PROVEN: the converted model's outputs differ from the source model's")
            if self.divergence is not None:
                out.append(self.divergence.describe())
            if self.per_parameter is not None:
                out.append(f"per parameter: {self.per_parameter.describe()}")
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
    torch_arguments: ArgumentSpec | None = None,
    mindspore_arguments: ArgumentSpec | None = None,
    torch_outputs: OutputSpec | None = None,
    mindspore_outputs: OutputSpec | None = None,
    torch_method: str | None = None,
    mindspore_method: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    pins: NameMapping | None = None,
    rtol: float | None = None,
    atol: float | None = None,
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
        inputs: probe inputs: numpy arrays, `InputSpec`s or specs such as "1x3x224x224:float32" or
            "1x16:int64:0-1000" (an integer spec without a range draws token ids from the models' vocabulary,
            avoiding their special ids). By default one per positional argument of both models; default:
            guessed from the torch model's first layer.
        mindspore_inputs: turns the probe inputs into the MindSpore model's positional arguments, when its
            signature differs (the Python form of `mindspore_arguments`).
        torch_arguments: how the probe inputs become the torch model's arguments, e.g.
            "input_ids=0,token_type_ids=1,attention_mask=2" (positions, then keywords; each a probe input's
            number or a constant such as false). Default: the inputs in order.
        mindspore_arguments: the same for the MindSpore model.
        torch_outputs: which of the torch model's outputs to compare, by name ("logits") or position, as a
            list or a comma-separated text. Default: paired by shape with the other model's.
        mindspore_outputs: the same for the MindSpore model.
        torch_method: the torch model's method every run calls instead of `forward`, where that method computes
            what the other model returns (open_clip's `get_logits` against MindFormers' CLIP). Default: `forward`.
        mindspore_method: the MindSpore model's method called instead of `construct`.
        threshold: confidence below which a pair needs review.
        pins: a mapping whose reviewed pairs are kept as they are.
        rtol: bound of the final proof, relative to each output's largest value. Default: chosen for the
            precision the networks compute in (1e-4 for float32, 1e-2 for float16, 5e-2 for bfloat16).
        atol: absolute floor of the final proof's bound (default 1e-5).
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
    calling = Calling(
        torch_arguments,
        mindspore_arguments,
        mindspore_inputs,
        torch_outputs,
        mindspore_outputs,
        torch_method,
        mindspore_method,
    )
    probes = prepare(source, target, torch_model, mindspore_model, inputs, calling, seed, rtol=rtol, atol=atol)
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
        settled = settle(probes, mapping, clock, max_trials=max_trials, second=second)
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
    torch_arguments: ArgumentSpec | None = None,
    mindspore_arguments: ArgumentSpec | None = None,
    torch_outputs: OutputSpec | None = None,
    mindspore_outputs: OutputSpec | None = None,
    torch_method: str | None = None,
    mindspore_method: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
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
        mindspore_inputs: turns the probe inputs into the MindSpore model's positional arguments.
        torch_arguments: the torch model's arguments, as for `infer_with_networks`.
        mindspore_arguments: the MindSpore model's arguments.
        torch_outputs: the torch model's outputs to compare.
        mindspore_outputs: the MindSpore model's outputs to compare.
        torch_method: the torch model's method called instead of `forward`.
        mindspore_method: the MindSpore model's method called instead of `construct`.
        rtol: bound of the final proof relative to each output's largest value (default: for the precision).
        atol: absolute floor of the final proof's bound.
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
    calling = Calling(
        torch_arguments,
        mindspore_arguments,
        mindspore_inputs,
        torch_outputs,
        mindspore_outputs,
        torch_method,
        mindspore_method,
    )
    probes = prepare(
        source_table, target_table, torch_model, mindspore_model, inputs, calling, seed, rtol=rtol, atol=atol
    )
    try:
        clock.lap("trace")
        settled = settle(probes, mapping, clock, max_trials=max_trials)
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
    target = session.target
    used = {
        n for n in probes.target_order if n in target.from_checkpoint and target.net.is_float(target.from_checkpoint[n])
    }
    counters = {c for c, n in target.from_checkpoint.items() if target.net.backend.optional(n)}
    result, changed = _final_mapping(mapping, settled, session.source.table, used, probes, counters)
    return NetworkInference(
        mapping=result,
        proven=settled.proof is not None and settled.proof.passed,
        proof=settled.proof,
        divergence=settled.divergence,
        outcomes=settled.outcomes,
        runs=session.runs,
        module_runs=session.module_runs,
        trials=sum(o.trials for o in settled.outcomes),
        inputs=tuple(probes.described),
        seconds=dict(clock.laps),
        changed=changed,
        per_parameter=settled.per_parameter,
        tolerance=probes.tolerance,
        outputs=probes.choice,
        notes=tuple(probes.notes),
        unmatched=settled.unmatched,
    )


def _final_mapping(
    mapping: NameMapping,
    settled: Settled,
    source: ParamTable,
    used: set[str],
    probes: Probes,
    counters: Collection[str] = (),
) -> tuple[NameMapping, tuple[str, ...]]:
    """The mapping with the numeric choices in place, their evidence, and the proof; the targets the probes changed.

    Confidence rises only on evidence: a group confirmed numerically (another candidate seen to disagree), the
    whole-model proof, or a parameter confirmed in its own module. A pair the probes moved without such evidence
    falls below the threshold, and a pair no module could test keeps its confidence and says so.
    """
    outcomes, proof = settled.outcomes, settled.proof
    by_member: dict[str, tuple[Outcome, Group]] = {}
    for outcome in outcomes:
        for member in outcome.group.members:
            by_member[member] = (outcome, outcome.group)
    proven = proof is not None and proof.passed
    per_parameter = settled.per_parameter
    trusted = per_parameter is not None and per_parameter.explained and not proven
    confirmed_own = set(per_parameter.confirmed) if per_parameter is not None and trusted else set()
    untestable_own = set(per_parameter.untestable) if per_parameter is not None and not proven else set()
    failed_own = {n for n, _ in per_parameter.failed} if per_parameter is not None and not proven else set()
    diverging = set(settled.divergence.parameters) if settled.divergence is not None and not proven else set()
    below = round(max(mapping.threshold - 0.01, 0.0), 4)
    disputed = set(settled.disputed)
    placed_in_doubt = probes.session.source.doubtful | probes.session.target.doubtful
    inferred = {p.target: p for p in mapping.pairs}
    pairs = []
    changed = []
    for pair in with_assignment(mapping, settled.assignment, source).pairs:
        before = inferred[pair.target]
        evidence, labels = dict(pair.evidence), dict(pair.labels)
        confidence = pair.confidence
        moved = option_of(before) != option_of(pair)
        if moved:  # the engine's scores speak of the source it chose
            first = option_of(before)
            changed.append(pair.target)
            evidence = {}
            labels = {"note": f"inference chose {first.describe() if first else 'nothing'}; the probe chose this"}
        found = by_member.get(pair.target)
        confirmed = False
        if found is not None:
            outcome, group = found
            labels["numeric"] = _numeric_text(outcome, group)
            if outcome.status == "confirmed":
                confirmed = True
                confidence = max(confidence, _CONFIRMED)
                labels[DECIDED_BY] = DecidedBy.CONFIRMED_NUMERICALLY.value
        if proven and pair.source is not None:
            if pair.target in used:
                assert proof is not None
                labels["proof"] = (
                    f"proven: the converted model reproduces the source model (max rel diff {proof.max_rel:.2g})"
                )
                confidence = max(confidence, _PROVEN)
                confirmed = True
            else:
                labels["proof"] = (
                    "not covered: the forward pass on the probe inputs does not use this parameter (or it holds no "
                    "floating-point values, which no run can prove)"
                )
        elif pair.target in confirmed_own and per_parameter is not None:
            labels["proof"] = (
                "confirmed on its layer's function (fed its source layer's input; the only layer of its kind not "
                "confirmed in place)"
                if pair.target in per_parameter.by_function
                else "confirmed in its own module, fed the source model's values"
            )
            confidence = max(confidence, _PROVEN)
            confirmed = True
        elif pair.target in untestable_own:
            labels["proof"] = "untestable: no module holding it can be compared with the source model's"
        if (
            not proven
            and not confirmed
            and (pair.target in disputed or (found is not None and found[0].status == "unresolved"))
        ):
            confidence = min(confidence, below)  # in doubt, the numbers did not settle it, and nothing is proven
        if not confirmed and (pair.target in failed_own or pair.target in diverging):
            # evidence against the pair: its module disagrees with the source's although fed the source's values,
            # or the failed proof's first divergence involves it
            labels["proof"] = (
                "disagrees in its own module, fed the source model's values"
                if pair.target in failed_own
                else "involved where the converted model first diverges from the source model"
            )
            confidence = min(confidence, below)
        if moved and not confirmed:
            confidence = min(confidence, below)
        if moved and (pair.target in placed_in_doubt or placed_in_doubt.intersection(pair.source_names)):
            # the proof ran the model loaded by a guess of where this tensor goes: it cannot overrule the names
            confidence = min(confidence, below)
            labels["doubt"] = "its place in its own model was told by file order only, and the probe moved it"
        if pair.target in counters and pair.source is not None and not _counter_source(pair):
            pair = replace(pair, source=None, transform=(), source_shape=None)
            labels = {"note": "a counter the framework keeps (not a weight): it takes no source"}
        pairs.append(replace(pair, confidence=round(confidence, 4), evidence=evidence, labels=labels))
    notes = list(mapping.notes)
    notes.append(
        "network-aware: parameters ordered by first use in one forward pass per model on " + ", ".join(probes.described)
    )
    notes.extend(probes.notes)
    notes.append(probes.tolerance.describe())
    confirmed_groups = sum(1 for o in outcomes if o.status == "confirmed")
    untestable = sum(1 for o in outcomes if o.status == "untestable")
    if outcomes:
        notes.append(
            f"numeric resolution: {confirmed_groups} of {len(outcomes)} groups of interchangeable choices confirmed "
            f"({sum(o.trials for o in outcomes)} trials)" + (f", {untestable} untestable" if untestable else "")
        )
    if proof is not None:
        verdict = "proven" if proof.passed else "NOT proven"
        notes.append(
            f"{verdict}: the converted model's outputs against the source model's, max abs diff "
            f"{proof.max_abs:.3g}, max rel diff {proof.max_rel:.3g}"
        )
    if per_parameter is not None and not proven:
        notes.append(
            ("confirmed per parameter: " if per_parameter.complete else "per parameter: ") + per_parameter.describe()
        )
    unmatched = unmatched_sources(pairs, source)
    return replace(mapping, pairs=tuple(pairs), notes=tuple(notes), unmatched_source=unmatched), tuple(changed)


def _counter_source(pair: Match) -> bool:
    """Whether a counter target (`num_batches_tracked`) is paired with the source's counter of the same kind."""
    kind = pair.target.rpartition(".")[2]
    return all(name.rpartition(".")[2] == kind for name in pair.source_names)


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
