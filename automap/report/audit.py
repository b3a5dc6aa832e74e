"""Review a mapping: which pairs a person should check, with the evidence for each, and what is left over.

An audit never raises for what it finds: doubtful pairs, targets without a source, unused source parameters
and inconsistencies with the checkpoints are data in an `AuditReport`, rendered most-doubtful-first. Marking
pairs as reviewed (`accept`) returns a new mapping with those pairs pinned; the caller writes it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from automap._errors import MappingFileError
from automap._text import shape_text
from automap._types import StrPath
from automap.conversion import check_mapping, is_restored_by_loader
from automap.mapping import load_mapping
from automap.records import Match, NameMapping, ParamTable, Source
from automap.transforms import describe

__all__ = ["AuditReport", "accept", "audit"]

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
        """Pairs a person has reviewed."""
        return sum(1 for p in self.mapping.pairs if p.pinned and p.source is not None)

    @property
    def confident(self) -> int:
        """Pairs at or above the threshold that nobody needed to review."""
        return len(self.mapping.pairs) - len(self.doubtful) - len(self.unmatched_targets) - self.pinned

    def summary(self) -> str:
        """One line of counts."""
        pairs = len(self.mapping.pairs)
        text = (
            f"{pairs} pair{_s(pairs)}: {self.confident} confident, {self.pinned} reviewed (pinned), "
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
            parts.append(f"Doubtful pairs ({len(self.doubtful)}), most doubtful first:")
            for number, pair in enumerate(self.doubtful, 1):
                parts.extend(self._pair_lines(number, pair))
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
                f"Next: check the pairs above; mark the right ones reviewed with `automap audit {self.where} --accept "
                "TARGET` and fix the wrong ones in the file, or re-solve the rest around the reviewed pairs with "
                f"`automap infer SOURCE TARGET --pin {self.where}`."
            )
        else:
            parts.append("Nothing needs review.")
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
    marked = tuple(p.target for p in mapping.pairs if p.target in chosen and not p.pinned)
    pairs = tuple(replace(p, pinned=True) if p.target in chosen else p for p in mapping.pairs)
    return replace(mapping, pairs=pairs), marked


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
