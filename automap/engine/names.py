"""Parameter names as tokens: splitting, convention classes, compound splitting and token weights.

A name such as `encoder.layer.3.attention.self.query.weight` is split into components on `.`, and each
component into word and number tokens on `_`, `-`, case changes and digit boundaries. Word tokens are then
*expanded*: a token that belongs to a convention class of the lexicon (`gamma`/`weight`, `attn`/`attention`,
...) also carries the class's id, so that spellings of one concept match while identical spellings still match
best. Compound tokens that one side writes as one word and the other as two (`qkv` vs `q`, `k`, `v`;
`downsample` vs `down`, `sample`) are split against the vocabulary of both sides. Everything here is pure
string work: no framework, no model-specific rule.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "AMBIGUOUS",
    "NameTokens",
    "TokenWeights",
    "Vocabulary",
    "index_template",
    "leaf_concept",
    "number_contexts",
    "split_component",
    "tokenize",
]

_PIECE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_MAX_PHRASE = 3
# Words that say where a module sits relative to the words after them: `post_attention_layernorm` is the norm
# *after* attention (the one before the MLP), not an attention norm.
_QUALIFIERS = frozenset({"pre", "post", "before", "after", "inner", "outer"})


@cache
def _lexicon() -> tuple[dict[str, str], int]:
    """Map every spelling in the lexicon to its class id ("=weight"); also the longest phrase length."""
    data = json.loads(resources.files("automap.engine").joinpath("lexicon.json").read_text(encoding="utf-8"))
    classes: dict[str, str] = {}
    longest = 1
    for members in data["classes"]:
        class_id = "=" + members[0]
        for member in members:
            classes[member] = class_id
            longest = max(longest, member.count("_") + 1)
    return classes, longest


def split_component(component: str) -> list[str]:
    """`weight_ih_l0_reverse` -> `[weight, ih, l, 0, reverse]`; `convBlock2` -> `[conv, block, 2]`."""
    return [piece.lower() for piece in _PIECE.findall(component)]


@dataclass(frozen=True, slots=True)
class NameTokens:
    """The tokens of one parameter name.

    Attributes:
        leaf: word tokens of the last component, expanded with convention classes.
        path: word tokens of the other components, expanded.
        numbers: the numbers in the name, in order (`layers.3.conv1` -> (3, 1)).
        words: the raw word tokens of each component, innermost last (for learning correspondences).
    """

    leaf: tuple[str, ...]
    path: tuple[str, ...]
    numbers: tuple[int, ...]
    words: tuple[tuple[str, ...], ...]


def _expand(words: Sequence[str], whole: str = "", lexicon: bool = True) -> list[str]:
    """Words plus the class ids (once each) of any word or `_`-joined phrase the lexicon knows."""
    if not lexicon:
        return list(words)
    classes, longest = _lexicon()
    found: list[str] = []
    for size in range(1, min(longest, _MAX_PHRASE) + 1):
        for start in range(len(words) - size + 1):
            class_id = classes.get("_".join(words[start : start + size]))
            if class_id is not None and class_id not in found:
                found.append(class_id)
    if whole in classes and classes[whole] not in found:
        found.append(classes[whole])
    return [*words, *found]


def qualify(words: Sequence[str]) -> list[str]:
    """Words after a qualifier, up to the component's last word, marked as qualified: they no longer match.

    `post_attention_layernorm` -> `[post, post:attention, layernorm]`: the component names a norm that sits after
    attention, so it must not look like `attention_norm`. The last word (what the module *is*) stays as it is.
    """
    out = list(words)
    for start, word in enumerate(words[:-1]):
        if word in _QUALIFIERS:
            for i in range(start + 1, len(words) - 1):
                if out[i] not in _QUALIFIERS:
                    out[i] = f"{word}:{words[i]}"
            break
    return out


def tokenize(name: str, vocabulary: Vocabulary | None = None, *, lexicon: bool = True) -> NameTokens:
    """Tokens of `name`; with the *other* side's vocabulary, compounds split into words that side uses."""
    components = name.split(".")
    per_component: list[tuple[str, ...]] = []
    numbers: list[int] = []
    for component in components:
        words: list[str] = []
        for piece in split_component(component):
            if piece.isdigit():
                numbers.append(int(piece[:18]))
            elif vocabulary is not None:
                words.extend(vocabulary.segment(piece))
            else:
                words.append(piece)
        per_component.append(tuple(qualify(words)))
    # A whole component can be a phrase of the lexicon (`moving_mean`, `embedding_table`).
    leaf = _expand(list(per_component[-1]), components[-1].lower(), lexicon)
    path: list[str] = []
    for component, component_words in zip(components[:-1], per_component[:-1], strict=True):
        path.extend(_expand(list(component_words), component.lower(), lexicon))
    return NameTokens(tuple(leaf), tuple(path), tuple(numbers), tuple(per_component))


