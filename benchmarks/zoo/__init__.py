"""The benchmark zoo: architecture pairs (PyTorch vs MindSpore) with proven ground-truth mappings.

Each module in this package defines one `PAIR`; `all_pairs()` collects them in a stable order.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._base import Proof, ZooPair, normalise_ground_truth, prove, write_checkpoints

__all__ = ["Proof", "ZooPair", "all_pairs", "get_pair", "normalise_ground_truth", "prove", "write_checkpoints"]


def all_pairs() -> list[ZooPair]:
    """Every pair in the zoo, sorted by module name."""
    pairs = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        pairs.append(module.PAIR)
    return pairs


def get_pair(name: str) -> ZooPair:
    """The pair called `name`."""
    for pair in all_pairs():
        if pair.name == name:
            return pair
    raise KeyError(name)
