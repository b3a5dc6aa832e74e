"""The rename tables the model libraries publish, as data: which PyTorch module a MindSpore port calls what.

`conventions.json` holds correspondences stated in the libraries' own weight-conversion scripts
(`self_attn.q_proj` ~ `attention.wq`, `post_attention_layernorm` ~ `ffn_norm`, ...), each with the script it
comes from. A pattern is a dotted run of name components; it matches a parameter name when it equals the
name's last components before the leaf (`self_attn.q_proj` matches `model.layers.3.self_attn.q_proj.weight`)
or its last components including the leaf (`embed_tokens.weight`). Nothing here is a rule for one model:
an entry is a fact about a library's naming, and it speaks only when both names match one of its sides.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from automap._types import Framework

__all__ = ["Convention", "ConventionIndex", "conventions"]

_LONGEST = 6  # components of the longest pattern worth looking up


@dataclass(frozen=True, slots=True)
class Convention:
    """One published correspondence."""

    pytorch: str
    mindspore: str
    layout: str | None  # "transposed" or "same" when the script says so
    source: str

    def side(self, framework: Framework) -> str:
        """The pattern of one framework's side."""
        return self.pytorch if framework == "pytorch" else self.mindspore


@cache
def conventions() -> tuple[Convention, ...]:
    """Every entry of the package's conventions file (empty when the file has none)."""
    folder = resources.files("automap.engine")
    if not folder.joinpath("conventions.json").is_file():
        return ()
    data = json.loads(folder.joinpath("conventions.json").read_text(encoding="utf-8"))
    return tuple(
        Convention(entry["pytorch"], entry["mindspore"], entry.get("layout"), entry.get("source", ""))
        for entry in data.get("entries", ())
    )


def _suffixes(name: str) -> list[str]:
    """The patterns that could match `name`: its last components before the leaf, and including it."""
    parts = name.split(".")
    out = []
    for end in (len(parts) - 1, len(parts)):
        for start in range(max(0, end - _LONGEST), end):
            out.append(".".join(parts[start:end]))
    return out


class ConventionIndex:
    """Which published correspondences each name of two tables matches, for one direction of inference.

    Attributes:
        target: per target parameter, the ids of entries whose target-framework side it matches.
        source: per source parameter, the same for the source framework's side.
    """

    def __init__(
        self,
        source_names: Sequence[str],
        target_names: Sequence[str],
        source_framework: Framework,
        target_framework: Framework,
        entries: Sequence[Convention] | None = None,
    ) -> None:
        self.entries = tuple(conventions() if entries is None else entries)
        self.active = source_framework != target_framework and bool(self.entries)
        self.source: list[frozenset[int]] = [frozenset()] * len(source_names)
        self.target: list[frozenset[int]] = [frozenset()] * len(target_names)
        if not self.active:
            return
        self.source = self._match(source_names, source_framework)
        self.target = self._match(target_names, target_framework)
        # entries whose other side some name of the other table matches: only those can speak against a pair
        self.realised_source = frozenset().union(*self.source) if self.source else frozenset()
        self.realised_target = frozenset().union(*self.target) if self.target else frozenset()

    def _match(self, names: Sequence[str], framework: Framework) -> list[frozenset[int]]:
        by_pattern: dict[str, list[int]] = defaultdict(list)
        for number, entry in enumerate(self.entries):
            by_pattern[entry.side(framework)].append(number)
        return [frozenset(i for suffix in _suffixes(name) for i in by_pattern.get(suffix, ())) for name in names]

    def score(self, target: int, source: int) -> float:
        """1 when an entry pairs the two names; 0 when an entry the other table realises points elsewhere; else 0.5."""
        t_ids, s_ids = self.target[target], self.source[source]
        if t_ids & s_ids:
            return 1.0
        if (t_ids & self.realised_source) or (s_ids & self.realised_target):
            return 0.0
        return 0.5

    def layout(self, target: int, source: int) -> str | None:
        """What the entries pairing two names say about the layout ("transposed", "same"), if they agree."""
        said = {self.entries[i].layout for i in self.target[target] & self.source[source]} - {None}
        return said.pop() if len(said) == 1 else None
