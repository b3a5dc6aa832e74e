"""The report page's embedded data: a mapping packed as compact JSON that the page's script reads.

Building it is the only place that knows the layout below; the page's script (`assets/report.js`) relies on it.
`target` and `source` each hold `nodes`, the module tree as `[parent, name segment]` listed parent-first with
node 0 the root, and `params`, `[node, leaf, shape, dtype]` in file order (shape and dtype index the
`shapes`/`dtypes` tables, -1 when unknown). `pairs[i]` belongs to target parameter `i`: `[source, confidence,
pinned, transform, scores, notes, alternatives]`, where source is a source index, a list of them (concatenated)
or -1, transform indexes `transforms` (`[text, kind bits, part, parts]`) or is -1, scores are whole percentages
aligned with `evidence_numeric`, notes index `strings` aligned with `evidence_text`, and each alternative is
`[source, confidence(, transform)]`. Names are split at dots, so `".".join` of a parameter's node segments and
leaf gives its name back.

Names are untrusted: the JSON has `<`, `>`, `&` and U+2028/U+2029 escaped so no name can close its `<script>`
element.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from automap.records import Match, NameMapping, ParamTable
from automap.transforms import Concat, Split, Step, Transpose, describe

__all__ = ["SIGNALS", "PageData"]

_MAX_ALTERNATIVES = 5
_MAX_EXCLUDED_LISTED = 1000
# What each engine signal measures, for the evidence tables (unknown signals are shown by name only).
SIGNALS = {
    "shape": "shapes agree: 1 when identical, less for a layout change, transpose or reshape",
    "leaf": "the last name components agree (gamma ~ weight, moving_mean ~ running_mean)",
    "path": "the module paths share rare name tokens (with learned correspondences such as head ~ classifier)",
    "numbers": "the numbers in the names agree (layers.3 ~ blocks.3)",
    "module": "the source sits in the source module that corresponds to the target's enclosing module",
    "group": "same rank among same-shaped siblings (third of three [d, d] weights under one module)",
    "local_order": "same rank among like tensors inside corresponding blocks",
    "order": "the source is where the target's position in file order predicts it",
}
# Transform kinds, as bits the script decodes.
_SPLIT, _CONCAT, _TRANSPOSE, _LAYOUT = 1, 2, 4, 8


class _Interned:
    """A table of distinct JSON-able values; `index(v)` is the position of `v`, added on first sight."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._index: dict[Any, int] = {}

    def index(self, value: Any) -> int:
        key = tuple(value) if isinstance(value, list) else value
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.values)
            self.values.append(value)
        return found


class _Side:
    """One checkpoint's parameters as a module tree: nodes `[parent, segment]`, params `[node, leaf, shape, dtype]`."""

    def __init__(self) -> None:
        self.nodes: list[list[Any]] = [[-1, ""]]
        self.params: list[list[Any]] = []
        self.position: dict[str, int] = {}
        self._nodes: dict[str, int] = {}  # a module's dotted path -> its node (the root, node 0, has no path)

    def add(self, name: str, shape: int, dtype: int) -> int:
        module, dot, leaf = name.rpartition(".")
        node = self._nodes.get(module) if dot else 0
        if node is None:
            node = self._node(module)
        position = self.position[name] = len(self.params)
        self.params.append([node, leaf, shape, dtype])
        return position

    def _node(self, path: str) -> int:
        found = self._nodes.get(path)
        if found is None:
            parent_path, dot, segment = path.rpartition(".")
            parent = self._node(parent_path) if dot else 0
            found = self._nodes[path] = len(self.nodes)
            self.nodes.append([parent, segment])
        return found


