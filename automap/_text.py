"""Text helpers shared by every room: one-line renderings of untrusted values, names and errors, tables, sizes.

Names come from untrusted files, so anything shown to a person goes through `shown`/`brief`/`printable`, and
`unsafe_character` defines which characters a name may not hold (see `automap.io._framework.check_name`).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Sequence

MAX_NAME = 64 * 1024  # characters; real parameter names are well under 1000
# C0/C1 controls (newlines, terminal escapes), lone surrogates (not encodable), and the bidirectional
# overrides/isolates that let text display in another order than it is stored ("Trojan Source").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def human_bytes(size: int) -> str:
    """`1536` -> `"1.5 KiB"`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # unreachable


def shape_text(shape: Sequence[int]) -> str:
    """`(3, 4)` -> `"[3, 4]"`."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()) -> str:
    """Align columns; columns whose index is in `right` are right-aligned (numbers)."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def first_line(text: str, limit: int = 200) -> str:
    """The first line of a library's error text, cut to `limit` characters, for a one-line message.

    Every module that quotes an error from a library or framework goes through here, so all such messages are
    cut the same way ("no detail" when the error says nothing).
    """
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    return line[:limit]


def shown(name: str, limit: int = 80) -> str:
    """A name quoted for a one-line message: escaped, and cut when long."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}... ({len(name)} characters)"


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxstring, _BRIEF.maxother = 3, 8, 4, 60, 60
_BRIEF.maxlong = 40


def brief(value: object) -> str:
    """Any untrusted value (a decoded JSON field, say) rendered short, on one line, without deep recursion."""
    return _BRIEF.repr(value)


def unsafe_character(text: str) -> str | None:
    """The first character of `text` that must not appear in a name (see the module docstring), or None."""
    found = _UNSAFE.search(text)
    return found.group() if found else None


def printable(text: str) -> str:
    """`text` with every character a name may not hold replaced by U+FFFD (for file paths shown or saved).

    A path from the command line can carry undecodable bytes (as lone surrogates) or control characters; it
    is only a label in a mapping file, so it is made printable rather than refused.
    """
    return _UNSAFE.sub("\ufffd", text)
