"""Where a conversion's time goes: seconds per phase, collected only while someone asks (the benchmark does).

The conversion marks its phases with `timed("read")`, `timed("write")`, ...; outside `collecting()` that costs
one global lookup. Phases nest on a thread, and each is counted exclusively: the seconds of a phase started inside
another are taken off the outer one, so the phases of one thread add up to its wall time. Threads that only help
(checksums) mark theirs under their own names, which overlap the main thread's and so are not added to them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

__all__ = ["PhaseTimes", "collecting", "timed"]


class PhaseTimes:
    """Seconds spent per phase, exclusive of the phases started inside it on the same thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stacks = threading.local()

    def _stack(self) -> list[list[float]]:
        stack: list[list[float]] | None = getattr(self._stacks, "stack", None)
        if stack is None:
            stack = self._stacks.stack = []
        return stack

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        stack = self._stack()
        frame = [time.perf_counter(), 0.0]  # start, seconds of the phases nested in it
        stack.append(frame)
        try:
            yield
        finally:
            stack.pop()
            elapsed = time.perf_counter() - frame[0]
            if stack:
                stack[-1][1] += elapsed
            with self._lock:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed - frame[1]


_ACTIVE: PhaseTimes | None = None


@contextlib.contextmanager
def collecting() -> Iterator[PhaseTimes]:
    """Collect the phases of whatever runs inside the block (on any thread) into the `PhaseTimes` yielded."""
    global _ACTIVE  # one conversion at a time is measured, and its threads must see it: not a ContextVar
    previous, _ACTIVE = _ACTIVE, PhaseTimes()
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = previous


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    """Count the block's seconds under `phase` while `collecting()`; otherwise do nothing."""
    times = _ACTIVE
    if times is None:
        yield
        return
    with times.timed(phase):
        yield
