"""The rename tables the model libraries publish, as data: which PyTorch module a MindSpore port calls what.

`conventions.json` holds correspondences stated in the libraries' own weight-conversion scripts
(`self_attn.q_proj` ~ `attention.wq`, `post_attention_layernorm` ~ `ffn_norm`, ...), each with the script it
comes from, and HuggingFace's renames of the original codebases' names that many ports keep (`layernorm_before`
~ timm's `norm1`). A pattern is a dotted run of name components; it matches a parameter name when it equals the
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

from .shapes import Part

__all__ = ["Convention", "ConventionIndex", "conventions"]

_LONGEST = 6  # components of the longest pattern worth looking up


@dataclass(frozen=True, slots=True)
class Convention:
    """One published correspondence.

    Attributes:
        pytorch, mindspore: the patterns of the two sides.
        layout: "transposed" or "same" when the script says so.
        piece: (index, parts, axis) when one side is a fused tensor and the other is one of its equal pieces.
        piece_of: which framework's side is the fused one.
        interleaved: the fused tensor interleaves its pieces head by head (no contiguous piece is right).
        source: the script (package, version, path) that states it.
        vetoes: whether the entry speaks against a pair it does not make. A MindSpore library's table does; an
            alias from HuggingFace's renames only vouches for pairs, since a port may or may not keep the
            original codebase's names.
    """

    pytorch: str
    mindspore: str
    layout: str | None = None
    piece: tuple[int, int, int] | None = None
    piece_of: Framework = "pytorch"
    interleaved: bool = False
    source: str = ""
    vetoes: bool = True  # False for HuggingFace's renames of original names: ports need not keep those names

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
    # HuggingFace's renames of an original codebase's names (timm, OpenAI, fairseq...) pair HF's names with the
    # names MindSpore ports keep from that codebase: the original side stands for the MindSpore side
    aliases = [
        {
            **entry,
            "mindspore": entry["original"],
            "piece_of": "mindspore" if entry.get("piece_of") == "original" else None,
            "vetoes": False,
        }
        for entry in data.get("aliases", {}).get("entries", ())
    ]
    return tuple(
        Convention(
            entry["pytorch"],
            entry["mindspore"],
            layout=entry.get("layout"),
            piece=tuple(entry["piece"]) if "piece" in entry else None,
            piece_of="mindspore" if entry.get("piece_of") == "mindspore" else "pytorch",
            interleaved=bool(entry.get("interleaved_heads")),
            source=entry.get("source", ""),
            vetoes=entry.get("vetoes", True),
        )
        for entry in [*data.get("entries", ()), *aliases]
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
        self.frameworks = (source_framework, target_framework)
        self.active = source_framework != target_framework and bool(self.entries)
        self.source: list[frozenset[int]] = [frozenset()] * len(source_names)
        self.target: list[frozenset[int]] = [frozenset()] * len(target_names)
        if not self.active:
            return
        # the HuggingFace sides of the aliases, looked for among the MindSpore names while those are matched
        alias_sides = frozenset(entry.pytorch for entry in self.entries if not entry.vetoes)
        self.source, source_kept = self._match(source_names, source_framework, alias_sides)
        self.target, target_kept = self._match(target_names, target_framework, alias_sides)
        self._drop_kept_names(source_kept if source_framework == "mindspore" else target_kept)
        # entries whose other side some name of the other table matches: only those can speak against a pair
        vetoing = frozenset(i for i, entry in enumerate(self.entries) if entry.vetoes)
        self.realised_source = vetoing & frozenset().union(*self.source)
        self.realised_target = vetoing & frozenset().union(*self.target)

    def _drop_kept_names(self, kept_names: set[str]) -> None:
        """Silence the aliases whose HuggingFace side the MindSpore table itself uses.

        An alias says a port may keep the original codebase's name for what HuggingFace renamed. A port that
        uses HuggingFace's name (mindone and mindnlp keep them all) shows that it did not: there, the original
        name means something else (wav2vec2's `layer_norm` is fairseq's attention norm, and HuggingFace's own
        name for the layer's *last* norm in other models), and the alias would pair two different norms.
        `kept_names` are the aliases' HuggingFace patterns that some MindSpore name ends with.
        """
        kept = frozenset(i for i, entry in enumerate(self.entries) if not entry.vetoes and entry.pytorch in kept_names)
        if kept:
            self.source = [ids - kept for ids in self.source]
            self.target = [ids - kept for ids in self.target]

    def _match(
        self, names: Sequence[str], framework: Framework, wanted: frozenset[str]
    ) -> tuple[list[frozenset[int]], set[str]]:
        """Per name, the entries whose pattern on this side matches it; the longest matching pattern wins.

        Also which of the `wanted` patterns some name matches, found in the same pass over the names.
        """
        by_pattern: dict[str, list[int]] = defaultdict(list)
        for number, entry in enumerate(self.entries):
            by_pattern[entry.side(framework)].append(number)
        out = []
        seen: set[str] = set()
        for name in names:
            suffixes = _suffixes(name)
            seen.update(suffix for suffix in suffixes if suffix in wanted)
            found = [suffix for suffix in suffixes if suffix in by_pattern]
            longest = max((f.count(".") for f in found), default=-1)
            out.append(frozenset(i for f in found if f.count(".") == longest for i in by_pattern[f]))
        return out, seen

    def score(
        self, target: int, source: int, pieces: tuple[Part | None, Part | None], transposed: bool | None
    ) -> float:
        """How the published tables judge one candidate, in [0, 1].

        1 when an entry pairs the two names (with the piece and the layout it states); 0 when entries pair
        them but only as another piece, per head, or the other way round, or when an entry the other table
        realises pairs one of them with something else; 0.5 when no table speaks of either.

        Args:
            target: the target parameter's index in its table.
            source: the source parameter's index in its table.
            pieces: the candidate's (target part, source part): which piece of a fused tensor it takes, if any.
            transposed: whether the candidate's layout needs a transpose; None when its shapes cannot show a
                layout (a bias, a square weight), so that any layout the entry states fits.
        """
        t_ids, s_ids = self.target[target], self.source[source]
        shared = t_ids & s_ids
        if shared:
            return 1.0 if any(self._fits(self.entries[i], pieces, transposed) for i in shared) else 0.0
        if (t_ids & self.realised_source) or (s_ids & self.realised_target):
            return 0.0
        return 0.5

    def _fits(self, entry: Convention, pieces: tuple[Part | None, Part | None], transposed: bool | None) -> bool:
        """Whether a candidate pairs the two names the way the entry says: piece, per-head split, layout."""
        if entry.interleaved:
            return False  # a piece per head is no contiguous piece: no candidate can be it
        if transposed is not None and transposed != (entry.layout == "transposed"):  # else they copy as is
            return False
        fused_side = 0 if entry.piece_of == self.frameworks[1] else 1
        part = pieces[fused_side]
        if entry.piece is None:
            return part is None
        index, parts, _ = entry.piece
        return part is not None and part.index == index and part.parts == parts
