"""Storage checks layer by layer: options that cannot reproduce the source layer they read are dropped.

Which source layer a target layer takes is a question about the whole network, but *how* a source tensor is
stored is a question about one layer: a target layer filled with a source layer's weight (or one piece of a
fused one) and fed that layer's own input must give that layer's output (or the same piece of it). A square
weight stored the wrong way round, or a fused projection cut in the wrong pattern (plain thirds against a
cut per head), fails this check whatever the rest of the network holds. So before the groups are searched,
each target layer (the members of the groups held by one module) tries its options on its own, run again on
the source layer's input; options that disagree there are dropped, when at least one agrees. It decides no
pairing: every option reading a whole source layer agrees with that layer, so only storage is settled here.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from automap._types import Array
from automap.transforms import Transpose, apply_steps

from ._candidates import Group, Option, enumerate_candidates
from ._compare import arrangements, relative_difference
from ._nets import Outputs
from ._resolve import Reference
from ._session import Session
from ._tolerance import lowest_precision

__all__ = ["prune_storage", "selection_rows"]

_MAX_UNIT_OPTIONS = 64

Combo = dict[str, Option]  # member -> option, for the members of one target layer


def prune_storage(
    session: Session,
    groups: Sequence[Group],
    assignment: Mapping[str, Option],
    reference: Reference,
    target_shapes: Mapping[str, tuple[int, ...]],
) -> tuple[list[Group], dict[str, tuple[str, int, int]]]:
    """The groups with the options that fail their own layer's check dropped (candidates enumerated again).

    Returns:
        The groups, and for each member that lost options: the layer that decided it, the joint options tried
        there and how many of them disagreed.
    """
    net = session.target.net
    options = {m: g.options[m] for g in groups for m in g.members}
    layers: dict[str, list[str]] = defaultdict(list)
    for member in options:
        name = session.target.from_checkpoint.get(member)
        if name is not None and net.owner[name] in reference.line.shapes and net.owner[name]:
            layers[net.owner[name]].append(member)
    combos = {path: found for path, members in layers.items() if len(found := _combos(members, options)) > 1}
    if not combos:
        return list(groups), {}
    session.load_target(assignment)
    kept = session.run_target(reference.call, keep=set(combos), capture=())
    good: dict[str, set[str]] = {}
    decided: dict[str, tuple[str, int, int]] = {}
    for path, found in combos.items():
        arguments = kept.arguments.get(path)
        if not arguments:
            continue
        verdicts = [(combo, _agrees(session, reference, path, combo, arguments)) for combo in found]
        agreeing = [combo for combo, verdict in verdicts if verdict]
        if agreeing and len(agreeing) < len(verdicts):
            for member in layers[path]:
                good[member] = {combo[member].key for combo in agreeing}
                decided[member] = (path, len(verdicts), len(verdicts) - len(agreeing))
    session.load_target(assignment)
    out = []
    pruned_members: set[str] = set()
    for group in groups:
        kept_keys = {m: good[m] for m in group.members if m in good}
        surviving = [c for c in group.candidates if all(c[m].key in keys for m, keys in kept_keys.items())]
        if not kept_keys or not surviving or len(surviving) == len(group.candidates):
            out.append(group)
            continue
        first = surviving[0]  # the least change from the inferred assignment that passes: the new starting point
        options = {
            m: [
                first[m],
                *(o for o in group.options[m] if o.key != first[m].key and o.key in kept_keys.get(m, {o.key})),
            ]
            for m in group.members
        }
        pruned = replace(group, options=options)
        pruned.candidates = list(enumerate_candidates(pruned, target_shapes))
        out.append(pruned)
        pruned_members.update(group.members)
    decided = {m: found for m, found in decided.items() if m in pruned_members}
    return out, decided


def _combos(members: Sequence[str], options: Mapping[str, list[Option]]) -> list[Combo]:
    """The joint options of one layer's members that read one source layer alike (single sources only)."""
    lists = [[o for o in options[m] if len(o.sources) == 1] for m in members]
    if any(not found for found in lists):
        return []
    out: list[Combo] = []
    for chosen in itertools.product(*lists):
        if len({o.sources[0].rpartition(".")[0] for o in chosen}) == 1 and len({_cut(o) for o in chosen}) == 1:
            out.append(dict(zip(members, chosen, strict=True)))
        if len(out) >= _MAX_UNIT_OPTIONS:
            break
    return out


