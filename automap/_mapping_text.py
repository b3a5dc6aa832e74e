"""The text of a mapping file, laid out in one pass and written out as it is made.

The layout (see docs/mapping-format.md): a value whose compact JSON (`json.dumps` with `", "` and `": "`) fits
in 110 columns at its indentation stays on one line; a longer non-empty list or object puts each item on a line
of its own, two spaces deeper. Deciding that needs every value's compact text, so each value's compact text is
made once, from its items' texts, never by encoding the same values again at every level of nesting: `layout`
does this for any JSON value. Pairs, nearly all of a file, take a faster road that knows their fields
(`_pair_text`); a pair it cannot lay out plainly goes through `layout` instead, so both give the same bytes. The
pairs are written in batches, so the file's whole text is never held in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, BinaryIO

from .records import Match, NameMapping

__all__ = ["WIDTH", "compact", "layout", "write_flat", "write_versioned"]

WIDTH = 110  # columns a value may take, indentation included, to stay on one line
_BATCH = 2048  # pairs formatted before they are written out
# The C encoder json.dumps(ensure_ascii=False) uses for a string: the same escapes, byte for byte.
_string: Callable[[str], str] = json.encoder.encode_basestring
_float_repr = float.__repr__
_int_repr = int.__repr__


def _float(value: float) -> str:
    """A float as json.dumps writes it (`NaN` and `Infinity` are what it writes for the non-finite)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return _float_repr(value)


