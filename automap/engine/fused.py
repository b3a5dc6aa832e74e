"""The pieces of fused tensors: which piece goes with which partner, once the assignment chose the partners.

The assignment decides *which* tensors pair with the pieces of a fused one (`qkv` cut into thirds, a stack of
experts unstacked); the order of the pieces is settled here, after the solve, by the strongest evidence there
is. `piece_index` tells the result builder the order to concatenate them in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from .features import FeatureContext
from .sides import Side
from .solver import Assignment, Solution

__all__ = ["order_parts", "piece_index"]


def order_parts(solution: Solution, ctx: FeatureContext) -> None:
    """Decide which piece of a fused tensor goes with which partner, once the partners are chosen.

    The assignment picks *which* tensors pair with the pieces of a fused one; the order of the pieces is
    settled here, by the strongest evidence available: container indices that number the partners like the
    pieces (`experts.0..7` for the 8 slices of a stacked tensor), else piece names (`qkv` -> q, k, v) when
    the assignment already follows them, else file order, which is then reported as order-only.
    """
    lookup = {
        (int(t), int(s)): i for i, (t, s) in enumerate(zip(ctx.candidates.target, ctx.candidates.source, strict=True))
    }
    groups: dict[tuple[str, int, int, int], list[Assignment]] = defaultdict(list)
    for a in solution.assignments.values():
        if a.source is None:
            continue
        t_part, s_part = ctx.target.nodes[a.target].part, ctx.source.nodes[a.source].part
        if s_part is not None:
            groups[("source", ctx.source.nodes[a.source].base, s_part.axis, s_part.parts)].append(a)
        elif t_part is not None:
            groups[("target", ctx.target.nodes[a.target].base, t_part.axis, t_part.parts)].append(a)
    for (side, _, _, _), members in groups.items():
        if len(members) < 2:
            continue
        fused_on_source = side == "source"
        partner_side = ctx.target if fused_on_source else ctx.source

        def partner(a: Assignment, fused_on_source: bool = fused_on_source, side: Side = partner_side) -> int:
            node = a.target if fused_on_source else a.source
            return side.nodes[node].base if node is not None else -1

        partner_names = (ctx.target if fused_on_source else ctx.source).table.names
        pieces = sorted(members, key=lambda a: piece_index(ctx, a, fused_on_source))
        partners = sorted(members, key=lambda a: partner_side.rank[partner(a)])
        by_index = _numbered_partners([partner_names[partner(a)] for a in partners], len(pieces))
        if by_index is not None:
            ordered, how = [partners[i] for i in by_index], "container indices"
        elif _pieces_named(ctx, members, fused_on_source) and all(
            a.doubt is None and a.confidence >= 0.5 for a in members
        ):
            ordered, how = partners, "names"
        else:
            ordered, how = partners, "file order"
        if how != "file order":
            _set_confidence(members)
            if how == "names":
                continue  # the assignment already follows the piece names
        # snapshot before rewriting: the same assignment objects appear as pieces and as partners
        piece_nodes = [(a.source if fused_on_source else a.target) for a in pieces]
        partner_nodes = [(a.target if fused_on_source else a.source) for a in ordered]
        for node, other in zip(piece_nodes, partner_nodes, strict=True):
            t, s = (other, node) if fused_on_source else (node, other)
            candidate = lookup.get((t, s))  # type: ignore[arg-type]
            if candidate is None:
                continue
            holder = solution.assignments[t]  # type: ignore[index]
            holder.source, holder.candidate = s, candidate
            if how == "file order":
                holder.order_only = True
                holder.confidence = min(holder.confidence, 0.45)


def _pieces_named(ctx: FeatureContext, members: list[Assignment], fused_on_source: bool) -> bool:
    """Whether the fused tensor's name spells its pieces (`qkv` -> q, k, v), so names can order them."""
    side = ctx.source if fused_on_source else ctx.target
    nodes = [(a.source if fused_on_source else a.target) for a in members]
    return all(side.node_tokens[n] != side.tokens[side.nodes[n].base] for n in nodes if n is not None)


def _set_confidence(members: list[Assignment]) -> None:
    """Once the pieces are ordered by evidence, only rivals outside the group speak against a member."""
    group = {a.source for a in members}  # the pieces (or the whole sources) the members share among them
    for a in members:
        if a.confidence <= 0:
            continue
        odds_per_share = 1.0 / a.confidence  # rivals' shares are odds divided by the same total
        outside = sum(share * odds_per_share for node, share in a.rivals if node not in group and node is not None)
        a.confidence = 1.0 / (1.0 + outside)
        a.order_only = False
        a.doubt = None


def piece_index(ctx: FeatureContext, a: Assignment, fused_on_source: bool) -> int:
    """Which piece of its fused tensor the assignment's fused side is (0 for a whole tensor)."""
    node = ctx.source.nodes[a.source] if fused_on_source else ctx.target.nodes[a.target]  # type: ignore[index]
    return node.part.index if node.part is not None else 0


def _numbered_partners(names: Sequence[str], count: int) -> list[int] | None:
    """When the partners differ only in one container index running 0..count-1 (or 1..count), their order by it."""
    split = [n.split(".") for n in names]
    if len({len(s) for s in split}) != 1:
        return None
    differing = [i for i in range(len(split[0])) if len({s[i] for s in split}) > 1]
    if len(differing) != 1 or not all(s[differing[0]].isdigit() for s in split):
        return None
    numbers = [int(s[differing[0]]) for s in split]
    base = min(numbers)
    if sorted(numbers) != list(range(base, base + count)) or base not in (0, 1):
        return None
    return sorted(range(len(numbers)), key=lambda i: numbers[i])
