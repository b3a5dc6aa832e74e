"""Pause Python's cyclic garbage collector while a large structure that stays alive is being built.

Reading a 90,000-parameter table, inferring its mapping, writing the mapping or its report each make millions
of small containers, nearly all of which live on. The collector runs every few hundred allocations and, as the
heap grows, walks all of them again and again only to find nothing to free: a third of the run at that size.
Reference counting still frees everything as usual while the collector is paused.

When the block ends, what it built goes straight to the oldest generation (`gc.freeze` then `gc.unfreeze`: two
constant-time moves), where the collector would put it anyway after walking it twice more. It stays
collectable: any reference cycle made meanwhile is found by the next full collection. A program that keeps
frozen objects of its own (a server that freezes before forking) keeps them frozen: nothing is moved then.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic collector paused (left as it was if the caller had switched it off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
