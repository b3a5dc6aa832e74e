"""The part of the report page that reads without script: counts, files, notes, histogram, evidence glossary.

The confidence histogram is inline SVG. It is all written once at the report's threshold; the page's script only
rewrites the elements marked `data-k` and moves the histogram's threshold marker. Every piece of data is escaped
here, since names and paths are untrusted.
"""

from __future__ import annotations

import html

from automap.report._page_data import SIGNALS, PageData
from automap.transforms import Split, Transpose

__all__ = ["esc", "framework_name", "signals_html", "summary_html"]

_BINS = 20


def summary_html(data: PageData) -> str:
    """The static summary: counts, the two files, notes and the confidence histogram."""
    c = _counts(data)
    mapping = data.mapping

    def card(key: str, label: str, value: str, hint: str = "") -> str:
        title = f' title="{esc(hint)}"' if hint else ""
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
        card("threshold", "Threshold", f"{data.threshold:.2f}", "pairs below it are flagged for review"),
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
            f'<tr><th scope="row">{label}</th><td class="path">{esc(side.path) or "(not recorded)"}</td>'
            f"<td>{esc(framework_name(side.framework))}</td><td>{side.params} parameters</td>"
            f'<td class="fp">{esc(side.fingerprint)}</td></tr>'
        )
    notes = "".join(f"<li>{esc(n)}</li>" for n in mapping.notes)
    notes_html = f'<ul class="notes" aria-label="notes">{notes}</ul>' if notes else ""
    return (
        '<section id="summary" aria-labelledby="summary-h">'
        '<h2 id="summary-h">Summary</h2>'
        '<div class="summary-grid">'
        f'<dl class="cards">{"".join(cards)}</dl>'
        f"{_histogram_svg(_histogram(data), data.threshold)}"
        "</div>"
        f'<p class="needs">Needs review: <strong data-k="review">{review}</strong> '
        f"(doubtful pairs and targets without a source).</p>"
        f'<table class="files"><caption class="sr">Files</caption>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"{notes_html}"
        "</section>"
    )


def signals_html(data: PageData) -> str:
    """What each evidence score measures, for the signals this mapping has."""
    known = [k for k in data.numeric_keys if k in SIGNALS]
    if not known:
        return ""
    items = "".join(f"<dt>{esc(k.replace('_', ' '))}</dt><dd>{esc(SIGNALS[k])}</dd>" for k in known)
    return (
        '<details class="signals"><summary>What the evidence scores mean</summary>'
        f'<dl class="kv">{items}</dl><p>Each score is in [0, 1]; 1 means the signal fully supports the pair.</p>'
        "</details>"
    )


def esc(text: str) -> str:
    """Text as HTML, quotes included (it may land in an attribute)."""
    return html.escape(text, quote=True)


def framework_name(framework: str) -> str:
    """A framework as people spell it."""
    return {"pytorch": "PyTorch", "mindspore": "MindSpore"}.get(framework, framework)


def _counts(data: PageData) -> dict[str, int]:
    """The summary numbers at the report's threshold."""
    pairs = data.mapping.pairs
    matched = [p for p in pairs if p.source is not None]
    steps = [{type(s) for s in p.transform} for p in matched if p.transform]
    return {
        "pairs": len(matched),
        "doubtful": sum(1 for p in matched if not p.pinned and p.confidence < data.threshold),
        "unmatched-target": len(pairs) - len(matched),
        "unmatched-source": len(data.unused),
        "excluded-source": len(data.mapping.excluded_source),
        "excluded-target": len(data.mapping.excluded_target),
        "pinned": sum(1 for p in matched if p.pinned),
        "split": sum(1 for ops in steps if Split in ops),
        "fused": sum(1 for p in matched if isinstance(p.source, tuple)),
        "transposed": sum(1 for ops in steps if Transpose in ops),
    }


def _histogram(data: PageData) -> list[int]:
    """Matched pairs per confidence bin of width 1/_BINS (1.0 falls in the last bin)."""
    bins = [0] * _BINS
    for pair in data.mapping.pairs:
        if pair.source is not None:
            # the epsilon keeps 0.95 (stored as 0.9499...) in the bin that starts at 0.95
            bins[min(int(pair.confidence * _BINS + 1e-9), _BINS - 1)] += 1
    return bins


def _histogram_svg(bins: list[int], threshold: float) -> str:
    """An inline SVG bar chart of confidences with the threshold marked; the script moves the marker."""
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
        below = " below" if high <= threshold + 1e-9 else ""
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
    marker_x = left + threshold * plot_w
    marker = (
        f'<line id="hist-thr" class="thr" x1="{marker_x:.1f}" y1="{top - 6}" x2="{marker_x:.1f}" '
        f'y2="{top + plot_h}"/>'
        f'<text id="hist-thr-label" class="thr-label" x="{marker_x + 3:.1f}" y="{top - 6}">'
        f"threshold {threshold:.2f}</text>"
    )
    description = f"Histogram of the confidence of {total} matched pairs in {_BINS} bins from 0 to 1; " + ", ".join(
        f"{i / _BINS:.2f} to {(i + 1) / _BINS:.2f}: {n}" for i, n in enumerate(bins) if n
    )
    return (
        f'<figure class="hist"><svg id="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-labelledby="hist-title hist-desc" data-left="{left}" data-width="{plot_w}">'
        f'<title id="hist-title">Confidence histogram</title><desc id="hist-desc">{esc(description)}</desc>'
        f"{''.join(items)}{''.join(axis)}{marker}</svg>"
        "<figcaption>Confidence of the matched pairs; bars left of the line are flagged for review.</figcaption>"
        "</figure>"
    )
