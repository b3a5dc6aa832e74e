"""From the final assignment to `Match` records: source, layout steps, confidence, evidence and alternatives.

A whole tensor becomes one pair (split first when the source is a piece of a fused tensor); the pieces a
target was cut into become one pair that concatenates their sources. Reshape-only pairs are capped below the
threshold. Last, square 2-D weights take the transpose convention that the non-square weights around them
show (a property of the model that shape alone cannot tell for a square matrix).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import replace

from automap._decisions import DECIDED_BY, DecidedBy
from automap._types import Array
from automap.records import Alternative, Match, ParamRecord
from automap.transforms import Reshape, Split, Step, Transpose

from .features import FEATURES, FeatureContext
from .fused import piece_index
from .graph import owner
from .names import index_template, tokenize
from .shapes import TRANSPOSE, Part, Relation, concat_steps
from .sides import Side
from .solver import Assignment, Solution

__all__ = ["build_matches"]

_TRUSTED = 0.8  # a non-square pair this sure shows how its layer is stored
_CAP = 0.45  # the confidence of a square weight whose storage nothing shows


def build_matches(
    solution: Solution, scores: Mapping[str, Array], ctx: FeatureContext, notes: list[str]
) -> dict[str, Match]:
    """One `Match` per target of the block: whole, concatenated from pieces, or unmatched (with its rivals)."""
    source, target = ctx.source, ctx.target
    t_records = target.table.params
    part_rows: dict[int, list[Assignment]] = defaultdict(list)
    for a in solution.assignments.values():
        node = target.nodes[a.target]
        if node.part is not None and a.source is not None:
            part_rows[node.base].append(a)
    out: dict[str, Match] = {}
    for record in t_records:
        whole = solution.assignments.get(record.index)
        if whole is not None and whole.source is not None:
            out[record.name] = _single(whole, record, scores, ctx)
        elif part_rows.get(record.index):
            built = _concatenated(
                sorted(part_rows[record.index], key=lambda a: piece_index(ctx, a, False)), record, scores, ctx
            )
            if built is not None:
                out[record.name] = built
        if record.name not in out:
            rivals = whole.rivals if whole is not None else ()
            out[record.name] = Match(
                record.name,
                None,
                0.0,
                target_shape=record.shape,
                alternatives=tuple(Alternative(_source_name(source, c), 0.0) for c, _ in rivals if c is not None),
                labels={"note": "no source tensor fits well enough"},
            )
    _apply_transpose_convention(out, notes, ctx)
    return out


def _source_name(source: Side, node: int | None) -> str | None:
    if node is None:
        return None
    return source.table.params[source.nodes[node].base].name


def _evidence(a: Assignment, scores: Mapping[str, Array]) -> tuple[dict[str, float], dict[str, str]]:
    """The scores of the chosen candidate, and the labels saying what decided it."""
    evidence: dict[str, float] = {}
    if a.candidate is not None:
        for name in FEATURES:
            if name in scores:
                evidence[name] = float(scores[name][a.candidate])
    decided = a.doubt if a.doubt is not None else DecidedBy.NAMES_AND_STRUCTURE
    return evidence, {DECIDED_BY: decided.value}


def _alternatives(a: Assignment, source: Side) -> tuple[Alternative, ...]:
    out = []
    for node, share in a.rivals:
        name = _source_name(source, node) if node is not None else None
        if name is None:
            continue
        part = source.nodes[node].part if node is not None else None
        steps = (Split(part.axis, part.parts, part.index),) if part else ()
        out.append(Alternative(name, round(share, 4), steps))
    return tuple(out[:3])


def _single(a: Assignment, record: ParamRecord, scores: Mapping[str, Array], ctx: FeatureContext) -> Match:
    source = ctx.source
    assert a.source is not None and a.candidate is not None
    node = source.nodes[a.source]
    base = source.table.params[node.base]
    relation = ctx.candidates.relation[a.candidate]
    steps: list[Step] = []
    if node.part is not None:
        steps.append(Split(node.part.axis, node.part.parts, node.part.index))
    steps.extend(relation.steps)
    evidence, labels = _evidence(a, scores)
    confidence = float(a.confidence)
    if relation.kind == "reshape":  # equal sizes, unrelated layouts: possible, never evident
        confidence = min(confidence, 0.45)
        labels[DECIDED_BY] = DecidedBy.RESHAPE_ONLY.value
    return Match(
        target=record.name,
        source=base.name,
        confidence=confidence,
        transform=tuple(steps),
        target_shape=record.shape,
        source_shape=base.shape,
        evidence=evidence,
        alternatives=_alternatives(a, source),
        labels=labels,
    )


def _concatenated(
    parts: list[Assignment], record: ParamRecord, scores: Mapping[str, Array], ctx: FeatureContext
) -> Match | None:
    source, target = ctx.source, ctx.target
    first = target.nodes[parts[0].target].part
    assert first is not None
    kinds = {ctx.candidates.relation[a.candidate].kind for a in parts if a.candidate is not None}
    if (
        len(kinds) != 1
        or len(parts) != first.parts
        or any(source.nodes[a.source].part for a in parts if a.source is not None)
    ):
        return None
    names = tuple(source.table.params[source.nodes[a.source].base].name for a in parts if a.source is not None)
    shapes = tuple(source.table.params[source.nodes[a.source].base].shape for a in parts if a.source is not None)
    relation = ctx.candidates.relation[parts[0].candidate]  # type: ignore[index]
    published = None
    if relation.kind == "exact" and all(len(s) == 2 and s[0] == s[1] for s in shapes):  # the shapes show no layout
        published = _published_piece_layout(ctx, record, parts)
        if published:
            relation = Relation((Transpose(),), TRANSPOSE, "transpose")
    steps = concat_steps(Part(first.axis, first.parts, 0), relation, record.shape, shapes)
    if steps is None:
        return None
    weakest = min(parts, key=lambda a: a.confidence)
    evidence, labels = _evidence(weakest, scores)
    labels["note"] = f"built by concatenating {len(names)} source tensors" + (
        ", each stored as the published rename table of its library says" if published is not None else ""
    )
    return Match(
        target=record.name,
        source=names,
        confidence=float(weakest.confidence),
        transform=tuple(steps),
        target_shape=record.shape,
        source_shape=shapes,
        evidence=evidence,
        alternatives=(),
        labels=labels,
    )


def _published_piece_layout(ctx: FeatureContext, record: ParamRecord, parts: list[Assignment]) -> bool | None:
    """Whether the published tables transpose the square sources a target is concatenated from, or None.

    Each source must be paired with its own piece of the target by an entry, and all must say the same.
    """
    index = ctx.conventions
    if index is None or not index.active:
        return None
    said: set[bool] = set()
    for a in parts:
        part = ctx.target.nodes[a.target].part
        if a.source is None or part is None:
            return None
        shared = index.target[record.index] & index.source[ctx.source.nodes[a.source].base]
        layouts = {
            index.entries[i].layout == "transposed"
            for i in shared
            if (piece := index.entries[i].piece) is not None and piece[:2] == (part.index, part.parts)
        }
        if len(layouts) != 1:
            return None
        said |= layouts
    return said.pop() if len(said) == 1 else None


def _apply_transpose_convention(matches: dict[str, Match], notes: list[str], ctx: FeatureContext) -> None:
    """Decide whether each square 2-D weight is stored transposed, which its shape cannot tell.

    In order: what a published rename table says of the pair; else what the confident non-square weights of
    the same layer (in other blocks) show; else the frameworks' default (`(out, in)` on both sides, nothing
    transposed) when nothing in the port suggests otherwise. When the port does store some layers transposed
    (or leaves that open), a square weight with no evidence of its own is flagged instead of guessed: ports
    mix conventions (MindFormers' T5 transposes the attention output but not q, k, v). Its flagged layout is
    then the one its sibling layers show (`attn.k` beside an `attn.q` whose layout is known), where they agree,
    and the port's majority only where they do not: the layers of one module are most often stored alike.
    """
    layers: dict[str, Counter[bool]] = defaultdict(Counter)
    siblings: dict[str, Counter[bool]] = defaultdict(Counter)  # by module: the layouts its layers show
    published: dict[str, bool] = {}  # square weights' layouts as the published tables state them
    port: Counter[bool] = Counter()
    port_transposes = False
    for match in matches.values():
        if not _is_layer_weight(match):
            continue
        transposed = any(isinstance(s, Transpose) for s in match.transform)
        if match.decided_by is DecidedBy.LAYOUT_ONLY:
            port_transposes = True  # a transposed layout was as likely as the one chosen
        shape = match.target_shape
        if len(shape) == 2 and shape[0] == shape[1]:
            stated = _published_layout(match, ctx) if not transposed else None
            if stated is not None:
                published[match.target] = stated
                siblings[_module(match.target)][stated] += 1
            continue
        if len(shape) != 2 or match.confidence < _TRUSTED:
            continue
        layers[_layer(match.target)][transposed] += 1
        siblings[_module(match.target)][transposed] += 1
        port[transposed] += 1
        port_transposes |= transposed
    flipped = doubted = 0
    for name, match in matches.items():
        shape = match.target_shape
        if len(shape) != 2 or shape[0] != shape[1] or not isinstance(match.source, str) or not _is_layer_weight(match):
            continue
        if any(isinstance(s, Transpose | Reshape) for s in match.transform):
            continue
        labels = dict(match.labels)
        votes = layers.get(_layer(name))
        if name in published:
            transposed = published[name]
            labels["note"] = "square weight stored as the published rename table of its library says"
        elif votes and len(votes) == 1:
            transposed = next(iter(votes))
            labels["note"] = "square weight stored like the same layer's non-square weights in other blocks"
        elif not port_transposes:
            continue  # the frameworks' default: both store (out, in)
        else:  # a guess, flagged: like its sibling layers where they agree, else like most of the port's layers
            kin = siblings.get(_module(name), Counter())
            alike = len(kin) == 1
            transposed = next(iter(kin)) if alike else port[True] > port[False]
            labels[DECIDED_BY] = DecidedBy.LAYOUT_ONLY.value
            labels["note"] = (
                "square weight: the port stores some layers transposed, and nothing shows whether this one is"
                + (f" ({'transposed' if transposed else 'kept'} like the other layers of its module)" if alike else "")
                + (" (transposed like most of them)" if transposed and not alike else "")
            )
            match = replace(match, confidence=min(match.confidence, _CAP))
            doubted += 1
        if transposed:
            matches[name] = replace(match, transform=(*match.transform, Transpose()), labels=labels)
            flipped += 1
        elif labels != match.labels:
            matches[name] = replace(match, labels=labels)
    if flipped:
        notes.append(f"{flipped} square 2-D weights transposed to follow the port's storage convention")
    if doubted:
        notes.append(f"{doubted} square 2-D weights flagged: nothing shows whether the port stores them transposed")


def _module(name: str) -> str:
    """The module holding a weight's layer, across blocks (`blocks.#.attn` for `blocks.3.attn.k.weight`)."""
    return owner(_layer(name))


def _layer(name: str) -> str:
    """A weight's layer across blocks: its module with container indices blanked (`blocks.#.output.mapping`)."""
    return index_template(owner(name))


def _published_layout(match: Match, ctx: FeatureContext) -> bool | None:
    """Whether a published rename table that pairs a square weight's two names transposes it, or None.

    A weight cut from a fused source (`qkv` -> `dense1`) takes what the table says of that piece.
    """
    index = ctx.conventions
    if index is None or not index.active or not isinstance(match.source, str):
        return None
    target, source = ctx.target.table.get(match.target), ctx.source.table.get(match.source)
    if target is None or source is None:
        return None
    first = match.transform[0] if match.transform else None
    piece = (first.index, first.parts) if isinstance(first, Split) else None
    entries = [index.entries[i] for i in index.target[target.index] & index.source[source.index]]
    said = {
        entry.layout == "transposed"
        for entry in entries
        if not entry.interleaved and (entry.piece[:2] if entry.piece is not None else None) == piece
    }
    return said.pop() if len(said) == 1 else None


def _is_layer_weight(match: Match) -> bool:
    """A layer's weight on both sides (`weight`, `kernel`, ...), not a free parameter such as `text_projection`.

    A free parameter's layout follows how the model multiplies with it rather than the layer convention.
    """
    return isinstance(match.source, str) and all(
        "=weight" in tokenize(name).leaf and not tokenize(name).leaf[0].startswith(("gamma", "embedding"))
        for name in (match.target, match.source)
    )


def _scopes(name: str) -> list[str]:
    """Enclosing module templates of a parameter, innermost first, ending with the whole model ("")."""
    parts = index_template(name).split(".")[:-1]
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)] + [""]
