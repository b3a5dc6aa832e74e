"""Siblings numbered in their names on one side and by their containers on the other, where nothing else decides.

MindFormers' T5 block names its norms `layernorm1` and `layernorm2`, side by side; HF's keeps each inside the
container of its sublayer, `layer.0.layer_norm`, `layer.1.layer_norm` (`layer.2` in a decoder, whose `layer.1` is
the cross-attention). The digits count from 1 among the norms, the container index from 0 among all sublayers:
the numbers do not agree, but their order does. A word can give the place too: HF's ViT and Swin blocks call
theirs `layernorm_before` and `layernorm_after` where the ports have `norm1` and `norm2`. Where such siblings are
tied (the solver found nothing to tell them apart and flagged them), each takes, in the order of its number, the
source of the same rank among the sources the tied siblings were given. The pairs stay flagged: the order comes
from names, not from the tensors.
"""

from __future__ import annotations

import re
from collections import defaultdict

from automap._decisions import DecidedBy

from .containers import candidate_index, innermost
from .sides import Candidates, Side
from .solver import Assignment, Solution

__all__ = ["rank_numbered_siblings"]

_GLUED = re.compile(r"^(.*[A-Za-z_])(\d+)$")
_PLACES = {"pre": 0, "before": 0, "first": 0, "post": 1, "after": 1, "second": 1, "third": 2}
"""Words that give a sibling its place among siblings of one stem (`layernorm_before`, `layernorm_after`)."""
_TIED = (DecidedBy.TIE, DecidedBy.ORDER_ONLY)


def ordinal(name: str) -> tuple[str, str, int] | None:
    """(kind, group, number) of a tensor among its numbered siblings, or None.

    "glued": the number ends its module's name (`blocks.0.layernorm2.gamma` -> group `blocks.0/layernorm/gamma`);
    "placed": a word gives its place (`layernorm_before`, `layernorm_after`; `pre_norm`, `post_norm`);
    "index": the number is its innermost container's index (`layer.1.layer_norm.weight` -> group
    `layer/layer_norm.weight`).
    """
    module, _, leaf = name.rpartition(".")
    parent, _, last = module.rpartition(".")
    glued = _GLUED.match(last)
    if glued is not None:
        return "glued", f"{parent}/{glued.group(1)}/{leaf}", int(glued.group(2))
    words = last.split("_")
    for end in (0, -1):
        if len(words) > 1 and words[end].lower() in _PLACES:
            stem = "_".join(words[1:] if end == 0 else words[:-1])
            return "placed", f"{parent}/{stem}/{leaf}", _PLACES[words[end].lower()]
    found = innermost(name)
    if found is None:
        return None
    container, member = found
    return "index", f"{container}/{name[len(container) + len(member) + 2 :]}", int(member)


def rank_numbered_siblings(solution: Solution, source: Side, target: Side, candidates: Candidates) -> None:
    """Reorder the sources of tied siblings numbered one way on one side and the other way on the other."""
    groups: dict[str, list[tuple[int, int, Assignment]]] = defaultdict(list)
    for a in solution.assignments.values():
        if a.source is None or a.doubt not in _TIED or target.nodes[a.target].part or source.nodes[a.source].part:
            continue
        t_found = ordinal(target.table.names[target.nodes[a.target].base])
        s_found = ordinal(source.table.names[source.nodes[a.source].base])
        if t_found is None or s_found is None or t_found[0] == s_found[0]:
            continue  # numbered alike on both sides: the numbers themselves are compared elsewhere
        groups[f"{t_found[0]}:{t_found[1]}>{s_found[1]}"].append((t_found[2], s_found[2], a))
    for members in groups.values():
        if len(members) < 2 or len({t for t, _, _ in members}) < len(members):
            continue
        sources = sorted((s, a.source) for _, s, a in members if a.source is not None)
        if len({s for s, _ in sources}) < len(sources):
            continue
        moves: list[tuple[Assignment, int, int]] = []
        for (_, _, a), (_, wanted) in zip(sorted(members, key=lambda m: m[0]), sources, strict=True):
            found = candidate_index(candidates, a.target, wanted)
            if found is None:
                break
            moves.append((a, wanted, found))
        else:
            for a, wanted, found in moves:
                if a.source != wanted:
                    previous, a.source, a.candidate = a.source, wanted, found
                    share = max((c for node, c in a.rivals if node == wanted), default=a.confidence)
                    rest = tuple(r for r in a.rivals if r[0] not in (wanted, previous))
                    a.rivals = ((previous, share), *rest)[:4]
