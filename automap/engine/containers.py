"""Numbered containers the two sides number differently: where the numbers in names stop telling tensors apart.

A port may keep a container's name and number its members from another start. SAM's MLPs are `layers.0`,
`layers.1`, `layers.2` in the original code and `proj_in`, `layers.0`, `proj_out` in transformers: the
original's `layers.0` is transformers' `proj_in`, not its `layers.0`, although the names agree word for word.
Nothing in one name shows this; the containers do: they hold different numbers of members. Inside such a
container, wherever two members could swap their sources (the shapes allow it), the choice between them is not
evidence the names can carry, and the pairs are flagged instead of written with the confidence the agreeing
numbers gave them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from automap._decisions import DecidedBy

from .sides import Candidates, Side
from .solver import ORDER_ONLY_CAP, Assignment, Solution

__all__ = ["doubt_renumbered_containers"]


def _innermost(name: str) -> tuple[str, str] | None:
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
    trapped: set[str] = set()
    for a in solution.assignments.values():
        if a.source is None:
            continue
        t_found = _innermost(target.table.names[target.nodes[a.target].base])
        if t_found is None:
            continue
        groups[t_found[0]].append((t_found[1], a))
        s_found = _innermost(source.table.names[source.nodes[a.source].base])
        if (
            s_found is not None
            and s_found[1] == t_found[1]
            and _last(s_found[0]) == _last(t_found[0])
            and s_sizes[s_found[0]] != t_sizes[t_found[0]]
        ):
            trapped.add(t_found[0])
    for container in trapped:
        _flag_swaps(groups[container], candidates)


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
