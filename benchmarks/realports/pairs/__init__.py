"""The corpus's pairs, one module per family; each module lists its pairs in `PAIRS`."""

from __future__ import annotations

import importlib
import pkgutil

from benchmarks.realports._pair import RealPair

__all__ = ["all_pairs", "get_pair"]


def all_pairs() -> list[RealPair]:
    """Every pair, module by module (sorted by module name), in each module's order."""
    pairs: list[RealPair] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            pairs.extend(importlib.import_module(f"{__name__}.{info.name}").PAIRS)
    names = [p.name for p in pairs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        msg = f"pair names used twice: {duplicates}"
        raise ValueError(msg)
    return pairs


def get_pair(name: str) -> RealPair:
    """The pair called `name`."""
    for pair in all_pairs():
        if pair.name == name:
            return pair
    msg = f"no real-port pair called {name!r}"
    raise KeyError(msg)
