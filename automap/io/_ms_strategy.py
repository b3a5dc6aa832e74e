"""MindSpore's parallel strategy files: how each parameter of a distributed checkpoint is cut across ranks.

MindSpore writes the file named by `strategy_ckpt_config={"save_file": ...}` as a protobuf `ParallelStrategyMap`
(the `node_strategy.proto` that ships with MindSpore), or as JSON when the name ends in `.json`. For every
parameter it holds a layout:

- `dev_matrix`: the ranks of one pipeline stage arranged as an array, row-major (rank 5 of `[2, 4]` sits at
  `(1, 1)`); device axis `k` is `dev_matrix[-1 - k]`, so axis 0 varies fastest.
- `tensor_map`: per tensor axis, the device axis that cuts it (`-1`: not cut). Layouts made with
  `mindspore.parallel.Layout` may cut one tensor axis by several device axes (the first the outer one); the file
  then holds one `TensorMap` per tensor axis instead of a single flat one.
- `opt_weight_shard_size` / `opt_weight_shard_step`: optimizer parallelism cuts a rank's slice further along
  axis 0 among the ranks holding the same slice (in rank order, in groups of `size`; `-1` means all of them).
- `param_split_shape` / `indices_offset`: an uneven cut of axis 0 (the sizes and offsets of each part).
- `field`: the field split of an embedding (not supported here).

Under pipeline parallelism each stage writes its own file and `mindspore.parallel.merge_pipeline_strategys`
joins them, prefixing each name with its stage (`"1-layers.3.w"`); rank `r` belongs to stage
`r // ranks per stage`. Both the joined file and the stages' own files (a folder of them) are read here.

The files are parsed by their wire format, without MindSpore, and every number is checked before use.
"""

from __future__ import annotations

import math
import mmap
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automap._errors import CheckpointFormatError
from automap._json import loads
from automap._text import shown

from ._framework import MAX_NDIM, check_name
from ._sniff import open_regular
from .mindspore import _CorruptError, _read_key, _read_length, _read_varint, _skip

__all__ = ["Layout", "LayoutError", "Strategy", "is_strategy_file", "read_strategy"]

_MAX_FILE = 256 * 1024 * 1024  # bytes; a strategy for 100,000 parameters takes a few MB
_MAX_DEVICES = 1 << 24  # ranks in one stage
_MAX_STAGES = 1 << 12  # pipeline stages
_STAGE_NAME = re.compile(r"(\d{1,6})-(.+)", re.DOTALL)


class LayoutError(Exception):
    """A layout that cannot describe the slices a rank holds; the caller names the parameter and rank."""


