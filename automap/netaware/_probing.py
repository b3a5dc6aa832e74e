"""Both networks set up for network-aware inference: checked against their checkpoints, probed, traced.

`prepare` wraps the two models, decides from the checkpoints' frameworks which is the source, aligns each
network's parameter names with its checkpoint's, loads the source weights, makes the probe inputs (given, or
guessed from the PyTorch model's first layer; token ids from the models' vocabulary, special ids avoided),
turns them into each model's arguments, switches a model's cache off where it has a switch, and traces one
forward pass of each network. The traced runs give the execution orders the inference engine uses, the
reference outputs numeric resolution compares with, which outputs of the two models are compared, and the
precision the networks compute in (which sets the tolerances).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automap._advice import option
from automap._errors import AutomapError
from automap._types import Array, StrPath
from automap.records import ParamTable

from ._calls import Arguments, OutputChoice, match_outputs, parse_arguments, parse_outputs, select_outputs
from ._entry import call_through
from ._nets import Net, Run, wrap
from ._points import Timeline, module_precision, timeline, trailing_children
from ._session import Call, Session, Side, side
from ._tolerance import Tolerance, lowest_precision, tolerance_for
from .probes import ProbeInput, TokenIds, guess_input, make_input, make_inputs, token_ids

MindSporeInputs = Callable[[tuple[Array, ...]], Sequence[Array]]
"""Turns the probe inputs into the MindSpore model's arguments, when its signature differs."""
ArgumentSpec = Arguments | str
OutputSpec = str | Sequence[str | int]


@dataclass(frozen=True)
class Calling:
    """How the models are called and read: arguments per model, outputs per model (None: as they come).

    Attributes:
        torch_arguments: the PyTorch model's arguments (`parse_arguments`), or None for the inputs in order.
        mindspore_arguments: the MindSpore model's arguments.
        mindspore_inputs: a function that turns the probe inputs into the MindSpore model's positional
            arguments (the Python form, for what a spec cannot say).
        torch_outputs: the PyTorch model's outputs to compare, by name or position.
        mindspore_outputs: the MindSpore model's outputs to compare.
        torch_method: the PyTorch model's method the runs call instead of `forward` (None: `forward`).
        mindspore_method: the MindSpore model's method the runs call instead of `construct`.
    """

    torch_arguments: ArgumentSpec | None = None
    mindspore_arguments: ArgumentSpec | None = None
    mindspore_inputs: MindSporeInputs | None = None
    torch_outputs: OutputSpec | None = None
    mindspore_outputs: OutputSpec | None = None
    torch_method: str | None = None
    mindspore_method: str | None = None


@dataclass
class Probes:
    """Both networks set up, the probe inputs and what the first traced runs showed."""

    session: Session
    reference: Run
    line: Timeline
    source_order: list[str]
    target_order: list[str]
    probe: Call
    source_call: Call
    proof_calls: tuple[Call, Call]
    described: list[str]
    choice: OutputChoice
    tolerance: Tolerance
    source_trailing: dict[str, str]
    notes: list[str] = field(default_factory=list)
    restore: list[Callable[[], None]] = field(default_factory=list)
    heads: tuple[int, ...] = ()

    def close(self) -> None:
        """Take the hooks off both models and restore what was switched off."""
        self.session.source.net.close()
        self.session.target.net.close()
        while self.restore:
            self.restore.pop()()


