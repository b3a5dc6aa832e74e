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
from ._version import __version__
from .conversion import ConversionReport, convert
from .io import load_checkpoint, save_checkpoint
from .mapping import load_mapping, save_mapping
from .netaware.verify import VerifyReport, verify
from .records import Alternative, Endpoint, Match, NameMapping, ParamRecord, ParamTable
from .report.audit import AuditReport, audit


def __getattr__(name: str) -> object:
    """`infer`, `infer_mapping` and `infer_with_networks`, imported on first use (scipy, networkx, frameworks)."""
    if name in ("infer", "infer_mapping"):
        from .engine.inference import infer_mapping

        return infer_mapping
    if name == "infer_with_networks":
        from .netaware import infer_with_networks

        return infer_with_networks
    msg = f"module 'automap' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "Alternative",
    "AuditReport",
    "AutomapError",
    "CheckpointFormatError",
    "ConversionError",
    "ConversionReport",
    "Endpoint",
    "MappingFileError",
    "Match",
    "MissingDependencyError",
    "NameMapping",
    "ParamRecord",
    "ParamTable",
    "UnsafeCheckpointError",
    "VerifyReport",
    "__version__",
    "audit",
    "convert",
    "infer",
    "infer_mapping",
    "infer_with_networks",
    "load_checkpoint",
    "load_mapping",
    "save_checkpoint",
    "save_mapping",
    "verify",
]
