"""Helpers every reader shares: which framework's conventions a name list follows, and table assembly."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from automap._types import Array, Framework
from automap.records import ParamRecord, ParamTable
from automap.training_state import is_training_state

_MINDSPORE_LEAVES = frozenset({"gamma", "beta", "moving_mean", "moving_variance", "embedding_table"})
_TORCH_LEAVES = frozenset({"running_mean", "running_var", "num_batches_tracked"})

RawRecord = tuple[str, tuple[int, ...], str, "Callable[[], Array] | None"]


def guess_framework(names: Iterable[str]) -> Framework:
    """Guess the framework from leaf-name conventions; PyTorch unless MindSpore's names dominate."""
    mindspore = torch = 0
    for name in names:
        leaf = name.rsplit(".", 1)[-1]
        mindspore += leaf in _MINDSPORE_LEAVES
        torch += leaf in _TORCH_LEAVES
    return "mindspore" if mindspore > torch else "pytorch"


def build_table(
    framework: Framework,
    source: str,
    records: Iterable[RawRecord],
    notes: Iterable[str],
    fmt: str,
    *,
    excluded_names: frozenset[str] = frozenset(),
) -> ParamTable:
    """Number records in order, setting training state (MindSpore's, or named by the caller) aside."""
    params: list[ParamRecord] = []
    excluded: list[ParamRecord] = []
    for name, shape, dtype, loader in records:
        if name in excluded_names or (framework == "mindspore" and is_training_state(name)):
            excluded.append(ParamRecord(name, shape, dtype, len(excluded), loader))
        else:
            params.append(ParamRecord(name, shape, dtype, len(params), loader))
    return ParamTable(framework, source, tuple(params), tuple(excluded), tuple(notes), fmt)
