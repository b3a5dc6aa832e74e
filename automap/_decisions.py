"""How the engine decided a pair, as a type: consumers compare members, never message text.

Each value is the exact text mapping files carry under `"decided_by"` in a pair's evidence, so files read the
same as before the decision became typed. A file may hold other text there (an older or hand-written file);
that text stays a plain label and means nothing to the engine.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["DECIDED_BY", "DecidedBy"]

DECIDED_BY = "decided_by"
"""The evidence key under which a mapping file records the decision."""


class DecidedBy(Enum):
    """What settled a pair, and so how far to trust it.

    The engine's own decisions come first: every one after the first two caps the confidence. The last two say
    where a pair came from when no inference chose it: a flat file (no confidence, no review recorded), or a
    reviewed pair of a repeated block carried to the other blocks of its pattern (pinned, but by no person).
    """

    NAMES_AND_STRUCTURE = "names and structure"
    CONFIRMED_NUMERICALLY = "confirmed numerically"
    ORDER_ONLY = "order only (interchangeable candidates)"
    TIE = "a tie: nothing tells the candidates apart"
    NAMES_AND_ORDER_DISAGREE = "names and order disagree"
    FOLLOWED_BLOCK_ORDER = "names and order disagree; followed the order within the block"  # older mappings: read
    RESHAPE_ONLY = "shapes agree only after a reshape"
    LAYOUT_ONLY = "only the layout tells the candidates apart (the shapes fit either way round)"
    RENUMBERED = "numbers in a container the two sides number differently (the names cannot tell its members apart)"
    FLAT_MAPPING = "given by a flat {target: source} mapping (no confidence recorded)"
    SAME_PATTERN = "same pattern as a reviewed pair"

    @classmethod
    def of(cls, text: str) -> DecidedBy | None:
        """The member written as `text`, or None for text that names no decision."""
        try:
            return cls(text)
        except ValueError:
            return None
