"""Probe inputs for running networks: parse `SHAPE[:DTYPE[:LOW-HIGH]]` specs and make matching random arrays.

A spec is what a person types after `--input`: `1x3x224x224` (float32), `1x3x224x224:float16`, or integer
token ids with a range `1x16:int64:0-1000` (low inclusive, high exclusive). Parsing is pure string work;
`make_input` draws the values from a numpy generator, so the same seed gives the same input on every run.
Both frameworks receive the same numpy array. `make_inputs` turns what a caller gives (arrays, specs, spec
strings) into arrays; `guess_input` proposes a spec from the kind of a PyTorch model's first layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from automap._advice import option
from automap._errors import AutomapError
from automap._types import Array

__all__ = ["InputSpec", "ProbeInput", "guess_input", "make_input", "make_inputs", "parse_input_spec"]

_FLOATS = ("float32", "float16", "float64")
_INTS = ("int64", "int32", "int16", "int8", "uint8")
_DTYPES = (*_FLOATS, *_INTS, "bool")
_MAX_ELEMENTS = 1 << 28  # 1 GiB of float32: a probe, not a dataset
_DEFAULT_INT_RANGE = (0, 10)
_NUMBER = r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER})(?:-|\.\.)({_NUMBER})$")


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One network input: its shape, element type and the range random values are drawn from.

    Attributes:
        shape: the array's shape, every dimension at least 1.
        dtype: a numpy dtype name (float32, float16, float64, int64, int32, int16, int8, uint8, bool).
        low: lower bound of the values (inclusive); None for the default (standard normal floats, 0 for ints).
        high: upper bound (exclusive for integers); None for the default.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float | None = None
    high: float | None = None

    def __str__(self) -> str:
        text = "x".join(str(d) for d in self.shape) + f":{self.dtype}"
        if self.low is not None and self.high is not None:
            text += f":{_number(self.low)}-{_number(self.high)}"
        return text


ProbeInput = Array | InputSpec | str
"""One input as a caller gives it: an array as it is, a spec, or a spec string such as "1x16:int64:0-1000"."""


def parse_input_spec(text: str) -> InputSpec:
    """Parse one input spec.

    Args:
        text: `SHAPE[:DTYPE[:LOW-HIGH]]`, the shape's dimensions joined by `x` (`1x3x224x224`). The dtype
            defaults to float32; integer inputs take values in `[LOW, HIGH)` (default 0-10), float inputs
            are uniform in `[LOW, HIGH)` when a range is given, standard normal otherwise.

    Returns:
        The parsed spec.

    Raises:
        AutomapError: the spec is malformed; the message shows the expected form.

    Example:
        >>> parse_input_spec("1x16:int64:0-1000")
        InputSpec(shape=(1, 16), dtype='int64', low=0.0, high=1000.0)
    """
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or not parts[0]:
        _bad(text, "expected SHAPE[:DTYPE[:LOW-HIGH]]")
    dims = parts[0].lower().replace(",", "x").split("x")
    if not all(d.isdigit() and int(d) > 0 for d in dims):
        _bad(text, f"the shape {parts[0]!r} must be positive integers joined by 'x', like 1x3x224x224")
    shape = tuple(int(d) for d in dims)
    if math.prod(shape) > _MAX_ELEMENTS:
        _bad(text, f"{math.prod(shape):,} elements is too large for a probe input")
    dtype = parts[1].strip().lower() if len(parts) > 1 and parts[1].strip() else "float32"
    if dtype not in _DTYPES:
        _bad(text, f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
    low = high = None
    if len(parts) == 3:
        found = _RANGE.match(parts[2].strip())
        if found is None:
            _bad(text, f"the range {parts[2]!r} must look like LOW-HIGH, e.g. 0-1000")
        low, high = float(found.group(1)), float(found.group(2))
        if dtype != "bool" and not low < high:
            _bad(text, f"the range {parts[2]!r} is empty; LOW must be below HIGH")
        if dtype in _INTS and not (low.is_integer() and high.is_integer()):
            _bad(text, f"an integer input needs an integer range, got {parts[2]!r}")
        if dtype in _INTS and not _fits(dtype, low, high):
            _bad(text, f"the range {parts[2]!r} does not fit {dtype}")
    return InputSpec(shape, dtype, low, high)


def make_input(spec: InputSpec, rng: np.random.Generator) -> Array:
    """Draw a random array for a spec.

    Args:
        spec: the input's shape, dtype and range.
        rng: the random generator; the same seed gives the same array.

    Returns:
        A C-contiguous numpy array of `spec.shape` and `spec.dtype`.

    Example:
        >>> make_input(parse_input_spec("2x3:int64:0-5"), np.random.default_rng(0)).shape
        (2, 3)
    """
    if spec.dtype in _INTS:
        low, high = _DEFAULT_INT_RANGE if spec.low is None or spec.high is None else (spec.low, spec.high)
        ints = rng.integers(int(low), int(high), size=spec.shape, dtype=np.int64)
        return np.ascontiguousarray(ints.astype(spec.dtype))
    if spec.dtype == "bool":
        return np.ascontiguousarray(rng.random(spec.shape) < 0.5)
    if spec.low is None or spec.high is None:
        values = rng.standard_normal(spec.shape)
    else:
        values = rng.uniform(spec.low, spec.high, size=spec.shape)
    return np.ascontiguousarray(values.astype(spec.dtype))


def make_inputs(inputs: Sequence[ProbeInput], rng: np.random.Generator) -> tuple[list[Array], list[str]]:
    """The arrays for given inputs (arrays as they are, specs filled from `rng` in turn) and how each was made.

    Raises:
        AutomapError: a spec string is malformed.
    """
    arrays: list[Array] = []
    described: list[str] = []
    for value in inputs:
        if isinstance(value, np.ndarray):
            arrays.append(value)
            described.append("x".join(str(d) for d in value.shape) + f":{value.dtype} (given array)")
        else:
            spec = parse_input_spec(value) if isinstance(value, str) else value
            arrays.append(make_input(spec, rng))
            described.append(str(spec))
    return arrays, described


def guess_input(torch_module: object) -> InputSpec:
    """An input for a PyTorch model, from the kind of its first layer with parameters.

    Raises:
        AutomapError: the first layer is of a kind whose input cannot be guessed.
    """
    if not hasattr(torch_module, "named_modules"):
        msg = f"a {type(torch_module).__name__} is not a torch.nn.Module"
        raise AutomapError(msg)
    modules: Any = torch_module.named_modules()
    first: Any = next((m for _, m in modules if any(True for _ in m.parameters(recurse=False))), None)
    kind = type(first).__name__ if first is not None else ""
    if kind in ("Conv1d", "Conv2d", "Conv3d"):
        return InputSpec((1, first.in_channels, *(32,) * int(kind[4])))
    if kind == "Linear":
        return InputSpec((1, first.in_features))
    if kind == "Embedding":
        return InputSpec((1, 16), "int64", 0, first.num_embeddings)
    if kind == "LayerNorm":
        return InputSpec((1, 4, *first.normalized_shape))
    found = f"its first layer is a {kind}" if kind else "it has no layer with parameters"
    msg = (
        f"cannot guess the input of the {type(torch_module).__name__} model ({found}); give it with "
        f"{option('inputs', ['SHAPE:DTYPE'])}, e.g. {option('inputs', ['1x3x224x224:float32'])} or "
        f"{option('inputs', ['1x16:int64:0-1000'])}"
    )
    raise AutomapError(msg)


def _fits(dtype: str, low: float, high: float) -> bool:
    info = np.iinfo(np.dtype(dtype))
    return info.min <= low and high - 1 <= info.max


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _bad(text: str, reason: str) -> NoReturn:
    msg = f"input spec {text!r}: {reason}"
    raise AutomapError(msg)
