"""Review a mapping: which pairs a person should check, with the evidence for each, and what is left over.

An audit never raises for what it finds: doubtful pairs, targets without a source, unused source parameters
and inconsistencies with the checkpoints are data in an `AuditReport`, rendered most-doubtful-first, each
repeated pattern (`layers.#.w1.weight`) once. Marking pairs as reviewed (`accept`) or giving a pair another
source (`choose`, carried to every block of its pattern) returns a new mapping with those pairs pinned; the
caller writes it. Pairs carried from a reviewed pattern say so (`DecidedBy.SAME_PATTERN`): no person looked
at them. Pairs of a flat file are given (`DecidedBy.FLAT_MAPPING`): neither confident nor reviewed.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from automap._decisions import DECIDED_BY, DecidedBy
from automap._errors import MappingFileError
from automap._text import shape_text
from automap._types import StrPath
from automap.conversion import check_mapping, is_restored_by_loader
from automap.engine.shapes import relate
from automap.mapping import load_mapping
from automap.records import Alternative, Match, NameMapping, ParamTable, Source
from automap.transforms import Concat, Split, Step, describe, output_shape

__all__ = ["AuditReport", "accept", "audit", "choose", "is_flat", "name_pattern"]

_WILDCARDS = frozenset("*?[")


@dataclass(frozen=True)
class AuditReport:
    """What a person should review in a mapping.

    Attributes:
        mapping: the mapping audited.
        threshold: confidence below which a pair counts as doubtful.
        doubtful: pairs with a source below `threshold` that nobody reviewed, most doubtful first.
        unmatched_targets: target pairs without a source, in target order.
        unmatched_sources: source parameters no pair reads.
        problems: ways the mapping does not fit the checkpoints (only when they were given).
        source_positions: each source name's position in the source checkpoint (when it was given).
        where: how the mapping is named in the text (its file).
    """

    mapping: NameMapping
    threshold: float
    doubtful: tuple[Match, ...]
    unmatched_targets: tuple[Match, ...]
    unmatched_sources: tuple[str, ...]
    problems: tuple[str, ...] = ()
    source_positions: Mapping[str, int] = field(default_factory=dict)
    where: str = "mapping"

    def __repr__(self) -> str:
        return (
            f"<AuditReport {self.where!r}: {len(self.mapping.pairs)} pairs, {len(self.doubtful)} doubtful, "
            f"{len(self.unmatched_targets)} targets without a source, {len(self.unmatched_sources)} sources unused, "
            f"{len(self.problems)} problems>"
        )

    @property
    def restored_by_loader(self) -> tuple[Match, ...]:
        """Unmatched targets the target framework's loader fills in by itself (no action needed)."""
        framework = self.mapping.target.framework
        return tuple(p for p in self.unmatched_targets if is_restored_by_loader(p.target, framework))

    @property
    def needs_review(self) -> bool:
        """True when anything calls for a person: doubtful pairs, targets without a source, or problems."""
        return bool(self.doubtful or self.problems or len(self.unmatched_targets) > len(self.restored_by_loader))

    @property
    def pinned(self) -> int:
        """Pairs reviewed (pinned): by a person, or carried from a pattern a person reviewed (`spread`)."""
        return sum(1 for p in self.mapping.pairs if p.pinned and p.source is not None)

    @property
    def spread(self) -> int:
        """Pinned pairs carried from a reviewed pair of a repeated block, which no person looked at."""
        return sum(1 for p in self.mapping.pairs if p.pinned and p.source is not None and _spread(p))

    @property
    def given(self) -> int:
        """Pairs read from a flat file: no confidence recorded, nobody reviewed them."""
        return sum(1 for p in self.mapping.pairs if _given(p))

    @property
    def confident(self) -> int:
        """Pairs at or above the threshold that nobody needed to review."""
        return len(self.mapping.pairs) - len(self.doubtful) - len(self.unmatched_targets) - self.pinned - self.given

    def summary(self) -> str:
        """One line of counts."""
        pairs = len(self.mapping.pairs)
        spread = f"; {self.spread} of them spread from a reviewed pattern" if self.spread else ""
        given = f"{self.given} given by a flat mapping (no confidence recorded), " if self.given else ""
        text = (
            f"{pairs} pair{_s(pairs)}: {self.confident} confident, {self.pinned} reviewed (pinned{spread}), {given}"
            f"{len(self.doubtful)} doubtful (below {self.threshold:.2f}); "
            f"{len(self.unmatched_targets)} target{_s(len(self.unmatched_targets))} without a source; "
            f"{len(self.unmatched_sources)} source parameter{_s(len(self.unmatched_sources))} unused"
        )
        if self.problems:
            text += f"; {len(self.problems)} problem{_s(len(self.problems))} with the checkpoints"
        return text

    def render(self) -> str:
        """The full report: doubtful pairs first, then unmatched parameters of each side, then a summary."""
        mapping = self.mapping
        source, target = mapping.source, mapping.target
        head = f"Audit of {self.where}"
        if source.path or target.path:
            head += (
                f": {source.framework} {source.path or '?'} -> {target.framework} {target.path or '?'}"
                f" ({len(mapping.pairs)} pairs, threshold {self.threshold:.2f})"
            )
        parts = [head, ""]
        if self.doubtful:
            # Repeated blocks repeat their doubts: each pattern (`layers.#.w1.weight`) in full once, as infer shows it.
            groups: dict[str, list[Match]] = {}
            for pair in self.doubtful:
                groups.setdefault(name_pattern(pair.target), []).append(pair)
            count = str(len(self.doubtful))
            if len(groups) < len(self.doubtful):
                count += f", in {len(groups)} pattern{_s(len(groups))}"
            parts.append(f"Doubtful pairs ({count}), most doubtful first:")
            for number, (pattern, group) in enumerate(groups.items(), 1):
                parts.extend(self._pair_lines(number, group[0]))
                if len(group) > 1:
                    parts.append(_more_of_pattern(pattern, group[1:]))
        else:
            parts.append("Doubtful pairs: none.")
        parts.append("")
        if self.unmatched_targets:
            parts.append(f"Targets without a source ({len(self.unmatched_targets)}):")
            restored = {p.target for p in self.restored_by_loader}
            for pair in self.unmatched_targets:
                line = f"  {pair.target}  {shape_text(pair.target_shape)}  (target #{self._target_position(pair)})"
                if pair.target in restored:
                    line += "  PyTorch's loader restores it; no action needed"
                else:
                    notes = _evidence(pair)
                    line += f"  ({notes})" if notes else ""
                    line += f"  candidates: {_alternatives(pair)}" if pair.alternatives else ""
                parts.append(line)
        else:
            parts.append("Targets without a source: none.")
        parts.append("")
        if self.unmatched_sources:
            parts.append(f"Source parameters not used ({len(self.unmatched_sources)}):")
            framework = self.mapping.source.framework
            counters = {n for n in self.unmatched_sources if is_restored_by_loader(n, framework)}
            if counters:
                parts.append(f"  {len(counters)} BatchNorm num_batches_tracked counters (a training statistic)")
            for name in (n for n in self.unmatched_sources if n not in counters):
                position = self.source_positions.get(name)
                parts.append(f"  {name}" + (f"  (source #{position})" if position is not None else ""))
        else:
            parts.append("Source parameters not used: none.")
        if self.problems:
            parts += ["", f"Problems with the checkpoints ({len(self.problems)}):"]
            parts.extend(f"  {p}" for p in self.problems)
        parts += ["", f"Summary: {self.summary()}."]
        if self.needs_review:
            parts.append(
                f"Next: check the pairs above; mark the right ones reviewed with `automap audit {self.where} "
                "--accept TARGET`, give the wrong ones their source with `--choose TARGET=SOURCE` (carried to every "
                "block of its pattern), or fix them in the file (or re-solve the rest around the reviewed pairs "
                "with `automap infer --pin`)."
            )
        else:
            parts.append("Nothing needs review.")
        if self.given:
            parts.append(
                f"The {self.given} pair{_s(self.given)} of a flat mapping carry no confidence, so none can be flagged; "
                f"give the checkpoints to check names and shapes: `automap audit {self.where} SOURCE TARGET`."
            )
        return "\n".join(parts)

    def _target_position(self, pair: Match) -> int:
        return next(i for i, p in enumerate(self.mapping.pairs) if p.target == pair.target)

    def _pair_lines(self, number: int, pair: Match) -> list[str]:
        names = pair.source_names
        shapes = _source_shapes(pair)
        positions = [self.source_positions.get(n) for n in names]
        transform = describe(pair.transform) if pair.transform else "none"
        source_text = " + ".join(
            f"{n}  {shape_text(s) if s is not None else ''}".rstrip() + (f"  (source #{p})" if p is not None else "")
            for n, s, p in zip(names, shapes, positions, strict=True)
        )
        lines = [
            f"  [{number}] {pair.target}  {shape_text(pair.target_shape)}  "
            f"(target #{self._target_position(pair)} of {len(self.mapping.pairs)})",
            f"      <- {source_text}",
            f"      confidence {pair.confidence:.2f}; transform: {transform}",
        ]
        if pair.evidence or pair.labels:
            lines.append(f"      evidence: {_evidence(pair)}")
        lines.append(f"      alternatives: {_alternatives(pair) or 'none recorded'}")
        return lines


