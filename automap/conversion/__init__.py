"""Applying a mapping: plan and checks, the streaming writer, and the read-back verification of the output.

Named `conversion` rather than `convert` so that the package never shadows the public function
`automap.convert`; for the same reason no module in it is named `convert`. Imports `io` and (only when a mapping
must be inferred) `engine`; never `netaware`, which may import this package.

Inside, the data flows through one module per step: `plan` (the mapping checked against the checkpoints, every
output tensor worked out, nothing read or written), `writer` (each tensor read, transformed and written before the
next, with `_pages` handing memory-mapped pages back, `_progress` drawing the bar and `_checksums` taking piece
CRC-32s), and `readback` (the output re-opened with a `Verifier` and compared). `_convert` holds the entry point
`convert`, which checks the output path and runs the three in turn, and the `ConversionReport` it returns.
"""

from __future__ import annotations

from ._convert import ConversionReport, check_direction, convert, infer_for_conversion
from ._outputs import check_not_source, check_output
from .plan import ConversionPlan, PlannedTensor, check_mapping, is_restored_by_loader

__all__ = [
    "ConversionPlan",
    "ConversionReport",
    "PlannedTensor",
    "check_direction",
    "check_mapping",
    "check_not_source",
    "check_output",
    "convert",
    "infer_for_conversion",
    "is_restored_by_loader",
]
