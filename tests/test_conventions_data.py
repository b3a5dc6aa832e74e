"""The published-conventions table is well-formed data: patterns, provenance, layouts and fused pieces.

automap reads automap/engine/conventions.json as evidence; a malformed entry (an index in a pattern, a
piece that does not tile its tensor, a source without a version) would mislead the engine silently.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

REQUIRED = {"pytorch", "mindspore", "source"}
OPTIONAL = {"layout", "piece", "piece_of", "interleaved_heads", "head_piece", "note"}
LAYOUTS = {"transposed", "same"}
PACKAGES = {"mindformers", "mindocr", "mindone", "mindnlp", "mindcv", "mindyolo", "mindaudio", "transformers"}
SOURCE = re.compile(r"(?P<package>[a-z_]+) (?P<version>\d+\.\d+(\.\d+)?) (?P<path>[\w./-]+\.(py|txt))")
COMPONENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# read as a file, not through the package: the data must stand on its own
TABLE = Path(__file__).resolve().parents[1] / "automap" / "engine" / "conventions.json"


def _load() -> dict[str, Any]:
    text = TABLE.read_text(encoding="utf-8")
    document = json.loads(text)
    assert isinstance(document, dict)
    return document


DOCUMENT = _load()
ENTRIES: list[dict[str, Any]] = DOCUMENT["entries"]


def _id(entry: dict[str, Any]) -> str:
    return f"{entry['pytorch']}~{entry['mindspore']}"


def test_the_document_has_an_about_and_entries() -> None:
    assert set(DOCUMENT) == {"about", "entries", "aliases"}
    assert isinstance(DOCUMENT["about"], str)
    assert "longest" in DOCUMENT["about"]  # the precedence rule for nested patterns is written down
    assert isinstance(ENTRIES, list)
    assert len(ENTRIES) >= 50


@pytest.mark.parametrize("entry", ENTRIES, ids=[_id(e) for e in ENTRIES])
def test_entry_keys_are_known_and_complete(entry: dict[str, Any]) -> None:
    assert isinstance(entry, dict)
    assert REQUIRED <= set(entry), f"missing {REQUIRED - set(entry)}"
    assert set(entry) <= REQUIRED | OPTIONAL, f"unknown keys {set(entry) - REQUIRED - OPTIONAL}"
    if "note" in entry:
        assert isinstance(entry["note"], str)
        assert entry["note"].strip()


@pytest.mark.parametrize("entry", ENTRIES, ids=[_id(e) for e in ENTRIES])
def test_patterns_are_dotted_name_components(entry: dict[str, Any]) -> None:
    for side in ("pytorch", "mindspore"):
        pattern = entry[side]
        assert isinstance(pattern, str)
        assert pattern, f"{side} pattern is empty"
        assert not pattern.startswith(".")
        assert not pattern.endswith(".")
        assert "{" not in pattern
        assert "}" not in pattern
        for component in pattern.split("."):
            assert component, f"{side} pattern {pattern!r} has an empty component"
            assert not component.isdigit(), f"{side} pattern {pattern!r} holds an index"
            assert COMPONENT.fullmatch(component), f"{side} pattern {pattern!r}: {component!r} is not a name"
    assert entry["pytorch"] != entry["mindspore"], "an identity entry says nothing"


def test_no_pair_is_listed_twice() -> None:
    pairs = [(e["pytorch"], e["mindspore"]) for e in ENTRIES]
    repeated = sorted({p for p in pairs if pairs.count(p) > 1})
    assert not repeated


@pytest.mark.parametrize("entry", ENTRIES, ids=[_id(e) for e in ENTRIES])
def test_every_source_names_a_package_version_and_script(entry: dict[str, Any]) -> None:
    parts = entry["source"].split("; ")
    assert len(parts) == len(set(parts)), "a source is listed twice"
    for part in parts:
        found = SOURCE.fullmatch(part)
        assert found, f"{part!r} is not 'package version path'"
        assert found["package"] in PACKAGES
        assert not found["path"].startswith("/")


@pytest.mark.parametrize("entry", ENTRIES, ids=[_id(e) for e in ENTRIES])
def test_layout_and_pieces_are_well_formed(entry: dict[str, Any]) -> None:
    if "layout" in entry:
        assert entry["layout"] in LAYOUTS
    for key in ("piece", "head_piece"):
        if key in entry:
            _check_piece(entry[key])
    if "piece_of" in entry:
        assert entry["piece_of"] == "mindspore"
        assert "piece" in entry
    if "interleaved_heads" in entry:
        assert entry["interleaved_heads"] is True
        assert "head_piece" in entry
        assert "piece" not in entry, "an interleaved tensor must not be cut as a contiguous block"
    else:
        assert "head_piece" not in entry


def _check_piece(piece: Any) -> None:
    assert isinstance(piece, list)
    assert len(piece) == 3
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in piece)
    index, parts, _axis = piece
    assert parts >= 2
    assert 0 <= index < parts


@pytest.mark.parametrize("key", ["piece", "head_piece"])
def test_the_pieces_of_one_fused_tensor_tile_it(key: str) -> None:
    groups: dict[tuple[str, str, str], list[list[int]]] = defaultdict(list)
    for entry in ENTRIES:
        if key in entry:
            fused_side = entry.get("piece_of", "pytorch")
            groups[(fused_side, entry[fused_side], entry["source"])].append(entry[key])
    assert groups
    for group, pieces in groups.items():
        assert len({p[1] for p in pieces}) == 1, f"{group}: different part counts"
        assert len({p[2] for p in pieces}) == 1, f"{group}: different axes"
        assert sorted(p[0] for p in pieces) == list(range(pieces[0][1])), f"{group}: pieces do not tile"


# The aliases: renames between an original PyTorch codebase's names and Hugging Face transformers' names, read
# from transformers' own conversion scripts. Same pattern rules; the other side is "original", not "mindspore".
ALIASES: dict[str, Any] = DOCUMENT["aliases"]
ALIAS_ENTRIES: list[dict[str, Any]] = ALIASES["entries"]
ALIAS_REQUIRED = {"pytorch", "original", "source"}
ALIAS_LAYOUTS = {"transposed", "same", "rotary_halves"}
TRANSFORM_KEYS = ("layout", "piece", "piece_of", "interleaved_heads", "head_piece")
LONGEST = 6  # components; the engine looks up no longer suffix


def _alias_id(entry: dict[str, Any]) -> str:
    return f"{entry['pytorch']}~{entry['original']}"


def _transform(entry: dict[str, Any]) -> str:
    return json.dumps({key: entry[key] for key in TRANSFORM_KEYS if key in entry}, sort_keys=True)


def test_the_aliases_have_an_about_and_entries() -> None:
    assert isinstance(ALIASES, dict)
    assert set(ALIASES) == {"about", "entries"}
    about = ALIASES["about"]
    assert isinstance(about, str)
    for said in ("longest", "'original'", "'pytorch'", "transformers 4.46.3", "NOT HERE"):
        assert said in about, f"the about does not say {said!r}"
    assert isinstance(ALIAS_ENTRIES, list)
    assert len(ALIAS_ENTRIES) >= 300


@pytest.mark.parametrize("entry", ALIAS_ENTRIES, ids=[_alias_id(e) for e in ALIAS_ENTRIES])
def test_alias_keys_are_known_and_complete(entry: dict[str, Any]) -> None:
    assert isinstance(entry, dict)
    assert ALIAS_REQUIRED <= set(entry), f"missing {ALIAS_REQUIRED - set(entry)}"
    assert set(entry) <= ALIAS_REQUIRED | OPTIONAL, f"unknown keys {set(entry) - ALIAS_REQUIRED - OPTIONAL}"
    if "note" in entry:
        assert isinstance(entry["note"], str)
        assert entry["note"].strip()


@pytest.mark.parametrize("entry", ALIAS_ENTRIES, ids=[_alias_id(e) for e in ALIAS_ENTRIES])
def test_alias_patterns_are_dotted_name_components(entry: dict[str, Any]) -> None:
    for side in ("pytorch", "original"):
        pattern = entry[side]
        assert isinstance(pattern, str)
        assert pattern, f"{side} pattern is empty"
        assert "{" not in pattern
        assert "}" not in pattern
        components = pattern.split(".")
        assert len(components) <= LONGEST, f"{side} pattern {pattern!r} is longer than any suffix looked up"
        assert all(components), f"{side} pattern {pattern!r} has an empty component"
        for component in components:
            assert COMPONENT.fullmatch(component) or component.isdigit(), f"{side} {pattern!r}: {component!r}"
        positions = [c for c in components if c.isdigit()]
        assert len(positions) < len(components), f"{side} pattern {pattern!r} is only positions"
        if positions:  # a position inside a fixed sub-module is allowed, and must say so
            assert "note" in entry, f"{side} pattern {pattern!r} holds a digit component without a note"
    assert entry["pytorch"] != entry["original"], "an identity entry says nothing"


def test_no_alias_pair_is_listed_twice() -> None:
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for entry in ALIAS_ENTRIES:
        by_pair[(entry["pytorch"], entry["original"])].append(entry)
    for pair, entries in by_pair.items():
        if len(entries) == 1:
            continue
        transforms = [_transform(e) for e in entries]
        assert len(set(transforms)) == len(transforms), f"{pair} is listed twice with the same transform"
        assert all("note" in e for e in entries), f"{pair}: codebases that store it differently must say why"


@pytest.mark.parametrize("entry", ALIAS_ENTRIES, ids=[_alias_id(e) for e in ALIAS_ENTRIES])
def test_every_alias_source_names_transformers_its_version_and_script(entry: dict[str, Any]) -> None:
    parts = entry["source"].split("; ")
    assert len(parts) == len(set(parts)), "a source is listed twice"
    for part in parts:
        found = SOURCE.fullmatch(part)
        assert found, f"{part!r} is not 'package version path'"
        assert found["package"] == "transformers"
        assert re.fullmatch(r"\d+\.\d+\.\d+", found["version"]), f"{part!r}: the version is not exact"
        assert re.fullmatch(r"models/\w+/convert_\w+\.py", found["path"]), f"{part!r} is not a conversion script"


@pytest.mark.parametrize("entry", ALIAS_ENTRIES, ids=[_alias_id(e) for e in ALIAS_ENTRIES])
def test_alias_layout_and_pieces_are_well_formed(entry: dict[str, Any]) -> None:
    if "layout" in entry:
        assert entry["layout"] in ALIAS_LAYOUTS
    for key in ("piece", "head_piece"):
        if key in entry:
            _check_piece(entry[key])
    if "piece_of" in entry:
        assert entry["piece_of"] in {"pytorch", "original"}
        assert "piece" in entry or "head_piece" in entry
    if "interleaved_heads" in entry:
        assert entry["interleaved_heads"] is True
        assert "head_piece" in entry
        assert "piece" not in entry, "an interleaved tensor must not be cut as a contiguous block"
    else:
        assert "head_piece" not in entry


@pytest.mark.parametrize("key", ["piece", "head_piece"])
def test_the_alias_pieces_of_one_fused_tensor_tile_it_in_every_script(key: str) -> None:
    groups: dict[tuple[str, str, str], list[list[int]]] = defaultdict(list)
    for entry in ALIAS_ENTRIES:
        if key in entry:
            fused_side = entry.get("piece_of", "pytorch")
            for script in entry["source"].split("; "):
                groups[(script, fused_side, entry[fused_side])].append(entry[key])
    assert groups
    for group, pieces in groups.items():
        assert len({p[1] for p in pieces}) == 1, f"{group}: different part counts"
        assert len({p[2] for p in pieces}) == 1, f"{group}: different axes"
        assert sorted(p[0] for p in pieces) == list(range(pieces[0][1])), f"{group}: pieces do not tile"