def audit(
    mapping: NameMapping | StrPath,
    *,
    threshold: float | None = None,
    source: ParamTable | None = None,
    target: ParamTable | None = None,
) -> AuditReport:
    """Find what a person should review in a mapping.

    Args:
        mapping: the mapping, or its file.
        threshold: confidence below which a pair is doubtful; defaults to the mapping's own.
        source: the source checkpoint's table, to check the mapping against it and show source positions.
        target: the target's table, to check the mapping against it.

    Returns:
        The findings (never raised as errors).

    Raises:
        MappingFileError: the mapping file cannot be read.

    Example:
        >>> report = audit("mapping.json")  # doctest: +SKIP
        >>> print(report.render())  # doctest: +SKIP
        >>> report.needs_review  # doctest: +SKIP
        False
    """
    where = "mapping" if isinstance(mapping, NameMapping) else str(mapping)
    the_mapping = mapping if isinstance(mapping, NameMapping) else load_mapping(mapping)
    limit = the_mapping.threshold if threshold is None else threshold
    order = {p.target: i for i, p in enumerate(the_mapping.pairs)}
    doubtful = sorted(
        (p for p in the_mapping.pairs if p.source is not None and p.confidence < limit and not p.pinned),
        key=lambda p: (p.confidence, order[p.target]),
    )
    unmatched_targets = tuple(p for p in the_mapping.pairs if p.source is None)
    used = {n for p in the_mapping.pairs for n in p.source_names}
    if source is not None:
        unmatched_sources = tuple(n for n in source.names if n not in used)
    else:
        unmatched_sources = tuple(n for n in the_mapping.unmatched_source if n not in used)
    problems = tuple(check_mapping(the_mapping, source, target)) if source is not None else ()
    return AuditReport(
        mapping=the_mapping,
        threshold=limit,
        doubtful=tuple(doubtful),
        unmatched_targets=unmatched_targets,
        unmatched_sources=unmatched_sources,
        problems=problems,
        source_positions={r.name: r.index for r in source.params} if source is not None else {},
        where=where,
    )


