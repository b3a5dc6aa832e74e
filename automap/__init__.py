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
from .audit import AuditReport, audit
from .convert import ConversionReport, convert
from .io import load_checkpoint, save_checkpoint
from .mapping import load_mapping, save_mapping
from .records import ParamRecord, ParamTable
from .verify import VerifyReport, verify

__version__ = "0.1.0"

__all__ = [
    "AuditReport",
    "AutomapError",
    "CheckpointFormatError",
    "ConversionError",
    "ConversionReport",
    "MappingFileError",
    "MissingDependencyError",
    "ParamRecord",
    "ParamTable",
    "UnsafeCheckpointError",
    "VerifyReport",
    "__version__",
    "audit",
    "convert",
    "load_checkpoint",
    "load_mapping",
    "save_checkpoint",
    "save_mapping",
    "verify",
]
