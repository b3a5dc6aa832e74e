"""Convert model weights between PyTorch and MindSpore without hand-written rename rules.

The main functions, in the order a conversion uses them:

    load_checkpoint(path)              the parameters of a checkpoint as a ParamTable (tensor data read lazily)
    infer_mapping(source, target)      a NameMapping: which source parameter feeds each target, and how sure
    save_mapping(mapping, path)        the mapping as an editable JSON file
    load_mapping(path)                 reads one back (also a flat {target: source} JSON object)
    audit(mapping)                     an AuditReport: the doubtful pairs a person should review, with evidence
    convert(source, mapping, output)   converts with the mapping, verifies the output; a ConversionReport
    save_checkpoint(records, path)     writes parameters to .ckpt, .pth or .safetensors
    verify(torch_module, mindspore_cell, inputs=[...])   runs both models and compares their outputs
    infer_with_networks(source, target, torch_model=..., mindspore_model=...)   infers with both models at
                                       hand, settles doubtful pairs by running them, and proves the mapping

Example:
    >>> import automap
    >>> mapping = automap.infer_mapping("model.pth", "template.ckpt")  # doctest: +SKIP
    >>> [p.target for p in mapping.doubtful]  # below the threshold or without a source  # doctest: +SKIP
    []
    >>> automap.save_mapping(mapping, "mapping.json")  # doctest: +SKIP
    >>> report = automap.convert("model.pth", "mapping.json", "model.ckpt")  # doctest: +SKIP
    >>> report.verified == report.tensors  # every tensor re-read and compared bit-exact  # doctest: +SKIP
    True

Every error automap raises on purpose is an `AutomapError`: `CheckpointFormatError` for a file that cannot be
read, `MappingFileError` for a mapping that is malformed or does not fit, `ConversionError` for a conversion
that cannot be done, `MissingDependencyError` for a framework that is not installed. Its message names the file
or parameter and what to do, with the keyword argument to pass (`overwrite=True`).

Importing automap imports neither torch nor MindSpore, nor the inference engine's scipy and networkx:
`infer_mapping` and `infer_with_networks` load them on first use.
"""

from __future__ import annotations

import importlib
import typing

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

if typing.TYPE_CHECKING:  # the lazy names below, as type checkers see them
    from .engine.inference import infer_mapping
    from .netaware import infer_with_networks

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
    "infer_mapping",
    "infer_with_networks",
    "load_checkpoint",
    "load_mapping",
    "save_checkpoint",
    "save_mapping",
    "verify",
]

# Names imported on first use, and where from: the engine needs scipy and networkx, which would more than
# double the time `import automap` takes (and every `automap --help`). Type checkers read the imports above.
_LAZY = {"infer_mapping": "automap.engine.inference", "infer_with_networks": "automap.netaware"}


def __getattr__(name: str) -> object:
    """`infer_mapping` and `infer_with_networks`, imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'automap' has no attribute {name!r}"
        raise AttributeError(msg)
    value: object = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups find it directly
    return value


def __dir__() -> list[str]:
    return list(__all__)