def accept(mapping: NameMapping, names: Sequence[str]) -> tuple[NameMapping, tuple[str, ...]]:
    """Mark pairs as reviewed by a person (pinned), so that they no longer count as doubtful.

    Args:
        mapping: the mapping.
        names: target names, shell-style patterns over target names (`layers.*.wq.weight`), or source
            names that feed exactly one pair.

    Returns:
        The new mapping and the targets newly marked, in target order.

    Raises:
        MappingFileError: a name matches no pair, or a matched pair has no source; every such name is listed.

    Example:
        >>> mapping, marked = accept(load_mapping("mapping.json"), ["head.weight"])  # doctest: +SKIP
        >>> save_mapping(mapping, "mapping.json")  # doctest: +SKIP
    """
    targets = [p.target for p in mapping.pairs]
    by_source: dict[str, list[str]] = {}
    for pair in mapping.pairs:
        for name in pair.source_names:
            by_source.setdefault(name, []).append(pair.target)
    chosen: set[str] = set()
    unknown: list[str] = []
    known = set(targets)
    for name in names:
        if name in known:
            chosen.add(name)
        elif _WILDCARDS & set(name) and (matched := fnmatch.filter(targets, name)):
            chosen.update(matched)
        elif len(by_source.get(name, [])) == 1:
            chosen.update(by_source[name])
        else:
            close = difflib.get_close_matches(name, targets, n=1)
            unknown.append(repr(name) + (f" (did you mean {close[0]!r}?)" if close else ""))
    if unknown:
        msg = f"no pair with target {', '.join(unknown)}; give target names as the mapping lists them"
        raise MappingFileError(msg)
    sourceless = [p.target for p in mapping.pairs if p.target in chosen and p.source is None]
    if sourceless:
        msg = f"cannot mark {_quoted(sourceless)} reviewed: no source; give it one in the mapping file first"
        raise MappingFileError(msg)
    _refuse_flat(mapping)
    marked = tuple(p.target for p in mapping.pairs if p.target in chosen and (not p.pinned or _spread(p)))
    pairs = tuple(_reviewed(p) if p.target in chosen else p for p in mapping.pairs)
    return replace(mapping, pairs=pairs), marked


