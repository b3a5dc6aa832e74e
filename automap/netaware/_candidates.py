"""Groups of interchangeable choices a checkpoint cannot settle, and the candidate assignments to try for each.

What names, shapes and order cannot tell apart:

- same-shaped siblings (`attention_norm`/`ffn_norm` against `input_layernorm`/`post_attention_layernorm`,
  `w1`/`w3` against `gate_proj`/`up_proj`): a doubtful pair's alternatives;
- the order of the pieces of a fused tensor (which third of `in_proj_weight` is the query);
- whether a square matrix is stored transposed: `[768, 768]` fits either way, for every square pair.

An `Option` is one way to fill a target (source names and layout steps, as in a `Match`). Targets whose
options compete for the same source tensor (or the same piece of it) form a `Group`; a group's candidates are
the assignments of one option per member that use no source piece twice and store all pieces of one tensor
the same way round, ordered by how little they change the inferred mapping (the inferred one first).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from automap._decisions import DecidedBy
from automap._errors import AutomapError
from automap.records import Match, NameMapping, ParamTable
from automap.transforms import Concat, Reshape, Split, Step, Transpose, output_shape

__all__ = ["Group", "Option", "build_groups", "doubtful_targets", "enumerate_candidates", "option_of"]

_MIN_ALTERNATIVE = 0.01  # alternatives the engine gives less than this are not worth a trial
_MAX_CANDIDATES = 4096  # assignments enumerated per group before ordering (the trials are bounded separately)
_MAX_PIECES = 4  # a tensor joined from more sources has too many orders to try them all

Resource = tuple[str, int, int, int] | tuple[str]
"""A source tensor (name,) or one piece of it (name, axis, parts, index)."""


@dataclass(frozen=True)
class Option:
    """One way to fill a target: source name(s) and the layout steps applied to them."""

    sources: tuple[str, ...]
    steps: tuple[Step, ...] = ()

    @property
    def key(self) -> str:
        """A canonical text for comparing options."""
        return json.dumps([list(self.sources), [s.to_json() for s in self.steps]], sort_keys=True)

    @property
    def resources(self) -> tuple[Resource, ...]:
        """The source tensors, or pieces of them, this option reads.

        A piece cut per head (a reshape to `[heads, parts, ...]`, then a split of axis 1) is told from a plain
        piece by a negative axis code, so that pieces of the two cuts of one tensor count as overlapping.
        """
        first = self.steps[0] if self.steps else None
        if len(self.sources) == 1 and isinstance(first, Split):
            return ((self.sources[0], first.axis, first.parts, first.index),)
        second = self.steps[1] if len(self.steps) > 1 else None
        if len(self.sources) == 1 and isinstance(first, Reshape) and isinstance(second, Split) and second.axis == 1:
            return ((self.sources[0], -1000 - first.shape[0], second.parts, second.index),)
        return tuple((s,) for s in self.sources)

    @property
    def transposed(self) -> bool:
        """Whether the steps end with a plain 2-D transpose."""
        return bool(self.steps) and _plain_transpose(self.steps[-1])

    def toggled(self) -> Option:
        """The same source(s) stored the other way round (for square 2-D targets)."""
        if self.transposed:
            return Option(self.sources, self.steps[:-1])
        return Option(self.sources, (*self.steps, Transpose()))

    def with_piece(self, index: int) -> Option:
        """The same split, another piece (for an option whose first step is a split)."""
        first = self.steps[0]
        if not isinstance(first, Split):
            msg = f"{self.describe()} does not start with a split"
            raise ValueError(msg)
        return Option(self.sources, (replace(first, index=index), *self.steps[1:]))

    def describe(self) -> str:
        """Short text: `h.0.attn.c_attn.weight [piece 1/3, transposed]`."""
        from automap.transforms import describe

        name = " + ".join(self.sources)
        return f"{name} [{describe(self.steps)}]" if self.steps else name


def option_of(match: Match) -> Option | None:
    """The option a mapping's pair chose, or None for an unmatched target."""
    if match.source is None:
        return None
    return Option(match.source_names, match.transform)


