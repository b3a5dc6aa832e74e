"""Structural seeds: module pairs read from the two hierarchies before any parameter is matched.

Modules whose content (the multiset of their parameters' shapes) is unique on both sides pair up, and inside
paired modules the children with the same content line up, numbered containers in order. These seeds give
the first pass its module affinity; where lined-up container elements carry different numbers (`layers.1`
with `blocks.0`), those numbers are marked as untrusted for the `numbers` feature.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

import numpy as np

from .names import number_contexts
from .sides import Side

__all__ = ["renumbered_keys", "signature_seeds"]


def signature_seeds(source: Side, target: Side) -> dict[tuple[str, str], float]:
    """Modules that hold exactly the same kinds of tensors, where that content is unique on each side.

    A module's signature is the multiset of its parameters' shapes (length-1 axes and axis order ignored, so
    layout differences do not matter; scalars such as `num_batches_tracked` left out). A signature held by one
    module on each side pairs those modules before any parameter is matched: `stages.1` finds `feature.3`
    even when their blocks are numbered and ordered differently.
    """

    def by_signature(side: Side) -> dict[frozenset[tuple[tuple[int, ...], int]], list[str]]:
        groups: dict[frozenset[tuple[tuple[int, ...], int]], list[str]] = defaultdict(list)
        graph = side.tree.graph
        for module in side.tree.modules():
            if module == "":
                continue
            children = list(graph.successors(module))
            if len(children) == 1 and graph.nodes[children[0]]["kind"] == "module":
                continue  # a pure wrapper reads the same as its only child
            content: Counter[tuple[int, ...]] = Counter()
            for shape, count in graph.nodes[module]["signature"].items():
                if shape:
                    content[tuple(sorted(d for d in shape if d != 1))] += count
            if sum(content.values()) >= 2:
                groups[frozenset(content.items())].append(module)
        return groups

    source_groups = by_signature(source)
    seeds: dict[tuple[str, str], float] = {}
    for key, t_modules in by_signature(target).items():
        s_modules = source_groups.get(key, [])
        if len(t_modules) == 1 and len(s_modules) == 1:
            seeds[(t_modules[0], s_modules[0])] = 1.0
    # Top-down: inside paired modules (and the two models themselves), line up the child modules whose
    # content is the same, in order. Repeated blocks (`features.3..17` vs `features.1..15`) pair up by position
    # in the run, however each side numbers them.
    queue = [("", ""), *seeds]
    seen: set[tuple[str, str]] = set()
    while queue:
        pair = queue.pop()
        if pair in seen:
            continue
        seen.add(pair)
        for child_pair in _align_children(target, source, *pair):
            if child_pair not in seeds:
                seeds[child_pair] = 1.0
            queue.append(child_pair)
    return seeds


def _module_content(side: Side, module: str) -> frozenset[tuple[tuple[int, ...], int]]:
    """A module's parameter shapes (length-1 axes dropped, so Conv1d's 3-D and 4-D weights agree), as a multiset."""
    content: Counter[tuple[int, ...]] = Counter()
    for shape, count in side.tree.graph.nodes[module]["signature"].items():
        if shape:
            content[tuple(d for d in shape if d != 1)] += count
    return frozenset(content.items())


def _align_children(target: Side, source: Side, t_module: str, s_module: str) -> list[tuple[str, str]]:
    """Child modules of two paired modules that hold the same content.

    Numbered children (container elements: `features.3`, `blocks.0`) are lined up in order, longest common
    subsequence first: every port enumerates a container's elements in order. Named children (`attention`,
    `ffn_norm`) pair only when their content is unique among the siblings on both sides, because the order of
    named siblings is a matter of taste and proves nothing.
    """
    t_graph, s_graph = target.tree.graph, source.tree.graph
    t_all = [c for c in t_graph.successors(t_module) if t_graph.nodes[c]["kind"] == "module"]
    s_all = [c for c in s_graph.successors(s_module) if s_graph.nodes[c]["kind"] == "module"]
    named: list[tuple[str, str]] = []
    t_named = Counter(_module_content(target, c) for c in t_all)
    s_named = Counter(_module_content(source, c) for c in s_all)
    s_by_key = {_module_content(source, c): c for c in s_all}
    for child in t_all:
        key = _module_content(target, child)
        if not _is_index(child) and t_named[key] == 1 and s_named.get(key) == 1 and not _is_index(s_by_key[key]):
            named.append((child, s_by_key[key]))
    t_children = sorted((c for c in t_all if _is_index(c)), key=_index_value)
    s_children = sorted((c for c in s_all if _is_index(c)), key=_index_value)
    if not t_children or not s_children or len(t_children) * len(s_children) > 250_000:
        return named
    t_keys = [_module_content(target, c) for c in t_children]
    s_keys = [_module_content(source, c) for c in s_children]
    rows, cols = len(t_keys), len(s_keys)
    table = np.zeros((rows + 1, cols + 1), dtype=np.int32)
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            if t_keys[i] == s_keys[j]:
                table[i, j] = table[i + 1, j + 1] + 1
            else:
                table[i, j] = max(table[i + 1, j], table[i, j + 1])
    pairs, i, j = [], 0, 0
    while i < rows and j < cols:
        if t_keys[i] == s_keys[j] and table[i, j] == table[i + 1, j + 1] + 1:
            pairs.append((t_children[i], s_children[j]))
            i, j = i + 1, j + 1
        elif table[i + 1, j] >= table[i, j + 1]:
            i += 1
        else:
            j += 1
    return named + pairs


def _index_value(module: str) -> int:
    return int(module.rsplit(".", 1)[-1])


def _is_index(module: str) -> bool:
    """Whether a module is a numbered element of a container (its last name component is a number)."""
    return module.rsplit(".", 1)[-1].isdigit()


def renumbered_keys(
    seeds: Mapping[tuple[str, str], float], source: Side, target: Side, lexicon: bool
) -> frozenset[tuple[str, ...]]:
    """Number keys whose values differ between container elements that line up (`layers.1` with `blocks.0`).

    When one side numbers a container from 1 and the other from 0, equal numbers mean different elements.
    """
    first_t: dict[str, str] = {}
    for name in target.table.names:
        for module in target.tree.ancestors(name, 64):
            first_t.setdefault(module, name)
    first_s: dict[str, str] = {}
    for name in source.table.names:
        for module in source.tree.ancestors(name, 64):
            first_s.setdefault(module, name)
    keys: set[tuple[str, ...]] = set()
    for t_module, s_module in seeds:
        if not (_is_index(t_module) and _is_index(s_module)) or _index_value(t_module) == _index_value(s_module):
            continue
        t_numbers = number_contexts(first_t[t_module], lexicon=lexicon)
        s_numbers = number_contexts(first_s[s_module], lexicon=lexicon)
        for key, value in t_numbers.items():
            if value == _index_value(t_module) and s_numbers.get(key) == _index_value(s_module):
                keys.add(key)
    return frozenset(keys)