def _cut(option: Option) -> tuple[int, ...]:
    resource = option.resources[0]
    return tuple(int(x) for x in resource[1:]) if len(resource) == 4 else ()


def selection_rows(option: Option, shape: tuple[int, ...]) -> Array | None:
    """The rows (first axis) of a source tensor an option takes, in the order it takes them; None for all rows.

    Found by moving row numbers through the option's steps (trailing transposes left out). None as well when
    the steps do not keep rows whole (then the layer's output cannot be cut alike).
    """
    steps = list(option.steps)
    while steps and isinstance(steps[-1], Transpose):
        steps.pop()
    if not steps or not shape:
        return None
    numbers = np.broadcast_to(np.arange(shape[0]).reshape((shape[0],) + (1,) * (len(shape) - 1)), shape).copy()
    moved = np.asarray(apply_steps([numbers], tuple(steps)))
    rows = moved.reshape(moved.shape[0], -1)
    if moved.ndim == 0 or not np.all(rows == rows[:, :1]):
        return None
    picked = rows[:, 0]
    return None if picked.size == shape[0] and np.array_equal(picked, np.arange(shape[0])) else picked


def _agrees(
    session: Session,
    reference: Reference,
    path: str,
    combo: Combo,
    arguments: Sequence[tuple[object, object]],
) -> bool | None:
    """Whether the layer filled by `combo` and fed its source layer's input gives that layer's output (None: n/a)."""
    first = next(iter(combo.values()))
    source_param = session.source.from_checkpoint.get(first.sources[0])
    if source_param is None:
        return None
    source_layer = session.source.net.owner[source_param]
    want_in = reference.run.inputs.get(source_layer)
    want_out = reference.run.calls.get(source_layer)
    got_shapes = reference.line.input_shapes.get(path)
    if not want_in or not want_out or got_shapes is None:
        return None
    if not len(want_in) == len(arguments) == len(got_shapes) == len(want_out):
        return None
    rows_of = session.source.table[first.sources[0]].shape
    rows = selection_rows(first, rows_of)
    fed = []
    for (args, kwargs), value, shapes in zip(arguments, want_in, got_shapes, strict=True):
        layout = arrangements(tuple(value[0].shape), tuple(shapes[0])) if shapes else ()
        if not layout:
            return None
        fed.append(session.target.net.with_first(args, kwargs, layout[0].apply(value[0])))
    session.load_target(combo)
    trailing = reference.line.trailing.get(path)
    outputs, inputs = session.rerun_target(path, fed, capture_inputs={trailing} if trailing else set())
    views: list[list[Outputs]] = [outputs] + ([inputs[trailing]] if trailing and trailing in inputs else [])
    source_trailing = reference.trailing.get(source_layer)
    wanted: list[list[Outputs]] = [want_out]
    if source_trailing is not None and source_trailing in reference.run.inputs:
        wanted.append(reference.run.inputs[source_trailing])
    precision = [reference.line.precision.get(path, "float32"), reference.precision.get(source_layer, "float32")]
    bound = reference.tolerance.module(lowest_precision(precision))
    return any(_close(w, g, rows, rows_of[0], bound) for w in wanted for g in views)


def _close(want: Sequence[Outputs], got: Sequence[Outputs], rows: Array | None, total: int, bound: float) -> bool:
    """Each call's first output agrees (the reference cut to `rows` of its last axis, when given)."""
    if len(want) != len(got):
        return False
    for ref_call, got_call in zip(want, got, strict=True):
        if not ref_call or not got_call:
            return False
        ref: Array = ref_call[0]
        if rows is not None:
            if ref.shape[-1] != total:
                return False
            ref = np.take(ref, rows, axis=-1)
        layout = arrangements(tuple(ref.shape), tuple(got_call[0].shape))
        if not layout or min(relative_difference(a.apply(ref), got_call[0]) for a in layout) > bound:
            return False
    return True
