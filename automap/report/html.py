"""A mapping as one self-contained HTML page a reviewer opens from disk or attaches to a pull request.

The page holds everything it needs: its skeleton, CSS and script are package data files (`assets/report.html`,
`report.css`, `report.js`) copied inline, and the script and style are pinned by hash in a
Content-Security-Policy that forbids any network access; the mapping travels as compact JSON in a
`<script type="application/json">` block (its layout: `_page_data`). The static part (summary counts,
confidence histogram; `_summary`) reads without script and prints; the script builds the rest on demand: the
"needs review" list, the two module hierarchies side by side (a virtualised tree, collapsed by default, so a
90,000-pair mapping stays responsive), the name filter and the threshold slider that re-flags pairs.

Parameter names, paths and notes are untrusted: everything written as HTML is escaped, the JSON block cannot be
closed by any name, and the script only ever sets text, never markup. The skeleton's `${...}` placeholders are
filled in one pass, so no filled-in text is read as a placeholder.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import string
from importlib import resources

from automap._collector import collector_paused
from automap._text import human_bytes
from automap._types import StrPath
from automap._version import __version__
from automap.records import Endpoint, NameMapping, ParamTable
from automap.report._page_data import PageData
from automap.report._summary import esc, framework_name, signals_html, summary_html

__all__ = ["render_html", "write_html"]


@collector_paused()  # the page's data for a large mapping: see automap/_collector.py
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
    data = PageData(mapping, level, source_table, target_table)
    document = data.document()
    script, style = _inline("report.js"), _inline("report.css")
    policy = (
        f"default-src 'none'; script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
        "img-src 'none'; font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )
    source, target = mapping.source, mapping.target
    title = f"automap report: {_basename(source.path) or 'source'} \u2192 {_basename(target.path) or 'target'}"
    return _skeleton().substitute(
        policy=esc(policy),
        title=esc(title),
        style=style,
        body_class="" if data.dtypes_known else ' class="no-dtype"',
        source=_side_line(source),
        target=_side_line(target),
        summary=summary_html(data),
        threshold=f"{level:.2f}",
        signals=signals_html(data),
        version=esc(__version__),
        pairs=len(mapping.pairs),
        data_size=esc(human_bytes(len(document))),  # ASCII only (see _script_safe_json): characters are bytes
        data=document,
        script=script,
    )


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


def _asset(name: str) -> str:
    """A file of `assets/`, read from the installed package (a wheel carries them as package data)."""
    return (resources.files("automap.report") / "assets" / name).read_text(encoding="utf-8")


@functools.cache
def _skeleton() -> string.Template:
    return string.Template(_asset("report.html"))


@functools.cache
def _inline(name: str) -> str:
    """A script or style as it stands inside its element; the CSP hash covers exactly this text."""
    return "\n" + _asset(name)  # the element's content starts on a line of its own


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _basename(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _side_line(side: Endpoint) -> str:
    name = esc(_basename(side.path)) or "(unnamed)"
    return f'<span class="side"><strong>{name}</strong> ({esc(framework_name(side.framework))})</span>'