@dataclass
class Group:
    """Targets whose sources are interchangeable, with the assignments to try.

    Attributes:
        members: target names, in target order.
        options: each member's options, the inferred one first.
        candidates: assignments (member -> option), the inferred one first, fewest changes next.
        reasons: why each member is in doubt.
        focus: members a failed proof pointed at; every candidate but the inferred one changes one of them.
        likely: keys of options a second opinion chose; taking one counts as a small change.
    """

    members: list[str]
    options: dict[str, list[Option]]
    candidates: list[dict[str, Option]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    focus: frozenset[str] = frozenset()
    likely: frozenset[str] = frozenset()

    @property
    def current(self) -> dict[str, Option]:
        """The inferred assignment."""
        return {t: self.options[t][0] for t in self.members}


def build_groups(
    mapping: NameMapping,
    source: ParamTable,
    target: ParamTable,
    *,
    doubtful: Sequence[str] | None = None,
    broad: bool = False,
    extra: Mapping[str, Sequence[Option]] | None = None,
    focus: Sequence[str] = (),
    second: Mapping[str, Option] | None = None,
    heads: Sequence[int] = (),
) -> list[Group]:
    """Find the groups of interchangeable choices in an inferred mapping.

    Args:
        mapping: the inferred mapping.
        source: the source table (names and shapes).
        target: the target table.
        doubtful: targets to treat as doubtful; default: pairs below the mapping's threshold or decided by
            order only. Square 2-D targets are always in doubt about their transposition.
        broad: also let every doubtful target take any other doubtful target's source (a repair after a
            failed proof, where the engine's alternatives were not enough).
        extra: for some doubtful targets, further options to offer (their transposes too, for square targets).
        focus: targets a failed proof pointed at: a candidate must change one of them (when its group has any).
        second: a second opinion's choice for targets it pairs otherwise (offered, and tried early).
        heads: attention head counts of the models, for pieces of a fused tensor cut per head.

    Returns:
        Groups with at least two candidates each.
    """
    pairs = {p.target: p for p in mapping.pairs}
    current = {t: o for t, p in pairs.items() if (o := option_of(p)) is not None}
    shapes = {r.name: r.shape for r in source.params}
    target_shapes = {r.name: r.shape for r in target.params}
    if doubtful is None:
        in_doubt = {t for t, p in pairs.items() if t in current and not p.pinned and _is_doubtful(p, mapping.threshold)}
    else:
        in_doubt = {t for t in doubtful if t in current and not pairs[t].pinned}
    square = {
        t
        for t in current
        if (_square(target_shapes.get(t, ())) or _square_pieces(current[t], shapes)) and not pairs[t].pinned
    }
    uncertain = sorted(in_doubt | square, key=list(pairs).index)
    options: dict[str, list[Option]] = {}
    reasons: dict[str, str] = {}
    for t in uncertain:
        more = [*(extra or {}).get(t, ()), *([second[t]] if second and t in second else [])] if t in in_doubt else []
        found = _options(t, pairs[t], current, in_doubt, shapes, target_shapes[t], broad, more, heads)
        options[t] = found
        reasons[t] = _reason(pairs[t], t in in_doubt, mapping.threshold)
    # an option may not take what a certain pair outside the uncertain set already uses
    fixed = [r for t, o in current.items() if t not in options for r in o.resources]
    fixed_by_name: dict[str, list[Resource]] = defaultdict(list)
    for resource in fixed:
        fixed_by_name[resource[0]].append(resource)
    for t, found in options.items():
        options[t] = [found[0]] + [
            o for o in found[1:] if not any(_conflict(r, f) for r in o.resources for f in fixed_by_name[r[0]])
        ]
    groups = [Group(members, {t: options[t] for t in members}) for members in _components(options)]
    out = []
    for group in groups:
        group.reasons = {t: reasons[t] for t in group.members}
        group.focus = frozenset(focus) & frozenset(group.members)
        group.likely = frozenset(second[t].key for t in group.members if second and t in second)
        group.candidates = list(enumerate_candidates(group, target_shapes))
        if len(group.candidates) > 1:
            out.append(group)
    return out


def doubtful_targets(mapping: NameMapping) -> list[str]:
    """Targets the inference was not sure of: below the threshold, or decided by order only (pins excluded)."""
    return [
        p.target for p in mapping.pairs if p.source is not None and not p.pinned and _is_doubtful(p, mapping.threshold)
    ]


def _is_doubtful(pair: Match, threshold: float) -> bool:
    return pair.confidence < threshold or pair.decided_by is DecidedBy.ORDER_ONLY


def _reason(pair: Match, doubtful: bool, threshold: float) -> str:
    if not doubtful:
        return "square matrix (or pieces): its stored orientation cannot be read from shapes"
    if pair.decided_by is DecidedBy.ORDER_ONLY:
        return "decided by order only among interchangeable candidates"
    return f"confidence {pair.confidence:.2f} below {threshold:g}"


def _square(shape: Sequence[int]) -> bool:
    return len(shape) == 2 and shape[0] == shape[1] and shape[0] > 1


def _square_pieces(option: Option, shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """Whether an option joins square 2-D pieces (each fits either way round, like a square matrix)."""
    first = option.steps[0] if option.steps else None
    return isinstance(first, Concat) and all(_square(shapes.get(s, ())) for s in option.sources)


def _plain_transpose(step: Step) -> bool:
    return isinstance(step, Transpose) and step.axes in (None, (1, 0))


def _options(
    name: str,
    pair: Match,
    current: Mapping[str, Option],
    in_doubt: set[str],
    shapes: Mapping[str, tuple[int, ...]],
    target_shape: tuple[int, ...],
    broad: bool,
    extra: Sequence[Option] = (),
    heads: Sequence[int] = (),
) -> list[Option]:
    """The options of one target, the inferred one first; only options that produce the target's shape.

    Besides the engine's alternatives: for a piece of a split tensor, its other pieces, and the same pieces cut
    per attention head (`[heads, parts, ...]` rows, as BLOOM's fused `query_key_value` is laid out) for the head
    counts the models' configs give; for a tensor joined from several sources, the other orders of the pieces;
    and for pieces stored either way round (2-D pieces joined), the join along the other axis, transposed.
    """
    mine = current[name]
    found = [mine, *extra]
    if name in in_doubt:
        first = mine.steps[0] if mine.steps else None
        if isinstance(first, Concat) and 1 < len(mine.sources) <= _MAX_PIECES:
            found += [
                Option(order, mine.steps) for order in itertools.permutations(mine.sources) if order != mine.sources
            ]
        for alternative in pair.alternatives:
            if alternative.source is None or alternative.confidence < _MIN_ALTERNATIVE:
                continue
            names = (alternative.source,) if isinstance(alternative.source, str) else tuple(alternative.source)
            found.append(Option(names, alternative.transform))
        if broad:
            found += [current[other] for other in sorted(in_doubt) if other != name]
        pieces = [o for o in found if o.steps and isinstance(o.steps[0], Split)]
        for option in pieces:  # every piece of a split tensor, in either cut
            split = option.steps[0]
            assert isinstance(split, Split)
            found += [option.with_piece(i) for i in range(split.parts) if i != split.index]
            found += _interleaved(option, shapes, heads)
    if _square(target_shape):
        found += [o.toggled() for o in found]
    found += [v for o in found for v in _concat_variants(o, shapes)]
    out: list[Option] = []
    seen: set[str] = set()
    for option in found:
        if option.key in seen or not _fits(option, shapes, target_shape):
            continue
        seen.add(option.key)
        out.append(option)
    return out


def _interleaved(option: Option, shapes: Mapping[str, tuple[int, ...]], heads: Sequence[int]) -> list[Option]:
    """A split tensor's pieces cut per head: rows `[heads, parts, rows per piece and head, ...]`."""
    first = option.steps[0]
    assert isinstance(first, Split)
    shape = shapes.get(option.sources[0])
    if shape is None or first.axis != 0 or first.parts < 2:
        return []
    rows, rest = shape[0], tuple(shape[1:])
    out = []
    for count in sorted(set(heads)):
        if count < 2 or rows % (count * first.parts):
            continue
        grouped = Reshape((count, first.parts, rows // (count * first.parts), *rest))
        piece = Reshape((rows // first.parts, *rest))
        for index in range(first.parts):
            out.append(Option(option.sources, (grouped, Split(1, first.parts, index), piece, *option.steps[1:])))
    return out


def _concat_variants(option: Option, shapes: Mapping[str, tuple[int, ...]]) -> list[Option]:
    """For 2-D pieces joined: the join along the other axis and/or transposed (kept where the shape fits)."""
    first = option.steps[0] if option.steps else None
    if not isinstance(first, Concat) or any(len(shapes.get(s, ())) != 2 for s in option.sources):
        return []
    rest = option.steps[1:]
    flipped = bool(rest) and _plain_transpose(rest[0])
    tail = rest[1:] if flipped else rest
    out = []
    for axis in (0, 1):
        for transpose in (False, True):
            steps = (Concat(axis), *((Transpose(),) if transpose else ()), *tail)
            if steps != option.steps:
                out.append(Option(option.sources, steps))
    return out


def _fits(option: Option, shapes: Mapping[str, tuple[int, ...]], target_shape: tuple[int, ...]) -> bool:
    if any(s not in shapes for s in option.sources):
        return False
    try:
        return output_shape([shapes[s] for s in option.sources], option.steps) == tuple(target_shape)
    except AutomapError:
        return False


def _conflict(a: Resource, b: Resource) -> bool:
    """Two reads of the same source clash unless they are different pieces of the same split."""
    if a[0] != b[0]:
        return False
    if len(a) == 1 or len(b) == 1:
        return True
    return a[1:3] != b[1:3] or a[3] == b[3]


def _components(options: Mapping[str, list[Option]]) -> list[list[str]]:
    """Targets linked by options that read the same source tensor, or held by one module, as connected components."""
    parent = {t: t for t in options}

    def find(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    by_source: dict[str, list[str]] = defaultdict(list)
    for t, found in options.items():
        for option in found:
            for s in option.sources:
                by_source[s].append(t)
    by_module: dict[str, list[str]] = defaultdict(list)  # a layer's weight and bias are chosen together
    for t in options:
        by_module[t.rpartition(".")[0]].append(t)
    for members in (*by_source.values(), *by_module.values()):
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    components: dict[str, list[str]] = defaultdict(list)
    for t in options:
        components[find(t)].append(t)
    return list(components.values())


def enumerate_candidates(group: Group, target_shapes: Mapping[str, tuple[int, ...]]) -> Iterator[dict[str, Option]]:
    """Consistent assignments of one option per member, the inferred one first, then by fewest changes.

    Consistent: no source piece read twice (so all pieces of one tensor are cut the same way), all square
    pieces of one source tensor stored the same way round, and the members of one target module that the
    inferred assignment fills from one source module (or one piece of each of its tensors, a layer's weight
    and bias) still filled so. Assignments are enumerated by the number of members they change (so that the
    few-change ones are all found before the search budget runs out), then ordered by cost: one per changed
    target module when all its members move together to one source module (a LayerNorm's gamma and beta both
    taken from the other norm), one per changed member otherwise plus one when a module's sources get mixed,
    and one per source tensor whose orientation flips.
    """
    members = group.members
    current = group.current
    flips_now = _flips(current, target_shapes) or {}
    units: dict[str, list[str]] = defaultdict(list)
    for t in members:
        units[t.rpartition(".")[0]].append(t)
    together = {t: [u for u in units[t.rpartition(".")[0]] if u != t] for t in members}
    together = {t: others for t, others in together.items() if all(_alike(current[t], current[u]) for u in others)}
    found: list[tuple[float, int, dict[str, Option]]] = []
    chosen: dict[str, Option] = {}
    used: dict[str, list[Resource]] = defaultdict(list)  # source name -> what of it is taken
    budget = [100_000]  # nodes visited, so that a large group cannot stall the search

    def visit(position: int, changes: int, limit: int) -> None:
        if len(found) >= _MAX_CANDIDATES or budget[0] <= 0:
            return
        budget[0] -= 1
        if position == len(members):
            if changes != limit:
                return
            flips = _flips(chosen, target_shapes)
            if limit and group.focus and all(chosen[t].resources == current[t].resources for t in group.focus):
                return  # a repair must change something the failed proof pointed at
            if flips is not None:
                cost = _cost(chosen, current, members) + sum(1 for s, f in flips.items() if flips_now.get(s, f) != f)
                cost -= 0.75 * sum(1 for t in members if chosen[t].key in group.likely)
                found.append((cost, len(found), dict(chosen)))
            return
        t = members[position]
        for option in group.options[t]:
            change = changes + (option.resources != current[t].resources)
            if change > limit:
                continue
            resources = option.resources
            if any(_conflict(r, u) for r in resources for u in used.get(r[0], ())):
                continue
            if any(u in chosen and not _alike(option, chosen[u]) for u in together.get(t, ())):
                continue
            chosen[t] = option
            for r in resources:
                used[r[0]].append(r)
            visit(position + 1, change, limit)
            for r in resources:
                used[r[0]].pop()
            del chosen[t]

    for limit in range(len(members) + 1):
        visit(0, 0, limit)
        if len(found) >= _MAX_CANDIDATES or budget[0] <= 0:
            break
    found.sort(key=lambda item: (item[0], item[1]))
    for _, _, assignment in found:
        yield assignment


def _alike(a: Option, b: Option) -> bool:
    """Whether two options read one source module alike: the same module, and the same piece of its tensors."""
    if len(a.sources) != 1 or len(b.sources) != 1:
        return len(a.sources) == len(b.sources) and {_owner(s) for s in a.sources} == {_owner(s) for s in b.sources}
    if _owner(a.sources[0]) != _owner(b.sources[0]):
        return False
    return a.resources[0][1:] == b.resources[0][1:]


def _owner(name: str) -> str:
    return name.rpartition(".")[0]


def _cost(chosen: Mapping[str, Option], current: Mapping[str, Option], members: Sequence[str]) -> float:
    """Changes an assignment makes, a target module whose members all move to one source module counting once."""
    by_module: dict[str, list[str]] = defaultdict(list)
    for t in members:
        by_module[t.rpartition(".")[0]].append(t)
    cost = 0.0
    recut: set[str] = set()
    for names in by_module.values():
        changed = [t for t in names if chosen[t].resources != current[t].resources]
        if not changed:
            continue
        if all(_recut(chosen[t], current[t]) for t in changed):
            recut.update(chosen[t].sources[0] for t in changed)  # the same piece of another cut: once per tensor
            continue
        after = frozenset().union(*(_owners(chosen[t]) for t in names))
        before = frozenset().union(*(_owners(current[t]) for t in names))
        if len(changed) == len(names) > 1 and len(after) == 1:
            cost += 1
        else:
            cost += len(changed) + (len(after) > len(before))
    return cost + len(recut)


def _recut(chosen: Option, current: Option) -> bool:
    """Whether an option takes the same piece of the same tensor as another, cut in another pattern."""
    a, b = chosen.resources, current.resources
    return len(a) == len(b) == 1 and len(a[0]) == len(b[0]) == 4 and a[0][0] == b[0][0] and a[0][3] == b[0][3]


def _flips(assignment: Mapping[str, Option], target_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, bool] | None:
    """Source tensor -> stored transposed, over square targets; None when pieces of one tensor disagree."""
    flags: dict[str, bool] = {}
    for t, option in assignment.items():
        if not _square(target_shapes.get(t, ())) or len(option.sources) != 1:
            continue
        source = option.sources[0]
        if flags.setdefault(source, option.transposed) != option.transposed:
            return None
    return flags


def _owners(option: Option) -> frozenset[str]:
    return frozenset(s.rpartition(".")[0] for s in option.sources)
