"""The stderr progress bar: silent for short jobs and off a terminal, erased when done."""

from __future__ import annotations

import io

from automap.conversion._progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_after_a_delay_and_erases_itself() -> None:
    now = [0.0]
    stream = _Terminal()
    with Progress(2048, 2, label="writing", stream=stream, clock=lambda: now[0]) as bar:
        bar.advance(1024)
        assert stream.getvalue() == ""  # short jobs print nothing
        now[0] = 5.0
        bar.advance(1024)
        assert "writing  100% [########################] 2.0 KiB/2.0 KiB  2/2" in stream.getvalue()
    assert stream.getvalue().endswith("\r")


def test_progress_bar_stays_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    with Progress(10, 1, label="writing", stream=stream, clock=lambda: 100.0) as bar:
        bar.advance(10)
    assert stream.getvalue() == ""
