"""Numbers in names: which numbered slot of one side corresponds to which of the other, and comparing them.

`layers.3.mlp` and `blocks.3.ffn` number the same block; `features.7` on one side may be `features.5` on the
other. The `numbers` feature (`automap.engine.features`) compares the numbers of two names where their keys
agree (`automap.engine.names.number_contexts`) and, once confident pairs have shown how each slot corresponds
(`SlotRule`, learned in `automap.engine.passes`), follows those rules instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from automap._types import Array

from .names import AMBIGUOUS

__all__ = ["SlotRule", "all_or_little", "compare", "numbered_slots", "value_columns"]

_DIGITS = re.compile(r"\d+")


def compare(
    numbers: Mapping[tuple[str, ...], int],
    columns: Mapping[tuple[str, ...], Array],
    sources: Array,
    untrusted: frozenset[tuple[str, ...]],
) -> tuple[Array, Array]:
    """Per source: how many of a target name's keyed numbers it shares, and how many of those agree."""
    agree, shared = np.zeros(len(sources)), np.zeros(len(sources))
    for key, value in numbers.items():
        column = columns.get(key)
        if column is None or key in untrusted or value == AMBIGUOUS:
            continue
        present = column[sources] >= 0
        shared += present
        agree += present & (column[sources] == value)
    return agree, shared


def all_or_little(agree: Array, total: Array) -> Array:
    """1 when every comparable number agrees, else a third of the agreeing share."""
    share = agree / np.maximum(total, 1)
    return np.where(agree == total, 1.0, share / 3.0)


def value_columns(rows: Sequence[Mapping[Any, int]]) -> dict[Any, Array]:
    """{key: array over rows of the row's value for that key, -1 where absent}."""
    columns: dict[Any, Array] = {}
    for row_index, row in enumerate(rows):
        for key, value in row.items():
            if key not in columns:
                columns[key] = np.full(len(rows), -1, dtype=np.int64)
            columns[key][row_index] = value
    return columns


def numbered_slots(name: str) -> list[tuple[str, int]]:
    """The numbers of a name keyed by where they stand.

    `layer1.0.conv2.weight` -> `[("layer#", 1), ("layer#.#", 0), ("layer#.#.conv#", 2)]`.
    """
    slots: list[tuple[str, int]] = []
    prefix: list[str] = []
    for component in name.split(".")[:-1]:
        digits = _DIGITS.findall(component)
        template = _DIGITS.sub("#", component)
        prefix.append(template)
        key = ".".join(prefix)
        for occurrence, number in enumerate(digits):
            slots.append((key if occurrence == 0 else f"{key}@{occurrence}", int(number[:18])))
    return slots


@dataclass(frozen=True)
class SlotRule:
    """A learned correspondence: a target slot's value determines a source slot's value."""

    source_slot: str
    table: Mapping[int, int]
    offset: int | None  # when every observation is `source = target + offset`, unseen values follow it

    def predict(self, value: int) -> int | None:
        """The source slot's value for a target slot's `value`, or None when the rule cannot tell."""
        """The source slot value that target value `value` stands for (None when nothing says)."""
        if value in self.table:
            return self.table[value]
        return value + self.offset if self.offset is not None else None
