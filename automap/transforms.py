"""Layout transforms a mapped pair may need: typed steps applied in order, written to JSON as small objects.

One frozen dataclass per operation knows its output shape, how to apply itself to numpy arrays, its inverse,
its description and its JSON form. With one source tensor the steps apply to it in order; with several sources
(a target made by concatenating parts) the first step must be a `Concat`. In JSON:

- `{"op": "transpose"}` (reverse the axes; the 2-D transpose) or `{"op": "transpose", "axes": [1, 0, 2]}`
- `{"op": "reshape", "shape": [64, 3, 1, 7]}` (same number of elements)
- `{"op": "unsqueeze", "axis": 2}`, `{"op": "squeeze", "axis": 2}` (Conv1d `[O,I,k]` <-> `[O,I,1,k]`)
- `{"op": "split", "axis": 0, "parts": 3, "index": 1}` (the index-th of `parts` equal pieces; fused `qkv` -> `k`)
- `{"op": "concat", "axis": 0}` (join the sources, in the listed order)
- `{"op": "reorder", "axis": 0, "parts": 4, "order": [0, 1, 3, 2]}` (permute equal chunks, e.g. RNN gates)

JSON becomes steps in one place, `parse_steps`, which checks untrusted input; the registry of operations maps
each `op` name to its class. Shapes can be computed without data (`output_shape`), so a mapping is validated
before anything is read. Impossible steps (an axis out of range, a split that does not divide) raise
`MappingFileError` with the reason.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from ._errors import MappingFileError
from ._text import brief
from ._types import Array

__all__ = [
    "Concat",
    "Reorder",
    "Reshape",
    "Split",
    "Squeeze",
    "Step",
    "StepJSON",
    "Transpose",
    "Unsqueeze",
    "apply_steps",
    "describe",
    "inverse_steps",
    "output_shape",
    "parse_steps",
    "register_step",
]

Shape = tuple[int, ...]
StepJSON = dict[str, "str | int | list[int]"]
"""A step as written in a mapping file: `{"op": ..., arguments}`."""

_MAX_STEPS = 16


class _Op(ABC):
    """What every step can do; each concrete step, a frozen dataclass registered by its `op` name, fills the hooks."""

    __slots__ = ()
    op: ClassVar[str]
    arguments: ClassVar[tuple[str, ...]]  # JSON keys besides "op", in the order they are written
    required: ClassVar[frozenset[str]]

    def to_json(self) -> StepJSON:
        """The JSON object of this step, keys in their documented order."""
        return self._json()

    def output_shape(self, shapes: Sequence[Shape], where: str = "transform") -> Shape:
        """The shape this step makes of inputs of these shapes (only `Concat` takes several).

        Raises:
            MappingFileError: the step cannot apply to these shapes; the message starts with `where`.
        """
        return self._shape([tuple(s) for s in shapes], where)

    def apply(self, arrays: Sequence[Array]) -> Array:
        """Apply the step to its input array(s), whose shapes `output_shape` accepts."""
        return self._apply(arrays)

    def inverse(self, shape: Shape) -> Step | None:
        """The step undoing this one on an input of `shape`, or None when this step loses information."""
        return self._inverse(tuple(shape))

    def describe(self) -> str:
        """A short human-readable rendering, such as `split(axis 0, 3 parts)[1]`."""
        return self._text()

    @classmethod
    @abstractmethod
    def _from_json(cls, raw: Mapping[str, Any]) -> Step:
        """The step of a JSON object whose keys and value types `parse_steps` has checked."""

    @abstractmethod
    def _json(self) -> StepJSON: ...

    @abstractmethod
    def _shape(self, shapes: Sequence[Shape], where: str) -> Shape: ...

    @abstractmethod
    def _apply(self, arrays: Sequence[Array]) -> Array: ...

    @abstractmethod
    def _inverse(self, shape: Shape) -> Step | None: ...

    @abstractmethod
    def _text(self) -> str: ...


_OPS: dict[str, type[_Op]] = {}
_S = TypeVar("_S", bound=type[_Op])


def register_step(cls: _S) -> _S:
    """Register a step class under its `op` name, the name mapping files use.

    Raises:
        ValueError: another class already has this name.
    """
    if cls.op in _OPS:
        msg = f"a transform step named {cls.op!r} is already registered ({_OPS[cls.op].__name__})"
        raise ValueError(msg)
    _OPS[cls.op] = cls
    return cls


def _axis(axis: int, ndim: int, where: str) -> int:
    if not -ndim <= axis < ndim:
        msg = f"{where}: axis {axis} is out of range for a {ndim}-D tensor"
        raise MappingFileError(msg)
    return axis % ndim


def _equal_parts(shape: Shape, axis: int, parts: int, where: str) -> int:
    """The axis (made non-negative) once it is known to cut into `parts` equal pieces."""
    axis = _axis(axis, len(shape), where)
    if parts < 1 or shape[axis] % parts:
        msg = f"{where}: axis {axis} of length {shape[axis]} does not split into {parts} equal parts"
        raise MappingFileError(msg)
    return axis


@register_step
@dataclass(frozen=True, slots=True)
class Transpose(_Op):
    """Permute the axes; without `axes`, reverse them (the 2-D transpose)."""

    axes: tuple[int, ...] | None = None
    op: ClassVar[str] = "transpose"
    arguments: ClassVar[tuple[str, ...]] = ("axes",)
    required: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _from_json(cls, raw: Mapping[str, Any]) -> Step:
        return cls(tuple(raw["axes"]) if "axes" in raw else None)

    def _json(self) -> StepJSON:
        return {"op": self.op} if self.axes is None else {"op": self.op, "axes": list(self.axes)}

    def _shape(self, shapes: Sequence[Shape], where: str) -> Shape:
        shape = shapes[0]
        if self.axes is None:
            return tuple(reversed(shape))
        axes, ndim = self.axes, len(shape)
        if len(axes) != ndim or any(not -ndim <= a < ndim for a in axes) or len({a % ndim for a in axes}) != ndim:
            msg = f"{where}: axes {list(axes)} are not a permutation of the {ndim} axes"
            raise MappingFileError(msg)
        return tuple(shape[a] for a in axes)

    def _apply(self, arrays: Sequence[Array]) -> Array:
        return np.transpose(arrays[0], None if self.axes is None else list(self.axes))

    def _inverse(self, shape: Shape) -> Step | None:
        axes = [a % len(shape) for a in self.axes] if self.axes else list(reversed(range(len(shape))))
        return Transpose(tuple(int(i) for i in np.argsort(axes)))

    def _text(self) -> str:
        return "transpose" + (f"{tuple(self.axes)}" if self.axes else "")


@register_step
@dataclass(frozen=True, slots=True)
class Reshape(_Op):
    """Give the data another shape with the same number of elements."""

    shape: tuple[int, ...]
    op: ClassVar[str] = "reshape"
    arguments: ClassVar[tuple[str, ...]] = ("shape",)
    required: ClassVar[frozenset[str]] = frozenset(arguments)

    @classmethod
    def _from_json(cls, raw: Mapping[str, Any]) -> Step:
        return cls(tuple(raw["shape"]))

    def _json(self) -> StepJSON:
        return {"op": self.op, "shape": list(self.shape)}

    def _shape(self, shapes: Sequence[Shape], where: str) -> Shape:
        shape, new = shapes[0], tuple(self.shape)
        if any(d < 0 for d in new) or math.prod(new) != math.prod(shape):
            msg = f"{where}: cannot reshape {list(shape)} to {list(new)}"
            raise MappingFileError(msg)
        return new

    def _apply(self, arrays: Sequence[Array]) -> Array:
        return arrays[0].reshape(self.shape)

    def _inverse(self, shape: Shape) -> Step | None:
        return Reshape(tuple(shape))

    def _text(self) -> str:
        return f"reshape{tuple(self.shape)}"


@register_step
@dataclass(frozen=True, slots=True)
class Unsqueeze(_Op):
    """Insert an axis of length 1 at `axis` (of the output)."""

    axis: int
    op: ClassVar[str] = "unsqueeze"
    arguments: ClassVar[tuple[str, ...]] = ("axis",)
    required: ClassVar[frozenset[str]] = frozenset(arguments)

    @classmethod
    def _from_json(cls, raw: Mapping[str, Any]) -> Step:
        return cls(raw["axis"])

    def _json(self) -> StepJSON:
        return {"op": self.op, "axis": self.axis}

    def _shape(self, shapes: Sequence[Shape], where: str) -> Shape:
        shape = shapes[0]
        axis = _axis(self.axis, len(shape) + 1, where)
        return (*shape[:axis], 1, *shape[axis:])

    def _apply(self, arrays: Sequence[Array]) -> Array:
        return np.expand_dims(arrays[0], self.axis)

    def _inverse(self, shape: Shape) -> Step | None:
        return Reshape(tuple(shape))

    def _text(self) -> str:
        return f"unsqueeze(axis {self.axis})"


@register_step
@dataclass(frozen=True, slots=True)
class Squeeze(_Op):
    """Drop the axis `axis`, which must have length 1."""

    axis: int
    op: ClassVar[str] = "squeeze"
    arguments: ClassVar[tuple[str, ...]] = ("axis",)
    required: ClassVar[frozenset[str]] = frozenset(arguments)

    @classmethod
    def _from_json(cls, raw: Mapping[str, Any]) -> Step:
        return cls(raw["axis"])

    def _json(self) -> StepJSON:
        return {"op": self.op, "axis": self.axis}

    def _shape(self, shapes: Sequence[Shape], where: str) -> Shape:
        shape = shapes[0]
        axis = _axis(self.axis, len(shape), where)
        if shape[axis] != 1:
            msg = f"{where}: cannot squeeze axis {axis} of length {shape[axis]}"
            raise MappingFileError(msg)
        return shape[:axis] + shape[axis + 1 :]

    def _apply(self, arrays: Sequence[Array]) -> Array:
        return np.squeeze(arrays[0], axis=self.axis)

    def _inverse(self, shape: Shape) -> Step | None:
        return Reshape(tuple(shape))

    def _text(self) -> str:
        return f"squeeze(axis {self.axis})"


@register_step
@dataclass(frozen=True, slots=True)
class Split(_Op):
    """Keep the `index`-th of `parts` equal pieces along `axis` (a fused `qkv` -> its `k`)."""

    axis: int
    parts: int
    index: int
    op: ClassVar[str] = "split"
    arguments: ClassVar[tuple[str, ...]] = ("axis", "parts", "index")
    required: ClassVar[frozenset[str]] = frozenset(arguments)

    @classmethod
    def _from_json(cls, raw: Mapping[str, Any]) -> Step:
        return cls(raw["axis"], raw["parts"], raw["index"])

    def _json(self) -> StepJSON:
        return {"op": self.op, "axis": self.axis, "parts": self.parts, "index": self.index}

    def _shape(self, shapes: Sequence[Shape], where: str) -> Shape:
        shape = shapes[0]
        axis = _equal_parts(shape, self.axis, self.parts, where)
        if not 0 <= self.index < self.parts:
            msg = f"{where}: split index {self.index} is not in 0..{self.parts - 1}"
            raise MappingFileError(msg)
        return (*shape[:axis], shape[axis] // self.parts, *shape[axis + 1 :])

    def _apply(self, arrays: Sequence[Array]) -> Array:
        return np.split(arrays[0], self.parts, axis=self.axis)[self.index]

    def _inverse(self, shape: Shape) -> Step | None:
        return None  # a split keeps one piece; its reverse is a `Concat` of all pieces, built from the whole group

    def _text(self) -> str:
        return f"split(axis {self.axis}, {self.parts} parts)[{self.index}]"


@register_step
@dataclass(frozen=True, slots=True)
class Concat(_Op):
    """Join several sources along `axis`, in the listed order; always the first step."""

    axis: int = 0
    op: ClassVar[str] = "concat"
    arguments: ClassVar[tuple[str, ...]] = ("axis",)
    required: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _from_json(cls, raw: Mapping[str, Any]) -> Step:
        return cls(raw.get("axis", 0))

    def _json(self) -> StepJSON:
        return {"op": self.op, "axis": self.axis}

    def _shape(self, shapes: Sequence[Shape], where: str) -> Shape:
        shape = shapes[0]
        axis = _axis(self.axis, len(shape), where)
        if any(len(s) != len(shape) or s[:axis] + s[axis + 1 :] != shape[:axis] + shape[axis + 1 :] for s in shapes):
            msg = f"{where}: cannot concatenate shapes {[list(s) for s in shapes]} along axis {axis}"
            raise MappingFileError(msg)
        return (*shape[:axis], sum(s[axis] for s in shapes), *shape[axis + 1 :])

    def _apply(self, arrays: Sequence[Array]) -> Array:
        return np.concatenate(list(arrays), axis=self.axis)

    def _inverse(self, shape: Shape) -> Step | None:
        return None  # the parts' shapes are not known from the joined one

    def _text(self) -> str:
        return f"concat(axis {self.axis})"


@register_step
@dataclass(frozen=True, slots=True)
class Reorder(_Op):
    """Cut `axis` into `parts` equal chunks and put them in `order` (RNN gates stored in another order)."""

    axis: int
    parts: int
    order: tuple[int, ...]
    op: ClassVar[str] = "reorder"
    arguments: ClassVar[tuple[str, ...]] = ("axis", "parts", "order")
    required: ClassVar[frozenset[str]] = frozenset(arguments)

    @classmethod
    def _from_json(cls, raw: Mapping[str, Any]) -> Step:
        return cls(raw["axis"], raw["parts"], tuple(raw["order"]))

    def _json(self) -> StepJSON:
        return {"op": self.op, "axis": self.axis, "parts": self.parts, "order": list(self.order)}

    def _shape(self, shapes: Sequence[Shape], where: str) -> Shape:
        shape = shapes[0]
        _equal_parts(shape, self.axis, self.parts, where)
        if sorted(self.order) != list(range(self.parts)):
            msg = f"{where}: reorder order {list(self.order)} is not a permutation of 0..{self.parts - 1}"
            raise MappingFileError(msg)
        return shape

    def _apply(self, arrays: Sequence[Array]) -> Array:
        chunks = np.split(arrays[0], self.parts, axis=self.axis)
        return np.concatenate([chunks[i] for i in self.order], axis=self.axis)

    def _inverse(self, shape: Shape) -> Step | None:
        return Reorder(self.axis, self.parts, tuple(int(i) for i in np.argsort(self.order)))

    def _text(self) -> str:
        return f"reorder(axis {self.axis}, {list(self.order)})"


Step = Transpose | Reshape | Unsqueeze | Squeeze | Split | Concat | Reorder
"""One layout step."""


def parse_steps(raw: object, *, where: str = "transform") -> tuple[Step, ...]:
    """Check untrusted JSON steps and return them typed; `None` or `[]` mean no transform.

    Raises:
        MappingFileError: the steps are not a list of known operations with well-typed arguments.
    """
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > _MAX_STEPS:
        msg = f"{where}: must be null or a list of at most {_MAX_STEPS} steps like {{'op': 'transpose'}}"
        raise MappingFileError(msg)
    steps = []
    for step in raw:
        op = step.get("op") if isinstance(step, dict) else None
        if not isinstance(op, str) or op not in _OPS:
            msg = f"{where}: unknown step {brief(step)}; known ops: {', '.join(_OPS)}"
            raise MappingFileError(msg)
        kind = _OPS[op]
        keys = set(step) - {"op"}
        if not keys <= set(kind.arguments) or not kind.required <= keys:
            msg = f"{where}: step {op!r} takes {sorted(kind.arguments) or 'no arguments'}, got {brief(sorted(keys))}"
            raise MappingFileError(msg)
        for key in ("axis", "parts", "index"):
            if key in step and (type(step[key]) is not int or abs(step[key]) > 64):
                msg = f"{where}: {op!r} needs a small integer {key!r}, got {brief(step[key])}"
                raise MappingFileError(msg)
        for key in ("axes", "shape", "order"):
            value = step.get(key)
            if key in step and not (
                isinstance(value, list) and len(value) <= 64 and all(type(v) is int and abs(v) < 2**48 for v in value)
            ):
                msg = f"{where}: {op!r} needs {key!r} as a list of integers, got {brief(value)}"
                raise MappingFileError(msg)
        steps.append(kind._from_json(step))
    return tuple(steps)


def output_shape(shapes: Sequence[Shape], steps: Sequence[Step], *, where: str = "transform") -> Shape:
    """The shape `apply_steps` would produce from sources of these shapes, without touching data.

    Raises:
        MappingFileError: a step cannot apply to the shape it receives.
    """
    shapes = [tuple(s) for s in shapes]
    if len(shapes) != 1 and (not steps or not isinstance(steps[0], Concat)):
        msg = f"{where}: {len(shapes)} sources need a first step {{'op': 'concat', 'axis': ...}}"
        raise MappingFileError(msg)
    current: Shape = shapes[0]
    for number, step in enumerate(steps):
        current = step.output_shape(shapes if number == 0 else [current], f"{where} step {number + 1}")
    return current


def apply_steps(arrays: Sequence[Array], steps: Sequence[Step]) -> Array:
    """Apply the steps to the source array(s); the result is C-contiguous and keeps the storage dtype."""
    output_shape([a.shape for a in arrays], steps)  # validates before any copy
    current = arrays[0]
    for number, step in enumerate(steps):
        current = step.apply(arrays if number == 0 else [current])
    # np.ascontiguousarray would turn a 0-d scalar into shape (1,)
    return current if current.flags.c_contiguous else current.copy(order="C")


def inverse_steps(shapes: Sequence[Shape], steps: Sequence[Step]) -> tuple[Step, ...] | None:
    """Steps undoing `steps` for a single source of `shapes[0]`, or None when they lose information.

    `Split` keeps only one part, so it has no single-tensor inverse; the reverse direction of a split is a
    `Concat` of all parts, which the caller builds from the whole group.
    """
    if len(shapes) != 1:
        return None
    inverse: list[Step] = []
    current = tuple(shapes[0])
    for step in steps:
        before = current
        current = step.output_shape([current], "transform")
        undo = step.inverse(before)
        if undo is None:
            return None
        inverse.append(undo)
    return tuple(reversed(inverse))


def describe(steps: Sequence[Step]) -> str:
    """A short human-readable rendering: `split(axis 0, 3 parts)[1] -> transpose`."""
    return " -> ".join(step.describe() for step in steps)
