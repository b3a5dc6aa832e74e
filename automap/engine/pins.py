"""Pinned pairs: what a person fixed in a reviewed mapping, checked against both tables, and spread.

A pin of one repeated block settles the same pair in every block of its pattern (`layers.0.w1 <- layers.0.gate_proj`
also pins `layers.7.w1 <- layers.7.gate_proj`), so a pattern is reviewed once, not once per layer. Pinned pairs
are taken out of the problem before anything is inferred.
"""

from __future__ import annotations

from dataclasses import replace

from automap._decisions import DECIDED_BY, DecidedBy
from automap._errors import MappingFileError
from automap.records import Match, NameMapping, ParamTable
from automap.transforms import output_shape

__all__ = ["pinned_pairs"]


def pinned_pairs(pins: NameMapping | None, source: ParamTable, target: ParamTable) -> dict[str, Match]:
    """The pinned pairs of `pins` by target, checked against both tables, plus the pairs their patterns settle.

    Raises:
        MappingFileError: a reviewed pair names a target or source parameter that does not exist.
    """
    if pins is None:
        return {}
    out: dict[str, Match] = {}
    for match in pins.pairs:
        if not match.pinned or match.source is None:
            continue
        if match.target not in target:
            msg = f"reviewed (pinned) target {match.target!r} is not a parameter of {target.source}"
            raise MappingFileError(msg)
        missing = [n for n in match.source_names if n not in source]
        if missing:
            msg = (
                f"reviewed (pinned) pair for {match.target!r} names source {missing[0]!r}, which {source.source} lacks"
            )
            raise MappingFileError(msg)
        shapes = [source[n].shape for n in match.source_names]
        # a pair carried from a reviewed pattern stays marked as such: no person looked at it
        spread = match.decided_by is DecidedBy.SAME_PATTERN
        out[match.target] = replace(
            match,
            confidence=1.0,
            target_shape=target[match.target].shape,
            source_shape=shapes[0] if len(shapes) == 1 else tuple(shapes),
            evidence={},
            alternatives=(),
            labels=dict(match.labels) if spread else {"pinned": "reviewed by a person"},
        )
    explicit = list(out.values())
    used = {n for m in explicit for n in m.source_names}
    for match in explicit:
        for extra in _same_pattern(match, source, target):
            if extra.target not in out and isinstance(extra.source, str) and extra.source not in used:
                out[extra.target] = extra
                used.add(extra.source)
    return out


def _same_pattern(pin: Match, source: ParamTable, target: ParamTable) -> list[Match]:
    """A reviewed pair of a repeated block, carried to every block of its pattern.

    `layers.0.w1 <- layers.0.gate_proj` also settles `layers.7.w1 <- layers.7.gate_proj`, so a person reviews a
    pattern once, not once per layer.
    """
    if not isinstance(pin.source, str):
        return []
    t_parts, s_parts = pin.target.split("."), pin.source.split(".")
    t_slots = [i for i, p in enumerate(t_parts) if p.isdigit()]
    s_slots = [i for i, p in enumerate(s_parts) if p.isdigit()]
    if not t_slots or len(t_slots) != len(s_slots):
        return []
    offsets = [int(s_parts[j]) - int(t_parts[i]) for i, j in zip(t_slots, s_slots, strict=True)]
    template = [None if i in t_slots else p for i, p in enumerate(t_parts)]
    out = []
    for record in target.params:
        parts = record.name.split(".")
        if record.name == pin.target or len(parts) != len(t_parts):
            continue
        if any(t is not None and t != p for t, p in zip(template, parts, strict=True)):
            continue
        if not all(parts[i].isdigit() for i in t_slots):
            continue
        candidate = list(s_parts)
        for i, j, offset in zip(t_slots, s_slots, offsets, strict=True):
            candidate[j] = str(int(parts[i]) + offset)
        name = ".".join(candidate)
        if name not in source:
            continue
        try:
            if output_shape([source[name].shape], pin.transform) != record.shape:
                continue
        except MappingFileError:
            continue
        out.append(
            Match(
                record.name,
                name,
                1.0,
                pin.transform,
                record.shape,
                source[name].shape,
                {},
                (),
                True,
                {
                    DECIDED_BY: DecidedBy.SAME_PATTERN.value,
                    "pinned": f"same pattern as the reviewed pair {pin.target!r}",
                },
            )
        )
    return out