def compact(value: Any) -> str:
    """`json.dumps(value, ensure_ascii=False)`, built from the values' own texts."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is float:
        return _float(value)
    if kind is int:
        return _int_repr(value)
    if kind is list or kind is tuple:
        return "[" + ", ".join([compact(v) for v in value]) + "]"
    if kind is dict and all(type(k) is str for k in value):
        return "{" + ", ".join([f"{_string(k)}: {compact(v)}" for k, v in value.items()]) + "}"
    return json.dumps(value, ensure_ascii=False)  # True, None, subclasses, keys that are not text


def layout(value: Any, level: int = 0) -> str:
    """The text of `value` laid out at `level` (two spaces each): one line if it fits, else one item per line."""
    return _laid_out(value, level)[1]


def _laid_out(value: Any, level: int) -> tuple[str, str]:
    """(compact text, laid-out text) of a value at `level`; a container's both come from its items' both."""
    if not isinstance(value, dict | list) or not value:
        flat = compact(value)
        return flat, flat
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, list):
        items = [_laid_out(v, level + 1) for v in value]
        flat = "[" + ", ".join([c for c, _ in items]) + "]"
        if len(flat) + 2 * level <= WIDTH:
            return flat, flat
        return flat, "[\n" + ",\n".join([inner + t for _, t in items]) + "\n" + pad + "]"
    entries = [_laid_out(v, level + 1) for v in value.values()]
    if all(type(k) is str for k in value):
        keys = [_string(k) for k in value]
        flat = "{" + ", ".join([f"{k}: {c}" for k, (c, _) in zip(keys, entries, strict=True)]) + "}"
    else:  # json.dumps turns such keys into text; the laid-out form writes them as json.dumps writes the key
        keys = [json.dumps(k, ensure_ascii=False) for k in value]
        flat = compact(value)
    if len(flat) + 2 * level <= WIDTH:
        return flat, flat
    lines = [f"{inner}{k}: {t}" for k, (_, t) in zip(keys, entries, strict=True)]
    return flat, "{\n" + ",\n".join(lines) + "\n" + pad + "}"


def write_flat(handle: BinaryIO, document: Mapping[str, Any]) -> None:
    """Write the flat `{target: source}` form."""
    handle.write((layout(dict(document)) + "\n").encode("utf-8"))


def write_versioned(
    handle: BinaryIO,
    head: dict[str, Any],
    mapping: NameMapping,
    pair_json: Callable[[Match], dict[str, Any]],
    tail: dict[str, Any],
) -> None:
    """Write the versioned file: `head`'s fields, the pairs, then `tail`'s, exactly as `layout` lays them out.

    `pair_json` is the documented JSON object of a pair, used for the pairs the fast road leaves to `layout`.
    With no pairs the file is small and goes through `layout` whole.
    """
    if not mapping.pairs:
        handle.write((layout({**head, "pairs": [], **tail}) + "\n").encode("utf-8"))
        return
    # A pair never fits on one line (its nine keys alone are wider), so neither does the list or the file.
    fields = [f"  {_string(k)}: {layout(v, 1)}" for k, v in head.items()]
    handle.write(("{\n" + ",\n".join(fields) + ',\n  "pairs": [\n').encode("utf-8"))
    formatter = _PairFormatter(pair_json)
    pairs = mapping.pairs
    for start in range(0, len(pairs), _BATCH):
        texts = [formatter.text(p) for p in pairs[start : start + _BATCH]]
        separator = ",\n" if start + _BATCH < len(pairs) else "\n  ]"
        handle.write(("    " + ",\n    ".join(texts) + separator).encode("utf-8"))
    fields = [f"  {_string(k)}: {layout(v, 1)}" for k, v in tail.items()]
    handle.write(("".join(",\n" + f for f in fields) + "\n}\n").encode("utf-8"))


class _PairFormatter:
    """A pair's text at level 2 (inside `"pairs": [`), its fields at level 3, from the `Match` itself.

    Texts that repeat across a model's pairs are kept once made: shapes, confidences, labels, and the evidence
    made of a scores dict and a labels dict, which the pairs carried over from one solved block share.
    """

    _FIELD = WIDTH - 6  # widest compact text of a field's value that stays on its line (level 3)
    _ITEM = WIDTH - 8  # the same for an item of a field's list (level 4)
    _KEPT = 1 << 16  # most confidence texts kept

    def __init__(self, pair_json: Callable[[Match], dict[str, Any]]) -> None:
        self.pair_json = pair_json
        self.shapes: dict[tuple[int, ...], str] = {}
        self.confidences: dict[float, str] = {}
        self.labels: dict[tuple[str, str], str] = {}
        self.scores: dict[int, tuple[Mapping[str, float], list[str]]] = {}
        self.evidence: dict[tuple[int, int], tuple[Mapping[str, float], Mapping[str, str], str]] = {}

    def text(self, match: Match) -> str:
        """The pair's laid-out text (starting at `{`, closing at level 2)."""
        text = self._plain(match)
        return text if text is not None else layout(self.pair_json(match), 2)

    def _plain(self, match: Match) -> str | None:
        """The text of a pair whose values all stay on their lines (evidence may take one line per item); or None."""
        source = _source(match.source)
        transform = "null" if not match.transform else compact([s.to_json() for s in match.transform])
        target_shape = self._shape(match.target_shape)
        shapes: Any = match.source_shape
        if shapes is None:
            source_shape = "null"
        elif shapes and isinstance(shapes[0], tuple):
            source_shape = "[" + ", ".join([self._shape(s) for s in shapes]) + "]"
        else:
            source_shape = self._shape(shapes)
        alternatives = self._alternatives(match)
        if alternatives is None or max(len(source), len(transform), len(target_shape), len(source_shape)) > self._FIELD:
            return None
        evidence = self._evidence(match)
        return (
            f'{{\n      "target": {_string(match.target)},\n      "source": {source},\n'
            f'      "confidence": {self._confidence(match.confidence)},\n      "transform": {transform},\n'
            f'      "target_shape": {target_shape},\n      "source_shape": {source_shape},\n'
            f'      "evidence": {evidence},\n      "alternatives": {alternatives},\n'
            f'      "pinned": {"true" if match.pinned else "false"}\n    }}'
        )

    def _shape(self, shape: Iterable[int]) -> str:
        key = tuple(shape)
        found = self.shapes.get(key)
        if found is None:
            found = self.shapes[key] = "[" + ", ".join([_int_repr(d) for d in key]) + "]"
        return found

    def _confidence(self, value: float) -> str:
        """`round(float(value), 4)` as JSON; zero by its sign, since 0.0 and -0.0 are one key of a dict."""
        found = self.confidences.get(value)
        if found is None:
            found = _float(round(float(value), 4))
            if len(self.confidences) < self._KEPT:
                self.confidences[value] = found
        elif not value:
            found = "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
        return found

    def _evidence(self, match: Match) -> str:
        """The evidence object's text, worked out once for each scores dict and labels dict it is made of.

        The dicts are kept with the text, so their ids cannot be reused meanwhile.
        """
        scores, labels = match.evidence, match.labels
        key = (id(scores), id(labels))
        kept = self.evidence.get(key)
        if kept is None or kept[0] is not scores or kept[1] is not labels:
            kept = self.evidence[key] = (scores, labels, self._evidence_text(scores, labels))
        return kept[2]

    def _evidence_text(self, scores: Mapping[str, float], labels: Mapping[str, str]) -> str:
        """The rounded scores, then the labels; on one line, or one line per item."""
        kept = self.scores.get(id(scores))
        if kept is None or kept[0] is not scores:
            kept = self.scores[id(scores)] = (scores, [f"{_string(k)}: {_score(v)}" for k, v in scores.items()])
        items = kept[1]
        if labels:
            items = items + [self._label(item) for item in labels.items()]
        text = "{" + ", ".join(items) + "}"
        if len(text) > self._FIELD and items:
            return "{\n        " + ",\n        ".join(items) + "\n      }"
        return text

    def _label(self, item: tuple[str, str]) -> str:
        found = self.labels.get(item)
        if found is None:
            found = self.labels[item] = f"{_string(item[0])}: {compact(item[1])}"
        return found

    def _alternatives(self, match: Match) -> str | None:
        """The alternatives' text: one line, or one line per alternative; None when one needs more lines."""
        if not match.alternatives:
            return "[]"
        texts = []
        confidence = self._confidence
        for alternative in match.alternatives:
            source = alternative.source
            text = (
                '{"source": '
                + (_string(source) if type(source) is str else _source(source))
                + ', "confidence": '
                + confidence(alternative.confidence)
            )
            if alternative.transform:
                text += ', "transform": ' + compact([s.to_json() for s in alternative.transform])
            texts.append(text + "}")
        flat = "[" + ", ".join(texts) + "]"
        if len(flat) <= self._FIELD:
            return flat
        if max(map(len, texts)) > self._ITEM:
            return None
        return "[\n        " + ",\n        ".join(texts) + "\n      ]"


def _source(source: Any) -> str:
    if type(source) is str:
        return _string(source)
    if source is None:
        return "null"
    return compact(list(source))


def _score(value: float) -> str:
    """An evidence score as the file writes it: rounded to 4 places (an int stays an int)."""
    rounded = round(value, 4)
    return _float(rounded) if type(rounded) is float else compact(rounded)