def choose(
    mapping: NameMapping, choices: Sequence[tuple[str, str]], *, source: ParamTable | None = None
) -> tuple[NameMapping, tuple[str, ...], tuple[str, ...]]:
    """Give pairs the source a person chose, and carry each choice to every block of its repeated pattern.

    A source is one name, or several joined with `+` (read in that order and concatenated along axis 0).
    Choosing `layers.0.w1.weight <- layers.0.up_proj.weight` also sets `layers.7.w1.weight <- layers.7.up_proj.weight`
    (the same offsets between the block numbers), wherever that source exists and fits; pairs a person pinned are
    left alone. A chosen pair is pinned as a person's review; a carried one is pinned and marked
    `DecidedBy.SAME_PATTERN`, since no person looked at it. The transform comes from the alternative the mapping
    recorded for that source, else from the shapes (a length-1 axis, a 2-D transpose).

    Args:
        mapping: the mapping.
        choices: (target name, source name or names joined with `+`) pairs.
        source: the source checkpoint's table; without it, only source names the mapping records can be chosen.

    Returns:
        The new mapping, the targets chosen, and the targets the choices were carried to, in target order.

    Raises:
        MappingFileError: a target or source name is unknown, a source does not fit its target's shape, or a
            chosen source would still feed another target; the mapping is then unchanged.

    Example:
        >>> mapping, chosen, spread = choose(load_mapping("m.json"), [("norm.gamma", "ln.weight")])  # doctest: +SKIP
    """
    _refuse_flat(mapping)
    shapes = _known_sources(mapping, source)
    targets = [p.target for p in mapping.pairs]
    by_target = {p.target: p for p in mapping.pairs}
    new: dict[str, Match] = {}
    for target, name in choices:
        pair = by_target.get(target)
        if pair is None:
            close = difflib.get_close_matches(target, targets, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"no pair with target {target!r}{hint}; give target names as the mapping lists them"
            raise MappingFileError(msg)
        names = _chosen_names(name, shapes)
        unknown = [n for n in names if n not in shapes]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(shapes), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            more = "" if source is not None else "; give the source checkpoint too, to choose any of its parameters"
            msg = f"no source named {unknown[0]!r} in the mapping{hint}{more}"
            raise MappingFileError(msg)
        chosen_source: Source = names[0] if len(names) == 1 else names
        found = [shapes[n] for n in names]
        steps = _fitting_steps(pair, chosen_source, found)
        if steps is None:
            known = [f for f in found if f is not None]  # unknown shapes always fit, so all are known here
            got = output_shape(known, _recorded_steps(pair, chosen_source))
            given = " + ".join(shape_text(f) for f in known)
            msg = (
                f"target {target!r}: source {' + '.join(names)!r} {given} gives {shape_text(got)}, the target needs "
                f"{shape_text(pair.target_shape)}"
            )
            raise MappingFileError(msg)
        new[target] = _chosen(pair, chosen_source, steps, found, {"pinned": "chosen by a person"})
    chosen = dict(new)
    for target, pair in chosen.items():
        for other in mapping.pairs:
            if other.target in new or (other.pinned and not _spread(other)):
                continue
            counterpart = _counterpart(target, pair.source, other.target)
            if counterpart is None or counterpart not in shapes:
                continue
            steps = _fitting_steps(other, counterpart, [shapes[counterpart]], pair.transform)
            if steps is not None:
                label = {
                    DECIDED_BY: DecidedBy.SAME_PATTERN.value,
                    "pinned": f"same pattern as the reviewed pair {target!r}",
                }
                new[other.target] = _chosen(other, counterpart, steps, [shapes[counterpart]], label)
    _refuse_conflicts(mapping, new, chosen)
    pairs = tuple(new.get(p.target, p) for p in mapping.pairs)
    used = {n for p in pairs for n in p.source_names}
    freed = [n for p in mapping.pairs for n in p.source_names if n not in used]
    unmatched = tuple(dict.fromkeys(n for n in (*mapping.unmatched_source, *freed) if n not in used))
    order = [p.target for p in mapping.pairs]
    return (
        replace(mapping, pairs=pairs, unmatched_source=unmatched),
        tuple(t for t in order if t in chosen),
        tuple(t for t in order if t in new and t not in chosen),
    )


def is_flat(mapping: NameMapping) -> bool:
    """True for a mapping read from a flat `{target: source}` file (its pairs are given, not inferred)."""
    return any(_given(p) for p in mapping.pairs)


def name_pattern(name: str) -> str:
    """A name with its block numbers blanked, to group repeated blocks: `layers.7.w1.weight` -> `layers.#.w1.weight`."""
    return ".".join("#" if part.isdigit() else part for part in name.split("."))


def _given(pair: Match) -> bool:
    return pair.source is not None and not pair.pinned and pair.decided_by is DecidedBy.FLAT_MAPPING


def _spread(pair: Match) -> bool:
    return pair.decided_by is DecidedBy.SAME_PATTERN


def _reviewed(pair: Match) -> Match:
    """The pair pinned as a person's review (no longer marked as carried from a pattern)."""
    if not _spread(pair):
        return replace(pair, pinned=True)
    labels = {k: v for k, v in pair.labels.items() if k != DECIDED_BY} | {"pinned": "accepted by a person"}
    return replace(pair, pinned=True, labels=labels)


def _refuse_flat(mapping: NameMapping) -> None:
    if is_flat(mapping):
        msg = (
            "a flat {target: source} mapping records no confidence and no review, so pairs cannot be marked in it; "
            "use the versioned mapping automap writes (automap infer SOURCE TARGET -o FILE)"
        )
        raise MappingFileError(msg)


def _known_sources(mapping: NameMapping, source: ParamTable | None) -> dict[str, tuple[int, ...] | None]:
    """Every source name that can be chosen, with its shape where known."""
    if source is not None:
        return {r.name: r.shape for r in source.params}
    shapes: dict[str, tuple[int, ...] | None] = {}
    for pair in mapping.pairs:
        for name, shape in zip(pair.source_names, _source_shapes(pair), strict=True):
            shapes[name] = shape
        for alternative in pair.alternatives:
            for name in (
                ()
                if alternative.source is None
                else (alternative.source,)
                if isinstance(alternative.source, str)
                else alternative.source
            ):
                shapes.setdefault(name, None)
    for name in mapping.unmatched_source:
        shapes.setdefault(name, None)
    return shapes


def _chosen_names(text: str, known: Mapping[str, object]) -> tuple[str, ...]:
    """The source name(s) a choice gives: one name, or several joined with `+` (concatenated along axis 0)."""
    if text in known or "+" not in text:
        return (text,)
    return tuple(part.strip() for part in text.split("+"))


def _recorded_steps(pair: Match, source: Source) -> tuple[Step, ...]:
    """The transform the mapping recorded for reading `source` into this pair's target, else the plain one."""
    if pair.source == source:
        return pair.transform
    recorded = next((a.transform for a in pair.alternatives if a.source == source), None)
    if recorded is not None:
        return recorded
    return (Concat(0),) if isinstance(source, tuple) else ()


def _fitting_steps(
    pair: Match,
    source: Source,
    shapes: Sequence[tuple[int, ...] | None],
    steps: tuple[Step, ...] | None = None,
) -> tuple[Step, ...] | None:
    """The steps that turn the source(s) into the pair's target, or None when their shapes cannot fit."""
    steps = _recorded_steps(pair, source) if steps is None else steps
    if any(shape is None for shape in shapes) or not pair.target_shape:
        return steps  # nothing to check here; the conversion checks the shapes against the checkpoint
    known = [shape for shape in shapes if shape is not None]
    try:
        if output_shape(known, steps) == pair.target_shape:
            return steps
    except MappingFileError:
        pass
    relation = relate(known[0], pair.target_shape) if len(known) == 1 else None
    if relation is not None and relation.kind in ("layout", "transpose"):
        return relation.steps
    return None


def _chosen(
    pair: Match,
    source: Source,
    steps: tuple[Step, ...],
    shapes: Sequence[tuple[int, ...] | None],
    labels: Mapping[str, str],
) -> Match:
    """The pair reading `source`, pinned; the source it had becomes its first alternative."""
    recorded = next((a for a in pair.alternatives if a.source == source), None)
    confidence = pair.confidence if pair.source == source else recorded.confidence if recorded else 0.0
    alternatives = [a for a in pair.alternatives if a.source != source]
    if pair.source is not None and pair.source != source:
        alternatives.insert(0, Alternative(pair.source, pair.confidence, pair.transform))
    known = [shape for shape in shapes if shape is not None]
    recorded_shape: tuple[int, ...] | tuple[tuple[int, ...], ...] | None = None
    if len(known) == len(shapes):
        recorded_shape = known[0] if len(known) == 1 else tuple(known)
    return replace(
        pair,
        source=source,
        confidence=confidence,
        transform=steps,
        source_shape=recorded_shape,
        evidence={} if pair.source != source else pair.evidence,
        alternatives=tuple(alternatives),
        pinned=True,
        labels=dict(labels),
    )


def _counterpart(target: str, source: Source, other: str) -> str | None:
    """The source that `other` reads if it repeats the block pattern of `target <- source`, or None.

    The block numbers of `other` differ from those of `target` by the same offsets as the source's numbers.
    """
    if not isinstance(source, str) or other == target or name_pattern(other) != name_pattern(target):
        return None
    t_parts, s_parts, o_parts = target.split("."), source.split("."), other.split(".")
    t_slots = [i for i, p in enumerate(t_parts) if p.isdigit()]
    s_slots = [i for i, p in enumerate(s_parts) if p.isdigit()]
    if not t_slots or len(t_slots) != len(s_slots):
        return None
    counterpart = list(s_parts)
    for i, j in zip(t_slots, s_slots, strict=True):
        counterpart[j] = str(int(o_parts[i]) - int(t_parts[i]) + int(s_parts[j]))
        if int(counterpart[j]) < 0:
            return None
    return ".".join(counterpart)


def _refuse_conflicts(mapping: NameMapping, new: Mapping[str, Match], chosen: Mapping[str, Match]) -> None:
    """Refuse choices that leave a source feeding two targets (except different parts of a split)."""
    readers: dict[str, list[Match]] = {}
    for pair in mapping.pairs:
        if pair.target not in new:
            for name in pair.source_names:
                readers.setdefault(name, []).append(pair)
    ordered = [*chosen.values(), *(p for t, p in new.items() if t not in chosen)]
    for pair in ordered:
        for name in pair.source_names:
            for other in readers.get(name, []):
                if _has_split(pair.transform) and _has_split(other.transform):
                    continue
                before = next(p for p in mapping.pairs if p.target == pair.target).source
                hint = (
                    f", e.g. --choose {other.target}={before}"
                    if isinstance(before, str) and isinstance(other.source, str)
                    else " (several sources join with '+': --choose TARGET=A+B+C)"
                )
                msg = (
                    f"choosing {name!r} for {pair.target!r}: {name!r} would also feed {other.target!r}, which reads "
                    f"it now; choose a source for that target too{hint}"
                )
                raise MappingFileError(msg)


def _has_split(steps: Sequence[Step]) -> bool:
    return any(isinstance(s, Split) for s in steps)


def _more_of_pattern(pattern: str, rest: Sequence[Match]) -> str:
    """The other doubtful pairs of one repeated pattern, in one line."""
    names = ", ".join(p.target for p in rest[:3]) + (", ..." if len(rest) > 3 else "")
    low, high = min(p.confidence for p in rest), max(p.confidence for p in rest)
    spread = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"
    every = pattern.replace("#", "*")
    return (
        f"      and the same pattern {pattern} in {len(rest)} more pair{_s(len(rest))} (confidence {spread}): {names}"
        f"; --accept '{every}' marks them all"
    )


def _source_shapes(pair: Match) -> list[tuple[int, ...] | None]:
    count = len(pair.source_names)
    shape = pair.source_shape
    if shape is None:
        return [None] * count
    per_source = [s for s in shape if isinstance(s, tuple)]
    if per_source:
        return list(per_source)
    return [tuple(d for d in shape if isinstance(d, int))] * count


def _quoted(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _evidence(pair: Match) -> str:
    numbers = [f"{k} {v:.2f}" for k, v in pair.evidence.items()]
    notes = [f"{k}: {v}" for k, v in pair.labels.items()]
    return "; ".join(x for x in (", ".join(numbers), "; ".join(notes)) if x)


def _alternatives(pair: Match) -> str:
    return ", ".join(
        f"{_source_name(a.source)} {a.confidence:.2f}" + (f" ({describe(a.transform)})" if a.transform else "")
        for a in pair.alternatives
    )


def _source_name(source: Source) -> str:
    if source is None:
        return "(none)"
    return source if isinstance(source, str) else " + ".join(source)


def _s(count: int) -> str:
    return "" if count == 1 else "s"
