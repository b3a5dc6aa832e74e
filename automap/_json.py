"""JSON parsing for untrusted files: duplicate keys are an error, not a silent "last one wins"."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DuplicateKeyError", "loads"]


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice; which one was meant cannot be known."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        shown = repr(duplicate) if len(duplicate) <= 80 else f"{duplicate[:80]!r}..."
        msg = f"the key {shown} appears twice in one object"
        raise DuplicateKeyError(msg)
    return document


def loads(text: str | bytes) -> Any:
    """`json.loads` that raises `DuplicateKeyError` (a `ValueError`) on a repeated key.

    Raises:
        ValueError: not JSON, or a key repeated within an object.
        RecursionError: nested too deeply.
    """
    return json.loads(text, object_pairs_hook=_unique)
