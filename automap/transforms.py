"""Layout transforms a mapped pair may need, as readable JSON steps applied in order.

A step is a small JSON object. With one source tensor the steps apply to it in order; with several sources
(a target made by concatenating parts) the first step must be `concat`. Steps:

- `{"op": "transpose"}` (reverse the axes; the 2-D transpose) or `{"op": "transpose", "axes": [1, 0, 2]}`
- `{"op": "reshape", "shape": [64, 3, 1, 7]}` (same number of elements)
- `{"op": "unsqueeze", "axis": 2}`, `{"op": "squeeze", "axis": 2}` (Conv1d `[O,I,k]` <-> `[O,I,1,k]`)
- `{"op": "split", "axis": 0, "parts": 3, "index": 1}` (the index-th of `parts` equal pieces; fused `qkv` -> `k`)
- `{"op": "concat", "axis": 0}` (join the sources, in the listed order)
- `{"op": "reorder", "axis": 0, "parts": 4, "order": [0, 1, 3, 2]}` (permute equal chunks, e.g. RNN gates)

Shapes can be computed without data (`output_shape`), so a mapping is validated before anything is read.
Bad steps (an axis out of range, a split that does not divide) raise `MappingFileError` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._errors import MappingFileError
from ._text import brief
from ._types import Array

__all__ = ["Step", "apply_steps", "describe", "inverse_steps", "output_shape", "parse_steps"]

Step = Mapping[str, Any]
Shape = tuple[int, ...]

_KEYS: dict[str, set[str]] = {
    "transpose": {"axes"},
    "reshape": {"shape"},
    "unsqueeze": {"axis"},
    "squeeze": {"axis"},
    "split": {"axis", "parts", "index"},
    "concat": {"axis"},
    "reorder": {"axis", "parts", "order"},
}
_REQUIRED: dict[str, set[str]] = {
    "transpose": set(),
    "reshape": {"shape"},
    "unsqueeze": {"axis"},
    "squeeze": {"axis"},
    "split": {"axis", "parts", "index"},
    "concat": set(),
    "reorder": {"axis", "parts", "order"},
}
_MAX_STEPS = 16


def parse_steps(raw: Any, *, where: str = "transform") -> tuple[Step, ...]:
    """Check untrusted JSON steps and return them; `None` or `[]` mean no transform.

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
        if not isinstance(op, str) or op not in _KEYS:
            msg = f"{where}: unknown step {brief(step)}; known ops: {', '.join(_KEYS)}"
            raise MappingFileError(msg)
        keys = set(step) - {"op"}
        if not keys <= _KEYS[op] or not _REQUIRED[op] <= keys:
            msg = f"{where}: step {op!r} takes {sorted(_KEYS[op]) or 'no arguments'}, got {brief(sorted(keys))}"
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
        steps.append(dict(step))
    return tuple(steps)


def output_shape(shapes: Sequence[Shape], steps: Sequence[Step], *, where: str = "transform") -> Shape:
    """The shape `apply_steps` would produce from sources of these shapes, without touching data.

    Raises:
        MappingFileError: a step cannot apply to the shape it receives.
    """
    shapes = [tuple(s) for s in shapes]
    steps = list(steps)
    if len(shapes) != 1 and (not steps or steps[0]["op"] != "concat"):
        msg = f"{where}: {len(shapes)} sources need a first step {{'op': 'concat', 'axis': ...}}"
        raise MappingFileError(msg)
    current: Shape = shapes[0]
    for number, step in enumerate(steps):
        current = _step_shape(shapes if number == 0 else [current], step, f"{where} step {number + 1}")
    return current


def apply_steps(arrays: Sequence[Array], steps: Sequence[Step]) -> Array:
    """Apply the steps to the source array(s); the result is C-contiguous and keeps the storage dtype."""
    output_shape([a.shape for a in arrays], steps)  # validates before any copy
    current = arrays[0]
    for number, step in enumerate(steps):
        op = step["op"]
        if op == "concat":
            current = np.concatenate(list(arrays) if number == 0 else [current], axis=step.get("axis", 0))
        elif op == "transpose":
            current = np.transpose(current, step.get("axes"))
        elif op == "reshape":
            current = current.reshape(step["shape"])
        elif op == "unsqueeze":
            current = np.expand_dims(current, step["axis"])
        elif op == "squeeze":
            current = np.squeeze(current, axis=step["axis"])
        elif op == "split":
            current = np.split(current, step["parts"], axis=step["axis"])[step["index"]]
        elif op == "reorder":
            chunks = np.split(current, step["parts"], axis=step["axis"])
            current = np.concatenate([chunks[i] for i in step["order"]], axis=step["axis"])
    # np.ascontiguousarray would turn a 0-d scalar into shape (1,)
    return current if current.flags.c_contiguous else current.copy(order="C")


