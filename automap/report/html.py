"""A mapping as one self-contained HTML page a reviewer opens from disk or attaches to a pull request.

The page holds everything it needs: its CSS and script are inline and pinned by hash in a
Content-Security-Policy that forbids any network access, and the mapping travels as compact JSON in a
`<script type="application/json">` block. The static part (summary counts, confidence histogram) reads without
script and prints; the script builds the rest on demand: the "needs review" list, the two module hierarchies
side by side (a virtualised tree, collapsed by default, so a 90,000-pair mapping stays responsive), the name
filter and the threshold slider that re-flags pairs.

Parameter names, paths and notes are untrusted: everything written as HTML is escaped, the JSON block has
`<`, `>`, `&` and U+2028/U+2029 escaped so no name can close it, and the script only ever sets text, never
markup.

The embedded data (the script relies on it): `target` and `source` each hold `nodes`, the module tree as
`[parent, name segment]` listed parent-first with node 0 the root, and `params`, `[node, leaf, shape, dtype]` in
file order (shape and dtype index the `shapes`/`dtypes` tables, -1 when unknown). `pairs[i]` belongs to target
parameter `i`: `[source, confidence, pinned, transform, scores, notes, alternatives]`, where source is a source
index, a list of them (concatenated) or -1, transform indexes `transforms` (`[text, kind bits, part, parts]`)
or is -1, scores are whole percentages aligned with `evidence_numeric`, notes index `strings` aligned with
`evidence_text`, and each alternative is `[source, confidence(, transform)]`. Names are split at dots, so
`".".join` of a parameter's node segments and leaf gives its name back.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from automap import __version__
from automap._text import human_bytes
from automap._types import StrPath
from automap.records import Endpoint, Match, NameMapping, ParamTable
from automap.transforms import Concat, Split, Step, Transpose, describe

__all__ = ["render_html", "write_html"]

_MAX_ALTERNATIVES = 5
_MAX_EXCLUDED_LISTED = 1000
_BINS = 20
# What each engine signal measures, for the evidence tables (unknown signals are shown by name only).
_SIGNALS = {
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


def render_html(
    mapping: NameMapping,
    *,
    threshold: float | None = None,
    source_table: ParamTable | None = None,
    target_table: ParamTable | None = None,
) -> str:
    """Render a mapping as a self-contained HTML report.

    Args:
        mapping: the mapping to show.
        threshold: confidence below which a pair is flagged for review (default: the mapping's own); the page's
            slider starts here.
        source_table: the source checkpoint, when at hand: adds dtypes and true file positions.
        target_table: the target checkpoint or listing, likewise.

    Returns:
        The HTML document. It loads nothing from anywhere: no network, no external script, style or font.

    Raises:
        ValueError: `threshold` is outside [0, 1].

    Example:
        >>> page = render_html(load_mapping("mapping.json"))  # doctest: +SKIP
        >>> page.startswith("<!DOCTYPE html>")  # doctest: +SKIP
        True
    """
    level = mapping.threshold if threshold is None else float(threshold)
    if not 0.0 <= level <= 1.0:
        msg = f"threshold must be between 0 and 1, got {threshold}"
        raise ValueError(msg)
    data = _Data(mapping, level, source_table, target_table)
    document = data.document()
    script, style = _SCRIPT, _STYLE
    policy = (
        f"default-src 'none'; script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
        "img-src 'none'; font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )
    source, target = mapping.source, mapping.target
    title = f"automap report: {_basename(source.path) or 'source'} \u2192 {_basename(target.path) or 'target'}"
    dtype_class = "" if data.dtypes_known else ' class="no-dtype"'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_esc(policy)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="automap">',
        f"<title>{_esc(title)}</title>",
        f"<style>{style}</style>",
        "</head>",
        f"<body{dtype_class}>",
        '<a class="skip" href="#review">Skip to the pairs that need review</a>',
        "<header>",
        "<h1>Mapping report</h1>",
        f'<p class="route">{_side_line(source)} <span aria-hidden="true">\u2192</span><span class="sr"> to </span> '
        f"{_side_line(target)}</p>",
        "</header>",
        "<main>",
        data.summary_html(),
        _CONTROLS_HTML.replace("{threshold}", f"{level:.2f}"),
        _REVIEW_HTML.replace("<!--signals-->", data.signals_html()),
        _TREE_HTML,
        _LEFTOVERS_HTML,
        "</main>",
        f"<footer><p>Written by automap {_esc(__version__)}. This page is self-contained: it opens from disk "
        f"and loads nothing from the network. Data: {len(mapping.pairs)} pairs, "
        f"{_esc(human_bytes(len(document.encode('utf-8'))))} of embedded JSON.</p></footer>",
        f'<script type="application/json" id="automap-data">{document}</script>',
        f"<script>{script}</script>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def write_html(
    mapping: NameMapping,
    path: StrPath,
    *,
    threshold: float | None = None,
    source_table: ParamTable | None = None,
    target_table: ParamTable | None = None,
    overwrite: bool = True,
) -> None:
    """Write the HTML report of a mapping atomically (never a half-written file).

    Args:
        mapping: the mapping to show.
        path: the output file, conventionally `*.html`.
        threshold: confidence below which a pair is flagged (default: the mapping's own).
        source_table: the source checkpoint, when at hand (dtypes, positions).
        target_table: the target checkpoint or listing, when at hand.
        overwrite: replace an existing file.

    Raises:
        ConversionError: the file exists (without `overwrite`), its folder is missing, or it cannot be written.
        ValueError: `threshold` is outside [0, 1].

    Example:
        >>> write_html(load_mapping("mapping.json"), "report.html")  # doctest: +SKIP
    """
    from automap._atomic import atomic_output

    page = render_html(mapping, threshold=threshold, source_table=source_table, target_table=target_table)
    with atomic_output(path, overwrite=overwrite) as handle:
        handle.write(page.encode("utf-8", errors="replace"))  # a lone surrogate in a path becomes "?"


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
        self._nodes: dict[tuple[str, ...], int] = {(): 0}

    def add(self, name: str, shape: int, dtype: int) -> int:
        *modules, leaf = name.split(".")
        node = self._node(tuple(modules))
        self.position[name] = len(self.params)
        self.params.append([node, leaf, shape, dtype])
        return self.position[name]

    def _node(self, path: tuple[str, ...]) -> int:
        found = self._nodes.get(path)
        if found is None:
            parent = self._node(path[:-1])
            found = self._nodes[path] = len(self.nodes)
            self.nodes.append([parent, path[-1]])
        return found


class _Data:
    """The page's embedded data and the static numbers computed from it."""

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
        return -1 if dtype is None else self.dtypes.index(dtype)

    def _fill_target(self, table: ParamTable | None) -> None:
        for pair in self.mapping.pairs:
            record = table.get(pair.target) if table is not None else None
            if record is not None:
                self.target.add(pair.target, self._shape(record.shape), self._dtype(record.dtype))
                continue
            # a flat mapping knows no shapes: it carries () with no source shape for every pair
            unknown = pair.source is not None and pair.source_shape is None and not pair.target_shape
            self.target.add(pair.target, self._shape(None if unknown else pair.target_shape), -1)

    def _fill_source(self, table: ParamTable | None) -> None:
        if table is not None:
            for record in table.params:
                self.source.add(record.name, self._shape(record.shape), self._dtype(record.dtype))
        shapes: dict[str, tuple[int, ...]] = {}
        for pair in self.mapping.pairs:
            if pair.source_shape is None or pair.source is None:
                continue
            if isinstance(pair.source, tuple):
                several = cast("tuple[tuple[int, ...], ...]", pair.source_shape)
                shapes.update(zip(pair.source, several, strict=False))
            else:
                shapes[pair.source] = cast("tuple[int, ...]", pair.source_shape)
        # without the table, sources appear in the order the target uses them, then the unused ones
        names = [n for p in self.mapping.pairs for n in p.source_names]
        names += list(self.mapping.unmatched_source)
        names += [n for p in self.mapping.pairs for a in p.alternatives for n in _names(a.source)]
        for name in names:
            if name not in self.source.position:
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
        for alternative in match.alternatives[:_MAX_ALTERNATIVES]:
            entry = [self._source_ref(alternative.source), _number(alternative.confidence, 3)]
            transform = self._transform(alternative.source, alternative.transform)
            alternatives.append(entry if transform < 0 else [*entry, transform])
        return [
            self._source_ref(match.source),
            _number(match.confidence, 4),
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
            "signals": {k: v for k, v in _SIGNALS.items() if k in self.numeric_keys},
            "excluded": {
                "source": list(mapping.excluded_source[:_MAX_EXCLUDED_LISTED]),
                "target": list(mapping.excluded_target[:_MAX_EXCLUDED_LISTED]),
                "source_count": len(mapping.excluded_source),
                "target_count": len(mapping.excluded_target),
            },
        }
        return _script_safe_json(data)

    def counts(self) -> dict[str, int]:
        """The summary numbers at the report's threshold."""
        pairs = self.mapping.pairs
        matched = [p for p in pairs if p.source is not None]
        steps = [[type(s) for s in p.transform] for p in matched]
        return {
            "pairs": len(matched),
            "doubtful": sum(1 for p in matched if not p.pinned and p.confidence < self.threshold),
            "unmatched-target": len(pairs) - len(matched),
            "unmatched-source": len(self.unused),
            "excluded-source": len(self.mapping.excluded_source),
            "excluded-target": len(self.mapping.excluded_target),
            "pinned": sum(1 for p in matched if p.pinned),
            "split": sum(1 for ops in steps if Split in ops),
            "fused": sum(1 for p in matched if isinstance(p.source, tuple)),
            "transposed": sum(1 for ops in steps if Transpose in ops),
        }

    def histogram(self) -> list[int]:
        """Matched pairs per confidence bin of width 1/_BINS (1.0 falls in the last bin)."""
        bins = [0] * _BINS
        for pair in self.mapping.pairs:
            if pair.source is not None:
                # the epsilon keeps 0.95 (stored as 0.9499...) in the bin that starts at 0.95
                bins[min(int(pair.confidence * _BINS + 1e-9), _BINS - 1)] += 1
        return bins

    def summary_html(self) -> str:
        """The static summary: counts, the two files, notes and the confidence histogram."""
        c = self.counts()
        mapping = self.mapping

        def card(key: str, label: str, value: str, hint: str = "") -> str:
            title = f' title="{_esc(hint)}"' if hint else ""
            return f'<div class="card card-{key}"{title}><dt>{label}</dt><dd data-k="{key}">{value}</dd></div>'

        review = c["doubtful"] + c["unmatched-target"]
        cards = [
            card("pairs", "Pairs", str(c["pairs"]), "target parameters with a source"),
            card("doubtful", "\u26a0 Doubtful", str(c["doubtful"]), "pairs below the threshold, not yet reviewed"),
            card("unmatched-target", "\u2717 Targets without a source", str(c["unmatched-target"])),
            card("unmatched-source", "Source parameters not used", str(c["unmatched-source"])),
            card(
                "excluded",
                "Training state set aside",
                f'<span data-k="excluded-source">{c["excluded-source"]}</span> source \u00b7 '
                f'<span data-k="excluded-target">{c["excluded-target"]}</span> target',
                "optimizer moments, step counters and similar entries kept out of the mapping",
            ),
            card("threshold", "Threshold", f"{self.threshold:.2f}", "pairs below it are flagged for review"),
            card("pinned", "\u2713 Reviewed (pinned)", str(c["pinned"])),
            card(
                "transforms",
                "Layout changes",
                f'<span data-k="transposed">{c["transposed"]}</span> transposed \u00b7 '
                f'<span data-k="split">{c["split"]}</span> split \u00b7 '
                f'<span data-k="fused">{c["fused"]}</span> fused',
                "split: a part of a fused source (qkv); fused: several sources concatenated",
            ),
        ]
        rows = []
        for label, side in (("Source", mapping.source), ("Target", mapping.target)):
            rows.append(
                f'<tr><th scope="row">{label}</th><td class="path">{_esc(side.path) or "(not recorded)"}</td>'
                f"<td>{_esc(_framework(side.framework))}</td><td>{side.params} parameters</td>"
                f'<td class="fp">{_esc(side.fingerprint)}</td></tr>'
            )
        notes = "".join(f"<li>{_esc(n)}</li>" for n in mapping.notes)
        notes_html = f'<ul class="notes" aria-label="notes">{notes}</ul>' if notes else ""
        return (
            '<section id="summary" aria-labelledby="summary-h">'
            '<h2 id="summary-h">Summary</h2>'
            '<div class="summary-grid">'
            f'<dl class="cards">{"".join(cards)}</dl>'
            f"{self.histogram_svg()}"
            "</div>"
            f'<p class="needs">Needs review: <strong data-k="review">{review}</strong> '
            f"(doubtful pairs and targets without a source).</p>"
            f'<table class="files"><caption class="sr">Files</caption>'
            f"<tbody>{''.join(rows)}</tbody></table>"
            f"{notes_html}"
            "</section>"
        )

    def signals_html(self) -> str:
        """What each evidence score measures, for the signals this mapping has."""
        known = [k for k in self.numeric_keys if k in _SIGNALS]
        if not known:
            return ""
        items = "".join(f"<dt>{_esc(k.replace('_', ' '))}</dt><dd>{_esc(_SIGNALS[k])}</dd>" for k in known)
        return (
            '<details class="signals"><summary>What the evidence scores mean</summary>'
            f'<dl class="kv">{items}</dl><p>Each score is in [0, 1]; 1 means the signal fully supports the pair.</p>'
            "</details>"
        )

    def histogram_svg(self) -> str:
        """An inline SVG bar chart of confidences with the threshold marked; the script moves the marker."""
        bins = self.histogram()
        width, height, left, bottom, top = 420, 150, 34, 24, 16
        plot_w, plot_h = width - left - 10, height - bottom - top
        bar_w = plot_w / _BINS
        peak = max(bins) or 1
        total = sum(bins)
        items = []
        for i, count in enumerate(bins):
            low, high = i / _BINS, (i + 1) / _BINS
            bar_h = 0.0 if count == 0 else max(2.0, plot_h * count / peak)
            x, y = left + i * bar_w, top + plot_h - bar_h
            below = " below" if high <= self.threshold + 1e-9 else ""
            label = f"{low:.2f}\u2013{high:.2f}: {count} pair{'' if count == 1 else 's'}"
            items.append(
                f'<rect class="bar{below}" data-hi="{high:.2f}" x="{x + 1:.1f}" y="{y:.1f}" '
                f'width="{bar_w - 2:.1f}" height="{bar_h:.1f}"><title>{label}</title></rect>'
            )
            if count:
                items.append(
                    f'<text class="count" x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{count}</text>'
                )
        axis = [f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>']
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
            x = left + tick * plot_w
            axis.append(f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{tick:g}</text>')
        marker_x = left + self.threshold * plot_w
        marker = (
            f'<line id="hist-thr" class="thr" x1="{marker_x:.1f}" y1="{top - 6}" x2="{marker_x:.1f}" '
            f'y2="{top + plot_h}"/>'
            f'<text id="hist-thr-label" class="thr-label" x="{marker_x + 3:.1f}" y="{top - 6}">'
            f"threshold {self.threshold:.2f}</text>"
        )
        description = f"Histogram of the confidence of {total} matched pairs in {_BINS} bins from 0 to 1; " + ", ".join(
            f"{i / _BINS:.2f} to {(i + 1) / _BINS:.2f}: {n}" for i, n in enumerate(bins) if n
        )
        return (
            f'<figure class="hist"><svg id="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-labelledby="hist-title hist-desc" data-left="{left}" data-width="{plot_w}">'
            f'<title id="hist-title">Confidence histogram</title><desc id="hist-desc">{_esc(description)}</desc>'
            f"{''.join(items)}{''.join(axis)}{marker}</svg>"
            "<figcaption>Confidence of the matched pairs; bars left of the line are flagged for review.</figcaption>"
            "</figure>"
        )


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


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _basename(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _framework(framework: str) -> str:
    return {"pytorch": "PyTorch", "mindspore": "MindSpore"}.get(framework, framework)


def _side_line(side: Endpoint) -> str:
    name = _esc(_basename(side.path)) or "(unnamed)"
    return f'<span class="side"><strong>{name}</strong> ({_esc(_framework(side.framework))})</span>'


_CONTROLS_HTML = """<section id="controls" aria-label="Filter and threshold">
<div class="control"><label for="filter">Filter by name</label>
<input id="filter" type="search" placeholder="e.g. attention.wq or norm" autocomplete="off" spellcheck="false"></div>
<div class="control"><label for="thr">Threshold <output id="thr-out" for="thr">{threshold}</output></label>
<input id="thr" type="range" min="0" max="1" step="0.01" value="{threshold}"></div>
<div class="control"><label><input id="only" type="checkbox"> only pairs that need review</label></div>
<fieldset class="control"><legend>Arrange by</legend>
<label><input type="radio" name="by" value="t" checked> target</label>
<label><input type="radio" name="by" value="s"> source</label></fieldset>
<p id="status" class="status" role="status" aria-live="polite"></p>
</section>"""

_REVIEW_HTML = """<section id="review" aria-labelledby="review-h" tabindex="-1">
<h2 id="review-h">Needs review (<span data-k="review-listed">0</span>)</h2>
<p class="legend">\u26a0 doubtful: below the threshold \u00b7 \u2717 no source \u00b7 \u2713 reviewed (pinned) \u00b7
\u25cf confident \u00b7 \u25cb fair. Most doubtful first; confirm a right pair with
<code>automap audit MAPPING --accept TARGET</code>, fix a wrong one in the mapping file.</p>
<!--signals-->
<noscript><p class="noscript">This page builds its lists with JavaScript, which is disabled: the summary and the
histogram above are complete, the lists are not.</p></noscript>
<ol id="review-list" class="review-list"></ol>
<button id="more" type="button" hidden>Show more</button>
</section>"""

_TREE_HTML = """<section id="pairs" aria-labelledby="pairs-h">
<h2 id="pairs-h">Side by side</h2>
<p class="legend">Module hierarchy of the <span id="by-name">target</span> (left), each parameter aligned with the
parameter(s) it maps to (right). Select a name for its evidence.
<button id="expand" type="button">Expand all</button> <button id="collapse" type="button">Collapse all</button>
<span id="tree-count"></span></p>
<div class="row head" aria-hidden="true"><span class="c name" id="head-left">target</span><span class="c">shape</span>
<span class="c dt">dtype</span><span class="c conf">confidence</span><span class="c name" id="head-right">source</span>
<span class="c">shape</span><span class="c dt">dtype</span></div>
<div id="tree" role="tree" aria-label="Parameters side by side" tabindex="0"><div id="tree-inner" role="none">
<div id="tree-window" role="none"></div></div></div>
<div id="detail" aria-live="polite"></div>
</section>"""

_LEFTOVERS_HTML = """<section id="leftovers" aria-labelledby="leftovers-h">
<h2 id="leftovers-h">Left over</h2>
<details id="unused"><summary>Source parameters not used (<span data-k="unused-listed">0</span>)</summary>
<ol class="plain" id="unused-list"></ol></details>
<details id="excluded-source"><summary>Training state set aside from the source
(<span data-k="excluded-source-listed">0</span>)</summary><ol class="plain"></ol></details>
<details id="excluded-target"><summary>Training state set aside from the target
(<span data-k="excluded-target-listed">0</span>)</summary><ol class="plain"></ol></details>
</section>"""

_STYLE = """
:root{--low:#b3261e;--low-bg:#fde8e6;--mid:#7a5200;--mid-bg:#fff1cc;--high:#1d6b35;--high-bg:#e2f3e6;
--pin:#1f4e9c;--pin-bg:#e3ecfb;--none:#4d4d4d;--none-bg:#ececec;--line:#d6d6d6;--muted:#5c5c5c;--row:24px;
color-scheme:light}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1b1b1b;
background:#fff}
header,main,footer{max-width:1500px;margin:0 auto;padding:0 16px}
h1{font-size:1.45em;margin:14px 0 2px}h2{font-size:1.15em;margin:18px 0 8px;border-bottom:1px solid var(--line)}
code,.c,.mono,.path,.fp{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
.route{margin:0;color:var(--muted)}.route strong{color:#1b1b1b}
.skip{position:absolute;left:-9999px}.skip:focus{left:8px;top:8px;background:#fff;padding:4px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.summary-grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.cards{display:grid;grid-template-columns:repeat(4,minmax(150px,1fr));gap:8px;margin:0;flex:1 1 640px}
.card{border:1px solid var(--line);border-radius:6px;padding:6px 10px;background:#fafafa}
.card dt{font-size:12px;color:var(--muted)}.card dd{margin:0;font-size:20px;font-weight:600}
.card-excluded dd,.card-transforms dd{font-size:14px;padding-top:5px}
.card-doubtful{border-color:var(--low);background:var(--low-bg)}
.card-doubtful dt,.card-doubtful dd{color:var(--low)}
.hist{margin:0}.hist figcaption{font-size:12px;color:var(--muted);max-width:420px}
#hist .bar{fill:#3f7f55}#hist .bar.below{fill:var(--low)}#hist .axis{stroke:#777}
#hist .thr{stroke:#111;stroke-width:2;stroke-dasharray:4 3}#hist text{font-size:10px;fill:#333}
.needs{margin:8px 0}.files{border-collapse:collapse;margin:6px 0}
.files th,.files td{text-align:left;padding:2px 10px 2px 0;vertical-align:top}.fp{color:var(--muted)}
.notes{margin:4px 0;padding-left:20px;color:var(--muted)}
#controls{position:sticky;top:0;z-index:2;background:#fff;display:flex;flex-wrap:wrap;gap:6px 22px;
align-items:center;padding:8px 0;border-bottom:1px solid var(--line)}
.control{display:flex;gap:8px;align-items:center;margin:0}fieldset.control{border:0;padding:0}
fieldset.control legend{float:left;margin-right:8px}
#filter{width:22em;padding:4px 6px;font:inherit}#thr{width:12em}#thr-out{font-weight:600;min-width:2.5em}
.status{margin:0;color:var(--muted)}
.legend{color:var(--muted);margin:4px 0 8px}
.badge{display:inline-block;min-width:5.2em;padding:0 6px;border-radius:4px;font-weight:600;white-space:nowrap}
.lvl-low .badge,.badge.lvl-low{color:var(--low);background:var(--low-bg)}
.lvl-mid .badge,.badge.lvl-mid{color:var(--mid);background:var(--mid-bg)}
.lvl-high .badge,.badge.lvl-high{color:var(--high);background:var(--high-bg)}
.lvl-pinned .badge,.badge.lvl-pinned{color:var(--pin);background:var(--pin-bg)}
.lvl-none .badge,.badge.lvl-none,.lvl-unused .badge{color:var(--none);background:var(--none-bg)}
.mark{display:inline-block;margin-left:4px;padding:0 4px;border:1px solid #8a8a8a;border-radius:3px;font-size:11px;
color:#333;white-space:nowrap}
.review-list{list-style:none;padding:0;margin:0}
.item{border:1px solid var(--line);border-left:6px solid var(--none);border-radius:6px;padding:8px 12px;
margin:0 0 10px;break-inside:avoid}
.item.lvl-low{border-left-color:var(--low)}.item.lvl-mid{border-left-color:#c8951a}
.item.lvl-high{border-left-color:var(--high)}.item.lvl-pinned{border-left-color:var(--pin)}
.item h3{font-size:14px;margin:0 0 6px;word-break:break-all}.item h3 .badge{margin-right:8px}
.item h4{font-size:12.5px;margin:8px 0 2px;color:var(--muted)}
.kv{display:grid;grid-template-columns:9em 1fr;gap:1px 10px;margin:0}.kv dt{color:var(--muted)}
.kv dd{margin:0}
table.t{border-collapse:collapse;font-size:12.5px}.t th,.t td{padding:1px 10px 1px 0;text-align:left;
vertical-align:top}.t th{font-weight:500;color:var(--muted)}.t td.n{text-align:right}
.t tr.chosen td{font-weight:600}.alternatives td.src{min-width:16em}.t td.used{font-size:11.5px;min-width:12em}
.t td:first-child{white-space:nowrap}
.meter{display:inline-block;width:90px;height:9px;border:1px solid #888;vertical-align:middle;background:#fff}
.fill{display:block;height:100%;background:#555}
.tokens .tok{display:inline-block;padding:0 3px;margin:1px;border:1px solid #ccc;border-radius:3px}
.tokens .tok.shared{border-color:#333;font-weight:700;text-decoration:underline}
.columns{display:grid;grid-template-columns:minmax(230px,300px) minmax(0,1fr);gap:4px 24px}
.columns>div{min-width:0}.t td.mono,.kv dd{overflow-wrap:anywhere}.t td.shape{white-space:nowrap}
.row{display:grid;grid-template-columns:minmax(10em,3fr) 8.5em 5.5em 17em minmax(10em,3fr) 8.5em 5.5em;
align-items:center;height:var(--row);line-height:var(--row);border-bottom:1px solid #f0f0f0}
.no-dtype .row{grid-template-columns:minmax(10em,3fr) 8.5em 17em minmax(10em,3fr) 8.5em}.no-dtype .dt{display:none}
.row .c{overflow:hidden;white-space:nowrap;text-overflow:ellipsis;padding-right:8px}
.row.head{font-weight:600;color:var(--muted);border-bottom:1px solid #999;font-family:inherit}
.row.mod{background:#f7f7f7}.row.mod .left{grid-column:1/4}.row.mod .right{grid-column:5/8;color:var(--muted)}
.no-dtype .row.mod .left{grid-column:1/3}.no-dtype .row.mod .right{grid-column:4/6}
.row.param.sel{outline:2px solid #1f4e9c;outline-offset:-2px}
.agg{color:var(--muted);font-size:12px}
#tree{position:relative;overflow:auto;border:1px solid var(--line);height:60vh}
#tree-inner{position:relative}#tree-window{position:absolute;left:0;right:0;top:0}
button.tog,button.link{font:inherit;border:0;background:none;padding:0;cursor:pointer;color:inherit;
text-align:left}button.tog{width:1.4em;font-weight:700}button.link:hover,button.link:focus{text-decoration:underline}
#detail .item{margin-top:10px}
details{margin:4px 0}details ol{max-height:40vh;overflow:auto}.plain{font-size:12.5px}
.error{color:var(--low);font-weight:600}
footer{color:var(--muted);font-size:12px;margin-top:24px;border-top:1px solid var(--line)}
@media print{
#controls,.skip,#more,#expand,#collapse,button.tog{display:none}
body{font-size:11px}.row{height:auto;line-height:1.35;break-inside:avoid}
#tree{height:auto!important;overflow:visible;border:0}#tree-inner{height:auto!important}
#tree-window{position:static}
.item{break-inside:avoid}details ol{max-height:none}
*{print-color-adjust:exact;-webkit-print-color-adjust:exact}
}
"""

_SCRIPT = r"""
(function () {
"use strict";
var root = document.documentElement;
function $(id) { return document.getElementById(id); }
function status(text) { $("status").textContent = text; }
window.addEventListener("error", function (e) {
  var p = $("status"); if (p) { p.className = "status error"; p.textContent = "report script error: " + e.message; }
});
var D = JSON.parse($("automap-data").textContent);
var SIDES = {t: D.target, s: D.source}, P = D.pairs, NP = P.length;
var SHAPES = D.shapes, DTYPES = D.dtypes, STR = D.strings, TFS = D.transforms;
var NK = D.evidence_numeric, TK = D.evidence_text;
var ROW = 24, PAGE = 100, PRINT_MAX = 3000, AUTO_OPEN_ROWS = 200;
var state = {thr: D.threshold, filter: "", only: false, by: "t", shown: PAGE, sel: -1, print: false, rows: [],
  depth: []};
var ICON = {none: "\u2717", pinned: "\u2713", low: "\u26a0", mid: "\u25cb", high: "\u25cf", unused: "\u2013"};
var WORD = {none: "no source", pinned: "reviewed", low: "doubtful", mid: "fair", high: "confident",
  unused: "not used"};

/* DOM built from text only: data never becomes markup. */
function h(tag, attrs) {
  var el = document.createElement(tag);
  if (attrs) for (var k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) el.setAttribute(k, attrs[k]);
  for (var i = 2; i < arguments.length; i++) add(el, arguments[i]);
  return el;
}
function add(el, x) {
  if (x === null || x === undefined || x === false) return;
  if (Array.isArray(x)) { for (var i = 0; i < x.length; i++) add(el, x[i]); return; }
  el.appendChild(typeof x === "object" ? x : document.createTextNode(String(x)));
}
/* a long dotted name may wrap after its dots, not inside a word */
function dotted(name) {
  var parts = name.split("."), out = [];
  for (var k = 0; k < parts.length; k++) out.push(k < parts.length - 1 ? [parts[k] + ".", h("wbr")] : parts[k]);
  return out;
}
function fmt(c) { return (Math.round(c * 100) / 100).toFixed(2); }
function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }

/* names */
function modPath(side, n) {
  var c = side.mp || (side.mp = []);
  if (c[n] !== undefined) return c[n];
  var node = side.nodes[n], parent = node[0];
  return (c[n] = n === 0 ? "" : (parent === 0 ? node[1] : modPath(side, parent) + "." + node[1]));
}
function fullName(side, i) {
  var c = side.fn || (side.fn = new Array(side.params.length));
  if (c[i] !== undefined) return c[i];
  var p = side.params[i];
  return (c[i] = p[0] === 0 ? p[1] : modPath(side, p[0]) + "." + p[1]);
}
function lower(side, i) {
  var c = side.lc || (side.lc = new Array(side.params.length));
  return c[i] !== undefined ? c[i] : (c[i] = fullName(side, i).toLowerCase());
}
function shapeText(k) { return k < 0 ? "?" : "[" + SHAPES[k].join(", ") + "]"; }
function dtypeText(k) { return k < 0 ? "" : DTYPES[k]; }

/* pairs */
function srcs(s) { return s === -1 ? [] : (typeof s === "number" ? [s] : s); }
function matched(i) { return P[i][0] !== -1; }
function pinned(i) { return P[i][2] === 1; }
function doubtful(i) { return matched(i) && !pinned(i) && P[i][1] < state.thr; }
function review(i) { return !matched(i) || doubtful(i); }
function level(i) {
  if (!matched(i)) return "none";
  if (pinned(i)) return "pinned";
  var c = P[i][1];
  if (c < state.thr) return "low";
  return c >= Math.max(0.9, state.thr) ? "high" : "mid";
}
var RANK = {none: 0, low: 1, mid: 2, pinned: 3, high: 4};
var USERS = null;
function users(j) {
  if (!USERS) {
    USERS = [];
    for (var i = 0; i < NP; i++) {
      var s = srcs(P[i][0]);
      for (var k = 0; k < s.length; k++) (USERS[s[k]] || (USERS[s[k]] = [])).push(i);
    }
  }
  return USERS[j] || [];
}
function worst(list) {
  var best = -1;
  for (var k = 0; k < list.length; k++) if (best < 0 || RANK[level(list[k])] < RANK[level(best)]) best = list[k];
  return best;
}
function badge(lvl, c) {
  return h("span", {"class": "badge lvl-" + lvl, title: WORD[lvl]}, ICON[lvl] + " " +
    (lvl === "none" || lvl === "unused" ? WORD[lvl] : fmt(c)), h("span", {"class": "sr"}, " " + WORD[lvl]));
}
function marks(tf) {
  if (tf < 0) return null;
  var t = TFS[tf], bits = t[1], out = [];
  if (bits & 1) out.push(h("span", {"class": "mark", title: t[0]}, "split " + (t[2] + 1) + "/" + t[3]));
  if (bits & 2) out.push(h("span", {"class": "mark", title: t[0]}, "fused \u00d7" + t[3]));
  if (bits & 4) out.push(h("span", {"class": "mark", title: t[0]}, "transposed"));
  if (bits & 8) out.push(h("span", {"class": "mark", title: t[0]}, "layout"));
  return out;
}
function srcNames(s) {
  var l = srcs(s), out = [];
  for (var k = 0; k < l.length; k++) out.push(fullName(D.source, l[k]));
  return out.join(" + ");
}
function srcShapes(s) {
  var l = srcs(s), out = [];
  for (var k = 0; k < l.length; k++) out.push(shapeText(D.source.params[l[k]][2]));
  return out.join(" + ");
}
function srcDtypes(s) {
  var l = srcs(s), out = [];
  for (var k = 0; k < l.length; k++) out.push(dtypeText(D.source.params[l[k]][3]));
  return out.join(" + ");
}

/* filtering */
function matchesT(i) {
  if (state.only && !review(i)) return false;
  var f = state.filter;
  if (!f) return true;
  if (lower(D.target, i).indexOf(f) >= 0) return true;
  var s = srcs(P[i][0]);
  for (var k = 0; k < s.length; k++) if (lower(D.source, s[k]).indexOf(f) >= 0) return true;
  return false;
}
function matchesS(j) {
  var u = users(j);
  if (state.only) {
    var any = u.length === 0;
    for (var k = 0; k < u.length && !any; k++) any = review(u[k]);
    if (!any) return false;
  }
  var f = state.filter;
  if (!f) return true;
  if (lower(D.source, j).indexOf(f) >= 0) return true;
  for (var m = 0; m < u.length; m++) if (lower(D.target, u[m]).indexOf(f) >= 0) return true;
  return false;
}
function filtering() { return state.filter !== "" || state.only; }

/* the tree: items per node in first-appearance order (~node for a module, index for a parameter) */
function items(side) {
  if (side.items) return side.items;
  var nn = side.nodes.length, it = new Array(nn), seen = new Uint8Array(nn);
  for (var n = 0; n < nn; n++) it[n] = [];
  seen[0] = 1;
  for (var i = 0; i < side.params.length; i++) {
    var node = side.params[i][0], chain = [];
    while (!seen[node]) { seen[node] = 1; chain.push(node); node = side.nodes[node][0]; }
    for (var k = chain.length - 1; k >= 0; k--) it[side.nodes[chain[k]][0]].push(~chain[k]);
    it[side.params[i][0]].push(i);
  }
  side.items = it;
  side.open = new Uint8Array(nn);
  side.fclosed = new Uint8Array(nn);
  /* collapsed by default: open breadth-first while the view stays small */
  var queue = [0], shown = it[0].length;
  side.open[0] = 1;
  while (queue.length) {
    var m = queue.shift(), list = it[m];
    for (var q = 0; q < list.length; q++) {
      if (list[q] >= 0) continue;
      var c = ~list[q];
      if (shown + it[c].length <= AUTO_OPEN_ROWS) { side.open[c] = 1; shown += it[c].length; queue.push(c); }
    }
  }
  return it;
}
function isOpen(side, n) { return filtering() ? !side.fclosed[n] : side.open[n] === 1; }
var AGG = {};
function aggregates(by) {
  if (AGG[by]) return AGG[by];
  var side = SIDES[by], nn = side.nodes.length, count = new Int32Array(nn), bad = new Int32Array(nn);
  var lcp = new Array(nn), other = by === "t" ? D.source : D.target;
  for (var i = 0; i < side.params.length; i++) {
    var flagged, partners;
    if (by === "t") { flagged = review(i); partners = srcs(P[i][0]); }
    else { partners = users(i); flagged = partners.length === 0 || doubtful(worst(partners)); }
    var parts = null;
    if (partners.length) {
      var pn = other.params[partners[0]][0];
      parts = pn === 0 ? [] : modPath(other, pn).split(".");
    }
    for (var n = side.params[i][0]; n > 0; n = side.nodes[n][0]) {
      count[n]++; if (flagged) bad[n]++;
      if (parts) {
        if (lcp[n] === undefined) lcp[n] = parts.slice();
        else { var a = lcp[n], z = 0; while (z < a.length && z < parts.length && a[z] === parts[z]) z++; a.length = z; }
      }
    }
  }
  return (AGG[by] = {count: count, bad: bad, lcp: lcp});
}
function flatten() {
  var side = SIDES[state.by], it = items(side), f = filtering(), ok = null, mark = null, n;
  var match = state.by === "t" ? matchesT : matchesS, hits = 0;
  if (f) {
    ok = new Uint8Array(side.params.length); mark = new Uint8Array(side.nodes.length);
    for (var i = 0; i < side.params.length; i++) {
      if (!match(i)) continue;
      ok[i] = 1; hits++;
      for (n = side.params[i][0]; n > 0 && !mark[n]; n = side.nodes[n][0]) mark[n] = 1;
    }
  }
  var rows = [], depth = [], stack = [[0, 0, 0]];
  while (stack.length) {
    var top = stack[stack.length - 1], list = it[top[0]];
    if (top[1] >= list.length) { stack.pop(); continue; }
    var x = list[top[1]++];
    if (x < 0) {
      if (f && !mark[~x]) continue;
      rows.push(x); depth.push(top[2]);
      if (isOpen(side, ~x)) stack.push([~x, 0, top[2] + 1]);
    } else {
      if (f && !ok[x]) continue;
      rows.push(x); depth.push(top[2]);
    }
  }
  state.rows = rows; state.depth = depth;
  var total = side.params.length;
  $("tree-count").textContent = f ? plural(hits, "parameter") + " of " + total + " match" :
    plural(total, "parameter");
}

/* rows */
function moduleRow(n, d) {
  var side = SIDES[state.by], agg = aggregates(state.by);
  var open = isOpen(side, n), path = modPath(side, n), partner = agg.lcp[n];
  var left = h("span", {"class": "c name left"},
    h("button", {type: "button", "class": "tog", "data-node": n, "aria-expanded": String(open),
      "aria-label": (open ? "collapse " : "expand ") + path}, open ? "\u25be" : "\u25b8"),
    h("span", {"class": "seg", title: path}, side.nodes[n][1]), " ",
    h("span", {"class": "agg"}, plural(agg.count[n], "parameter") +
      (agg.bad[n] ? " \u00b7 \u26a0 " + agg.bad[n] + " to review" : "")));
  left.style.paddingLeft = (d * 1.1) + "em";
  var right = h("span", {"class": "c right", title: "corresponding " + (state.by === "t" ? "source" : "target") +
    " module"}, partner === undefined ? "" : (partner.length ? partner.join(".") : "(top level)"));
  var row = h("div", {"class": "row mod", role: "treeitem", "aria-level": d + 1, "aria-expanded": String(open)},
    left, h("span", {"class": "c conf"}, agg.bad[n] ? h("span", {"class": "badge lvl-low"}, "\u26a0 " + agg.bad[n])
      : ""), right);
  return row;
}
function paramRow(x, d) {
  var by = state.by, side = SIDES[by], p = side.params[x], lvl, c = 0, tf = -1, partner, pshape, pdtype, pair;
  if (by === "t") {
    pair = x; lvl = level(x); c = P[x][1]; tf = P[x][3];
    partner = matched(x) ? srcNames(P[x][0]) : "\u2014 no source \u2014";
    pshape = srcShapes(P[x][0]); pdtype = srcDtypes(P[x][0]);
  } else {
    var u = users(x);
    pair = worst(u);
    if (pair < 0) { lvl = "unused"; partner = "\u2014 not used by any target \u2014"; pshape = ""; pdtype = ""; }
    else {
      lvl = level(pair); c = P[pair][1]; tf = P[pair][3];
      var names = [], shapes = [], dts = [];
      for (var k = 0; k < u.length; k++) {
        names.push(fullName(D.target, u[k])); shapes.push(shapeText(D.target.params[u[k]][2]));
        dts.push(dtypeText(D.target.params[u[k]][3]));
      }
      partner = names.join(", "); pshape = shapes.join(", "); pdtype = dts.join(", ");
    }
  }
  var name = fullName(side, x);
  var left = h("span", {"class": "c name", title: name},
    h("button", {type: "button", "class": "link", "data-i": x, "aria-label": "details of " + name}, p[1]));
  left.style.paddingLeft = (d * 1.1 + 1.4) + "em";
  var cls = "row param lvl-" + lvl + (by === "t" && x === state.sel ? " sel" : "");
  return h("div", {"class": cls, role: "treeitem", "aria-level": d + 1, "data-name": name},
    left, h("span", {"class": "c"}, shapeText(p[2])), h("span", {"class": "c dt"}, dtypeText(p[3])),
    h("span", {"class": "c conf"}, badge(lvl, c), marks(tf)),
    h("span", {"class": "c name partner", title: partner}, partner),
    h("span", {"class": "c", title: pshape}, pshape), h("span", {"class": "c dt"}, pdtype));
}
var tree = $("tree"), inner = $("tree-inner"), win = $("tree-window");
function renderRows() {
  var rows = state.rows, n = rows.length, first = 0, last = n;
  if (state.print) {
    inner.style.height = "auto"; win.style.top = "0"; last = Math.min(n, PRINT_MAX);
  } else {
    var height = Math.max(ROW * 3, Math.min(n * ROW + 2, Math.round(window.innerHeight * 0.65)));
    tree.style.height = height + "px";
    inner.style.height = (n * ROW) + "px";
    var top = tree.scrollTop;
    first = Math.max(0, Math.floor(top / ROW) - 10);
    last = Math.min(n, Math.ceil((top + height) / ROW) + 10);
    win.style.top = (first * ROW) + "px";  /* not a transform: those lose precision past a million pixels */
  }
  var frag = document.createDocumentFragment();
  for (var r = first; r < last; r++) {
    var x = rows[r];
    frag.appendChild(x < 0 ? moduleRow(~x, state.depth[r]) : paramRow(x, state.depth[r]));
  }
  win.replaceChildren(frag);
}
var pending = false;
tree.addEventListener("scroll", function () {
  if (pending) return;
  pending = true;
  requestAnimationFrame(function () { pending = false; renderRows(); });
});
tree.addEventListener("click", function (e) {
  var t = e.target.closest("button");
  if (!t) return;
  if (t.hasAttribute("data-node")) {
    var side = SIDES[state.by], n = +t.getAttribute("data-node");
    if (filtering()) side.fclosed[n] ^= 1; else side.open[n] ^= 1;
    flatten(); renderRows();
    var again = win.querySelector('button[data-node="' + n + '"]');
    if (again) again.focus();
  } else if (t.hasAttribute("data-i")) {
    var i = +t.getAttribute("data-i");
    if (state.by === "t") { state.sel = i; renderRows(); showDetail(i); } else showSource(i);
  }
});
function setAll(open) {
  var side = SIDES[state.by]; items(side);
  if (filtering()) side.fclosed.fill(open ? 0 : 1); else { side.open.fill(open ? 1 : 0); side.open[0] = 1; }
  flatten(); tree.scrollTop = 0; renderRows();
}
$("expand").addEventListener("click", function () { setAll(true); });
$("collapse").addEventListener("click", function () { setAll(false); });

/* review items */
function tokens(name) {
  return name.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/([A-Za-z])([0-9])/g, "$1 $2")
    .replace(/([0-9])([A-Za-z])/g, "$1 $2").toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
}
function tokenList(list, other) {
  var set = {};
  for (var k = 0; k < other.length; k++) set[other[k]] = 1;
  return h("span", {"class": "tokens"}, list.map(function (t) {
    return h("span", {"class": "tok" + (set[t] ? " shared" : ""), title: set[t] ? "shared token" : null}, t);
  }));
}
function position(side, i) {
  if (side === D.source && !D.source_order_known) return "order in the source file not known";
  return "#" + i + " of " + side.params.length;
}
function where(side, i) {
  var n = side.params[i][0];
  return n === 0 ? "(top level)" : modPath(side, n);
}
function sourceCells(s, tf) {
  var l = srcs(s);
  if (!l.length) return [h("td", null, "\u2014 none \u2014"), h("td"), h("td"), h("td")];
  var poss = l.map(function (j) { return D.source_order_known ? "#" + j : ""; }).join(" + ");
  var used = [];
  l.forEach(function (j) { users(j).forEach(function (u) { used.push(fullName(D.target, u)); }); });
  return [h("td", {"class": "mono src"}, dotted(srcNames(s))), h("td", {"class": "mono shape"}, srcShapes(s)),
    h("td", {"class": "n"}, poss), h("td", null, tf >= 0 ? TFS[tf][0] : "")];
}
function usedBy(s, self) {
  var out = [];
  srcs(s).forEach(function (j) { users(j).forEach(function (u) { if (u !== self) out.push(u); }); });
  if (!out.length) return "";
  return dotted(out.map(function (u) { return fullName(D.target, u) + " (" + fmt(P[u][1]) + ")"; }).join(", "));
}
function card(i, headingLevel) {
  var pr = P[i], lvl = level(i), tname = fullName(D.target, i), tp = D.target.params[i];
  var el = h("li", {"class": "item lvl-" + lvl, "data-target": tname});
  add(el, h("h" + headingLevel, null, badge(lvl, pr[1]), marks(pr[3]), " ", tname));
  var first = srcs(pr[0]), sname = matched(i) ? srcNames(pr[0]) : "";
  var targetFacts = "  " + shapeText(tp[2]) + " " + dtypeText(tp[3]) + "  \u00b7 " + position(D.target, i) +
    " \u00b7 in " + where(D.target, i);
  var sourceFacts = matched(i) ? "  " + srcShapes(pr[0]) + " " + srcDtypes(pr[0]) + "  \u00b7 " +
    first.map(function (j) { return position(D.source, j); }).join(" + ") + " \u00b7 in " +
    first.map(function (j) { return where(D.source, j); }).join(" + ") : "";
  var kv = h("dl", {"class": "kv"},
    h("dt", null, "target"), h("dd", {"class": "mono"}, dotted(tname), targetFacts),
    h("dt", null, "source"),
    h("dd", {"class": "mono"}, matched(i) ? dotted(sname) : "\u2014 none \u2014", sourceFacts));
  if (pr[3] >= 0) add(kv, [h("dt", null, "layout"), h("dd", null, TFS[pr[3]][0])]);
  for (var k = 0; k < pr[5].length; k++) {
    if (pr[5][k] === null) continue;
    add(kv, [h("dt", null, TK[k] === "decided_by" ? "decided by" : TK[k].replace(/_/g, " ")),
      h("dd", null, STR[pr[5][k]])]);
  }
  if (pinned(i)) add(kv, [h("dt", null, "review"), h("dd", null, "\u2713 marked as reviewed by a person")]);
  add(el, kv);
  var cols = h("div", {"class": "columns"}), left = h("div"), right = h("div");
  if (pr[4].length) {
    var ev = h("table", {"class": "t evidence"}, h("caption", {"class": "sr"}, "evidence scores"));
    for (var e = 0; e < pr[4].length; e++) {
      if (pr[4][e] === null) continue;
      var v = pr[4][e] / 100;
      var fill = h("span", {"class": "fill"});
      fill.style.width = Math.max(0, Math.min(1, v)) * 100 + "%";
      add(ev, h("tr", {title: D.signals[NK[e]] || null}, h("th", {scope: "row"}, NK[e].replace(/_/g, " ")),
        h("td", null, h("span", {"class": "meter", "aria-hidden": "true"}, fill)), h("td", {"class": "n"}, fmt(v))));
    }
    add(left, [h("h4", null, "Evidence (1 = agrees)"), ev]);
  }
  if (matched(i)) {
    var tt = tokens(tname), st = tokens(sname);
    add(left, [h("h4", null, "Name tokens (shared ones bold, underlined)"),
      h("div", null, "target: ", tokenList(tt, st)), h("div", null, "source: ", tokenList(st, tt))]);
  }
  var alts = h("table", {"class": "t alternatives"},
    h("thead", null, h("tr", null, h("th", null, ""), h("th", null, "source"), h("th", null, "shape"),
      h("th", null, "position"), h("th", null, "layout"), h("th", null, "confidence"), h("th", null, "also used by"))));
  var body = h("tbody");
  if (matched(i)) {
    add(body, h("tr", {"class": "chosen"}, h("td", null, "chosen"), sourceCells(pr[0], pr[3]),
      h("td", {"class": "n"}, fmt(pr[1])), h("td", {"class": "mono used"}, usedBy(pr[0], i))));
  }
  for (var a = 0; a < pr[6].length; a++) {
    var alt = pr[6][a];
    add(body, h("tr", null, h("td", null, "alternative " + (a + 1)), sourceCells(alt[0], alt.length > 2 ? alt[2] : -1),
      h("td", {"class": "n"}, fmt(alt[1])), h("td", {"class": "mono used"}, usedBy(alt[0], -1))));
  }
  add(alts, body);
  add(right, [h("h4", null, pr[6].length ? "Chosen source and alternatives" : "Chosen source (no alternative)"),
    alts]);
  var ctx = h("table", {"class": "t context"});
  for (var o = Math.max(0, i - 2); o <= Math.min(NP - 1, i + 2); o++) {
    add(ctx, h("tr", {"class": o === i ? "chosen" : null}, h("td", {"class": "n"}, "#" + o),
      h("td", {"class": "mono"}, dotted(fullName(D.target, o))), h("td", null, "\u2190"),
      h("td", {"class": "mono"}, matched(o) ? dotted(srcNames(P[o][0])) : "\u2014"),
      h("td", null, badge(level(o), P[o][1]))));
  }
  add(right, [h("h4", null, "Neighbours in target order"), ctx]);
  add(cols, [left, right]);
  add(el, cols);
  return el;
}
function showDetail(i) {
  $("detail").replaceChildren(h("ol", {"class": "review-list"}, card(i, "h3")));
  $("detail").scrollIntoView({block: "nearest"});
}
function showSource(j) {
  var u = users(j);
  if (u.length) { showDetail(worst(u)); return; }
  var name = fullName(D.source, j), cands = [];
  for (var i = 0; i < NP; i++) {
    var alts = P[i][6];
    for (var a = 0; a < alts.length; a++) if (srcs(alts[a][0]).indexOf(j) >= 0) cands.push([i, alts[a][1]]);
  }
  cands.sort(function (x, y) { return y[1] - x[1]; });
  var el = h("li", {"class": "item lvl-none"}, h("h3", null, badge("unused", 0), " ", name),
    h("p", null, shapeText(D.source.params[j][2]) + " " + dtypeText(D.source.params[j][3]) + " \u00b7 " +
      position(D.source, j) + " \u00b7 in " + where(D.source, j) + ". No target uses it."),
    h("h4", null, cands.length ? "Runner-up for" : "Not a runner-up for any target"),
    h("ul", null, cands.slice(0, 20).map(function (c) {
      return h("li", {"class": "mono"}, fullName(D.target, c[0]) + " (" + fmt(c[1]) + ")");
    })));
  $("detail").replaceChildren(h("ol", {"class": "review-list"}, el));
  $("detail").scrollIntoView({block: "nearest"});
}
function reviewItems() {
  var out = [];
  for (var i = 0; i < NP; i++) if (review(i) && matchesT(i)) out.push(i);
  out.sort(function (a, b) { return (matched(a) - matched(b)) || (P[a][1] - P[b][1]) || (a - b); });
  return out;
}
function renderReview() {
  var list = reviewItems(), n = Math.min(list.length, state.print ? Math.max(state.shown, 500) : state.shown);
  var frag = document.createDocumentFragment();
  for (var k = 0; k < n; k++) frag.appendChild(card(list[k], "h3"));
  if (!list.length) frag.appendChild(h("li", {"class": "empty"}, filtering() || state.filter ?
    "Nothing that matches the filter needs review." : "Nothing needs review at this threshold."));
  $("review-list").replaceChildren(frag);
  setK("review-listed", list.length);
  var more = $("more");
  more.hidden = n >= list.length;
  more.textContent = "Show " + Math.min(PAGE, list.length - n) + " more (" + (list.length - n) + " not shown)";
}
$("more").addEventListener("click", function () { state.shown += PAGE; renderReview(); });

/* summary, histogram */
function setK(key, value) {
  var els = document.querySelectorAll('[data-k="' + key + '"]');
  for (var k = 0; k < els.length; k++) els[k].textContent = String(value);
}
function renderSummary() {
  var pairs = 0, doubt = 0, none = 0, pins = 0, split = 0, fused = 0, trans = 0;
  var used = new Uint8Array(D.source.params.length);
  for (var i = 0; i < NP; i++) {
    if (!matched(i)) { none++; continue; }
    pairs++;
    if (pinned(i)) pins++; else if (P[i][1] < state.thr) doubt++;
    var tf = P[i][3];
    if (tf >= 0) { if (TFS[tf][1] & 1) split++; if (TFS[tf][1] & 4) trans++; }
    var s = srcs(P[i][0]);
    if (s.length > 1) fused++;
    for (var k = 0; k < s.length; k++) used[s[k]] = 1;
  }
  var unused = 0;
  for (var j = 0; j < used.length; j++) if (!used[j]) unused++;
  setK("pairs", pairs); setK("doubtful", doubt); setK("unmatched-target", none); setK("unmatched-source", unused);
  setK("pinned", pins); setK("split", split); setK("fused", fused); setK("transposed", trans);
  setK("excluded-source", D.excluded.source_count); setK("excluded-target", D.excluded.target_count);
  setK("threshold", fmt(state.thr)); setK("review", doubt + none);
  $("thr-out").textContent = fmt(state.thr);
  var svg = $("hist"), left = +svg.getAttribute("data-left"), width = +svg.getAttribute("data-width");
  var x = left + state.thr * width, line = $("hist-thr"), label = $("hist-thr-label");
  line.setAttribute("x1", x.toFixed(1)); line.setAttribute("x2", x.toFixed(1));
  label.setAttribute("x", (state.thr > 0.75 ? x - 78 : x + 3).toFixed(1));
  label.textContent = "threshold " + fmt(state.thr);
  var bars = svg.querySelectorAll(".bar");
  for (var b = 0; b < bars.length; b++) {
    bars[b].classList.toggle("below", +bars[b].getAttribute("data-hi") <= state.thr + 1e-9);
  }
}
function renderLeftovers() {
  var list = $("unused-list"), frag = document.createDocumentFragment(), n = 0;
  for (var j = 0; j < D.source.params.length; j++) {
    if (users(j).length) continue;
    n++;
    if (n <= 1000) frag.appendChild(h("li", {"class": "mono"}, fullName(D.source, j) + "  " +
      shapeText(D.source.params[j][2]) + " " + dtypeText(D.source.params[j][3])));
  }
  if (n > 1000) frag.appendChild(h("li", null, "\u2026 and " + (n - 1000) + " more"));
  list.replaceChildren(frag);
  setK("unused-listed", n);
  ["source", "target"].forEach(function (side) {
    var names = D.excluded[side], count = D.excluded[side + "_count"], ol = $("excluded-" + side).querySelector("ol");
    add(ol, names.map(function (x) { return h("li", {"class": "mono"}, x); }));
    if (count > names.length) add(ol, h("li", null, "\u2026 and " + (count - names.length) + " more"));
    setK("excluded-" + side + "-listed", count);
  });
}

/* controls */
var timer = 0;
function refresh(what) {
  clearTimeout(timer);
  timer = setTimeout(function () { update(what); }, 80);
}
function update(what) {
  if (what === "thr") { AGG = {}; renderSummary(); }
  state.shown = PAGE;
  renderReview();
  flatten(); renderRows();
  var parts = [];
  if (state.filter) parts.push("filter \u201c" + state.filter + "\u201d");
  if (state.only) parts.push("only what needs review");
  status(parts.length ? "Showing " + parts.join(", ") + "." : "");
}
$("filter").addEventListener("input", function () {
  state.filter = this.value.trim().toLowerCase();
  items(SIDES[state.by]); SIDES[state.by].fclosed.fill(0);
  refresh("filter");
});
$("thr").addEventListener("input", function () { state.thr = +this.value; refresh("thr"); });
$("only").addEventListener("change", function () { state.only = this.checked; refresh("only"); });
function setBy(by) {
  state.by = by;
  $("by-name").textContent = by === "t" ? "target" : "source";
  $("head-left").textContent = by === "t" ? "target" : "source";
  $("head-right").textContent = by === "t" ? "source" : "target(s)";
  document.querySelector('input[name="by"][value="' + by + '"]').checked = true;
  tree.scrollTop = 0;
}
var radios = document.querySelectorAll('input[name="by"]');
for (var r = 0; r < radios.length; r++) radios[r].addEventListener("change", function () {
  setBy(this.value); update("by");
});
window.addEventListener("resize", function () { renderRows(); });
window.addEventListener("beforeprint", function () { state.print = true; renderRows(); renderReview(); });
window.addEventListener("afterprint", function () { state.print = false; renderRows(); renderReview(); });

/* start: #threshold=0.3&filter=norm&only=1&by=s preselects the controls */
var hash = {};
location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
  var k = kv.indexOf("=");
  if (k > 0) {
    try { hash[kv.slice(0, k)] = decodeURIComponent(kv.slice(k + 1)); } catch (e) { /* ignore a bad hash */ }
  }
});
if (hash.threshold !== undefined && isFinite(+hash.threshold) && +hash.threshold >= 0 && +hash.threshold <= 1) {
  state.thr = +hash.threshold;
}
if (hash.filter) { state.filter = hash.filter.trim().toLowerCase(); $("filter").value = hash.filter; }
if (hash.only === "1") { state.only = true; $("only").checked = true; }
if (hash.by === "s") setBy("s");
$("thr").value = String(state.thr);
items(D.target); items(D.source);
renderSummary();
renderLeftovers();
update("start");
root.setAttribute("data-ready", "1");
})();
"""
