"""Numeric resolution: try each group's candidates in the target network and keep the one that reproduces the source.

Every group is tested on its *test module*: the smallest target module that holds all its members and is
paired with a source module whose outputs can be compared with it. Groups whose test modules nest are merged
(one's choice changes the other's input), so the test modules of different groups are disjoint. In every run
each test module's output is then replaced by its source module's output ("teacher forcing"), so a group's
test sees the right input whatever the other groups' current candidates are, and all groups are tried at the
same time: the number of runs is the largest number of candidates one group needs, not their sum.

A group is settled when a candidate's test-module output agrees with the source module's. It counts as
confirmed numerically only when some other candidate was seen to disagree (the choice makes a difference);
when the inferred candidate agrees at once, one more candidate is tried for that reason. A group with no
agreeing candidate moves its test up to the next comparable enclosing module and is tried again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ._candidates import Group, Option, enumerate_candidates
from ._compare import ModulePairing
from ._nets import Forced, Run
from ._points import Point, Timeline, captures, find_point, module_precision
from ._session import Call, Session
from ._tolerance import Tolerance, lowest_precision

MAX_TRIALS = 48
"""Candidates tried per group at most, over all the test modules it climbs to."""
_MAX_WAVES = 4
SECONDS = 20.0
"""Time numeric resolution may take per call: past it, groups still being tried stay unresolved (in doubt)."""
_MAX_MERGED = 16  # members of a merged group at most (its candidates grow with the product of its parts')


Status = Literal["confirmed", "indistinguishable", "unresolved", "untestable"]
"""What numeric resolution found for a group (see `Outcome`)."""
_Progress = Status | Literal["active", "failed"]  # a group still being tried, or whose last trial failed


@dataclass
class Outcome:
    """What numeric resolution found for one group.

    Attributes:
        group: the group (merged groups are one).
        chosen: the assignment kept.
        status: "confirmed" (agrees, another candidate disagrees), "indistinguishable" (several candidates
            agree: the values do not tell them apart), "unresolved" (no candidate agreed) or "untestable"
            (no module to compare).
        module: the target module whose output decided it.
        reference: the source module it was compared with.
        trials: candidates tried.
        rejected: candidates that disagreed.
        difference: relative difference of the chosen candidate's module output.
    """

    group: Group
    chosen: dict[str, Option]
    status: Status
    module: str | None = None
    reference: str | None = None
    trials: int = 0
    rejected: int = 0
    difference: float = float("nan")


@dataclass(frozen=True)
class Reference:
    """What every trial is compared against: the source's run, and how the target is run and read.

    Attributes:
        run: the source network's traced run on the probe inputs, every module's outputs and inputs recorded.
        call: the target network's arguments for the same probe inputs.
        line: the target network's traced run, independent of its weights.
        trailing: the source modules' trailing parameter-free sub-modules (see `_points.trailing_children`).
        pairing: source modules by parameter set.
        tolerance: the bounds in force.
    """

    run: Run
    call: Call
    line: Timeline
    trailing: Mapping[str, str]
    pairing: ModulePairing
    tolerance: Tolerance
    precision: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        run: Run,
        call: Call,
        line: Timeline,
        trailing: Mapping[str, str],
        pairing: ModulePairing,
        tolerance: Tolerance,
    ) -> Reference:
        """A reference, with the source modules' precision read from its run."""
        return cls(run, call, line, trailing, pairing, tolerance, module_precision(run))

    def bound(self, point: Point) -> float:
        """The module-check bound for a point, from the precision both its modules compute in."""
        found = [self.line.precision.get(point.module, "float32"), self.precision.get(point.reference, "float32")]
        return self.tolerance.module(lowest_precision(found))

    def point(self, session: Session, path: str, names: Mapping[str, tuple[str, ...]]) -> Point | None:
        """The point of comparison of a target module, if it can be compared."""
        return find_point(session.target.net, path, self.line, self.run, self.trailing, names, self.pairing)


@dataclass
class _State:
    group: Group
    chain: list[Point]
    level: int = 0
    index: int = 0
    tried: list[tuple[int, bool, float]] = field(default_factory=list)
    status: _Progress = "active"
    chosen: int = 0
    history: int = 0  # trials at earlier levels

    @property
    def test(self) -> Point | None:
        return self.chain[self.level] if self.level < len(self.chain) else None