class PageData:
    """The page's embedded data, built once per page; the static summary reads its numbers from here too."""

    def __init__(
        self,
        mapping: NameMapping,
        threshold: float,
        source_table: ParamTable | None,
        target_table: ParamTable | None,
    ) -> None:
        self.mapping = mapping
        self.threshold = threshold
        self.shapes = _Interned()
        self._shape_ids: dict[tuple[int, ...], int] = {}
        self.dtypes = _Interned()
        self.strings = _Interned()
        self.transforms = _Interned()
        self.numeric_keys: list[str] = []
        self.text_keys: list[str] = []
        self._scores: dict[int, tuple[Mapping[str, float], list[Any]]] = {}
        self._labels: dict[tuple[tuple[str, str], ...], list[Any]] = {}
        self._dtype_ids: dict[str, int] = {}
        self._named: dict[int, tuple[Mapping[str, str], list[Any]]] = {}
        self._rounded: dict[int, dict[float, float | int]] = {3: {}, 4: {}}
        self.dtypes_known = source_table is not None or target_table is not None
        self.source_order_known = source_table is not None
        self.target = _Side()
        self.source = _Side()
        self._fill_target(target_table)
        self._fill_source(source_table)
        self.pairs = [self._pair(p) for p in mapping.pairs]
        used = {n for p in mapping.pairs for n in p.source_names}
        self.unused = [name for name in self.source.position if name not in used]

    def _shape(self, shape: Sequence[int] | None) -> int:
        if shape is None:
            return -1
        found = self._shape_ids.get(tuple(shape))
        if found is None:
            found = self._shape_ids[tuple(shape)] = self.shapes.index([int(d) for d in shape])
        return found

    def _dtype(self, dtype: str | None) -> int:
        if dtype is None:
            return -1
        found = self._dtype_ids.get(dtype)
        if found is None:
            found = self._dtype_ids[dtype] = self.dtypes.index(dtype)
        return found

    def _number(self, value: float, digits: int) -> float | int:
        """`_number`, kept once worked out: confidences repeat across the pairs of repeated blocks."""
        kept = self._rounded[digits]
        found = kept.get(value)
        if found is None:
            found = kept[value] = _number(value, digits)
        return found

    def _fill_target(self, table: ParamTable | None) -> None:
        add, shape, dtype = self.target.add, self._shape, self._dtype
        for pair in self.mapping.pairs:
            record = table.get(pair.target) if table is not None else None
            if record is not None:
                add(pair.target, shape(record.shape), dtype(record.dtype))
                continue
            # a flat mapping knows no shapes: it carries () with no source shape for every pair
            unknown = pair.source is not None and pair.source_shape is None and not pair.target_shape
            self.target.add(pair.target, self._shape(None if unknown else pair.target_shape), -1)

    def _fill_source(self, table: ParamTable | None) -> None:
        if table is not None:
            add, shape, dtype = self.source.add, self._shape, self._dtype
            for record in table.params:
                add(record.name, shape(record.shape), dtype(record.dtype))
        # without the table, sources appear in the order the target uses them, then the unused ones
        pairs, known = self.mapping.pairs, self.source.position
        missing = [n for p in pairs for n in p.source_names if n not in known]
        missing += [n for n in self.mapping.unmatched_source if n not in known]
        missing += [n for p in pairs for a in p.alternatives for n in _names(a.source) if n not in known]
        if not missing:
            return
        shapes: dict[str, tuple[int, ...]] = {}
        for pair in pairs:
            if pair.source_shape is None or pair.source is None:
                continue
            if isinstance(pair.source, tuple):
                several = cast("tuple[tuple[int, ...], ...]", pair.source_shape)
                shapes.update(zip(pair.source, several, strict=False))
            else:
                shapes[pair.source] = cast("tuple[int, ...]", pair.source_shape)
        for name in missing:
            if name not in known:
                self.source.add(name, self._shape(shapes.get(name)), -1)

    def _source_ref(self, source: str | tuple[str, ...] | None) -> Any:
        if source is None:
            return -1
        if isinstance(source, str):
            return self.source.position[source]
        return [self.source.position[n] for n in source]

    def _transform(self, match_source: Any, steps: Sequence[Step]) -> int:
        if not steps and not isinstance(match_source, tuple):
            return -1
        bits, part, parts = 0, 0, 0
        for step in steps:
            if isinstance(step, Split):
                bits |= _SPLIT
                part, parts = step.index, step.parts
            elif isinstance(step, Concat):
                bits |= _CONCAT
            elif isinstance(step, Transpose):
                bits |= _TRANSPOSE
            else:
                bits |= _LAYOUT
        if isinstance(match_source, tuple):
            bits |= _CONCAT
            parts = len(match_source)
        text = describe(steps) if steps else "concat(axis 0)"
        return self.transforms.index([text, bits, part, parts])

    def _evidence(self, evidence: Mapping[str, float], labels: Mapping[str, str]) -> tuple[list[Any], list[Any]]:
        """Scores and labels aligned with the key lists, which only grow, so a result made once stays right.

        Pairs carried over from one solved block share their scores dict, and labels repeat: each is worked out
        once (each dict is kept with its result, so its id cannot be reused meanwhile).
        """
        kept = self._scores.get(id(evidence))
        if kept is None or kept[0] is not evidence:
            kept = self._scores[id(evidence)] = (evidence, self._aligned(evidence, {})[0])
        named = self._named.get(id(labels))
        if named is None or named[0] is not labels:
            key = tuple(labels.items())
            texts = self._labels.get(key)
            if texts is None:
                texts = self._labels[key] = self._aligned({}, labels)[1]
            named = self._named[id(labels)] = (labels, texts)
        return kept[1], named[1]

    def _aligned(self, evidence: Mapping[str, float], labels: Mapping[str, str]) -> tuple[list[Any], list[Any]]:
        numbers: list[Any] = [None] * len(self.numeric_keys)
        texts: list[Any] = [None] * len(self.text_keys)
        for key, value in evidence.items():
            if key not in self.numeric_keys:
                self.numeric_keys.append(key)
                numbers.append(None)
            if math.isfinite(value):
                # scores as whole percentages: the page shows two decimals, and "87" is shorter than "0.87"
                numbers[self.numeric_keys.index(key)] = round(float(value) * 100)
        for key, text in labels.items():
            if key not in self.text_keys:
                self.text_keys.append(key)
                texts.append(None)
            texts[self.text_keys.index(key)] = self.strings.index(text)
        while numbers and numbers[-1] is None:
            numbers.pop()
        while texts and texts[-1] is None:
            texts.pop()
        return numbers, texts

    def _pair(self, match: Match) -> list[Any]:
        numbers, texts = self._evidence(match.evidence, match.labels)
        alternatives = []
        position = self.source.position
        for alternative in match.alternatives[:_MAX_ALTERNATIVES]:
            source = alternative.source
            entry = [
                position[source] if type(source) is str else self._source_ref(source),
                self._number(alternative.confidence, 3),
            ]
            steps = alternative.transform
            transform = self._transform(source, steps) if steps or type(source) is not str else -1
            alternatives.append(entry if transform < 0 else [*entry, transform])
        return [
            self._source_ref(match.source),
            self._number(match.confidence, 4),
            1 if match.pinned else 0,
            self._transform(match.source, match.transform),
            numbers,
            texts,
            alternatives,
        ]

    def document(self) -> str:
        """The embedded JSON, safe inside a `<script>` element."""
        mapping = self.mapping
        data = {
            "version": 1,
            "threshold": self.threshold,
            "mapping_threshold": mapping.threshold,
            "source_order_known": self.source_order_known,
            "target": {"nodes": self.target.nodes, "params": self.target.params},
            "source": {"nodes": self.source.nodes, "params": self.source.params},
            "pairs": self.pairs,
            "shapes": self.shapes.values,
            "dtypes": self.dtypes.values,
            "strings": self.strings.values,
            "transforms": self.transforms.values,
            "evidence_numeric": self.numeric_keys,
            "evidence_text": self.text_keys,
            "signals": {k: v for k, v in SIGNALS.items() if k in self.numeric_keys},
            "excluded": {
                "source": list(mapping.excluded_source[:_MAX_EXCLUDED_LISTED]),
                "target": list(mapping.excluded_target[:_MAX_EXCLUDED_LISTED]),
                "source_count": len(mapping.excluded_source),
                "target_count": len(mapping.excluded_target),
            },
        }
        return _script_safe_json(data)


def _names(source: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if source is None:
        return ()
    return (source,) if isinstance(source, str) else source


def _number(value: float, digits: int) -> float | int:
    """A float rounded for the page; whole numbers as ints (`1` is shorter than `1.0`)."""
    rounded = round(float(value), digits)
    return int(rounded) if rounded.is_integer() else rounded


def _script_safe_json(data: Any) -> str:
    """JSON that cannot end its `<script>` element or be read as markup, whatever strings it holds.

    `ensure_ascii` writes every non-ASCII character as an escape, U+2028/U+2029 (line breaks to JavaScript) and
    lone surrogates (not encodable as UTF-8) included; `<`, `>` and `&` become escapes too, so no name can
    spell `</script>` or `<!--` inside the element.
    """
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
