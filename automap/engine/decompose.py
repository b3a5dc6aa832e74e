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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from automap.records import Alternative, Match, ParamRecord, ParamTable, Source

__all__ = ["DENSE_LIMIT", "solve_in_blocks"]

DENSE_LIMIT = 400  # parameters per side above which a problem is split into blocks
_MIN_BLOCKS = 4

Solve = Callable[[ParamTable, ParamTable, Mapping[str, str]], tuple[dict[str, Match], list[str]]]
"""Solves one problem densely; the mapping holds the block modules paired so far (target module -> source's)."""


@dataclass(frozen=True)
class _Blocks:
    """A side split along one container: `prefix.<index>.<relative name>`."""

    prefix: str
    indices: tuple[int, ...]  # sorted
    members: dict[int, list[ParamRecord]]
    rest: list[ParamRecord]

    def signature(self, index: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """What a block holds: its relative names and shapes."""
        cut = len(self.block_prefix(index))  # a relative name is what follows the block's prefix
        return tuple(sorted([(r.name[cut:], r.shape) for r in self.members[index]]))

    def block_prefix(self, index: int) -> str:
        return f"{self.prefix}.{index}." if self.prefix else f"{index}."


def solve_in_blocks(
    source: ParamTable,
    target: ParamTable,
    solve: Solve,
    *,
    limit: int = DENSE_LIMIT,
    paired: Mapping[str, str] | None = None,
) -> tuple[dict[str, Match], list[str]]:
    """Solve `source` -> `target`, splitting along repeated blocks while either side exceeds `limit`.

    The blocks paired on the way down are handed to the dense solver: a tensor of a target block belongs with the
    source block it was paired with, not with a same-shaped tensor outside it (a routed expert's `w1` is not the
    shared expert's `up_proj`).
    """
    paired = dict(paired or {})
    if len(source) <= limit and len(target) <= limit:
        return solve(source, target, paired)
    s_blocks, t_blocks = _split(source), _split(target)
    if s_blocks is None or t_blocks is None or len(s_blocks.indices) != len(t_blocks.indices):
        return solve(source, target, paired)
    pairing = dict(zip(t_blocks.indices, s_blocks.indices, strict=True))
    by_kind: dict[tuple[object, object], list[int]] = defaultdict(list)
    for t_index in t_blocks.indices:
        kind = (t_blocks.signature(t_index), s_blocks.signature(pairing[t_index]))
        by_kind[kind].append(t_index)
    matches: dict[str, Match] = {}
    notes: list[str] = []
    first = True
    solved_leads: list[tuple[int, dict[str, Match]]] = []  # earlier lead blocks and their pairs
    for t_indices in by_kind.values():
        lead = t_indices[0]
        s_lead = pairing[lead]
        # Tensors this kind shares with an earlier kind (the attention of a dense and of an MoE layer) take the
        # earlier decision, so every block reads the same way; only what is new to this kind is solved.
        known: dict[str, Match] = {}
        for earlier, earlier_pairs in solved_leads:
            carried = _Carrier(earlier_pairs, t_blocks, s_blocks, earlier, pairing[earlier]).into(lead, s_lead)
            known.update({n: m for n, m in carried.items() if n not in known and _fits(m, source, target)})
        t_members = [r for r in t_blocks.members[lead] if r.name not in known]
        used = {n for m in known.values() for n in m.source_names}
        s_members = [r for r in s_blocks.members[s_lead] if r.name not in used]
        sub_source = _table(source, (s_blocks.rest if first else []) + s_members)
        sub_target = _table(target, (t_blocks.rest if first else []) + t_members)
        here = {**paired, t_blocks.block_prefix(lead)[:-1]: s_blocks.block_prefix(s_lead)[:-1]}
        solved, sub_notes = (
            solve_in_blocks(sub_source, sub_target, solve, limit=limit, paired=here) if len(sub_target) else ({}, [])
        )
        solved = {**solved, **known}
        first = False
        solved_leads.append((lead, {n: m for n, m in solved.items() if n.startswith(t_blocks.block_prefix(lead))}))
        matches.update(solved)
        notes.extend(n for n in sub_notes if n not in notes)
        carrier = _Carrier(solved, t_blocks, s_blocks, lead, s_lead)
        for t_index in t_indices[1:]:
            matches.update(carrier.into(t_index, pairing[t_index]))
    notes.append(
        f"solved block by block: {len(t_blocks.indices)} blocks under {t_blocks.prefix or '(top level)'!r} "
        f"paired in index order with {s_blocks.prefix or '(top level)'!r}, {len(by_kind)} kind(s) of block"
    )
    return matches, notes


def _fits(match: Match, source: ParamTable, target: ParamTable) -> bool:
    """A carried-over pair whose names exist on both sides with the shapes the pair was made for."""
    if match.target not in target or not match.source_names:
        return False
    if any(n not in source for n in match.source_names):
        return False
    shapes = tuple(source[n].shape for n in match.source_names)
    recorded: tuple[object, ...] = (
        tuple(match.source_shape or ()) if isinstance(match.source, tuple) else (match.source_shape,)
    )
    return target[match.target].shape == match.target_shape and shapes == recorded


def _split(table: ParamTable) -> _Blocks | None:
    """The container whose numbered blocks hold the most parameters (at least four blocks), if any.

    Every numbered component of every name is a candidate (`model.layers.<i>`, `model.layers.3.mlp.experts.<j>`);
    the container covering the most parameters wins, the outermost on a tie.
    """
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    # Parameters of one module (`weight`, `bias`, ...) share its numbered components: split each module once.
    modules = Counter(name.rpartition(".")[0] for name in table.names)
    for module, size in modules.items():
        parts = module.split(".")
        for position, part in enumerate(parts):
            if part.isdigit():
                counts[".".join(parts[:position])][int(part)] += size
    candidates = [(sum(c.values()), -len(prefix), prefix) for prefix, c in counts.items() if len(c) >= _MIN_BLOCKS]
    if not candidates:
        return None
    _, _, prefix = max(candidates)
    head = prefix + "." if prefix else ""
    members: dict[int, list[ParamRecord]] = defaultdict(list)
    rest: list[ParamRecord] = []
    cut = len(head)
    for record in table.params:
        index, dot, _ = record.name[cut:].partition(".") if record.name.startswith(head) else ("", "", "")
        if dot and index.isdigit():
            members[int(index)].append(record)
        else:
            rest.append(record)
    return _Blocks(prefix, tuple(sorted(members)), dict(members), rest)


def _table(whole: ParamTable, records: Sequence[ParamRecord]) -> ParamTable:
    ordered = sorted(records, key=lambda r: r.index)
    return ParamTable(
        whole.framework, whole.source, tuple(r.with_index(i) for i, r in enumerate(ordered)), format=whole.format
    )


class _Carrier:
    """A lead block's pairs, renamed into any other block of the same kind (`into`).

    What does not depend on the block is worked out once: which pairs belong to the lead block, and their labels,
    which every copy of a pair shares (nothing changes a pair's labels in place).
    """

    def __init__(self, solved: dict[str, Match], t_blocks: _Blocks, s_blocks: _Blocks, t_lead: int, s_lead: int):
        self.t_blocks, self.s_blocks = t_blocks, s_blocks
        self.s_from = s_blocks.block_prefix(s_lead)
        t_from = t_blocks.block_prefix(t_lead)
        note = f"same as block {t_lead} (repeated structure)"
        self.pairs = [
            (
                name[len(t_from) :],
                match,
                self._movable(match.source),
                [(self._movable(a.source), a) for a in match.alternatives],
                {**match.labels, "block": note},
            )
            for name, match in solved.items()
            if name.startswith(t_from)
        ]

    def _movable(self, source: Source) -> tuple[bool, str] | None:
        """A single source name as (inside the lead block, the rest of the name or the whole name); else None."""
        if not isinstance(source, str):
            return None
        inside = source.startswith(self.s_from)
        return inside, source[len(self.s_from) :] if inside else source

    def into(self, t_index: int, s_index: int) -> dict[str, Match]:
        """The lead block's pairs, renamed into block `t_index` (whose source block is `s_index`)."""
        t_to, s_to = self.t_blocks.block_prefix(t_index), self.s_blocks.block_prefix(s_index)
        s_from = self.s_from
        cut = len(s_from)

        def move(source: Source, movable: tuple[bool, str] | None) -> Source:
            if movable is not None:
                return s_to + movable[1] if movable[0] else movable[1]
            if source is None or isinstance(source, str):
                return source
            return tuple(s_to + name[cut:] if name.startswith(s_from) else name for name in source)

        out: dict[str, Match] = {}
        for tail, match, movable, alternatives, labels in self.pairs:
            target = t_to + tail
            out[target] = Match(
                target,
                move(match.source, movable),
                match.confidence,
                match.transform,
                match.target_shape,
                match.source_shape,
                match.evidence,
                tuple([Alternative(move(a.source, m), a.confidence, a.transform) for m, a in alternatives]),
                match.pinned,
                labels,
            )
        return out