def resolve(
    session: Session,
    groups: Sequence[Group],
    base: Mapping[str, Option],
    reference: Reference,
    *,
    max_trials: int = MAX_TRIALS,
    target_table_shapes: Mapping[str, tuple[int, ...]] | None = None,
    seconds: float = SECONDS,
) -> tuple[list[Outcome], dict[str, Option]]:
    """Try the groups' candidates in the target network until each group's test module agrees with the source.

    Args:
        session: the two networks and the source tensors.
        groups: the groups of interchangeable choices.
        base: the inferred assignment (target checkpoint name -> option) of every matched target.
        reference: the source's run and how the target is run and read.
        max_trials: candidates tried per group and test module at most.
        target_table_shapes: target shapes, for re-enumerating merged groups' candidates.
        seconds: time the trials may take; groups still being tried then stay unresolved.

    Returns:
        One outcome per (merged) group, and the assignment with every group's choice.
    """
    assignment = dict(base)
    names = session.source_names(assignment)
    states = [_State(g, _chain(session, g, names, reference)) for g in groups]
    outcomes = [Outcome(s.group, s.group.current, "untestable") for s in states if not s.chain]
    states = _merged([s for s in states if s.chain], session, names, reference, target_table_shapes)
    _calibrate(session, states, assignment, reference)
    deadline = time.monotonic() + seconds
    for _ in range(_MAX_WAVES):
        active = [s for s in states if s.status == "active"]
        if not active:
            break
        _rounds(session, states, assignment, reference, max_trials, deadline)
        failed = [s for s in states if s.status == "failed"]
        for state in failed:
            state.history += len(state.tried)
            state.level += 1
            state.index, state.tried = 0, []
            climbs = state.test is not None and state.history < max_trials  # the trial budget covers all levels
            state.status = "active" if climbs else "unresolved"
            for member, option in state.group.current.items():
                assignment[member] = option
        states = _merged(states, session, names, reference, target_table_shapes)
    for state in states:
        chosen = (
            state.group.candidates[state.chosen]
            if state.status in ("confirmed", "indistinguishable")
            else state.group.current
        )
        test = state.test
        diff = next((d for i, _, d in state.tried if i == state.chosen), float("nan"))
        rejected = sum(1 for _, ok, _ in state.tried if not ok)
        status: Status = "unresolved" if state.status == "active" or state.status == "failed" else state.status
        outcomes.append(
            Outcome(
                state.group,
                dict(chosen),
                status,
                test.module if test else None,
                test.reference if test else None,
                state.history + len(state.tried),
                rejected,
                diff,
            )
        )
        assignment.update(chosen)
    return outcomes, assignment


def _calibrate(session: Session, states: list[_State], assignment: Mapping[str, Option], reference: Reference) -> None:
    """Let the values choose how points with several possible readings are read, before anything is forced.

    One unforced run of the target with the inferred assignment: each point whose views or arrangements leave
    a choice keeps the combination that agrees, when one does (a point whose inferred candidates are wrong
    stays open, and agrees by any combination).
    """
    open_points = [
        p
        for s in states
        for p in s.chain
        if len(p.options) > 1 or any(len(x[2]) > 1 for c in p.options[0][2] for x in c)
    ]
    if not open_points:
        return
    outputs, inputs = captures(open_points)
    session.load_target(assignment)
    run = session.run_target(reference.call, capture=outputs, capture_inputs=inputs)
    for point in open_points:
        point.settle(reference.run, run, reference.bound(point))


def _rounds(
    session: Session,
    states: list[_State],
    assignment: dict[str, Option],
    reference: Reference,
    max_trials: int,
    deadline: float = float("inf"),
) -> None:
    """Rounds in which every active group tries its next candidate, until none is left active.

    The first round runs the whole target network (test modules forced) and keeps each test module's
    arguments; the later rounds run only the test modules, again on those arguments: what feeds a test module
    is forced or fixed, so it does not change from one round to the next.
    """
    kept: dict[str, list[tuple[object, object]]] = {}
    while True:
        active = [s for s in states if s.status == "active"]
        if not active:
            return
        if time.monotonic() > deadline:
            for state in active:  # out of time: what is left keeps its inferred choice, in doubt
                state.status = "unresolved"
                assignment.update(state.group.current)
            return
        for state in active:
            assignment.update(state.group.candidates[state.index])
        session.load_target(assignment)
        points = [s.test for s in active if s.test is not None]
        modules = {p.module for p in points}
        got: Run
        if modules <= kept.keys():
            got = Run([])
            for point in points:
                _, inputs = point.capture()
                outputs, seen = session.rerun_target(point.module, kept[point.module], inputs)
                got.calls[point.module] = outputs
                got.inputs.update(seen)
        else:
            force: dict[str, Forced] = {}
            force_inputs: dict[str, Forced] = {}
            for state in states:
                test = state.test
                if test is None or state.status in ("unresolved", "untestable") or test.module == "":
                    continue
                if any(other is not state and _feeds(session, reference.line, other, test.module) for other in active):
                    continue  # forcing it would hide what an enclosing group's members do
                forced = test.force(reference.run)
                if forced is not None:
                    where, is_input, values = forced
                    (force_inputs if is_input else force)[where] = values
            outputs_wanted, inputs_wanted = captures(points)
            got = session.run_target(
                reference.call,
                capture=outputs_wanted,
                force=force,
                keep=modules,
                capture_inputs=inputs_wanted,
                force_inputs=force_inputs,
            )
            kept.update(got.arguments)
        for state in active:
            test = state.test
            assert test is not None
            diff = test.difference(reference.run, got)
            ok = diff <= reference.bound(test)
            state.tried.append((state.index, ok, diff))
            _advance(state, ok, max_trials)
            if state.status != "active":
                assignment.update(
                    state.group.candidates[state.chosen] if state.status != "failed" else state.group.current
                )


