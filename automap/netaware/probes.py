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

__all__ = [
    "InputSpec",
    "ProbeInput",
    "TokenIds",
    "guess_input",
    "make_input",
    "make_inputs",
    "parse_input_spec",
    "token_ids",
]

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
            defaults to float32; integer inputs take values in `[LOW, HIGH)` (default: token ids of the models'
            vocabulary, or 0-10), float inputs are uniform in `[LOW, HIGH)` when a range is given, standard
            normal otherwise; `LOW-LOW` is a constant (`2x16:float32:1-1`, an attention mask of ones).

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
        if dtype != "bool" and not low <= high:
            _bad(text, f"the range {parts[2]!r} is empty; LOW must be below HIGH (or equal to it for a constant)")
        if dtype in _INTS and not (low.is_integer() and high.is_integer()):
            _bad(text, f"an integer input needs an integer range, got {parts[2]!r}")
        if dtype in _INTS and not _fits(dtype, low, high):
            _bad(text, f"the range {parts[2]!r} does not fit {dtype}")
    return InputSpec(shape, dtype, low, high)


@dataclass(frozen=True, slots=True)
class TokenIds:
    """Where integer inputs given without a range draw their values: token ids of the models' vocabulary.

    Attributes:
        high: the vocabulary size (ids are below it).
        avoid: special ids (padding, start, end, ...) that the models treat apart, never drawn.
        origin: where the figures come from, for the description of the inputs.
    """

    high: int
    avoid: frozenset[int] = frozenset()
    origin: str = ""

    def describe(self) -> str:
        """`ids below 128, avoiding 0, 1, 2 (the models' config)`."""
        avoided = ", ".join(str(i) for i in sorted(self.avoid)[:8]) + ("..." if len(self.avoid) > 8 else "")
        avoiding = f", avoiding {avoided}" if self.avoid else ""
        return f"ids below {self.high}{avoiding}" + (f" ({self.origin})" if self.origin else "")


def make_input(spec: InputSpec, rng: np.random.Generator, ids: TokenIds | None = None) -> Array:
    """Draw a random array for a spec.

    Args:
        spec: the input's shape, dtype and range.
        rng: the random generator; the same seed gives the same array.
        ids: for an integer spec without a range, the token ids to draw from (default: 0 to 9).

    Returns:
        A C-contiguous numpy array of `spec.shape` and `spec.dtype`.

    Example:
        >>> make_input(parse_input_spec("2x3:int64:0-5"), np.random.default_rng(0)).shape
        (2, 3)
    """
    if spec.low is not None and spec.low == spec.high:  # a constant, such as an attention mask of ones
        return np.full(spec.shape, spec.low, dtype=spec.dtype)
    if spec.dtype in _INTS:
        if (spec.low is None or spec.high is None) and ids is not None:
            allowed = np.setdiff1d(np.arange(ids.high, dtype=np.int64), np.array(sorted(ids.avoid), dtype=np.int64))
            if allowed.size:
                return np.ascontiguousarray(rng.choice(allowed, size=spec.shape).astype(spec.dtype))
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


def make_inputs(
    inputs: Sequence[ProbeInput], rng: np.random.Generator, ids: TokenIds | None = None
) -> tuple[list[Array], list[str]]:
    """The arrays for given inputs (arrays as they are, specs filled from `rng` in turn) and how each was made.

    Integer specs without a range draw from `ids` when given.

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
            arrays.append(make_input(spec, rng, ids))
            token = spec.dtype in _INTS and (spec.low is None or spec.high is None) and ids is not None
            described.append(f"{spec} ({ids.describe()})" if token and ids is not None else str(spec))
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
    if kind == "Embedding":  # token ids: their range comes from the models (see `TokenIds`)
        return InputSpec((1, 16), "int64")
    if kind == "LayerNorm":
        return InputSpec((1, 4, *first.normalized_shape))
    found = f"its first layer is a {kind}" if kind else "it has no layer with parameters"
    msg = (
        f"cannot guess the input of the {type(torch_module).__name__} model ({found}); give it with "
        f"{option('inputs', ['SHAPE:DTYPE'])}, e.g. {option('inputs', ['1x3x224x224:float32'])} or "
        f"{option('inputs', ['1x16:int64:0-1000'])}"
    )
    raise AutomapError(msg)


_SPECIAL_IDS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "unk_token_id",
    "sep_token_id",
    "cls_token_id",
    "mask_token_id",
    "decoder_start_token_id",
)


def token_ids(*models: object) -> TokenIds | None:
    """The token ids to probe the models with, from their configs (`config.vocab_size` and the special ids).

    The vocabulary is the smallest any model's config (or, without one, the PyTorch model's first embedding)
    gives; the special ids of every config are avoided: a padding id is masked differently by two ports, so
    correctly mapped models would disagree on it. None when no model says how large its vocabulary is.
    """
    sizes: list[int] = []
    avoid: set[int] = set()
    for model in models:
        config = getattr(model, "config", None)
        size = getattr(config, "vocab_size", None) if config is not None else None
        if isinstance(size, int) and size > 0:
            sizes.append(size)
        for name in _SPECIAL_IDS:
            value = getattr(config, name, None) if config is not None else None
            for number in value if isinstance(value, list | tuple) else [value]:
                if isinstance(number, int) and not isinstance(number, bool) and number >= 0:
                    avoid.add(number)
    origin = "the models' config"
    if not sizes:
        embedding = _first_embedding(models[0]) if models else None
        if embedding is None:
            return None
        sizes.append(int(embedding))
        origin = "the first embedding"
    high = min(sizes)
    kept = frozenset(i for i in avoid if i < high)
    if len(kept) >= high:
        kept = frozenset()
    return TokenIds(high, kept, origin)


def _first_embedding(model: object) -> int | None:
    modules = getattr(model, "named_modules", None)
    if modules is None:
        return None
    for _, module in modules():
        if type(module).__name__ == "Embedding" and hasattr(module, "num_embeddings"):
            return int(module.num_embeddings)
    return None


def _fits(dtype: str, low: float, high: float) -> bool:
    info = np.iinfo(np.dtype(dtype))
    return info.min <= low and high - 1 <= info.max


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _bad(text: str, reason: str) -> NoReturn:
    msg = f"input spec {text!r}: {reason}"
    raise AutomapError(msg)