class Vocabulary:
    """The word tokens of one side's names, used to split the other side's compounds (`qkv`, `wq`).

    A word the other side also uses is kept whole; one it does not use is split into words it does use.
    """

    def __init__(self, names: Iterable[str], *, lexicon: bool = True) -> None:
        classes, _ = _lexicon()
        words: set[str] = set()
        for name in names:
            for component in name.split("."):
                words.update(p for p in split_component(component) if not p.isdigit())
        if lexicon:
            words.update(w for w in classes if "_" not in w)
        self.words = frozenset(words)

    @cache  # noqa: B019 - one vocabulary per inference; the cache dies with it
    def segment(self, word: str) -> tuple[str, ...]:
        """Split `word` into known words when it is not one itself; otherwise keep it whole.

        Every piece must be a known word; single-letter pieces are allowed only in short words (at most four
        letters), the way fused projections are spelled (`qkv`, `wq`).
        """
        if word in self.words or len(word) < 2 or len(word) > 24:
            return (word,)
        best = self._split(word)
        return best if best is not None else (word,)

    def _split(self, word: str) -> tuple[str, ...] | None:
        short = len(word) <= 4
        # dynamic programming: fewest pieces, all known, single letters only in short words
        best: list[tuple[str, ...] | None] = [None] * (len(word) + 1)
        best[0] = ()
        for end in range(1, len(word) + 1):
            for start in range(end):
                prefix = best[start]
                piece = word[start:end]
                if prefix is None or piece not in self.words or (len(piece) == 1 and not short):
                    continue
                candidate = (*prefix, piece)
                current = best[end]
                if current is None or len(candidate) < len(current):
                    best[end] = candidate
        result = best[len(word)]
        return result if result is not None and len(result) > 1 else None


class TokenWeights:
    """Inverse document frequency of tokens over both name lists: rare tokens say more than `weight`."""

    def __init__(self, source: Sequence[NameTokens], target: Sequence[NameTokens]) -> None:
        self._weights: dict[str, float] = {}
        counts_s = Counter(t for n in source for t in set(n.leaf + n.path))
        counts_t = Counter(t for n in target for t in set(n.leaf + n.path))
        n_s, n_t = max(len(source), 1), max(len(target), 1)
        for token in counts_s.keys() | counts_t.keys():
            # a token's share of names, averaged over the sides it appears on
            share = 0.5 * (counts_s[token] / n_s + counts_t[token] / n_t)
            self._weights[token] = math.log(1.0 + 1.0 / max(share, 1e-9))

    def __call__(self, token: str) -> float:
        """The weight of one token (unseen tokens weigh like a token in half the names)."""
        return self._weights.get(token, math.log(2.0))


def number_contexts(name: str, *, lexicon: bool = True, heads: bool = False) -> dict[tuple[str, ...], int]:
    """Each number of a name keyed by the words it qualifies, in canonical (lexicon class) spelling.

    `layer1.0.bn2.weight` -> `{("=layers",): 1, ("=layers", "[]"): 0, ("=norm",): 2}`: a number inside a word
    (`bn2`, or a leaf such as `weight_hh_l1`)
    qualifies that word; a component that is only a number is an index into the nearest named container before
    it. Two names' numbers are comparable only where these keys agree, so `conv1.convs.0` and
    `down1.maxpool_conv.1.double_conv.4` share no key and their numbers are not compared at all.

    With `heads`, a context is its last word only (`resblocks.0` and `layers.0` both number `=layers`,
    `ln_2` and `layer_norm2` both `=norm`): a looser key, for names that share no full one.
    """
    classes = _lexicon()[0] if lexicon else {}
    out: dict[tuple[str, ...], int] = {}
    context: tuple[str, ...] = ()
    fresh = False
    for component in name.split("."):
        pieces = split_component(component)
        words = tuple(classes.get(p, p) for p in pieces if not p.isdigit())
        numbers = [int(p[:18]) for p in pieces if p.isdigit()]
        if words:
            context = tuple(classes.get(component.lower(), "") or w for w in words[:1]) + words[1:]
            if heads:
                context = (_head(context[-1], classes),)
            key = context
            fresh = not numbers  # `blocks.5` numbers `blocks` as `layer_5` numbers `layer`
        elif fresh:
            key = context
            fresh = False
        else:
            context = (*context, "[]")
            key = context
        for occurrence, number in enumerate(numbers):
            _add(out, key if occurrence == 0 else (*key, f"@{occurrence}"), number)
    return out


AMBIGUOUS = -2
"""The value of a key that numbers nested containers of one kind (`layers.0.blocks.1`): not to be compared."""


def _add(out: dict[tuple[str, ...], int], key: tuple[str, ...], number: int) -> None:
    """Record a number under its key; a key that comes again (nested containers of one kind) becomes ambiguous.

    `layers.0.blocks.1` numbers a stage and then a block, both `=layers`: compared with a port's `blocks.1` (no
    stage) or `0.blocks.1` (an unnamed stage), either value could be the one that corresponds, so neither is
    compared; the nested values are kept under their own keys for names nested the same way.
    """
    nested = sum(1 for k in out if k[: len(key)] == key and len(k) == len(key) + 1 and k[-1].startswith("^"))
    if key in out:
        if out[key] != AMBIGUOUS:
            out[(*key, "^0")] = out[key]
            out[key] = AMBIGUOUS
            nested = 1
        out[(*key, f"^{nested}")] = number
    else:
        out[key] = number


def _head(word: str, classes: dict[str, str]) -> str:
    """A word's head, in canonical spelling: `resblocks` is a kind of `blocks` (`=layers`), as compounds go."""
    if word.startswith("=") or word in classes:
        return classes.get(word, word)
    for start in range(1, len(word) - 3):
        tail = word[start:]
        if tail in classes and "_" not in tail:
            return classes[tail]
    return word


def leaf_concept(name: str, lexicon: bool = True) -> str:
    """The last component of a name as a concept: its convention class (`gamma` -> `=weight`) or its spelling."""
    leaf = name.rsplit(".", 1)[-1].lower()
    if lexicon:
        return _lexicon()[0].get(leaf, leaf)
    return leaf


def index_template(name: str) -> str:
    """A name with its container indices blanked: `blocks.3.attn.qkv.weight` -> `blocks.#.attn.qkv.weight`."""
    return ".".join("#" if c.isdigit() else c for c in name.split("."))
