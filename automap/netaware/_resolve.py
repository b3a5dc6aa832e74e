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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from automap._types import Array

from ._candidates import Group, Option, enumerate_candidates
from ._compare import MODULE_RTOL, CallShapes, Layout, ModulePairing, arranged, call_shapes, difference, layouts
from ._nets import Outputs, Run
from ._session import Session

MAX_TRIALS = 48
"""Candidates tried per group at most, over all the test modules it climbs to."""
_MAX_WAVES = 4


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
class Timeline:
    """What the target network's traced run showed, independent of its weights.

    Attributes:
        shapes: module path -> output shapes of each call.
        first_use: parameter -> tick of its first use.
        done: module path -> tick at which its last call completed.
    """

    shapes: Mapping[str, CallShapes]
    first_use: Mapping[str, int]
    done: Mapping[str, int]


def timeline(run: Run, owner: Mapping[str, str]) -> Timeline:
    """The timeline of a traced target run with every module's outputs captured."""
    first_use = dict(run.param_ticks)
    for name, module in owner.items():
        if name not in first_use and module in run.entry_ticks:
            first_use[name] = run.entry_ticks[module]
    done: dict[str, int] = {}
    for tick, path, _ in run.events:
        done[path] = tick
    return Timeline({p: call_shapes(c) for p, c in run.calls.items()}, first_use, done)


@dataclass
class _Test:
    module: str
    reference: str
    layouts: list[list[Layout]]


@dataclass
class _State:
    group: Group
    chain: list[_Test]
    level: int = 0
    index: int = 0
    tried: list[tuple[int, bool, float]] = field(default_factory=list)
    status: _Progress = "active"
    chosen: int = 0
    history: int = 0  # trials at earlier levels

    @property
    def test(self) -> _Test | None:
        return self.chain[self.level] if self.level < len(self.chain) else None


def resolve(
    session: Session,
    groups: Sequence[Group],
    base: Mapping[str, Option],
    reference: Run,
    line: Timeline,
    inputs: Sequence[Array],
    pairing: ModulePairing,
    *,
    max_trials: int = MAX_TRIALS,
    rtol: float = MODULE_RTOL,
    target_table_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> tuple[list[Outcome], dict[str, Option]]:
    """Try the groups' candidates in the target network until each group's test module agrees with the source.

    Args:
        session: the two networks and the source tensors.
        groups: the groups of interchangeable choices.
        base: the inferred assignment (target checkpoint name -> option) of every matched target.
        reference: the source run on `inputs`, with every module's outputs captured.
        line: the target network's traced run on `inputs` (output shapes, first uses, completions).
        inputs: the target network's probe inputs (the source's, in the target's dtypes).
        pairing: source modules by parameter set.
        max_trials: candidates tried per group and test module at most.
        rtol: module outputs agree when their largest difference is at most this share of the largest value.
        target_table_shapes: target shapes, for re-enumerating merged groups' candidates.

    Returns:
        One outcome per (merged) group, and the assignment with every group's choice.
    """
    assignment = dict(base)
    names = session.source_names(assignment)
    states = [_State(g, _chain(session, g, names, reference, line, pairing)) for g in groups]
    outcomes = [Outcome(s.group, s.group.current, "untestable") for s in states if not s.chain]
    states = _merged([s for s in states if s.chain], session, names, reference, line, pairing, target_table_shapes)
    for _ in range(_MAX_WAVES):
        active = [s for s in states if s.status == "active"]
        if not active:
            break
        _rounds(session, states, assignment, reference, inputs, max_trials, rtol, line)
        failed = [s for s in states if s.status == "failed"]
        for state in failed:
            state.history += len(state.tried)
            state.level += 1
            state.index, state.tried = 0, []
            climbs = state.test is not None and state.history < max_trials  # the trial budget covers all levels
            state.status = "active" if climbs else "unresolved"
            for member, option in state.group.current.items():
                assignment[member] = option
        states = _merged(states, session, names, reference, line, pairing, target_table_shapes)
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


def _rounds(
    session: Session,
    states: list[_State],
    assignment: dict[str, Option],
    reference: Run,
    inputs: Sequence[Array],
    max_trials: int,
    rtol: float,
    line: Timeline,
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
        for state in active:
            assignment.update(state.group.candidates[state.index])
        session.load_target(assignment)
        modules = {s.test.module for s in active if s.test is not None}
        if modules <= kept.keys():
            outputs = {m: session.rerun_target(m, kept[m]) for m in modules}
        else:
            force: dict[str, list[Outputs]] = {}
            for state in states:
                test = state.test
                if test is None or state.status in ("unresolved", "untestable") or test.module == "":
                    continue
                if any(other is not state and _feeds(session, line, other, test.module) for other in active):
                    continue  # forcing it would hide what an enclosing group's members do
                force[test.module] = arranged(reference.calls[test.reference], test.layouts)
            run = session.run_target(inputs, capture=modules, force=force, keep=modules)
            outputs = {m: run.calls.get(m, []) for m in modules}
            kept.update(run.arguments)
        for state in active:
            test = state.test
            assert test is not None
            got = outputs.get(test.module) or []
            want = reference.calls[test.reference]
            diff = difference(want, got, test.layouts) if len(got) == len(want) else float("inf")
            ok = diff <= rtol
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
    session: Session,
    group: Group,
    names: Mapping[str, tuple[str, ...]],
    reference: Run,
    line: Timeline,
    pairing: ModulePairing,
    start: str | None = None,
) -> list[_Test]:
    """The comparable test modules for a group: its members' smallest enclosing module, then the ones above it."""
    path = _common(_owner_paths(session, group)) if start is None else start
    modules = session.target.net.modules
    chain: list[_Test] = []
    while True:
        if path in modules and path in line.shapes:
            for source_path in session.paired(path, names, pairing):
                calls = reference.calls.get(source_path)
                found = layouts(call_shapes(calls), line.shapes[path]) if calls else None
                if found is not None:
                    chain.append(_Test(path, source_path, found))
                    break
        if path == "":
            return chain
        path = path.rpartition(".")[0]


def _merged(
    states: list[_State],
    session: Session,
    names: Mapping[str, tuple[str, ...]],
    reference: Run,
    line: Timeline,
    pairing: ModulePairing,
    target_table_shapes: Mapping[str, tuple[int, ...]] | None,
) -> list[_State]:
    """Merge active groups whose choices interact.

    Two groups interact when their test modules are one, or nest with the outer group's members used before the
    inner test module is done (they change what it sees, and forcing its output would hide them).
    """
    states = list(states)
    changed = True
    while changed:
        changed = False
        active = [s for s in states if s.status == "active" and s.test is not None]
        for a in active:
            for b in active:
                if a is b or a.test is None or b.test is None:
                    continue
                if a.test.module != b.test.module and not (
                    _feeds(session, line, a, b.test.module) or _feeds(session, line, b, a.test.module)
                ):
                    continue
                outer = b.test.module if _inside(a.test.module, b.test.module) else a.test.module
                members = a.group.members + [m for m in b.group.members if m not in a.group.members]
                options = {**b.group.options, **a.group.options}
                group = Group(
                    members,
                    options,
                    reasons={**b.group.reasons, **a.group.reasons},
                    focus=a.group.focus | b.group.focus,
                    likely=a.group.likely | b.group.likely,
                )
                group.candidates = list(enumerate_candidates(group, target_table_shapes or {}))
                chain = _chain(session, group, names, reference, line, pairing, start=outer)
                merged = _State(group, chain, history=a.history + b.history)
                states = [s for s in states if s is not a and s is not b] + [merged]
                changed = True
                break
            if changed:
                break
    return states