def _advance(state: _State, ok: bool, max_trials: int) -> None:
    agreeing = [i for i, good, _ in state.tried if good]
    rejected = any(not good for _, good, _ in state.tried)
    limit = min(len(state.group.candidates), max_trials - state.history)
    if agreeing and rejected:
        state.status, state.chosen = "confirmed", agreeing[0]
        return
    if len(agreeing) >= 2:  # two candidates agree: the values cannot tell them apart; keep the first
        state.status, state.chosen = "indistinguishable", agreeing[0]
        return
    state.index += 1
    if state.index >= limit:
        if agreeing:  # a lone candidate (or the limit reached right after the first agreed)
            state.status, state.chosen = "indistinguishable", agreeing[0]
        else:
            state.status = "failed"


def _feeds(session: Session, line: Timeline, state: _State, module: str) -> bool:
    """Whether a group's test module strictly encloses `module` and a member is used before `module` is done."""
    test = state.test
    if test is None or test.module == module or not _inside(module, test.module):
        return False
    done = line.done.get(module)
    for member in state.group.members:
        name = session.target.from_checkpoint.get(member)
        if name is None:
            continue
        used = line.first_use.get(name)
        if used is None or done is None or used <= done or _inside(name, module):
            return True
    return False


def _inside(path: str, module: str) -> bool:
    """Whether `path` is `module` or lies below it."""
    return module == "" or path == module or path.startswith(module + ".")


def _owner_paths(session: Session, group: Group) -> list[str]:
    out = []
    for member in group.members:
        net_name = session.target.from_checkpoint.get(member)
        if net_name is not None:
            out.append(session.target.net.owner[net_name])
    return out


def _common(paths: Sequence[str]) -> str:
    if not paths:
        return ""
    split = [p.split(".") if p else [] for p in paths]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common)


def _chain(
    session: Session, group: Group, names: Mapping[str, tuple[str, ...]], reference: Reference, start: str | None = None
) -> list[Point]:
    """The comparable test modules for a group: its members' smallest enclosing module, then the ones above it."""
    path = _common(_owner_paths(session, group)) if start is None else start
    modules = session.target.net.modules
    chain: list[Point] = []
    while True:
        if path in modules:
            point = reference.point(session, path, names)
            if point is not None:
                chain.append(point)
        if path == "":
            return chain
        path = path.rpartition(".")[0]


def _merged(
    states: list[_State],
    session: Session,
    names: Mapping[str, tuple[str, ...]],
    reference: Reference,
    target_table_shapes: Mapping[str, tuple[int, ...]] | None,
) -> list[_State]:
    """Merge active groups whose choices interact.

    Two groups interact when their test modules are one, or nest with the outer group's members used before the
    inner test module is done (they change what it sees, and forcing its output would hide them).
    """
    states = list(states)
    pending: list[_State] = []  # merged states, their candidates enumerated once merging is done
    changed = True
    while changed:
        changed = False
        active = [s for s in states if s.status == "active" and s.test is not None]
        for a in active:
            for b in active:
                if a is b or a.test is None or b.test is None:
                    continue
                if a.test.module != b.test.module and not (
                    _feeds(session, reference.line, a, b.test.module)
                    or _feeds(session, reference.line, b, a.test.module)
                ):
                    continue
                outer = b.test.module if _inside(a.test.module, b.test.module) else a.test.module
                members = a.group.members + [m for m in b.group.members if m not in a.group.members]
                if len(members) > _MAX_MERGED:
                    continue  # tried together they would outrun any trial budget; each is tried on its own
                options = {**b.group.options, **a.group.options}
                group = Group(
                    members,
                    options,
                    reasons={**b.group.reasons, **a.group.reasons},
                    focus=a.group.focus | b.group.focus,
                    likely=a.group.likely | b.group.likely,
                )
                chain = _chain(session, group, names, reference, start=outer)
                merged = _State(group, chain, history=a.history + b.history)
                states = [s for s in states if s is not a and s is not b] + [merged]
                pending = [s for s in pending if s is not a and s is not b] + [merged]
                changed = True
                break
            if changed:
                break
    for state in pending:  # a chain of merges enumerates the final group only (a large group's search is long)
        state.group.candidates = list(enumerate_candidates(state.group, target_table_shapes or {}))
    return states
