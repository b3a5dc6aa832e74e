"""A one-line progress bar on stderr for long jobs, with no dependency.

The bar appears only on a terminal, only once a job has run for a moment (short jobs print nothing), is
redrawn at most a few times a second, and is erased when the job ends, so that the lines printed afterwards
start clean. It never raises: a progress bar must not break the work it reports on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from automap._text import human_bytes

_DELAY = 0.5  # seconds before the bar first appears
_INTERVAL = 0.1  # seconds between redraws
_WIDTH = 24


class Progress:
    """Progress of a job measured in bytes and items, drawn as `label  45% [#####     ] 1.2/2.7 MiB  5/12`.

    Use as a context manager; `advance()` after each item.
    """

    def __init__(
        self,
        total_bytes: int,
        total_items: int,
        *,
        label: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_bytes = max(total_bytes, 0)
        self.total_items = total_items
        self.label = label
        self.done_bytes = 0
        self.done_items = 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._start = clock()
        self._last_draw: float | None = None
        self._width = 0
        self._enabled = enabled and _is_terminal(self._stream)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def advance(self, nbytes: int, items: int = 1) -> None:
        """Count work done and redraw when it is time."""
        self.done_bytes += nbytes
        self.done_items += items
        if not self._enabled:
            return
        now = self._clock()
        if now - self._start < _DELAY:
            return
        if self._last_draw is not None and now - self._last_draw < _INTERVAL and self.done_items < self.total_items:
            return
        self._last_draw = now
        self._write("\r" + self.line())

    def line(self) -> str:
        """The bar's current text."""
        fraction = self.done_bytes / self.total_bytes if self.total_bytes else 1.0
        fraction = min(max(fraction, 0.0), 1.0)
        filled = round(fraction * _WIDTH)
        return (
            f"{self.label}  {fraction:4.0%} [{'#' * filled}{' ' * (_WIDTH - filled)}] "
            f"{human_bytes(self.done_bytes)}/{human_bytes(self.total_bytes)}  {self.done_items}/{self.total_items}"
        )

    def close(self) -> None:
        """Erase the bar, if it was drawn."""
        if self._last_draw is not None:
            self._write("\r" + " " * self._width + "\r")
            self._last_draw = None

    def _write(self, text: str) -> None:
        self._width = max(self._width, len(text) - 1)
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: stop drawing, keep working
            self._enabled = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
