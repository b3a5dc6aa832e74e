"""Mapping files: a `NameMapping` as versioned, human-editable JSON, and the plain flat form.

The versioned file (`"format": "automap.mapping", "version": 1`) keeps one pair per target parameter in
target order, with confidence, transform, shapes, evidence and alternatives; keys are written in a fixed
order and small values on one line, so the file reads well, diffs well and can be edited by hand. Its
`digest` remembers the decisions automap wrote (each pair's target, source and transform), so that an edit by
hand can be told apart later. The flat form `{target_name: source_name}` is what hand-made
workflows use; every reader accepts either. A flat file carries no transform and no confidence: it is written
only for pairs that need neither, and the pairs read from one are given, neither confident nor reviewed.

Mapping files are untrusted input: size, nesting, types and transforms are checked, a key may not repeat
within an object, no text may hold control characters (they could disguise a name during review), and any
problem is reported as a `MappingFileError` naming the file and the entry.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._collector import collector_paused
from ._decisions import DECIDED_BY, DecidedBy
from ._errors import MappingFileError
from ._json import loads
from ._mapping_text import write_flat, write_versioned
from ._text import MAX_NAME, brief, first_line, printable, shown, unsafe_character
from ._types import StrPath
from .records import DEFAULT_THRESHOLD, Alternative, Endpoint, Match, NameMapping, ParamTable, Source
from .transforms import Concat, describe, parse_steps

__all__ = [
    "MAPPING_FORMAT",
    "describe_flat_problems",
    "fingerprint",
    "flat_problems",
    "hand_edited",
    "load_mapping",
    "mapping_from_json",
    "mapping_to_json",
    "pairs_digest",
    "save_mapping",
]

MAPPING_FORMAT = "automap.mapping"
VERSION = 1
_MAX_BYTES = 256 * 1024 * 1024
_FRAMEWORKS = ("pytorch", "mindspore")


def fingerprint(table: ParamTable) -> str:
    """A short hash of a table's names, shapes and dtypes, to tell later whether a file is the same model."""
    shapes: dict[tuple[int, ...], str] = {}  # the text of each distinct shape, made once
    for record in table.params:
        if record.shape not in shapes:
            shapes[record.shape] = str(list(record.shape))
    lines = [f"{r.name}\t{shapes[r.shape]}\t{r.dtype}\n" for r in table.params]
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:16]


def mapping_to_json(mapping: NameMapping) -> dict[str, Any]:
    """The versioned JSON document of a mapping, keys in their documented order."""
    return {**_head(mapping), "pairs": [_pair_json(p) for p in mapping.pairs], **_tail(mapping)}


def _head(mapping: NameMapping) -> dict[str, Any]:
    """The document's fields before the pairs."""

    def endpoint(side: Endpoint) -> dict[str, Any]:
        path = printable(side.path)  # a label only: a path with undecodable bytes must not break the file
        return {"path": path, "framework": side.framework, "params": side.params, "fingerprint": side.fingerprint}

    return {
        "format": MAPPING_FORMAT,
        "version": VERSION,
        "source": endpoint(mapping.source),
        "target": endpoint(mapping.target),
        "threshold": mapping.threshold,
        "notes": list(mapping.notes),
    }


def _tail(mapping: NameMapping) -> dict[str, Any]:
    """The document's fields after the pairs."""
    return {
        "unmatched_source": list(mapping.unmatched_source),
        "excluded_source": list(mapping.excluded_source),
        "excluded_target": list(mapping.excluded_target),
        "digest": mapping.digest or pairs_digest(mapping),
    }


