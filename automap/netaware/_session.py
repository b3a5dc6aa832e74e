"""Both networks, their checkpoints' names, and the weights an assignment puts into the target network.

The source network runs with the source checkpoint's weights (the reference). The target network runs with
target weights made from source tensors by a mapping's options (`automap.transforms.apply_steps`, as a
conversion applies them); only the tensors an assignment changes are reloaded between runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from automap._errors import AutomapError
from automap._types import Array
from automap.dtypes import get_dtype
from automap.records import ParamRecord, ParamTable
from automap.transforms import Concat, apply_steps

from ._candidates import Option
from ._compare import ModulePairing
from ._nets import Forced, Net, Outputs, Run, align_names

_MIN_ALIGNED = 0.8  # below this share of names found in the checkpoint, the network is not the checkpoint's
_MAX_SLICES = 1024  # a stacked parameter offered to inference as its slices has at most this many
_SAME_LAYOUT = 4.0  # weight of equal shapes in that inference: within one framework tensors are stored alike


Region = tuple[int | slice, ...]
"""Where a checkpoint tensor lies in a network parameter made of several (an index along the stacked axis,
then a range along the axis its pieces are concatenated on)."""


Call = tuple[list[object], dict[str, object]]
"""A model's arguments: positional values and keywords (numpy arrays become tensors)."""


@dataclass(frozen=True)
class Side:
    """One network with the names its checkpoint uses.

    Attributes:
        net: the network.
        table: its checkpoint.
        to_checkpoint: net parameter -> checkpoint name.
        from_checkpoint: checkpoint name -> net parameter.
        renamed: (checkpoint name, net parameter) pairs found by inference, when the names differ beyond a prefix.
        pieces: net parameter -> the checkpoint names it is made of, for a parameter that stacks or concatenates
            several checkpoint tensors (a model that fuses its experts into one `[experts, ...]` tensor, loading
            a checkpoint that keeps them apart); such a parameter is not in `to_checkpoint`, and each of its
            checkpoint names leads to it in `from_checkpoint`.
        regions: checkpoint name -> where it lies in its net parameter, for the names in `pieces`.
        doubtful: checkpoint names among `renamed` whose place that inference gave below its threshold (pieces
            told apart by file order only): the proof, run on the model loaded so, does not check them.
    """

    net: Net
    table: ParamTable
    to_checkpoint: dict[str, str]
    from_checkpoint: dict[str, str]
    renamed: tuple[tuple[str, str], ...] = ()
    pieces: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    regions: Mapping[str, Region] = field(default_factory=dict)
    doubtful: frozenset[str] = frozenset()

    def checkpoint_names(self, net_name: str) -> tuple[str, ...]:
        """The checkpoint names a net parameter is made of (none when the checkpoint has no counterpart)."""
        found = self.to_checkpoint.get(net_name)
        return (found,) if found is not None else self.pieces.get(net_name, ())

    def compose(self, net_name: str, whole: Array, arrays: Mapping[str, Array]) -> Array:
        """`whole` (a net parameter made of pieces) with the given pieces' arrays put in their places."""
        for ckpt, array in arrays.items():
            region = self.regions[ckpt]
            whole[region] = array.reshape(whole[region].shape)
        return whole


