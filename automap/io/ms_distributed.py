"""Read a MindSpore distributed checkpoint (one checkpoint per rank plus the strategy file) as one checkpoint.

With `integrated_save=False` (MindFormers' default for large models) every rank saves only its slices:

    checkpoint/rank_0/net_rank_0-10_1.ckpt   checkpoint/rank_1/net_rank_1-10_1.ckpt   ...
    strategy/ckpt_strategy_rank_0.ckpt       (from strategy_ckpt_config={"save_file": ...}; one per stage)

The strategy file says how each parameter was cut (`automap.io._ms_strategy`). Each rank's file is read lazily
by automap's own `.ckpt` (or safetensors) reader; from a parameter's layout and the shape a rank holds, the
full shape and the block each rank holds follow. The blocks must tile the full tensor exactly
(`automap.io._slices`); replicated blocks (data parallelism, or a parameter shared by two pipeline stages) are
read from one rank only, and a parameter a stage does not have is simply absent from that stage's files.
Parameters the strategy does not describe are, as for MindSpore's own merging tools, not cut: every rank holding
one must hold the same shape, and it is read from the first. The blocks of a tensor are read and joined only
when the tensor is read, so memory holds one full tensor at a time.

Training state (optimizer moments, `accu_grads`, step counters) is set aside. Its slices follow the layout of
the parameter they belong to when the strategy has none of their own; when they cannot be joined, the record
stays listed, and reading it says why.

What cannot be told from the files: a checkpoint saved with `integrated_save=True` holds full tensors on
every rank, and read with the strategy of the training run it would look cut; give such a checkpoint's
`rank_0` file directly instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from automap._advice import option
from automap._errors import CheckpointFormatError
from automap._text import shown
from automap._types import Array, Framework, StrPath
from automap.records import ParamRecord, ParamTable

from . import mindspore, safetensors
from ._framework import RawRecord, build_table
from ._ms_strategy import Layout, LayoutError, Strategy, is_strategy_file, read_strategy
from ._slices import Slice, loader, plan
from ._sniff import is_mindspore, is_safetensors, open_regular
from .training_state import is_training_state

__all__ = ["data_files", "read", "sniff"]

_RANK_DIR = re.compile(r"rank_(\d{1,7})")
_SUFFIXES = (".ckpt", ".safetensors")
_MORE_TRAINING_STATE = ("accu_grads.",)  # gradient accumulators of pipeline/gradient-accumulation runs


def sniff(path: StrPath) -> bool:
    """True for a folder holding `rank_<n>/` subfolders with a checkpoint file each (never raises)."""
    folder = Path(path)
    try:
        return folder.is_dir() and any(
            _RANK_DIR.fullmatch(child.name) and child.is_dir() and any(_checkpoints(child))
            for child in folder.iterdir()
        )
    except OSError:
        return False


def data_files(path: StrPath, *, strategy: StrPath | None = None) -> list[Path]:
    """The rank checkpoints and strategy files of a distributed checkpoint, best effort, never raising.

    For the checks a conversion makes before writing (an output must not replace a file it reads).
    """
    try:
        folder, ranks = _rank_files(path)
        return [*ranks.values(), *_strategy_files(folder, strategy)]
    except (CheckpointFormatError, OSError):
        return []


def read(
    path: StrPath | Sequence[StrPath],
    *,
    strategy: StrPath | None = None,
    framework: Framework | None = None,
    verify_crc: bool = False,
    **_: object,
) -> ParamTable:
    """Read a distributed checkpoint as one checkpoint of full tensors, read lazily.

    Args:
        path: the folder holding `rank_0/`, `rank_1/`, ... (one checkpoint file each), or the rank files
            themselves in rank order.
        strategy: the strategy file, or a folder of them (one per pipeline stage). By default it is looked for
            in the checkpoint folder, in its `strategy/` subfolder and in a `strategy/` folder beside it.
        framework: whose naming the parameters follow (MindSpore's unless said otherwise).
        verify_crc: check the CRC trailer of every rank's `.ckpt` (reads them whole).

    Returns:
        The parameters as full tensors, in the order rank 0's file holds them (then later stages'); training
        state in `excluded`.

    Raises:
        CheckpointFormatError: a rank's file or the strategy is missing, unreadable or corrupt; the slices of a
            parameter overlap, leave a gap, reach outside it or disagree with its layout; a parameter the
            strategy describes is held by no rank. The message names the parameter and the rank.
    """
    folder, ranks = _rank_files(path)
    source = str(folder)
    found = _strategy_files(folder, strategy)
    layouts = read_strategy(found)
    _check_ranks(source, layouts, ranks, folder=isinstance(path, str | Path))
    holders: dict[str, list[tuple[int, ParamRecord]]] = {}
    for rank, file in ranks.items():
        table = _load(file, verify_crc)
        for record in (*table.params, *table.excluded):
            holders.setdefault(record.name, []).append((rank, record))
    notes = [
        f"distributed: {len(ranks)} rank checkpoints, {layouts.stages} pipeline stage(s) of {layouts.stage_ranks} "
        f"ranks; strategy from {', '.join(repr(str(f)) for f in found[:2])}{' ...' if len(found) > 2 else ''}"
    ]
    state = {name for name in (*holders, *layouts.layouts) if _is_state(name)}
    missing = [n for n in layouts.layouts if n not in holders and n not in state]
    if missing:
        msg = (
            f"{source!r}: parameter {shown(missing[0])} is described by the strategy but no rank's checkpoint holds "
            f"it{f' (nor {len(missing) - 1} more)' if len(missing) > 1 else ''}; the rank checkpoints are "
            f"incomplete (copy every rank's folder) or belong to another run: give its strategy file with "
            f"{option('strategy', 'FILE')}"
        )
        raise CheckpointFormatError(msg)
    joined = _join(source, layouts, holders, state, notes)
    records = [joined[name] for name in holders]
    fmt = "mindspore-distributed"
    return build_table(framework or "mindspore", source, records, notes, fmt, excluded_names=frozenset(state))


def _is_state(name: str) -> bool:
    return is_training_state(name) or name.startswith(_MORE_TRAINING_STATE)


def _join(
    source: str,
    strategy: Strategy,
    holders: Mapping[str, list[tuple[int, ParamRecord]]],
    state: set[str],
    notes: list[str],
) -> dict[str, RawRecord]:
    """Each name's full-tensor record; training state that cannot be joined gets a loader that says why."""
    joined: dict[str, RawRecord] = {}
    whole = 0
    for name in sorted(holders, key=lambda n: n in state):  # parameters first: state may follow their shapes
        held = holders[name]
        by_stage = strategy.layouts.get(name)
        if by_stage is None and name in state:
            by_stage = _shadowed(strategy, name, joined, held)
        whole += by_stage is None
        try:
            joined[name] = _record(source, name, held, by_stage, strategy.stage_ranks)
        except CheckpointFormatError as error:
            if name not in state:
                raise
            joined[name] = (name, held[0][1].shape, held[0][1].dtype, _refusal(str(error)))
            notes.append(f"training state {shown(name)} cannot be joined; reading it says why")
    if whole:
        notes.append(f"{whole} entries not in the strategy, read whole from one rank")
    return joined


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file())


