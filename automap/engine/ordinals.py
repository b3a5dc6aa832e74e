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
_ATTENTION = {"q": 0, "query": 0, "k": 1, "key": 1, "v": 2, "value": 2}
"""Attention's projections in the order every port numbers and fuses them (`dense1` is the query, `qkv` q first)."""
_TIED = (DecidedBy.TIE, DecidedBy.ORDER_ONLY)


def ordinal(name: str) -> tuple[str, str, int] | None:
    """(kind, group, number) of a tensor among its numbered siblings, or None.

    "glued": the number ends its module's name (`blocks.0.layernorm2.gamma` -> group `blocks.0/layernorm/gamma`);
    "placed": a word gives its place (`layernorm_before`, `layernorm_after`; `pre_norm`, `post_norm`; attention's
    `q_proj`, `k_proj`, `v_proj`, or `query`, `key`, `value`);
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
        word = words[end].lower()
        if word in _ATTENTION or (len(words) > 1 and word in _PLACES):
            stem = "_".join(words[1:] if end == 0 else words[:-1])
            return "placed", f"{parent}/{stem}/{leaf}", _ATTENTION.get(word, _PLACES.get(word, 0))
    found = innermost(name)
    if found is None:
        return None
    container, member = found
    return "index", f"{container}/{name[len(container) + len(member) + 2 :]}", int(member)


def rank_numbered_siblings(solution: Solution, source: Side, target: Side, candidates: Candidates) -> None:
    """Reorder the sources of tied siblings numbered one way on one side and the other way on the other."""
    tied = [
        a
        for a in solution.assignments.values()
        if a.source is not None
        and a.doubt in _TIED
        and target.nodes[a.target].part is None
        and source.nodes[a.source].part is None
    ]
    groups: dict[str, tuple[list[tuple[int, Assignment]], list[tuple[int, int]]]] = defaultdict(lambda: ([], []))
    for a in tied:
        t_found, s_found = _ordinals(a, source, target)
        if a.source is None or t_found is None or s_found is None or t_found[0] == s_found[0]:
            continue  # numbered alike on both sides: the numbers themselves are compared elsewhere
        targets, sources = groups[f"{t_found[0]}:{t_found[1]}>{s_found[1]}"]
        targets.append((t_found[2], a))
        sources.append((s_found[2], a.source))
    for targets, sources in groups.values():
        _pair_in_order(targets, sources, [], candidates)
    siblings: dict[tuple[str, tuple[int, ...]], list[Assignment]] = defaultdict(list)
    for a in tied:
        module = target.table.names[target.nodes[a.target].base].rpartition(".")[0]
        siblings[(module.rpartition(".")[0], target.nodes[a.target].shape)].append(a)
    for alike in siblings.values():
        _series_and_rest(alike, source, target, candidates)


def _ordinals(a: Assignment, source: Side, target: Side) -> tuple[tuple[str, str, int] | None, ...]:
    assert a.source is not None
    return (
        ordinal(target.table.names[target.nodes[a.target].base]),
        ordinal(source.table.names[source.nodes[a.source].base]),
    )


def _series_and_rest(members: list[Assignment], source: Side, target: Side, candidates: Candidates) -> None:
    """Pair tied siblings of one module: a numbered series a side in order, the one sibling left on each with the other.

    MindFormers' attention: `projection`, `dense1..3`; transformers' 5.x: `q_proj`, `k_proj`, `v_proj`, `o_proj`.
    """
    if len(members) < 3:
        return
    t_series: dict[tuple[str, str], list[tuple[int, Assignment]]] = defaultdict(list)
    s_series: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for a in members:
        t_found, s_found = _ordinals(a, source, target)
        t_series[t_found[:2] if t_found else ("", str(a.target))].append((t_found[2] if t_found else 0, a))
        assert a.source is not None
        s_series[s_found[:2] if s_found else ("", str(a.source))].append((s_found[2] if s_found else 0, a.source))
    t_long = [key for key, items in t_series.items() if len(items) > 1]
    s_long = [key for key, items in s_series.items() if len(items) > 1]
    if len(t_long) != 1 or len(s_long) != 1 or t_long[0][0] == s_long[0][0]:
        return  # not one series a side, or numbered alike
    t_rest = [a for key, items in t_series.items() if key != t_long[0] for _, a in items]
    s_rest = [node for key, items in s_series.items() if key != s_long[0] for _, node in items]
    if len(t_rest) > 1 or len(s_rest) != len(t_rest):
        return
    t_items, s_items = t_series[t_long[0]], s_series[s_long[0]]
    rest = list(zip(t_rest, s_rest, strict=True))
    _pair_in_order([(t, a) for t, a in t_items], s_items, rest, candidates)


def _pair_in_order(
    targets: list[tuple[int, Assignment]],
    sources: list[tuple[int, int]],
    rest: list[tuple[Assignment, int]],
    candidates: Candidates,
) -> None:
    """Give the targets the sources in the order of their numbers (and `rest` as paired), where all can take them.

    Nothing moves unless the numbers are distinct on each side, the counts agree and every pair is a candidate.
    """
    if len(targets) < 2 or len(targets) != len(sources):
        return
    if len({t for t, _ in targets}) < len(targets) or len({s for s, _ in sources}) < len(sources):
        return
    ordered = [a for _, a in sorted(targets, key=lambda m: m[0])]
    wanted = [node for _, node in sorted(sources)]
    moves: list[tuple[Assignment, int, int]] = []
    for a, node in [*zip(ordered, wanted, strict=True), *rest]:
        found = candidate_index(candidates, a.target, node)
        if found is None:
            return
        moves.append((a, node, found))
    for a, node, found in moves:
        if a.source != node:
            previous, a.source, a.candidate = a.source, node, found
            share = max((c for n, c in a.rivals if n == node), default=a.confidence)
            others = tuple(r for r in a.rivals if r[0] not in (node, previous))
            a.rivals = ((previous, share), *others)[:4]