def inverse_steps(shapes: Sequence[Shape], steps: Sequence[Step]) -> tuple[Step, ...] | None:
    """Steps undoing `steps` for a single source of `shapes[0]`, or None when they lose information.

    `split` keeps only one part, so it has no single-tensor inverse; the reverse direction of a split is a
    `concat` of all parts, which the caller builds from the whole group.
    """
    if len(shapes) != 1:
        return None
    inverse: list[Step] = []
    current = tuple(shapes[0])
    for step in steps:
        op = step["op"]
        before = current
        current = _step_shape([current], step, "transform")
        if op == "transpose":
            axes = [a % len(before) for a in step["axes"]] if step.get("axes") else list(reversed(range(len(before))))
            inverse.append({"op": "transpose", "axes": [int(i) for i in np.argsort(axes)]})
        elif op in ("reshape", "unsqueeze", "squeeze"):
            inverse.append({"op": "reshape", "shape": list(before)})
        elif op == "reorder":
            inverse.append({**step, "order": [int(i) for i in np.argsort(step["order"])]})
        else:
            return None
    return tuple(reversed(inverse))


def describe(steps: Sequence[Step]) -> str:
    """A short human-readable rendering: `split(0, 3)[1] -> transpose`."""
    parts = []
    for step in steps:
        op = step["op"]
        if op == "split":
            parts.append(f"split(axis {step['axis']}, {step['parts']} parts)[{step['index']}]")
        elif op == "transpose":
            parts.append("transpose" + (f"{tuple(step['axes'])}" if step.get("axes") else ""))
        elif op in ("unsqueeze", "squeeze", "concat"):
            parts.append(f"{op}(axis {step.get('axis', 0)})")
        elif op == "reshape":
            parts.append(f"reshape{tuple(step['shape'])}")
        else:
            parts.append(f"reorder(axis {step['axis']}, {step['order']})")
    return " -> ".join(parts)


def _axis(axis: int, ndim: int, where: str) -> int:
    if not -ndim <= axis < ndim:
        msg = f"{where}: axis {axis} is out of range for a {ndim}-D tensor"
        raise MappingFileError(msg)
    return axis % ndim


def _step_shape(shapes: Sequence[Shape], step: Step, where: str) -> Shape:
    op = step["op"]
    shape = shapes[0]
    if op == "concat":
        axis = _axis(step.get("axis", 0), len(shape), where)
        if any(len(s) != len(shape) or s[:axis] + s[axis + 1 :] != shape[:axis] + shape[axis + 1 :] for s in shapes):
            msg = f"{where}: cannot concatenate shapes {[list(s) for s in shapes]} along axis {axis}"
            raise MappingFileError(msg)
        return (*shape[:axis], sum(s[axis] for s in shapes), *shape[axis + 1 :])
    if op == "transpose":
        axes = step.get("axes")
        if axes is None:
            return tuple(reversed(shape))
        ndim = len(shape)
        if len(axes) != ndim or any(not -ndim <= a < ndim for a in axes) or len({a % ndim for a in axes}) != ndim:
            msg = f"{where}: axes {axes} are not a permutation of the {ndim} axes"
            raise MappingFileError(msg)
        return tuple(shape[a] for a in axes)
    if op == "reshape":
        new = tuple(step["shape"])
        if any(d < 0 for d in new) or math.prod(new) != math.prod(shape):
            msg = f"{where}: cannot reshape {list(shape)} to {list(new)}"
            raise MappingFileError(msg)
        return new
    if op == "unsqueeze":
        axis = _axis(step["axis"], len(shape) + 1, where)
        return (*shape[:axis], 1, *shape[axis:])
    if op == "squeeze":
        axis = _axis(step["axis"], len(shape), where)
        if shape[axis] != 1:
            msg = f"{where}: cannot squeeze axis {axis} of length {shape[axis]}"
            raise MappingFileError(msg)
        return shape[:axis] + shape[axis + 1 :]
    # split and reorder cut an axis into equal parts
    axis = _axis(step["axis"], len(shape), where)
    parts = step["parts"]
    if parts < 1 or shape[axis] % parts:
        msg = f"{where}: axis {axis} of length {shape[axis]} does not split into {parts} equal parts"
        raise MappingFileError(msg)
    if op == "split":
        if not 0 <= step["index"] < parts:
            msg = f"{where}: split index {step['index']} is not in 0..{parts - 1}"
            raise MappingFileError(msg)
        return (*shape[:axis], shape[axis] // parts, *shape[axis + 1 :])
    if sorted(step["order"]) != list(range(parts)):
        msg = f"{where}: reorder order {step['order']} is not a permutation of 0..{parts - 1}"
        raise MappingFileError(msg)
    return shape