def side(net: Net, table: ParamTable, role: str, factory: str) -> Side:
    """Align a network's parameter names with its checkpoint's.

    Names equal on both sides, or equal but for a consistent prefix, pair directly. When too few do (a
    checkpoint saved with older names than the installed package uses), automap's own inference maps the
    checkpoint onto the network's parameters (names, shapes and order, within one framework); its pairs of
    one tensor each, stored alike, are taken and listed in `Side.renamed`. A parameter the checkpoint keeps in
    pieces (experts stacked into one tensor, `gate_up_proj` joining two projections) is offered to that
    inference as its slices along its first axis where no checkpoint tensor has its shape; slices and whole
    parameters that inference makes by concatenating checkpoint tensors are kept in `Side.pieces`.

    Raises:
        AutomapError: too few names correspond: the model is not the one the checkpoint was saved from.
    """
    names = align_names(net, table.names)
    renamed: tuple[tuple[str, str], ...] = ()
    pieces: dict[str, tuple[tuple[str, Region], ...]] = {}
    doubtful: frozenset[str] = frozenset()
    if _share(names, table) < _MIN_ALIGNED:
        inferred, inferred_pieces, doubtful = _inferred_names(net, table)
        if _share(inferred, table, inferred_pieces) > _share(names, table):
            renamed = tuple((c, n) for n, c in inferred.items() if names.get(n) != c)
            renamed += tuple((c, f"{n}{_region_text(r)}") for n, found in inferred_pieces.items() for c, r in found)
            names, pieces = inferred, inferred_pieces
            doubtful = frozenset(c for c, _ in renamed if c in doubtful)
        else:
            doubtful = frozenset()
    floats = [n for n in table.names if not n.endswith("num_batches_tracked")]
    found = set(names.values()) | {c for members in pieces.values() for c, _ in members}
    share = _share(names, table, pieces)
    if share < _MIN_ALIGNED:
        missing = [n for n in floats if n not in found][:4]
        theirs = list(net.params)[:3]
        msg = (
            f"the {role} model ({factory}) does not fit {table.source}: only {share:.0%} of the checkpoint's "
            f"parameters are in the model, also after mapping the checkpoint's names onto the model's (missing "
            f"e.g. {', '.join(missing)}; the model has e.g. {', '.join(theirs)}); give the model the checkpoint "
            "was saved from"
        )
        raise AutomapError(msg)
    wrong = [(n, c) for n, c in names.items() if tuple(table[c].shape) != net.shape(n)]
    if wrong:
        name, ckpt = wrong[0]
        msg = (
            f"the {role} model ({factory}) does not fit {table.source}: {ckpt!r} is "
            f"{list(table[ckpt].shape)} in the checkpoint and {list(net.shape(name))} in the model"
            f"{f' ({len(wrong)} such parameters)' if len(wrong) > 1 else ''}; give the model the checkpoint was "
            "saved from (with the same configuration)"
        )
        raise AutomapError(msg)
    from_checkpoint = {v: k for k, v in names.items()}
    from_checkpoint.update({c: n for n, members in pieces.items() for c, _ in members})
    return Side(
        net,
        table,
        names,
        from_checkpoint,
        renamed,
        {n: tuple(c for c, _ in members) for n, members in pieces.items()},
        {c: r for members in pieces.values() for c, r in members},
        doubtful,
    )


def _share(
    names: Mapping[str, str], table: ParamTable, pieces: Mapping[str, Sequence[tuple[str, Region]]] | None = None
) -> float:
    """The share of a checkpoint's float tensors that the network's names (and parameters made of pieces) reach."""
    floats = [n for n in table.names if not n.endswith("num_batches_tracked")]
    found = set(names.values()) | {c for members in (pieces or {}).values() for c, _ in members}
    return sum(1 for n in floats if n in found) / max(len(floats), 1)


def _region_text(region: Region) -> str:
    """`[2]` or `[2, 96:192]`."""
    parts = [str(r) if isinstance(r, int) else ":" if r.start is None else f"{r.start}:{r.stop}" for r in region]
    while parts and parts[-1] == ":":
        parts.pop()
    return f"[{', '.join(parts)}]" if parts else ""