def prepare(
    source: ParamTable | StrPath,
    target: ParamTable | StrPath,
    torch_model: object,
    mindspore_model: object,
    inputs: Sequence[ProbeInput] | None,
    calling: Calling,
    seed: int,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> Probes:
    """Wrap and check both models, load the source weights, and trace one forward pass of each."""
    source_table, target_table = table_of(source), table_of(target)
    torch_net, mindspore_net = wrap(torch_model), wrap(mindspore_model)
    if torch_net.framework != "pytorch" or mindspore_net.framework != "mindspore":
        msg = "torch_model must be a torch.nn.Module and mindspore_model a mindspore.nn.Cell"
        raise AutomapError(msg)
    if source_table.framework == target_table.framework:
        msg = (
            f"network-aware inference maps between the frameworks, but {source_table.source} and "
            f"{target_table.source} are both {source_table.framework} checkpoints"
        )
        raise AutomapError(msg)
    source_net, target_net = (
        (torch_net, mindspore_net) if source_table.framework == "pytorch" else (mindspore_net, torch_net)
    )
    session = Session(
        side(source_net, source_table, "source", _what(source_net)),
        side(target_net, target_table, "target", _what(target_net)),
    )
    notes = [_renamed(s) for s in (session.source, session.target) if s.renamed]
    restore: list[Callable[[], None]] = []
    try:
        for net, method in ((torch_net, calling.torch_method), (mindspore_net, calling.mindspore_method)):
            _switched(_caching_off(net.module), restore, notes)  # kept before the next switch can fail
            _switched(call_through(net, method), restore, notes)
        ids = token_ids(torch_model, mindspore_model)
        torch_probe, described = _inputs(inputs, torch_net, seed, ids)
        torch_args, ms_args = _arguments(calling, torch_probe)
        probe_calls = _calls(torch_probe, torch_args, ms_args, calling.mindspore_inputs)
        source_call, probe = probe_calls if source_net.framework == "pytorch" else probe_calls[::-1]
        session.load_source()
        reference = session.run_source(source_call, capture=None, trace=True, capture_inputs=None)
        shapes_run = session.run_target(probe, capture=None, trace=True, capture_inputs=None)
        choice = _choose_outputs(calling, source_net, reference, target_net, shapes_run)
    except BaseException:
        source_net.close()  # the hooks stay for the runs to come, unless there are none
        target_net.close()
        while restore:
            restore.pop()()
        raise
    notes.extend(_stateful_note(n) for n in (source_net, target_net) if n.stateful)
    precision = lowest_precision(
        [*module_precision(reference, source_net).values(), *module_precision(shapes_run, target_net).values()]
    )
    fresh = _proof_inputs(inputs, torch_probe, torch_net, seed + 1, ids)
    proof_calls = _calls(fresh, torch_args, ms_args, calling.mindspore_inputs)
    return Probes(
        session=session,
        reference=reference,
        line=timeline(shapes_run, target_net),
        source_order=_order(session.source, reference),
        target_order=_order(session.target, shapes_run),
        probe=probe,
        source_call=source_call,
        proof_calls=proof_calls if source_net.framework == "pytorch" else proof_calls[::-1],
        described=described,
        choice=choice,
        tolerance=tolerance_for(precision, rtol, atol),
        source_trailing=trailing_children(source_net, reference),
        notes=notes,
        restore=restore,
        heads=head_counts(torch_model, mindspore_model),
    )


_HEADS = (
    "num_attention_heads",
    "n_head",
    "num_heads",
    "num_key_value_heads",
    "n_kv_heads",
    "encoder_attention_heads",
    "decoder_attention_heads",
)


def head_counts(*models: object) -> tuple[int, ...]:
    """The attention head counts the models' configs give (a fused projection may be cut per head)."""
    found: set[int] = set()
    for model in models:
        config = getattr(model, "config", None)
        for name in _HEADS:
            value = getattr(config, name, None) if config is not None else None
            for count in value if isinstance(value, list | tuple) else [value]:
                if isinstance(count, int) and not isinstance(count, bool) and count > 1:
                    found.add(count)
    return tuple(sorted(found))


def _arguments(calling: Calling, probe: list[Array]) -> tuple[Arguments | None, Arguments | None]:
    def parsed(spec: ArgumentSpec | None) -> Arguments | None:
        return parse_arguments(spec) if isinstance(spec, str) else spec

    found = parsed(calling.torch_arguments), parsed(calling.mindspore_arguments)
    for arguments in found:
        if arguments is not None:
            arguments.build(probe)  # a probe input that does not exist fails here, before any run
    return found


def _calls(
    arrays: list[Array],
    torch_args: Arguments | None,
    ms_args: Arguments | None,
    mindspore_inputs: MindSporeInputs | None,
) -> tuple[Call, Call]:
    """(PyTorch call, MindSpore call) for the probe inputs."""
    torch_call: Call = torch_args.build(arrays) if torch_args is not None else (list(arrays), {})
    if ms_args is not None:
        ms_call: Call = ms_args.build(arrays)
    elif mindspore_inputs is not None:
        ms_call = (list(mindspore_inputs(tuple(arrays))), {})
    else:
        ms_call = (list(arrays), {})
    return torch_call, ms_call


def _choose_outputs(calling: Calling, source: Net, reference: Run, target: Net, shapes_run: Run) -> OutputChoice:
    """Which outputs of the two models are compared: as given, or paired by shape; the nets then keep only those."""
    wanted = {"pytorch": calling.torch_outputs, "mindspore": calling.mindspore_outputs}
    titles = (source.backend.title, target.backend.title)
    sides = []
    for net, run in ((source, reference), (target, shapes_run)):
        spec = wanted[net.framework]
        chosen = select_outputs(run.names, parse_outputs(spec), net.backend.title) if spec is not None else None
        shapes = {n: tuple(a.shape) for n, a in zip(run.names, run.outputs, strict=True)}
        sides.append((chosen, [(n, shapes[n]) for n in (chosen if chosen is not None else run.names)]))
    (source_given, source_named), (target_given, target_named) = sides
    if source_given is not None and target_given is not None:
        if len(source_given) != len(target_given):
            msg = (
                f"the outputs chosen are {len(source_given)} of the {titles[0]} model and {len(target_given)} of "
                f"the {titles[1]} model; choose as many of each, in the same order"
            )
            raise AutomapError(msg)
        shapes = {f"source:{n}": s for n, s in source_named} | {f"target:{n}": s for n, s in target_named}
        choice = OutputChoice(source_given, target_given, shapes=shapes)
    else:
        choice = match_outputs(source_named, target_named, titles)
    for net, run, names in ((source, reference, choice.source), (target, shapes_run, choice.target)):
        net.selection = names
        _reselect(run, names)
    return choice


def _reselect(run: Run, names: Sequence[str]) -> None:
    """Keep only the chosen outputs in a recorded run (its outputs and the root module's calls)."""
    by_name = dict(zip(run.names, run.outputs, strict=True))
    run.names = list(names)
    run.outputs = [by_name[n] for n in names]
    if "" in run.calls:
        run.calls[""] = [list(run.outputs)]


def _switched(
    switched: tuple[Callable[[], None], str] | None, restore: list[Callable[[], None]], notes: list[str]
) -> None:
    """Keep how to undo a switch made on a model, and its note."""
    if switched is not None:
        restore.append(switched[0])
        notes.append(switched[1])


def _caching_off(model: object) -> tuple[Callable[[], None], str] | None:
    """Switch a model's cache off for the runs when its config has the switch (`use_cache`); how to undo it.

    A cache filled by one forward pass would be read by the next, and a layer run again on its own would append
    to it twice: the runs must not depend on one another.
    """
    config = getattr(model, "config", None)
    if config is None or getattr(config, "use_cache", None) is not True:
        return None
    config.use_cache = False

    def undo() -> None:
        config.use_cache = True

    return undo, f"caching switched off for the runs ({type(model).__name__}: config.use_cache = False, restored after)"


def _renamed(found: object) -> str:
    renamed = getattr(found, "renamed", ())
    table = getattr(found, "table", None)
    shown = ", ".join(f"{c} -> {n}" for c, n in renamed[:3]) + (
        f", ... ({len(renamed)} in all)" if len(renamed) > 3 else ""
    )
    where = table.source if table is not None else "the checkpoint"
    doubtful = len(getattr(found, "doubtful", ()))
    doubt = (
        f"; {doubtful} of them below that inference's threshold (told apart by file order only: check them, as "
        "the proof runs the model loaded so)"
        if doubtful
        else ""
    )
    return f"{where}: names differ from the model's; mapped onto the model by automap's inference: {shown}{doubt}"


def _stateful_note(net: Net) -> str:
    kinds = ", ".join(sorted(net.stateful))
    return f"{net.backend.title} modules run again on their own get a fresh copy of their stateful arguments ({kinds})"


class Clock:
    """Seconds spent per phase, each lap measured from the end of the previous one."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.start
        self.start = now


def table_of(value: ParamTable | StrPath) -> ParamTable:
    """A table as given, or the table of a checkpoint file."""
    if isinstance(value, ParamTable):
        return value
    from automap.io import load_checkpoint

    return load_checkpoint(Path(value))


def _what(net: Net) -> str:
    return type(net.module).__name__


def _inputs(
    inputs: Sequence[ProbeInput] | None, torch_net: Net, seed: int, ids: TokenIds | None
) -> tuple[list[Array], list[str]]:
    rng = np.random.default_rng(seed)
    if inputs is None:
        try:
            spec = guess_input(torch_net.module)
        except AutomapError as error:
            msg = f"network-aware inference needs probe inputs: {error}"
            raise AutomapError(msg) from None
        made = make_input(spec, rng, ids)
        token = f", {ids.describe()}" if ids is not None and spec.dtype.startswith("int") else ""
        return [made], [
            f"{spec} (guessed from the first layer{token}; choose it with {option('inputs', ['SHAPE:DTYPE'])})"
        ]
    return make_inputs(inputs, rng, ids)


def _proof_inputs(
    inputs: Sequence[ProbeInput] | None, probe: list[Array], torch_net: Net, seed: int, ids: TokenIds | None
) -> list[Array]:
    """Fresh inputs of the same specs for the proof; given arrays are reused."""
    if inputs is not None and any(isinstance(v, np.ndarray) for v in inputs):
        return probe
    return _inputs(inputs, torch_net, seed, ids)[0]


def _order(side: Side, run: Run) -> list[str]:
    """Checkpoint names in the order a traced run first used them (a parameter made of pieces: its pieces)."""
    return [c for n in side.net.execution_order(run) for c in side.checkpoint_names(n)]
