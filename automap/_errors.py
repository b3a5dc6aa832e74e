"""Errors automap raises for user mistakes and bad input.

Every message names the file or parameter involved and says what to do. The CLI prints these as one line
and exits non-zero; anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "AutomapError",
    "CheckpointFormatError",
    "ConversionError",
    "MappingFileError",
    "MissingDependencyError",
    "UnsafeCheckpointError",
]


class AutomapError(Exception):
    """Base class of every error automap raises on purpose."""


class CheckpointFormatError(AutomapError):
    """A checkpoint or listing cannot be read: missing, unknown format, truncated or corrupt."""


class UnsafeCheckpointError(CheckpointFormatError):
    """A pickle would need to execute code to load; automap refuses by default."""


class MissingDependencyError(AutomapError):
    """A framework needed for this file or operation is not installed."""


class MappingFileError(AutomapError):
    """A mapping file is malformed, of an unknown version, or inconsistent with the checkpoints."""


class ConversionError(AutomapError):
    """A mapping cannot be applied: shapes, missing parameters, or an output that cannot be written."""
