"""Both networks, their checkpoints' names, and the weights an assignment puts into the target network.

The source network runs with the source checkpoint's weights (the reference). The target network runs with
target weights made from source tensors by a mapping's options (`automap.transforms.apply_steps`, as a
conversion applies them); only the tensors an assignment changes are reloaded between runs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from automap._errors import AutomapError
from automap._types import Array
from automap.records import ParamTable
from automap.transforms import apply_steps

from ._candidates import Option
from ._compare import ModulePairing
from ._nets import Net, Outputs, Run, align_names

_MIN_ALIGNED = 0.8  # below this share of names found in the checkpoint, the network is not the checkpoint's


@dataclass(frozen=True)
class Side:
    """One network with the names its checkpoint uses."""

    net: Net
    table: ParamTable
    to_checkpoint: dict[str, str]  # net parameter -> checkpoint name
    from_checkpoint: dict[str, str]  # checkpoint name -> net parameter


def side(net: Net, table: ParamTable, role: str, factory: str) -> Side:
    """Align a network's parameter names with its checkpoint's.

    Raises:
        AutomapError: too few names correspond: the model is not the one the checkpoint was saved from.
    """
    names = align_names(net, table.names)
    floats = [n for n in table.names if not n.endswith("num_batches_tracked")]
    found = set(names.values())
    share = sum(1 for n in floats if n in found) / max(len(floats), 1)
    if share < _MIN_ALIGNED:
        missing = [n for n in floats if n not in found][:4]
        theirs = list(net.params)[:3]
        msg = (
            f"the {role} model ({factory}) does not fit {table.source}: only {share:.0%} of the checkpoint's "
            f"parameters are in the model (missing e.g. {', '.join(missing)}; the model has e.g. "
            f"{', '.join(theirs)}); give the model the checkpoint was saved from"
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
    return Side(net, table, names, {v: k for k, v in names.items()})


class Session:
    """The reference (source) network, the network being filled (target), and the source tensors."""

    def __init__(self, source: Side, target: Side) -> None:
        self.source = source
        self.target = target
        self._arrays: dict[str, Array] = {}
        self._made: dict[str, Array] = {}
        self._loaded: dict[str, str] = {}  # target checkpoint name -> key of the option loaded
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
        """Put the source checkpoint's tensors into the source network."""
        side_ = self.source
        arrays = {net_name: self.source_array(ckpt) for net_name, ckpt in side_.to_checkpoint.items()}
        dtypes = {net_name: side_.table[ckpt].dtype for net_name, ckpt in side_.to_checkpoint.items()}
        side_.net.load(arrays, dtypes)

    def load_target(self, assignment: Mapping[str, Option]) -> int:
        """Put the tensors an assignment makes into the target network (changed ones only); how many changed."""
        arrays: dict[str, Array] = {}
        dtypes: dict[str, str] = {}
        for ckpt, option in assignment.items():
            net_name = self.target.from_checkpoint.get(ckpt)
            if net_name is None or self._loaded.get(ckpt) == option.key:
                continue
            arrays[net_name] = self.option_array(option)
            dtypes[net_name] = self.source.table[option.sources[0]].dtype
        if arrays:
            self.target.net.load(arrays, dtypes)
            for ckpt, option in assignment.items():
                if self.target.from_checkpoint.get(ckpt) in arrays:
                    self._loaded[ckpt] = option.key
        return len(arrays)

    # -- runs ------------------------------------------------------------------------------------------------

    def run_source(self, inputs: Sequence[Array], *, capture: Collection[str] | None = (), trace: bool = False) -> Run:
        """Run the reference network."""
        self.runs += 1
        return self.source.net.run(inputs, capture=capture, trace=trace)

    def run_target(
        self,
        inputs: Sequence[Array],
        *,
        capture: Collection[str] | None = (),
        force: Mapping[str, list[Outputs]] | None = None,
        trace: bool = False,
        keep: Collection[str] = (),
    ) -> Run:
        """Run the network being filled."""
        self.runs += 1
        return self.target.net.run(inputs, capture=capture, force=force, trace=trace, keep=keep)

    def rerun_target(self, path: str, arguments: Sequence[tuple[object, object]]) -> list[Outputs]:
        """Run one module of the network being filled again, on arguments a run kept."""
        self.module_runs += 1
        return self.target.net.rerun(path, arguments)

    # -- pairing ---------------------------------------------------------------------------------------------

    def source_pairing(self, unused: Iterable[str]) -> ModulePairing:
        """Pairing of source modules by parameter sets, ignoring checkpoint names no target uses."""
        ignored = {self.source.from_checkpoint[n] for n in unused if n in self.source.from_checkpoint}
        ignored |= {n for n in self.source.net.params if n not in self.source.to_checkpoint}
        return ModulePairing(self.source.net, ignored)

    def source_names(self, assignment: Mapping[str, Option]) -> dict[str, tuple[str, ...]]:
        """Target net parameter -> source net parameters it is made from."""
        out = {}
        for ckpt, option in assignment.items():
            net_name = self.target.from_checkpoint.get(ckpt)
            if net_name is None:
                continue
            out[net_name] = tuple(
                self.source.from_checkpoint[s] for s in option.sources if s in self.source.from_checkpoint
            )
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