def _inferred_names(
    net: Net, table: ParamTable
) -> tuple[dict[str, str], dict[str, tuple[tuple[str, Region], ...]], frozenset[str]]:
    """Net parameter -> checkpoint name by automap's inference within one framework (one tensor each, as stored).

    Also net parameter -> (checkpoint name, region) for the parameters made of several checkpoint tensors, and
    the checkpoint names taken from pairs below the inference's threshold.
    """
    from automap.engine.inference import infer_mapping

    stored = {r.shape for r in table}
    offered: dict[str, tuple[str, tuple[int, ...], int | None]] = {}  # record -> (parameter, shape, slice)
    for name in net.params:
        shape = net.shape(name)
        if len(shape) >= 3 and shape not in stored and 1 < shape[0] <= _MAX_SLICES:
            head, _, leaf = name.rpartition(".")
            for index in range(shape[0]):  # `experts.gate_up_proj` -> `experts.0.gate_up_proj`, ...
                offered[f"{head}.{index}.{leaf}" if head else f"{index}.{leaf}"] = (name, shape[1:], index)
        else:
            offered[name] = (name, shape, None)
    records = tuple(
        ParamRecord(record, shape, net.backend.dtype(net.params[name]) or "float32", position)
        for position, (record, (name, shape, _)) in enumerate(offered.items())
    )
    own = ParamTable(table.framework, f"the {type(net.module).__name__} model", records)
    mapping = infer_mapping(table, own, weights={"shape": _SAME_LAYOUT})
    out: dict[str, str] = {}
    regions: dict[str, list[tuple[str, Region]]] = defaultdict(list)
    doubtful = {s for p in mapping.pairs if p.confidence < mapping.threshold for s in p.source_names}
    for pair in mapping.pairs:
        name, shape, stacked = offered[pair.target]
        at: Region = () if stacked is None else (stacked,)
        if isinstance(pair.source, str) and not pair.transform and table[pair.source].shape == shape:
            if stacked is None:
                out[name] = pair.source
            else:
                regions[name].append((pair.source, at))
        elif isinstance(pair.source, tuple) and len(pair.transform) == 1 and isinstance(pair.transform[0], Concat):
            axis = pair.transform[0].axis % len(shape)
            start = 0
            for source in pair.source:
                size = table[source].shape[axis]
                regions[name].append((source, (*at, *[slice(None)] * axis, slice(start, start + size))))
                start += size
    covered = {  # every slice and piece found: the parameter is whole
        name: tuple(found)
        for name, found in regions.items()
        if sum(table[c].numel for c, _ in found) == int(np.prod(net.shape(name)))
    }
    return out, covered, frozenset(doubtful)