def _rank_files(path: StrPath | Sequence[StrPath]) -> tuple[Path, dict[int, Path]]:
    """The checkpoint folder and each rank's file, by rank."""
    if not isinstance(path, str | Path) and isinstance(path, Sequence):
        files = [Path(p) for p in path]
        if not files:
            msg = "no rank checkpoints given"
            raise CheckpointFormatError(msg)
        return files[0].parent, dict(enumerate(files))
    folder = Path(path)
    if not folder.is_dir():
        msg = f"{str(folder)!r} is not a folder of rank checkpoints (rank_0/, rank_1/, ...)"
        raise CheckpointFormatError(msg)
    resolved = folder.resolve()
    ranks: dict[int, Path] = {}
    for child in sorted(folder.iterdir()):
        matched = _RANK_DIR.fullmatch(child.name)
        if not matched or not child.is_dir():
            continue
        files = _checkpoints(child)
        if len(files) > 1:
            listed = ", ".join(shown(f.name, 60) for f in files[:4])
            msg = (
                f"{str(child)!r} holds {len(files)} checkpoints ({listed}); automap will not guess which save to "
                "read: give the files of one save, in rank order, or move the others away"
            )
            raise CheckpointFormatError(msg)
        if files:
            if not files[0].resolve().is_relative_to(resolved):
                msg = f"{str(files[0])!r} links outside the checkpoint folder {str(folder)!r}; refused"
                raise CheckpointFormatError(msg)
            ranks[int(matched.group(1))] = files[0]
    if not ranks:
        msg = f"{str(folder)!r} holds no rank_<n>/ folders with a checkpoint file"
        raise CheckpointFormatError(msg)
    return folder, dict(sorted(ranks.items()))


def _strategy_files(folder: Path, given: StrPath | None) -> list[Path]:
    if given is not None:
        place = Path(given)
        if not place.is_dir():
            return [place]
        found = sorted(p for p in place.iterdir() if is_strategy_file(p))
        if not found:
            msg = f"{str(place)!r} holds no MindSpore strategy file; give the file saved through strategy_ckpt_config"
            raise CheckpointFormatError(msg)
        return found
    for place in (folder, folder / "strategy", folder.parent / "strategy"):
        found = sorted(p for p in place.iterdir() if is_strategy_file(p)) if place.is_dir() else []
        if found:
            return found
    msg = (
        f"{str(folder)!r}: no parallel strategy file found beside the rank checkpoints (looked in the folder, "
        f"strategy/ and ../strategy/); give the file saved through strategy_ckpt_config: {option('strategy', 'FILE')}"
    )
    raise CheckpointFormatError(msg)