def _pair_json(match: Match) -> dict[str, Any]:
    """The JSON object of one pair (`_mapping_text` writes the same bytes faster, falling back on this)."""

    def source(value: Source) -> Any:
        return list(value) if isinstance(value, tuple) else value

    def shape(value: Any) -> Any:
        if value is None:
            return None
        if value and isinstance(value[0], tuple):
            return [list(s) for s in value]
        return list(value)

    return {
        "target": match.target,
        "source": source(match.source),
        "confidence": round(float(match.confidence), 4),
        "transform": [s.to_json() for s in match.transform] or None,
        "target_shape": list(match.target_shape),
        "source_shape": shape(match.source_shape),
        "evidence": {k: round(v, 4) for k, v in match.evidence.items()} | dict(match.labels),
        "alternatives": [
            {"source": source(a.source), "confidence": round(float(a.confidence), 4)}
            | ({"transform": [s.to_json() for s in a.transform]} if a.transform else {})
            for a in match.alternatives
        ],
        "pinned": match.pinned,
    }


def pairs_digest(mapping: NameMapping) -> str:
    """A short hash of the decisions in a mapping: each pair's target, source and transform.

    Confidence, evidence and alternatives are left out: they explain a decision, they are not one. So is the
    pinned flag: marking a pair reviewed (`automap audit --accept`) changes no decision, and a file a person
    edited by hand stays recognisably edited after it.
    """
    digest = hashlib.sha256()
    for pair in mapping.pairs:
        source = list(pair.source) if isinstance(pair.source, tuple) else pair.source
        entry = [pair.target, source, [s.to_json() for s in pair.transform]]
        digest.update(json.dumps(entry, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


def hand_edited(mapping: NameMapping) -> bool | None:
    """Whether the decisions in a mapping read from a file differ from those automap wrote into it.

    Args:
        mapping: a mapping read with `load_mapping`.

    Returns:
        True when a person changed a pair's source or transform since automap wrote the file, False when not,
        None when the file does not record what automap wrote (a flat file, or one from an older automap).

    Example:
        >>> hand_edited(load_mapping("model.ckpt.mapping.json"))  # doctest: +SKIP
        False
    """
    if not mapping.digest:
        return None
    return mapping.digest != pairs_digest(mapping)


def flat_problems(mapping: NameMapping) -> tuple[Match, ...]:
    """The pairs a flat `{target: source}` file would misrepresent: those that need a transform or a review.

    A flat file has room for neither a layout step (a list of sources means "concatenate along axis 0", and no
    more) nor a confidence, so writing such a pair there would drop what it needs without a word. Targets
    without a source are not among them: a flat file leaves them out, as a missing target.
    """
    return tuple(
        p
        for p in mapping.pairs
        if p.source is not None and (not _plain(p) or (p.confidence < mapping.threshold and not p.pinned))
    )


def describe_flat_problems(mapping: NameMapping, problems: Sequence[Match], limit: int = 8) -> str:
    """Why a flat file cannot hold `problems` (from `flat_problems`), naming each pair and what it needs."""

    def need(pair: Match) -> str:
        parts = [] if _plain(pair) else [describe(pair.transform) or "its sources joined another way"]
        if pair.confidence < mapping.threshold and not pair.pinned:
            parts.append(f"confidence {pair.confidence:.2f}")
        return f"{pair.target!r} ({'; '.join(parts)})"

    shown_pairs = ", ".join(need(p) for p in problems[:limit])
    more = f", ... ({len(problems)} in all)" if len(problems) > limit else ""
    count = len(problems)
    return (
        f"a flat {{target: source}} file cannot carry transforms or confidence, and {count} pair"
        f"{'s need' if count > 1 else ' needs'} them: {shown_pairs}{more}"
    )


def _plain(pair: Match) -> bool:
    """True for a pair a flat file states fully: one source as it is, or several joined along axis 0."""
    if isinstance(pair.source, tuple):
        return pair.transform == (Concat(0),)
    return not pair.transform


@collector_paused()  # see automap/_collector.py
def save_mapping(mapping: NameMapping, path: StrPath, *, flat: bool = False, overwrite: bool = True) -> None:
    """Write a mapping file atomically.

    Args:
        mapping: the mapping.
        path: the output file.
        flat: write the plain `{target: source}` dict instead of the versioned file.
        overwrite: replace an existing file.

    Raises:
        ConversionError: the file exists (without `overwrite`) or cannot be written.
        MappingFileError: a flat file was asked for, and some pair needs a transform or a review, which the flat
            form cannot carry (`flat_problems`); nothing is written.

    Example:
        >>> save_mapping(infer_mapping("model.pth", "template.ckpt"), "mapping.json")  # doctest: +SKIP
    """
    from ._atomic import atomic_output

    if flat and (problems := flat_problems(mapping)):
        why = describe_flat_problems(mapping, problems)
        msg = f"{str(path)!r}: {why}; write the versioned mapping instead, which carries both"
        raise MappingFileError(msg)
    with atomic_output(path, overwrite=overwrite) as handle:
        if flat:
            write_flat(handle, mapping.flat())
        else:
            write_versioned(handle, _head(mapping), mapping, _pair_json, _tail(mapping))


def load_mapping(path: StrPath) -> NameMapping:
    """Read a mapping file, versioned or flat.

    Args:
        path: a file written by `save_mapping` (or `automap infer`), possibly edited by hand, or a flat
            `{target_name: source_name}` JSON object.

    Returns:
        The mapping. Pairs of a flat file are given, not reviewed: not pinned, confidence 1 (so that a conversion
        takes them as they are), and `decided_by` is `DecidedBy.FLAT_MAPPING`.

    Raises:
        MappingFileError: the file is missing, not JSON, of an unknown version, or inconsistent; the message
            names the entry.

    Example:
        >>> mapping = load_mapping("mapping.json")  # doctest: +SKIP
        >>> [p.target for p in mapping.doubtful]  # doctest: +SKIP
        ['layers.0.attention_norm.weight']
    """
    file = Path(path)
    text = _read_text(file)
    try:
        document = loads(text)
    except RecursionError:
        msg = f"{str(file)!r}: JSON nested too deeply"
        raise MappingFileError(msg) from None
    except ValueError as error:
        msg = f"{str(file)!r}: not valid JSON: {first_line(str(error))}; fix the file or re-run automap infer"
        raise MappingFileError(msg) from None
    return mapping_from_json(document, where=str(file))


def _read_text(file: Path) -> str:
    """The text of a regular file of bounded size; a FIFO, device or folder is refused before it is read."""
    try:
        info = file.stat()
        if stat.S_ISDIR(info.st_mode):
            msg = f"{str(file)!r} is a directory, not a mapping file"
            raise MappingFileError(msg)
        if not stat.S_ISREG(info.st_mode):
            msg = f"{str(file)!r} is not a regular file (a pipe or device?); give a mapping file"
            raise MappingFileError(msg)
        if info.st_size > _MAX_BYTES:
            msg = f"{str(file)!r}: {info.st_size} bytes is too large for a mapping file (limit {_MAX_BYTES})"
            raise MappingFileError(msg)
        with file.open("rb") as handle:
            raw = handle.read(_MAX_BYTES + 1)  # bounded even if the file grows while being read
        if len(raw) > _MAX_BYTES:
            msg = f"{str(file)!r} grew past {_MAX_BYTES} bytes while being read; refused"
            raise MappingFileError(msg)
        return raw.decode("utf-8-sig")
    except FileNotFoundError:
        msg = f"{str(file)!r}: no such mapping file"
        raise MappingFileError(msg) from None
    except (OSError, UnicodeDecodeError) as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)[:200]
        msg = f"{str(file)!r}: cannot read the mapping file: {detail}"
        raise MappingFileError(msg) from None


def mapping_from_json(document: Any, *, where: str = "mapping") -> NameMapping:
    """Build a mapping from a parsed versioned or flat document, checking every field."""
    if not isinstance(document, dict):
        msg = f"{where!r}: a mapping must be a JSON object"
        raise MappingFileError(msg)
    _check_text(document, where)
    fmt = document.get("format")
    if fmt == MAPPING_FORMAT:
        return _versioned(document, where)
    if "pairs" in document or (isinstance(fmt, str) and fmt.startswith("automap")):
        msg = f"{where!r}: 'format' is {brief(fmt)}, expected {MAPPING_FORMAT!r}; is this an automap mapping file?"
        raise MappingFileError(msg)
    return _flat(document, where)


def _flat(document: dict[str, Any], where: str) -> NameMapping:
    pairs = []
    for target, source in document.items():
        given = {DECIDED_BY: DecidedBy.FLAT_MAPPING.value}
        pairs.append(Match(target, _source(source, f"{where!r}: target {shown(target)}"), 1.0, labels=given))
    unknown = Endpoint("", "pytorch", 0)
    return NameMapping(unknown, unknown, tuple(pairs), notes=("read from a flat {target: source} mapping",))


def _versioned(document: dict[str, Any], where: str) -> NameMapping:
    version = document.get("version")
    if version != VERSION:
        msg = f"{where!r}: mapping version {brief(version)} is not supported; this automap reads version {VERSION}"
        raise MappingFileError(msg)
    threshold = document.get("threshold", DEFAULT_THRESHOLD)
    if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        msg = f"{where!r}: 'threshold' must be a number in [0, 1]"
        raise MappingFileError(msg)
    pairs_raw = document.get("pairs")
    if not isinstance(pairs_raw, list):
        msg = f"{where!r}: 'pairs' must be a list"
        raise MappingFileError(msg)
    pairs = tuple(_pair(entry, f"{where!r}: pair {number}") for number, entry in enumerate(pairs_raw))
    seen: set[str] = set()
    for match in pairs:
        if match.target in seen:
            msg = f"{where!r}: target {shown(match.target)} appears in two pairs; keep one"
            raise MappingFileError(msg)
        seen.add(match.target)
    return NameMapping(
        source=_endpoint(document.get("source"), f"{where!r}: 'source'"),
        target=_endpoint(document.get("target"), f"{where!r}: 'target'"),
        pairs=pairs,
        threshold=float(threshold),
        unmatched_source=_names(document.get("unmatched_source", []), f"{where!r}: 'unmatched_source'"),
        excluded_source=_names(document.get("excluded_source", []), f"{where!r}: 'excluded_source'"),
        excluded_target=_names(document.get("excluded_target", []), f"{where!r}: 'excluded_target'"),
        notes=_names(document.get("notes", []), f"{where!r}: 'notes'"),
        digest=_digest(document.get("digest", ""), f"{where!r}: 'digest'"),
    )


def _digest(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or len(raw) > 64:
        msg = f"{where} must be the short text automap writes there; delete the entry if unsure"
        raise MappingFileError(msg)
    return raw


def _check_text(document: Any, where: str) -> None:
    """Refuse any key or string in the document that holds control characters or is absurdly long."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            texts: list[str] = [k for k in node if isinstance(k, str)]
            stack.extend(node.values())
        elif isinstance(node, list):
            texts = []
            stack.extend(node)
        elif isinstance(node, str):
            texts = [node]
        else:
            continue
        for text in texts:
            bad = unsafe_character(text)
            if bad is not None:
                msg = (
                    f"{where!r}: the text {shown(text)} contains the unprintable character {bad!r}; refused, since it "
                    "could disguise a name during review"
                )
                raise MappingFileError(msg)
            if len(text) > MAX_NAME:
                msg = f"{where!r}: the text {shown(text, 40)} is longer than {MAX_NAME} characters; refused"
                raise MappingFileError(msg)


def _endpoint(raw: Any, where: str) -> Endpoint:
    if not isinstance(raw, dict):
        msg = f"{where} must be an object with 'path' and 'framework'"
        raise MappingFileError(msg)
    framework = raw.get("framework")
    if framework not in _FRAMEWORKS:
        msg = f"{where}: framework must be one of {list(_FRAMEWORKS)}, got {brief(framework)}"
        raise MappingFileError(msg)
    path, params, print_ = raw.get("path", ""), raw.get("params", 0), raw.get("fingerprint", "")
    if not isinstance(path, str) or type(params) is not int or not isinstance(print_, str):
        msg = f"{where}: 'path' and 'fingerprint' must be strings and 'params' an integer"
        raise MappingFileError(msg)
    return Endpoint(path, framework, params, print_)


def _names(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        msg = f"{where} must be a list of names"
        raise MappingFileError(msg)
    return tuple(raw)


def _source(raw: Any, where: str) -> Source:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, list) and raw and all(isinstance(n, str) for n in raw):
        return raw[0] if len(raw) == 1 else tuple(raw)
    msg = f"{where}: 'source' must be a name, a list of names to concatenate, or null"
    raise MappingFileError(msg)


def _shape(raw: Any, where: str) -> tuple[int, ...]:
    if isinstance(raw, list) and all(type(d) is int and 0 <= d < 2**48 for d in raw):
        return tuple(raw)
    msg = f"{where} must be a list of non-negative integers"
    raise MappingFileError(msg)


def _pair(raw: Any, where: str) -> Match:
    if not isinstance(raw, dict) or not isinstance(raw.get("target"), str):
        msg = f"{where}: each pair needs a 'target' name"
        raise MappingFileError(msg)
    where = f"{where} (target {shown(raw['target'])})"
    source = _source(raw.get("source"), where)
    confidence = raw.get("confidence", 1.0)
    if not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        msg = f"{where}: 'confidence' must be a number in [0, 1]"
        raise MappingFileError(msg)
    source_shape: Any = None
    if raw.get("source_shape") is not None:
        shapes = raw["source_shape"]
        if isinstance(source, tuple):
            if not isinstance(shapes, list) or len(shapes) != len(source):
                msg = f"{where}: 'source_shape' needs one shape per source"
                raise MappingFileError(msg)
            source_shape = tuple(_shape(s, f"{where}: 'source_shape'") for s in shapes)
        else:
            source_shape = _shape(shapes, f"{where}: 'source_shape'")
    evidence = raw.get("evidence", {})
    if not isinstance(evidence, dict) or not all(isinstance(v, int | float | str) for v in evidence.values()):
        msg = f"{where}: 'evidence' must map names to numbers or strings"
        raise MappingFileError(msg)
    alternatives = []
    listed = raw.get("alternatives") or []
    if not isinstance(listed, list):
        msg = f"{where}: 'alternatives' must be a list"
        raise MappingFileError(msg)
    for alt in listed:
        weight = alt.get("confidence", 0) if isinstance(alt, dict) else None
        if not isinstance(weight, int | float) or not 0 <= weight <= 1:
            msg = f"{where}: each alternative needs 'source' and a 'confidence' in [0, 1]"
            raise MappingFileError(msg)
        alternatives.append(
            Alternative(
                _source(alt.get("source"), where),
                float(alt.get("confidence", 0)),
                parse_steps(alt.get("transform"), where=f"{where} alternative"),
            )
        )
    pinned = raw.get("pinned", False)
    if not isinstance(pinned, bool):
        msg = f"{where}: 'pinned' must be true or false"
        raise MappingFileError(msg)
    return Match(
        target=raw["target"],
        source=source,
        confidence=float(confidence),
        transform=parse_steps(raw.get("transform"), where=where),
        target_shape=_shape(raw.get("target_shape", []), f"{where}: 'target_shape'"),
        source_shape=source_shape,
        evidence={str(k): float(v) for k, v in evidence.items() if not isinstance(v, str)},
        alternatives=tuple(alternatives),
        pinned=pinned,
        labels={str(k): v for k, v in evidence.items() if isinstance(v, str)},
    )