class Session:
    """The reference (source) network, the network being filled (target), and the source tensors."""

    def __init__(self, source: Side, target: Side) -> None:
        self.source = source
        self.target = target
        self._arrays: dict[str, Array] = {}
        self._made: dict[str, Array] = {}
        self._loaded: dict[str, str] = {}  # target checkpoint name -> key of the option loaded
        self._whole: dict[str, Array] = {}  # target parameter made of pieces -> its values as loaded
        self.runs = 0
        self.module_runs = 0

    # -- weights ---------------------------------------------------------------------------------------------

    def source_array(self, name: str) -> Array:
        """A source checkpoint tensor (read once)."""
        array = self._arrays.get(name)
        if array is None:
            array = self._arrays[name] = self.source.table[name].read()
        return array

    def option_array(self, option: Option) -> Array:
        """The target tensor an option makes."""
        array = self._made.get(option.key)
        if array is None:
            arrays = [self.source_array(s) for s in option.sources]
            array = apply_steps(arrays, option.steps) if option.steps else arrays[0]
            self._made[option.key] = array
            if len(self._made) > 4096:  # trials of a large model: keep memory bounded
                self._made.pop(next(iter(self._made)))
        return array

    def load_source(self) -> None:
        """Put the source checkpoint's tensors into the source network (parameters made of pieces assembled)."""
        side_ = self.source
        arrays = {net_name: self.source_array(ckpt) for net_name, ckpt in side_.to_checkpoint.items()}
        dtypes = {net_name: side_.table[ckpt].dtype for net_name, ckpt in side_.to_checkpoint.items()}
        for net_name, members in side_.pieces.items():
            first = self.source_array(members[0])
            whole = np.zeros(side_.net.shape(net_name), dtype=first.dtype)
            arrays[net_name] = side_.compose(net_name, whole, {c: self.source_array(c) for c in members})
            dtypes[net_name] = side_.table[members[0]].dtype
        side_.net.load(arrays, dtypes)

    def load_target(self, assignment: Mapping[str, Option]) -> int:
        """Put the tensors an assignment makes into the target network (changed ones only); how many changed."""
        arrays: dict[str, Array] = {}
        dtypes: dict[str, str] = {}
        for ckpt, option in assignment.items():
            net_name = self.target.from_checkpoint.get(ckpt)
            if net_name is None or self._loaded.get(ckpt) == option.key:
                continue
            dtype = dtypes[net_name] = self.source.table[option.sources[0]].dtype
            if net_name in self.target.pieces:
                whole = self._whole.get(net_name)
                if whole is None:
                    whole = self._whole[net_name] = self._own_values(net_name, dtype)
                arrays[net_name] = self.target.compose(net_name, whole, {ckpt: self.option_array(option)}).copy()
            else:
                arrays[net_name] = self.option_array(option)
        if arrays:
            self.target.net.load(arrays, dtypes)
            for ckpt, option in assignment.items():
                if self.target.from_checkpoint.get(ckpt) in arrays:
                    self._loaded[ckpt] = option.key
        return len(arrays)

    def _own_values(self, net_name: str, dtype: str) -> Array:
        """A target parameter's own values in the storage type of `dtype` (zeros where that type is raw bits)."""
        storage = np.dtype(get_dtype(dtype).storage)
        if storage.kind != "f":
            return np.zeros(self.target.net.shape(net_name), dtype=storage)
        return self.target.net.array(net_name).astype(storage)

    # -- runs ------------------------------------------------------------------------------------------------

    def run_source(
        self,
        call: Call,
        *,
        capture: Collection[str] | None = (),
        trace: bool = False,
        capture_inputs: Collection[str] | None = (),
    ) -> Run:
        """Run the reference network."""
        self.runs += 1
        args, kwargs = call
        return self.source.net.run(args, keywords=kwargs, capture=capture, trace=trace, capture_inputs=capture_inputs)

    def run_target(
        self,
        call: Call,
        *,
        capture: Collection[str] | None = (),
        force: Mapping[str, Forced] | None = None,
        trace: bool = False,
        keep: Collection[str] = (),
        capture_inputs: Collection[str] | None = (),
        force_inputs: Mapping[str, Forced] | None = None,
    ) -> Run:
        """Run the network being filled."""
        self.runs += 1
        args, kwargs = call
        return self.target.net.run(
            args,
            keywords=kwargs,
            capture=capture,
            force=force,
            trace=trace,
            keep=keep,
            capture_inputs=capture_inputs,
            force_inputs=force_inputs,
        )

    def rerun_target(
        self, path: str, arguments: Sequence[tuple[object, object]], capture_inputs: Collection[str] = ()
    ) -> tuple[list[Outputs], dict[str, list[Outputs]]]:
        """Run one module of the network being filled again, on arguments a run kept (fresh copies each time)."""
        self.module_runs += 1
        return self.target.net.rerun(path, arguments, capture_inputs=capture_inputs)

    # -- pairing ---------------------------------------------------------------------------------------------

    def source_pairing(self, unused: Iterable[str]) -> ModulePairing:
        """Pairing of source modules by parameter sets, ignoring checkpoint names no target uses."""
        ignored = {self.source.from_checkpoint[n] for n in unused if n in self.source.from_checkpoint}
        ignored |= {n for n in self.source.net.params if n not in self.source.to_checkpoint}
        return ModulePairing(self.source.net, ignored)

    def source_names(self, assignment: Mapping[str, Option]) -> dict[str, tuple[str, ...]]:
        """Target net parameter -> source net parameters it is made from."""
        out: dict[str, tuple[str, ...]] = {}
        for ckpt, option in assignment.items():
            net_name = self.target.from_checkpoint.get(ckpt)
            if net_name is None:
                continue
            found = [self.source.from_checkpoint[s] for s in option.sources if s in self.source.from_checkpoint]
            out[net_name] = tuple(dict.fromkeys([*out.get(net_name, ()), *found]))  # pieces: all their sources
        return out

    def paired(self, path: str, names: Mapping[str, tuple[str, ...]], pairing: ModulePairing) -> list[str]:
        """Source modules paired with a target module under an assignment (given as `source_names`)."""
        return paired_modules(self.target.net, path, names, pairing)


def paired_modules(net: Net, path: str, names: Mapping[str, tuple[str, ...]], pairing: ModulePairing) -> list[str]:
    """Source modules holding exactly the sources of a target module's parameters (none when one has no source).

    Parameters that are not floating point (PyTorch's `num_batches_tracked`) need no source.
    """
    found: set[str] = set()
    for name in net.subtree.get(path, ()):
        sources = names.get(name)
        if not sources:
            if net.is_float(name):
                return []
            continue
        found.update(sources)
    return pairing.modules_for(frozenset(found)) if found else []
