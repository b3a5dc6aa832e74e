"""Type aliases shared across automap."""

from __future__ import annotations

import os
from typing import Any, Literal, Union

import numpy.typing as npt

StrPath = Union[str, "os.PathLike[str]"]
Framework = Literal["pytorch", "mindspore"]
Array = npt.NDArray[Any]
"""A numpy array of any dtype: tensor data in its storage type."""