@dataclass(frozen=True)
class Layout:
    """How one parameter is cut over the ranks of one pipeline stage (see the module docstring)."""

    dev_matrix: tuple[int, ...]
    tensor_map: tuple[tuple[int, ...], ...]  # per tensor axis, the device axes cutting it, outer first
    opt_shard_size: int = 0
    opt_shard_step: int = 0
    split_sizes: tuple[int, ...] = ()
    split_offsets: tuple[int, ...] = ()
    field: int = 0
    full_shape: tuple[int, ...] | None = None  # JSON files record it

    @property
    def devices(self) -> int:
        """Ranks in the stage."""
        return math.prod(self.dev_matrix)

    def parts(self) -> tuple[int, ...]:
        """Into how many parts model parallelism cuts each tensor axis."""
        return tuple(math.prod(self._axis_size(k) for k in axes) for axes in self.tensor_map)

    def full(self, piece: tuple[int, ...]) -> tuple[int, ...]:
        """The full tensor's shape, from the shape of the slice a rank holds."""
        self._check(piece)
        parts = self.parts()
        full = [p * n for p, n in zip(piece, parts, strict=True)]
        if full:
            full[0] = sum(self.split_sizes) if self.split_sizes else full[0] * self._opt_parts()
        return tuple(full)

    def region(self, rank: int, full: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Where the slice held by `rank` (counted within the stage) lies in the full tensor: offsets and shape."""
        self._check(full)
        coords = self._coordinates(rank)
        offsets: list[int] = []
        shape: list[int] = []
        for axis, (axes, parts, size) in enumerate(zip(self.tensor_map, self.parts(), full, strict=True)):
            index = 0
            for k in axes:
                index = index * self._axis_size(k) + coords[len(self.dev_matrix) - 1 - k]
            if axis == 0 and self.split_sizes:
                start, length = self._uneven(index, size)
            else:
                if size % parts:
                    msg = f"axis {axis} of length {size} cannot be cut into {parts} equal parts"
                    raise LayoutError(msg)
                start, length = index * (size // parts), size // parts
            offsets.append(start)
            shape.append(length)
        opt = self._opt_parts()
        if opt > 1 and shape:
            if shape[0] % opt:
                msg = f"a slice of {shape[0]} rows cannot be cut into {opt} optimizer-parallel parts"
                raise LayoutError(msg)
            shape[0] //= opt
            offsets[0] += self._opt_index(coords) * shape[0]
        return tuple(offsets), tuple(shape)

    def _axis_size(self, axis: int) -> int:
        return self.dev_matrix[len(self.dev_matrix) - 1 - axis]

    def _coordinates(self, rank: int) -> list[int]:
        coords = [0] * len(self.dev_matrix)
        for i in reversed(range(len(self.dev_matrix))):
            rank, coords[i] = divmod(rank, self.dev_matrix[i])
        return coords

    def _repeated(self) -> list[int]:
        """Device-matrix positions (outer first) of the axes that cut nothing: ranks along them hold one slice."""
        used = {len(self.dev_matrix) - 1 - k for axes in self.tensor_map for k in axes}
        return [i for i in range(len(self.dev_matrix)) if i not in used]

    def _opt_parts(self) -> int:
        if self.opt_shard_size == 0 or self.opt_shard_step == 0:
            return 1
        group = math.prod(self.dev_matrix[i] for i in self._repeated())
        parts = group if self.opt_shard_size == -1 else self.opt_shard_size
        if group % parts:
            msg = f"{group} ranks holding one slice cannot form optimizer-parallel groups of {parts}"
            raise LayoutError(msg)
        return parts

    def _opt_index(self, coords: list[int]) -> int:
        """Which part of its slice a rank keeps: its place among the ranks holding that slice, within its group."""
        place = 0
        for i in self._repeated():
            place = place * self.dev_matrix[i] + coords[i]
        return place % self._opt_parts()

    def _uneven(self, index: int, size: int) -> tuple[int, int]:
        if index >= len(self.split_sizes):
            msg = f"param_split_shape lists {len(self.split_sizes)} parts, the layout cuts {index + 1} or more"
            raise LayoutError(msg)
        start = self.split_offsets[index] if self.split_offsets else sum(self.split_sizes[:index])
        return start, self.split_sizes[index]

    def _check(self, shape: tuple[int, ...]) -> None:
        if self.field:
            msg = f"the layout uses an embedding field split (field {self.field}), which automap does not merge"
            raise LayoutError(msg)
        if len(shape) != len(self.tensor_map):
            msg = f"the layout maps {len(self.tensor_map)} tensor axes, the slice has {len(shape)}"
            raise LayoutError(msg)
        if self.split_sizes and any(p != 1 for p in self.parts()[1:]):
            msg = "an uneven cut of axis 0 together with cuts of other axes is not supported"
            raise LayoutError(msg)


@dataclass(frozen=True)
class Strategy:
    """Every layout of a distributed checkpoint: per parameter name, per pipeline stage.

    Attributes:
        layouts: name -> stage -> layout.
        stage_ranks: ranks per pipeline stage.
        stages: how many pipeline stages the files describe.
        files: the strategy files read.
    """

    layouts: Mapping[str, Mapping[int, Layout]]
    stage_ranks: int
    stages: int
    files: tuple[Path, ...]


def is_strategy_file(path: Path) -> bool:
    """True for a file whose content is a strategy MindSpore writes (protobuf or JSON); never raises."""
    try:
        size = path.stat().st_size
        if not path.is_file() or not 0 < size <= _MAX_FILE:
            return False
        with path.open("rb") as handle:
            head = handle.read(1)
        if head == b"{":
            return "parallel_layout_item" in _load_json(path)
        if head != b"\x08":  # field 1 (current_stage) comes first; a .ckpt starts with 0x0a
            return False
        return bool(_read_protobuf(path)[1])
    except (CheckpointFormatError, OSError):
        return False


def read_strategy(files: Sequence[Path]) -> Strategy:
    """The layouts of one or more strategy files (a joined file, or the files of the pipeline stages).

    Raises:
        CheckpointFormatError: a file is unreadable or corrupt, two files disagree on a parameter of one stage,
            or the stages hold different numbers of ranks.
    """
    layouts: dict[str, dict[int, Layout]] = {}
    for file in files:
        stage, found = _read_file(file)
        joined = bool(found) and all(_STAGE_NAME.fullmatch(name) for name in found)
        for raw_name, layout in found.items():
            name, at = raw_name, stage
            if joined:
                matched = _STAGE_NAME.fullmatch(raw_name)
                assert matched is not None  # checked above
                at, name = int(matched.group(1)), matched.group(2)
            if not 0 <= at < _MAX_STAGES:
                msg = f"{str(file)!r}: pipeline stage {at} of parameter {shown(name)} is beyond any real pipeline"
                raise CheckpointFormatError(msg)
            check_name(str(file), name)
            known = layouts.setdefault(name, {})
            if known.get(at, layout) != layout:
                msg = f"{str(file)!r}: parameter {shown(name)} has another layout in stage {at} than in other files"
                raise CheckpointFormatError(msg)
            known[at] = layout
    ranks = {layout.devices for by_stage in layouts.values() for layout in by_stage.values()}
    if len(ranks) > 1:
        msg = (
            f"{str(files[0])!r}: the layouts span different numbers of ranks ({sorted(ranks)[:4]}); "
            "a pipeline stage's ranks must be the same for all its parameters"
        )
        raise CheckpointFormatError(msg)
    stages = {at for by_stage in layouts.values() for at in by_stage}
    if stages and stages != set(range(max(stages) + 1)):
        absent = min(set(range(max(stages) + 1)) - stages)
        msg = (
            f"{str(files[0])!r}: the strategy describes pipeline stages {sorted(stages)[:8]} but not stage {absent}; "
            "give the strategy files of every stage"
        )
        raise CheckpointFormatError(msg)
    return Strategy(layouts, ranks.pop() if ranks else 1, max(stages, default=0) + 1, tuple(files))


def _read_file(file: Path) -> tuple[int, dict[str, Layout]]:
    size = open_regular(file)
    if size > _MAX_FILE:
        msg = f"{str(file)!r}: {size} bytes is more than any strategy file holds; refused"
        raise CheckpointFormatError(msg)
    with file.open("rb") as handle:
        first = handle.read(1)
    return _read_json(file) if first == b"{" else _read_protobuf(file)


# --- protobuf -------------------------------------------------------------------------------------------------


def _read_protobuf(file: Path) -> tuple[int, dict[str, Layout]]:
    """The stage and layouts of a `ParallelStrategyMap` message."""
    with file.open("rb") as handle:
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        stages: list[int] = []
        current = 0
        layouts: dict[str, Layout] = {}
        for field, value in _fields(data, 0, len(data)):
            if field == 1 and isinstance(value, int):
                current = value
            elif field == 2 and isinstance(value, tuple):
                stages.extend(_item_stage(data, *value))
            elif field == 3 and isinstance(value, tuple):
                name, layout = _layout_item(data, *value)
                if name in layouts:
                    msg = f"parameter {shown(name)} has two layouts"
                    raise _CorruptError(msg)
                layouts[name] = layout
        return (stages[0] if stages else current), layouts
    except _CorruptError as error:
        msg = f"{str(file)!r}: not a valid MindSpore strategy file: {error}"
        raise CheckpointFormatError(msg) from None
    finally:
        data.close()


_Value = int | tuple[int, int]  # a varint, or the span of a length-delimited field


def _fields(data: mmap.mmap, pos: int, end: int) -> list[tuple[int, _Value]]:
    """The fields of one message: varints as numbers, length-delimited fields as (start, end) spans."""
    out: list[tuple[int, _Value]] = []
    while pos < end:
        field, wire, pos = _read_key(data, pos, end)
        if wire == 0:
            value, pos = _read_varint(data, pos, end)
            out.append((field, value))
        elif wire == 2:
            length, pos = _read_length(data, pos, end)
            out.append((field, (pos, pos + length)))
            pos += length
        else:
            pos = _skip(data, wire, pos, end)
    return out


def _numbers(data: mmap.mmap, start: int, end: int, *, signed: bool) -> list[int]:
    """The repeated `dim` (field 1) of a DevMatrix/TensorMap/... message, packed or not."""
    values: list[int] = []
    for field, value in _fields(data, start, end):
        if field != 1:
            continue
        if isinstance(value, int):
            values.append(value)
        else:
            pos, stop = value
            while pos < stop:
                number, pos = _read_varint(data, pos, stop)
                values.append(number)
    return [v - (1 << 64) if signed and v >= 1 << 63 else v for v in values]


def _text(data: mmap.mmap, span: tuple[int, int]) -> str:
    try:
        return bytes(data[span[0] : span[1]]).decode("utf-8")
    except UnicodeDecodeError:
        msg = f"a name at byte {span[0]} is not valid UTF-8"
        raise _CorruptError(msg) from None


def _item_stage(data: mmap.mmap, start: int, end: int) -> list[int]:
    for field, value in _fields(data, start, end):
        if field == 2 and isinstance(value, tuple):
            return [v for f, v in _fields(data, *value) if f == 1 and isinstance(v, int)][:1]
    return []


def _layout_item(data: mmap.mmap, start: int, end: int) -> tuple[str, Layout]:
    name: str | None = None
    layout: Layout | None = None
    for field, value in _fields(data, start, end):
        if field == 1 and isinstance(value, tuple):
            name = _text(data, value)
        elif field == 2 and isinstance(value, tuple):
            layout = _layouts(data, *value)
    if name is None or layout is None:
        msg = f"a layout entry at byte {start} lacks its name or layout"
        raise _CorruptError(msg)
    return name, layout


def _layouts(data: mmap.mmap, start: int, end: int) -> Layout:
    lists: dict[int, list[list[int]]] = {1: [], 2: [], 3: [], 4: []}
    scalars = {5: 0, 6: 0, 7: 0}
    for field, value in _fields(data, start, end):
        if field in lists and isinstance(value, tuple):
            lists[field].append(_numbers(data, *value, signed=field != 1))
        elif field in scalars and isinstance(value, int):
            scalars[field] = value - (1 << 64) if value >= 1 << 63 else value
    if not lists[1]:
        msg = f"a layout at byte {start} has no device matrix"
        raise _CorruptError(msg)
    maps = lists[2]
    if len(maps) == 1:
        tensor_map: list[Any] = maps[0]  # one device axis (or -1) per tensor axis
    else:  # a Layout: one list of device axes per tensor axis; an empty list only pads a 1-axis map
        tensor_map = [m for m in maps if m]
    sizes, offsets = (lists[key][0] if lists[key] else [] for key in (3, 4))
    try:
        return _layout(lists[1][0], tensor_map, scalars[7], scalars[6], sizes, offsets, scalars[5], None)
    except ValueError as error:
        raise _CorruptError(str(error)) from None


# --- JSON -----------------------------------------------------------------------------------------------------


def _load_json(file: Path) -> dict[str, Any]:
    try:
        document = loads(file.read_bytes())
    except (ValueError, RecursionError, OSError):
        msg = f"{str(file)!r}: not valid JSON"
        raise CheckpointFormatError(msg) from None
    if not isinstance(document, dict):
        msg = f"{str(file)!r}: not a MindSpore strategy file (no 'parallel_layout_item')"
        raise CheckpointFormatError(msg)
    return document


def _read_json(file: Path) -> tuple[int, dict[str, Layout]]:
    document = _load_json(file)
    items = document.get("parallel_layout_item")
    if not isinstance(items, dict):
        msg = f"{str(file)!r}: not a MindSpore strategy file (no 'parallel_layout_item')"
        raise CheckpointFormatError(msg)
    nodes = document.get("parallel_strategy_item")
    stages = [v.get("stage") for v in nodes.values() if isinstance(v, dict)] if isinstance(nodes, dict) else []
    stage = stages[0] if stages and type(stages[0]) is int else document.get("current_stage", 0)
    layouts: dict[str, Layout] = {}
    for name, item in items.items():
        if not isinstance(item, dict):
            msg = f"{str(file)!r}: the layout of {shown(name)} is not an object"
            raise CheckpointFormatError(msg)
        try:
            layouts[name] = _layout(
                item.get("dev_matrix"),
                item.get("tensor_map"),
                item.get("opt_weight_shard_size", 0),
                item.get("opt_weight_shard_step", 0),
                item.get("param_split_shape", []),
                item.get("indices_offset", []),
                item.get("field", 0),
                item.get("tensor_shape"),
            )
        except ValueError as error:
            msg = f"{str(file)!r}: the layout of {shown(name)} is malformed: {error}"
            raise CheckpointFormatError(msg) from None
    return (stage if type(stage) is int and stage >= 0 else 0), layouts


# --- checks shared by both ------------------------------------------------------------------------------------


def _layout(
    dev_matrix: Any,
    tensor_map: Any,
    opt_size: Any,
    opt_step: Any,
    split_sizes: Any,
    split_offsets: Any,
    field: Any,
    full_shape: Any,
) -> Layout:
    """A Layout from untrusted values, or ValueError saying what is wrong."""
    devices = _ints(dev_matrix, "dev_matrix", low=1)
    if not devices or len(devices) > MAX_NDIM or math.prod(devices) > _MAX_DEVICES:
        msg = f"dev_matrix {list(devices)[:8]} does not describe a cluster"
        raise ValueError(msg)
    if not isinstance(tensor_map, list) or len(tensor_map) > MAX_NDIM:
        msg = "tensor_map is not a list of axes"
        raise ValueError(msg)
    axes_per_dim: list[tuple[int, ...]] = []
    used: set[int] = set()
    for entry in tensor_map:
        listed = _ints(entry if isinstance(entry, list) else [entry], "tensor_map", low=-1)
        axes = tuple(a for a in listed if a != -1)
        if any(a >= len(devices) or a in used for a in axes) or len(set(axes)) != len(axes):
            msg = f"tensor_map names device axis {list(axes)} of a {len(devices)}-axis dev_matrix twice or not at all"
            raise ValueError(msg)
        used.update(axes)
        axes_per_dim.append(axes)
    sizes = _ints(split_sizes, "param_split_shape", low=0)
    offsets = _ints(split_offsets, "indices_offset", low=0)
    if offsets and len(offsets) != len(sizes):
        msg = "param_split_shape and indices_offset differ in length"
        raise ValueError(msg)
    shape = None if full_shape is None else _ints(full_shape, "tensor_shape", low=0)
    for value, what in ((opt_size, "opt_weight_shard_size"), (opt_step, "opt_weight_shard_step"), (field, "field")):
        if type(value) is not int or not -1 <= value <= _MAX_DEVICES:
            msg = f"{what} is {value!r}"
            raise ValueError(msg)
    return Layout(devices, tuple(axes_per_dim), opt_size, opt_step, sizes, offsets, field, shape)


def _ints(values: Any, what: str, *, low: int) -> tuple[int, ...]:
    if not isinstance(values, list) or not all(type(v) is int and low <= v < 1 << 62 for v in values):
        msg = f"{what} is not a list of integers >= {low}"
        raise ValueError(msg)
    return tuple(values)
