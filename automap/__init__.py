"""automap: convert model weights between PyTorch and MindSpore without hand-written rename rules.

Importing automap imports neither torch nor MindSpore; adapters load a framework only when a file needs it.
"""

from __future__ import annotations

from ._errors import (
    AutomapError,
    CheckpointFormatError,
    ConversionError,
    MappingFileError,
    MissingDependencyError,
    UnsafeCheckpointError,
)
from .io import load_checkpoint, save_checkpoint
from .records import ParamRecord, ParamTable

__version__ = "0.1.0"

__all__ = [
    "AutomapError",
    "CheckpointFormatError",
    "ConversionError",
    "MappingFileError",
    "MissingDependencyError",
    "ParamRecord",
    "ParamTable",
    "UnsafeCheckpointError",
    "__version__",
    "load_checkpoint",
    "save_checkpoint",
]
