"""Find the state dict inside an unpickled PyTorch checkpoint and turn it into a table (no torch import here).

Training scripts wrap state dicts in containers (`{"state_dict": ...}`, `{"model": ..., "optimizer": ...}`,
EMA copies): the single candidate is unwrapped and named in the notes; when several exist the reader refuses to
guess and lists them. Both PyTorch readers (torch's own unpickler, and automap's torch-free one for plain files)
hand their object graph here, with what a tensor is for them, so both apply exactly the same rules and messages.

The object graph is untrusted: pickle's memo lets a few bytes reference one container thousands of times
("billion laughs"), so every walk over it visits each container once; and no tensor may claim more bytes than
the file holds (overlapping strides make a 4-byte storage look like 32 GB).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from automap._advice import option
from automap._errors import CheckpointFormatError
from automap._text import shown
from automap._types import Array
from automap.records import ParamRecord, ParamTable

from ._framework import RawRecord, build_table

__all__ = ["Described", "state_dict_table"]

# What a reader says of one tensor: shape, automap dtype name, strides (elements), and a loader of its array.
# `describe` raises CheckpointFormatError for a tensor automap cannot handle (quantized, sparse, odd dtype).
Described = tuple[tuple[int, ...], str, tuple[int, ...], int, Callable[[], Array]]

# Tensors may view more bytes than the file holds only by this much (a small constant buffer expanded to a
# shape, e.g. a position-id row); anything beyond is an overlapping-stride trick to make a reader allocate.
_EXPANSION_SLACK = 1024 * 1024

_WRAPPERS = frozenset({"module.", "_orig_mod."})
_OPTIMIZER_KEYS = frozenset(
    {
        "optimizer",
        "optimizers",
        "optim",
        "optimizer_state_dict",
        "opt_state",
        "scheduler",
        "lr_scheduler",
        "optimizer_states",  # PyTorch Lightning
        "lr_schedulers",
    }
)


def state_dict_table(
    file: Path,
    size: int,
    obj: Any,
    key: str | None,
    *,
    is_tensor: Callable[[Any], bool],
    describe: Callable[[Path, str, Any], Described],
    notes: Sequence[str] = (),
) -> ParamTable:
    """The table of the state dict found in `obj` (see the module docstring), optimizer tensors set aside.

    Args:
        file: the checkpoint, for messages.
        size: its size in bytes, the bound on what a tensor may claim.
        obj: the unpickled object.
        key: which state dict to take when there are several (`"model"`, or a nested path `"a/b"`).
        is_tensor: whether an object of the graph is a tensor.
        describe: (file, name, tensor) -> shape, dtype, strides, bytes, loader.
        notes: the reader's own notes, first in the table's notes.
    """
    state, where, optimizer = _select_state_dict(file, obj, key, is_tensor)
    all_notes = list(notes)
    if where:
        all_notes.append(f"state dict taken from key {where!r}")
    records: list[RawRecord] = []
    for name, value in state.items():
        shape, dtype, stride, nbytes, loader = describe(file, name, value)
        _check_extent(file, size, name, shape, stride, nbytes)
        records.append((name, shape, dtype, loader))
    prefix = _shared_prefix([r[0] for r in records])
    if prefix:
        wrapper = " (added by a DataParallel/DDP or compile wrapper)" if prefix in _WRAPPERS else ""
        all_notes.append(f"every name starts with {prefix!r}{wrapper}; names are kept as stored")
    table = build_table("pytorch", str(file), records, all_notes, "pytorch")
    if not optimizer:
        return table
    extra: list[ParamRecord] = []
    for i, (name, value) in enumerate(optimizer.items()):
        shape, dtype, stride, nbytes, loader = describe(file, name, value)
        _check_extent(file, size, name, shape, stride, nbytes)
        extra.append(ParamRecord(name, shape, dtype, i, loader))
    return ParamTable(
        table.framework,
        table.source,
        table.params,
        table.excluded + tuple(extra),
        (*table.notes, f"{len(extra)} optimizer/training-state tensors set aside"),
        table.format,
    )


def _check_extent(
    file: Path, size: int, name: str, shape: tuple[int, ...], stride: tuple[int, ...], nbytes: int
) -> None:
    """Refuse a tensor that claims more bytes than the file holds (only overlapping strides can)."""
    if nbytes > max(size, _EXPANSION_SLACK):
        msg = (
            f"{str(file)!r}: tensor {shown(name)} has shape {list(shape)[:8]} ({nbytes} bytes) but the whole "
            f"file holds {size} bytes: its strides overlap (stride {list(stride)[:8]}); refused, since "
            "reading it would allocate memory the file does not contain. Save it with .contiguous() or .clone()"
        )
        raise CheckpointFormatError(msg)


def _is_state_dict(obj: Any, is_tensor: Callable[[Any], bool]) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(is_tensor(v) for v in obj.values())
    )


def _is_optimizer_state(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "state" in obj and "param_groups" in obj


def _candidates(obj: Any, is_tensor: Callable[[Any], bool]) -> list[tuple[tuple[str, ...], Any]]:
    """Every mapping of names to tensors inside `obj` (depth-limited), as (key path, mapping) pairs.

    A mapping referenced from several places is a candidate at each, but is searched inside only once, so a
    pickle whose memo repeats one container many times cannot make this walk explode.
    """
    found: list[tuple[tuple[str, ...], Any]] = []
    is_state: dict[int, bool] = {}
    searched: set[int] = set()

    def visit(node: Any, path: tuple[str, ...], depth: int) -> None:
        key = id(node)
        if key not in is_state:
            is_state[key] = _is_state_dict(node, is_tensor)
        if is_state[key]:
            found.append((path, node))
            return
        if not isinstance(node, Mapping) or depth >= 4 or key in searched or _is_optimizer_state(node):
            return
        searched.add(key)
        tensors = {k: v for k, v in node.items() if isinstance(k, str) and is_tensor(v)}
        if len(tensors) >= 2:
            found.append((path, tensors))
        for k, v in node.items():
            if isinstance(k, str) and k.lower() not in _OPTIMIZER_KEYS and isinstance(v, Mapping):
                visit(v, (*path, k), depth + 1)

    visit(obj, (), 0)
    return found


def _optimizer_tensors(obj: Any, is_tensor: Callable[[Any], bool]) -> dict[str, Any]:
    """Tensors of optimizer state found beside the model, flattened to dotted names."""
    out: dict[str, Any] = {}
    walked: set[int] = set()  # each container once: pickle's memo can repeat one container many times

    def walk(value: Any, name: str, depth: int) -> None:
        if is_tensor(value):
            out[name] = value
            return
        if depth >= 6 or id(value) in walked:
            return
        if isinstance(value, Mapping):
            walked.add(id(value))
            for k, v in value.items():
                walk(v, f"{name}.{k}" if name else str(k), depth + 1)
        elif isinstance(value, list | tuple):
            walked.add(id(value))
            for i, v in enumerate(value):
                walk(v, f"{name}.{i}", depth + 1)

    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if isinstance(k, str) and (k.lower() in _OPTIMIZER_KEYS or _is_optimizer_state(v)):
                walk(v, k, 0)
    return out


def _select_state_dict(
    file: Path, obj: Any, key: str | None, is_tensor: Callable[[Any], bool]
) -> tuple[Mapping[str, Any], str, dict[str, Any]]:
    if key is not None:
        node = obj
        for part in key.split("/"):
            if not isinstance(node, Mapping) or part not in node:
                keys = sorted(str(k) for k in node) if isinstance(node, Mapping) else []
                listed = ", ".join(shown(k, 60) for k in keys[:20]) + (", ..." if len(keys) > 20 else "")
                msg = f"{str(file)!r}: no key {key!r} (at {part!r}); keys there: [{listed}]"
                raise CheckpointFormatError(msg)
            node = node[part]
        found = [((*key.split("/"), *p), d) for p, d in _candidates(node, is_tensor)]
        if not found:
            msg = f"{str(file)!r}: key {key!r} holds no tensors"
            raise CheckpointFormatError(msg)
        _refuse_several(file, found)
        return found[0][1], "/".join(found[0][0]), _optimizer_tensors(obj, is_tensor)
    if is_tensor(obj):
        msg = f"{str(file)!r} holds a single tensor, not a state dict; save a dict of named tensors instead"
        raise CheckpointFormatError(msg)
    found = _candidates(obj, is_tensor)
    if not found:
        kind = type(obj).__name__
        msg = f"{str(file)!r} holds no state dict (a {kind} without named tensors)"
        raise CheckpointFormatError(msg)
    _refuse_several(file, found)
    where, state = found[0]
    return state, "/".join(where), _optimizer_tensors(obj, is_tensor)


def _refuse_several(file: Path, found: list[tuple[tuple[str, ...], Any]]) -> None:
    """Refuse to guess between several state dicts (a model and its EMA copy, ...): list them with a hint."""
    if len(found) > 1:
        listing = ", ".join(f"{shown('/'.join(p)) if p else '<top level>'} ({len(d)} tensors)" for p, d in found[:10])
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        first = next(("/".join(p) for p, _ in found if p), "model")
        first = first if first.isprintable() and len(first) <= 200 else shown(first)
        msg = f"{str(file)!r} holds several state dicts: {listing}{more}; choose one with {option('key', first)}"
        raise CheckpointFormatError(msg)


def _shared_prefix(names: list[str]) -> str:
    """A first name component every name shares (e.g. `module.` from DataParallel), or ""."""
    if len(names) < 2 or "." not in names[0]:
        return ""
    first = names[0].split(".", 1)[0] + "."
    return first if all(n.startswith(first) for n in names) else ""
