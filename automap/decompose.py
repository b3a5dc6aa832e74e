"""Solve large mapping problems block by block: repeated containers (`layers.0..N`, `experts.0..E`) once per kind.

A dense assignment is cubic in time and quadratic in memory; at tens of thousands of tensors it is impossible.
Real large models are made of repeated blocks, and a port repeats them the same way: the mapping inside one
decoder layer is the mapping inside every decoder layer. So when a problem is large, the outermost container
with many numbered blocks is found on both sides, blocks are paired in index order, one block of each kind
(blocks with identical relative names and shapes) is solved together with everything outside the blocks, and
its pairs are carried over to every other block of that kind. Sub-problems that are still large are split
again (experts inside a layer). Small problems, and problems whose sides have no matching block structure,
go to the dense solver unchanged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .records import Alternative, Match, ParamRecord, ParamTable

__all__ = ["DENSE_LIMIT", "solve_in_blocks"]

DENSE_LIMIT = 1000  # parameters per side above which a problem is split into blocks
_MIN_BLOCKS = 4

Solve = Callable[[ParamTable, ParamTable], tuple[dict[str, Match], list[str]]]


@dataclass(frozen=True)
class _Blocks:
    """A side split along one container: `prefix.<index>.<relative name>`."""

    prefix: str
    indices: tuple[int, ...]  # sorted
    members: dict[int, list[ParamRecord]]
    rest: list[ParamRecord]

    def signature(self, index: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """What a block holds: its relative names and shapes."""
        return tuple(sorted((self.relative(r.name, index), r.shape) for r in self.members[index]))

    def relative(self, name: str, index: int) -> str:
        return name[len(self.block_prefix(index)) :]

    def block_prefix(self, index: int) -> str:
        return f"{self.prefix}.{index}." if self.prefix else f"{index}."


def solve_in_blocks(source: ParamTable, target: ParamTable, solve: Solve, *, limit: int = DENSE_LIMIT) -> tuple[dict[str, Match], list[str]]:
    """Solve `source` -> `target`, splitting along repeated blocks while either side exceeds `limit`."""
    if len(source) <= limit and len(target) <= limit:
        return solve(source, target)
    s_blocks, t_blocks = _split(source), _split(target)
    if s_blocks is None or t_blocks is None or len(s_blocks.indices) != len(t_blocks.indices):
        return solve(source, target)
    pairing = dict(zip(t_blocks.indices, s_blocks.indices, strict=True))
    by_kind: dict[tuple[object, object], list[int]] = defaultdict(list)
    for t_index in t_blocks.indices:
        kind = (t_blocks.signature(t_index), s_blocks.signature(pairing[t_index]))
        by_kind[kind].append(t_index)
    matches: dict[str, Match] = {}
    notes: list[str] = []
    first = True
    for t_indices in by_kind.values():
        lead = t_indices[0]
        sub_source = _table(source, (s_blocks.rest if first else []) + s_blocks.members[pairing[lead]])
        sub_target = _table(target, (t_blocks.rest if first else []) + t_blocks.members[lead])
        solved, sub_notes = solve_in_blocks(sub_source, sub_target, solve, limit=limit)
        first = False
        matches.update(solved)
        notes.extend(n for n in sub_notes if n not in notes)
        for t_index in t_indices[1:]:
            matches.update(_carry_over(solved, t_blocks, s_blocks, lead, pairing[lead], t_index, pairing[t_index]))
    notes.append(
        f"solved block by block: {len(t_blocks.indices)} blocks under {t_blocks.prefix or '(top level)'!r} "
        f"paired in index order with {s_blocks.prefix or '(top level)'!r}, {len(by_kind)} kind(s) of block"
    )
    return matches, notes


def _split(table: ParamTable) -> _Blocks | None:
    """The container whose numbered blocks hold the most parameters (at least four blocks), if any."""
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    first_number: list[tuple[str, int] | None] = []
    for name in table.names:
        parts = name.split(".")
        found = None
        for position, part in enumerate(parts[:-1]):
            if part.isdigit():
                found = (".".join(parts[:position]), int(part))
                counts[found[0]][found[1]] += 1
                break
        first_number.append(found)
    candidates = [(sum(c.values()), prefix) for prefix, c in counts.items() if len(c) >= _MIN_BLOCKS]
    if not candidates:
        return None
    _, prefix = max(candidates)
    members: dict[int, list[ParamRecord]] = defaultdict(list)
    rest: list[ParamRecord] = []
    for record, found in zip(table.params, first_number, strict=True):
        if found is not None and found[0] == prefix:
            members[found[1]].append(record)
        else:
            rest.append(record)
    return _Blocks(prefix, tuple(sorted(members)), dict(members), rest)


def _table(whole: ParamTable, records: Sequence[ParamRecord]) -> ParamTable:
    ordered = sorted(records, key=lambda r: r.index)
    return ParamTable(whole.framework, whole.source, tuple(r.with_index(i) for i, r in enumerate(ordered)), format=whole.format)


def _carry_over(
    solved: dict[str, Match], t_blocks: _Blocks, s_blocks: _Blocks, t_lead: int, s_lead: int, t_index: int, s_index: int
) -> dict[str, Match]:
    """The lead block's pairs, renamed into another block of the same kind."""
    t_from, t_to = t_blocks.block_prefix(t_lead), t_blocks.block_prefix(t_index)
    s_from, s_to = s_blocks.block_prefix(s_lead), s_blocks.block_prefix(s_index)

    def move(name: str, old: str, new: str) -> str:
        return new + name[len(old) :] if name.startswith(old) else name

    def move_source(value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return move(value, s_from, s_to)
        return tuple(move(v, s_from, s_to) for v in value)

    out: dict[str, Match] = {}
    for name, match in solved.items():
        if not name.startswith(t_from):
            continue
        evidence = dict(match.evidence)
        evidence["block"] = f"same as block {t_lead} (repeated structure)"
        moved = replace(
            match,
            target=move(name, t_from, t_to),
            source=move_source(match.source),
            evidence=evidence,
            alternatives=tuple(
                Alternative(move_source(a.source), a.confidence, a.transform) for a in match.alternatives
            ),
        )
        out[moved.target] = moved
    return out
