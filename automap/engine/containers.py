"""Numbered containers the two sides number differently: where the numbers in names stop telling tensors apart.

A port may keep a container's name and number its members from another start. SAM's MLPs are `layers.0`,
`layers.1`, `layers.2` in the original code and `proj_in`, `layers.0`, `proj_out` in transformers: the
original's `layers.0` is transformers' `proj_in`, not its `layers.0`, although the names agree word for word.
Nothing in one name shows this; the containers do: they hold different numbers of members. Inside such a
container, wherever two members could swap their sources (the shapes allow it), the choice between them is not
evidence the names can carry, and the pairs are flagged instead of written with the confidence the agreeing
numbers gave them.

What the names do carry is position: a member called `proj_in` (or `input`) comes first and one called `proj_out`
(or `output`) last, the numbered members in between in their order. Where that orders every member on both sides
and each target can take the source of the same rank, the members are paired by rank (still flagged: the order
comes from words, not from the tensors).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from automap._decisions import DecidedBy

from .sides import Candidates, Side
from .solver import ORDER_ONLY_CAP, Assignment, Solution

__all__ = ["candidate_index", "doubt_renumbered_containers", "innermost"]


def innermost(name: str) -> tuple[str, str] | None:
    """(container, member) of the innermost numbered container in a name: `a.layers.2.w` -> (`a.layers`, `2`)."""
    parts = name.split(".")[:-1]
    for position in range(len(parts) - 1, 0, -1):
        if parts[position].isdigit():
            return ".".join(parts[:position]), parts[position]
    return None


def doubt_renumbered_containers(solution: Solution, source: Side, target: Side, candidates: Candidates) -> None:
    """Flag the members of a target container where a pair's numbers agree inside containers of unequal size.

    The trap is a pair whose names agree word for word (`layers.0` ~ `layers.0`) in two containers of the same
    name holding different numbers of members: one side then numbers from another start or holds members the
    other keeps outside, and the agreeing number proves nothing. Containers of equal size (every stack of layers
    or blocks of a faithful port) are left alone.
    """
    t_sizes, s_sizes = _sizes(target), _sizes(source)
    groups: dict[str, list[tuple[str, Assignment]]] = defaultdict(list)
    trapped: dict[str, str] = {}  # target container -> the source container its agreeing numbers point into
    for a in solution.assignments.values():
        if a.source is None:
            continue
        t_found = innermost(target.table.names[target.nodes[a.target].base])
        if t_found is None:
            continue
        groups[t_found[0]].append((t_found[1], a))
        s_found = innermost(source.table.names[source.nodes[a.source].base])
        if (
            s_found is not None
            and s_found[1] == t_found[1]
            and _last(s_found[0]) == _last(t_found[0])
            and s_sizes[s_found[0]] != t_sizes[t_found[0]]
        ):
            trapped[t_found[0]] = s_found[0]
    if not trapped:
        return
    whole = {source.table.names[n.base]: i for i, n in enumerate(source.nodes) if n.part is None}
    by_target = {target.table.names[target.nodes[a.target].base]: a for a in solution.assignments.values()}
    for container, source_container in trapped.items():
        _pair_by_rank(container, source_container, (whole, by_target), source, target, candidates)
        _flag_swaps(groups[container], candidates)


_FIRST = frozenset({"in", "input"})
_LAST = frozenset({"out", "output"})


def _slots(parent: str, container: str, names: list[str]) -> dict[str, list[str]] | None:
    """The members of `parent` in the order their names give, each with its tensors' names below it.

    Members are the numbered entries of `container` and siblings named as first (`proj_in`) or last
    (`proj_out`); None when `parent` holds anything else, whose place the names cannot tell.
    """
    ranked: dict[tuple[int, int], str] = {}
    tensors: dict[str, list[str]] = defaultdict(list)
    inner = container[len(parent) + 1 :] if parent else container
    for name in names:
        if not name.startswith(parent + "."):
            continue
        rest = name[len(parent) + 1 :].split(".")
        if rest[0] == inner and len(rest) > 2 and rest[1].isdigit():
            slot, rank = f"{inner}.{rest[1]}", (1, int(rest[1]))
        else:
            words = set(rest[0].lower().split("_"))
            if len(rest) < 2 or not (words & _FIRST or words & _LAST) or (words & _FIRST and words & _LAST):
                return None
            slot, rank = rest[0], ((0, 0) if words & _FIRST else (2, 0))
        if ranked.setdefault(rank, slot) != slot:
            return None  # two members claim one place
        tensors[slot].append(name)
    return {ranked[rank]: tensors[ranked[rank]] for rank in sorted(ranked)}


def _pair_by_rank(
    container: str,
    source_container: str,
    names: tuple[dict[str, int], dict[str, Assignment]],
    source: Side,
    target: Side,
    candidates: Candidates,
) -> None:
    """Give each member of a renumbered target container the source member of the same rank, where all can take it.

    `names` holds the source's whole tensors (name -> node) and the assignments by target name.
    """
    t_parent, s_parent = container.rpartition(".")[0], source_container.rpartition(".")[0]
    t_slots = _slots(t_parent, container, list(target.table.names))
    s_slots = _slots(s_parent, source_container, list(source.table.names))
    if t_slots is None or s_slots is None or len(t_slots) != len(s_slots) or len(t_slots) < 2:
        return
    whole, by_target = names
    moves: list[tuple[Assignment, int, int]] = []
    for t_slot, s_slot in zip(t_slots, s_slots, strict=True):
        for name in t_slots[t_slot]:
            a = by_target.get(name)
            wanted = whole.get(f"{s_parent}.{s_slot}{name[len(t_parent) + 1 + len(t_slot) :]}")
            found = candidate_index(candidates, a.target, wanted) if a is not None and wanted is not None else None
            if a is None or a.source is None or wanted is None or found is None:
                return  # a member this order cannot place: leave the container to the flags
            moves.append((a, wanted, found))
    for a, wanted, candidate in moves:
        if a.source != wanted:  # the solution's choice is now the rival; the rank is words, not evidence: flagged
            previous, a.source, a.candidate = a.source, wanted, candidate
            _cap(a, previous)


def candidate_index(candidates: Candidates, target: int, source: int) -> int | None:
    """The index of the candidate pairing `target` with `source`, or None when their shapes rule it out."""
    rows = np.flatnonzero(candidates.target == target)
    found = rows[candidates.source[rows] == source]
    return int(found[0]) if len(found) else None


def _last(container: str) -> str:
    return container.rsplit(".", 1)[-1].lower()


def _sizes(side: Side) -> dict[str, int]:
    """How many members each numbered container of a side holds."""
    members: dict[str, set[str]] = defaultdict(set)
    for name in side.table.names:
        parts = name.split(".")[:-1]
        for position in range(1, len(parts)):
            if parts[position].isdigit():
                members[".".join(parts[:position])].add(parts[position])
    return {container: len(found) for container, found in members.items()}


def _flag_swaps(members: list[tuple[str, Assignment]], candidates: Candidates) -> None:
    """Cap the pairs of two members whenever each member's target could take the other's source."""
    targets = np.array([a.target for _, a in members])
    allowed: dict[int, set[int]] = defaultdict(set)
    for index in np.flatnonzero(np.isin(candidates.target, targets)):
        allowed[int(candidates.target[index])].add(int(candidates.source[index]))
    for i, (member_a, a) in enumerate(members):
        for member_b, b in members[i + 1 :]:
            if member_a == member_b or a.source == b.source:
                continue
            if b.source in allowed[a.target] and a.source in allowed[b.target]:
                for capped, rival in ((a, b.source), (b, a.source)):
                    _cap(capped, rival)


def _cap(a: Assignment, rival: int | None) -> None:
    if a.doubt is not None:
        return
    a.doubt = DecidedBy.RENUMBERED
    a.uncapped = a.confidence
    a.confidence = min(a.confidence, ORDER_ONLY_CAP)
    # the member whose source could be swapped in is about as likely as the choice
    share = max((s for node, s in a.rivals if node == rival), default=0.0)
    rest = tuple(r for r in a.rivals if r[0] != rival)
    a.rivals = ((rival, max(share, min(ORDER_ONLY_CAP, 1.0 - a.confidence))), *rest)[:4]