def _check_ranks(source: str, strategy: Strategy, ranks: dict[int, Path], *, folder: bool) -> None:
    """Refuse rank files the strategy cannot place (another run's strategy, a stage's file missing).

    In a folder of ranks, a rank without a file is refused too: its slices would leave gaps, or its stage be lost.
    """
    total = strategy.stages * strategy.stage_ranks
    beyond = [r for r in ranks if r >= total]
    if beyond:
        msg = (
            f"{source!r}: the strategy describes {total} ranks ({strategy.stages} pipeline stage(s) of "
            f"{strategy.stage_ranks}) but there is a checkpoint for rank {beyond[0]}; give the strategy files of "
            "every pipeline stage (a folder of them, or one joined by mindspore.parallel.merge_pipeline_strategys)"
        )
        raise CheckpointFormatError(msg)
    absent = [r for r in range(total) if r not in ranks] if folder else []
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        msg = (
            f"{source!r}: rank {absent[0]}{more} has no checkpoint (no rank_{absent[0]}/ folder with a .ckpt), but "
            f"the strategy describes {total} ranks; copy every rank's folder, or give the strategy this checkpoint "
            "was saved with"
        )
        raise CheckpointFormatError(msg)


def _load(file: Path, verify_crc: bool) -> ParamTable:
    """One rank's checkpoint, read lazily: a `.ckpt`, or MindSpore's safetensors flavour."""
    open_regular(file)
    if is_safetensors(file):
        return safetensors.read(file, framework="mindspore")
    if is_mindspore(file):
        return mindspore.read(file, verify_crc=verify_crc, framework="mindspore")
    msg = f"{str(file)!r} is neither a MindSpore .ckpt nor a safetensors file; a rank's checkpoint is damaged"
    raise CheckpointFormatError(msg)


def _shadowed(
    strategy: Strategy, name: str, joined: Mapping[str, RawRecord], held: list[tuple[int, ParamRecord]]
) -> Mapping[int, Layout] | None:
    """The layouts of the parameter a training-state entry shadows (`adam_m.layers.0.w` -> `layers.0.w`).

    MindSpore's strategy omits state that is not trainable, yet training cuts a moment as its parameter. A
    moment held whole (as MindSpore's own resharding leaves it) has the parameter's full shape on every rank.
    """
    parts = name.split(".")
    for start in range(1, len(parts)):
        shadowed = ".".join(parts[start:])
        found = strategy.layouts.get(shadowed)
        if found is not None:
            full = joined[shadowed][1] if shadowed in joined else None
            return None if all(record.shape == full for _, record in held) else found
    return None


def _record(
    source: str,
    name: str,
    held: list[tuple[int, ParamRecord]],
    by_stage: Mapping[int, Layout] | None,
    stage_ranks: int,
) -> RawRecord:
    """One full tensor: its shape and dtype, and a loader joining the blocks the ranks hold."""
    where = f"{source!r}: parameter {shown(name)}"
    first_rank, first = held[0]
    for rank, record in held:
        if record.dtype != first.dtype:
            msg = f"{where} is {first.dtype} on rank {first_rank} but {record.dtype} on rank {rank}; refused"
            raise CheckpointFormatError(msg)
    if by_stage is None:
        for rank, record in held:
            if record.shape != first.shape:
                msg = (
                    f"{where} is not in the strategy, yet rank {first_rank} holds it as {list(first.shape)} and "
                    f"rank {rank} as {list(record.shape)}; its slices cannot be placed without a layout"
                )
                raise CheckpointFormatError(msg)
        pieces = [Slice((0,) * len(first.shape), first.shape, f"rank {first_rank}", first.read)]
        return name, first.shape, first.dtype, loader(source, name, first.shape, first.dtype, pieces)
    full: tuple[int, ...] | None = None
    pieces = []
    for rank, record in held:
        stage, local = divmod(rank, stage_ranks)
        layout = by_stage.get(stage)
        if layout is None:
            msg = f"{where} is held by rank {rank}, but the strategy of its pipeline stage {stage} does not describe it"
            raise CheckpointFormatError(msg)
        try:
            full = layout.full(record.shape) if full is None else full
            offsets, shape = layout.region(local, full)
        except LayoutError as error:
            msg = f"{where}: the slice rank {rank} holds ({list(record.shape)}) does not fit its layout: {error}"
            raise CheckpointFormatError(msg) from None
        if layout.full_shape is not None and layout.full_shape != full:
            msg = (
                f"{where}: the strategy records its shape as {list(layout.full_shape)}, but the slice rank {rank} "
                f"holds ({list(record.shape)}) makes it {list(full)}; the checkpoint and the strategy do not match"
            )
            raise CheckpointFormatError(msg)
        if shape != record.shape:
            msg = (
                f"{where}: rank {rank} holds a slice of {list(record.shape)}, but its layout gives that rank "
                f"{list(shape)} of {list(full)}; the checkpoint and the strategy do not match"
            )
            raise CheckpointFormatError(msg)
        pieces.append(Slice(offsets, shape, f"rank {rank}", record.read))
    assert full is not None  # `held` is never empty
    return name, full, first.dtype, loader(source, name, full, first.dtype, plan(source, name, full, pieces))


def _refusal(message: str) -> Callable[[], Array]:
    def refuse() -> Array:
        raise CheckpointFormatError(message)

    return refuse
