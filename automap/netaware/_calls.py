"""How the probe inputs become each model's arguments, and which of each model's outputs are compared.

A model rarely takes its inputs in the same order as its port, or returns the same outputs: a HuggingFace model
takes `input_ids=`, `attention_mask=` by keyword and returns a dict-like output; a MindFormers model takes
positional token ids and returns extra tensors. Both are said in the words of the command line:

- arguments: `0,2,decoder_input_ids=1,use_cache=false`: positional arguments, then keywords; each value is the
  number of a probe input (`--input`, counted from 0), an item of one (`1[0]`: a model that takes one image's
  prompts where the other takes a batch), or a constant: `true`, `false`, `none`, a number, a quoted string, a
  tuple (`original_size=(64,64)`: sizes a model wants as Python tuples);
- outputs: `logits` or `0,2`: output names (the paths of `automap.netaware._frameworks.named_leaves`: a
  name also selects what lies below it) or positions in the model's flattened list of outputs.

When the outputs are not given, they are paired by shape: the source model's outputs in order, each with the
first free target output of a shape it can be compared with (the same, axes permuted, leading axes merged);
what is left unpaired is not compared, and the choice is printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from automap._advice import option
from automap._errors import AutomapError
from automap._types import Array

from ._compare import arrangements

__all__ = ["Arguments", "OutputChoice", "match_outputs", "parse_arguments", "parse_outputs", "select_outputs"]

Constant = bool | int | float | str | None | tuple[object, ...]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONSTANTS: dict[str, Constant] = {"true": True, "false": False, "none": None}
_TOKENS = re.compile(r"""\s*(?:('[^']*'|"[^"]*")|([()\[\],=])|([^\s()\[\],='"]+)|(\S))""")
_EXAMPLE = "'0,2,decoder_input_ids=1,use_cache=false' or 'image=0,points=1[0],size=(64,64)'"


@dataclass(frozen=True)
class Arguments:
    """Where each argument of a model comes from: a probe input (its number), an item of one, or a constant.

    Attributes:
        positional: one entry per positional argument: `("input", n)`, `("item", (n, (i, ...)))` (probe input
            `n` indexed by `i, ...` along its first axes) or `("constant", value)`.
        keywords: (keyword, entry) pairs, in the order given.
        text: the spec as given, for messages.
    """

    positional: tuple[tuple[str, object], ...]
    keywords: tuple[tuple[str, tuple[str, object]], ...] = ()
    text: str = ""

    def build(self, inputs: Sequence[Array]) -> tuple[list[object], dict[str, object]]:
        """The positional and keyword arguments for the probe inputs.

        Raises:
            AutomapError: an entry names a probe input that does not exist, or an item it does not have.
        """
        return [self._value(e, inputs) for e in self.positional], {k: self._value(e, inputs) for k, e in self.keywords}

    def _value(self, entry: tuple[str, object], inputs: Sequence[Array]) -> object:
        kind, value = entry
        if kind == "constant":
            return value
        number, items = _reference(kind, value)
        if number >= len(inputs):
            msg = (
                f"the arguments {self.text!r} use probe input {number}, but there are {len(inputs)} inputs "
                f"(give one {option('inputs', ['SPEC'])} per probe input, counted from 0)"
            )
            raise AutomapError(msg)
        array = inputs[number]
        shape = tuple(array.shape)
        if len(items) > len(shape) or any(i >= n for i, n in zip(items, shape, strict=False)):
            where = "".join(f"[{i}]" for i in items)
            msg = (
                f"the arguments {self.text!r} take item {number}{where} of probe input {number}, which is shaped "
                f"{list(shape)}: no such item"
            )
            raise AutomapError(msg)
        return array[items] if items else array

    @property
    def inputs_used(self) -> set[int]:
        """The numbers of the probe inputs these arguments take (whole or an item of them)."""
        entries = [*self.positional, *(e for _, e in self.keywords)]
        return {_reference(kind, value)[0] for kind, value in entries if kind != "constant"}


def _reference(kind: str, value: object) -> tuple[int, tuple[int, ...]]:
    """(probe input number, item indices) of an `input` or `item` entry."""
    if kind == "input":
        assert isinstance(value, int)
        return value, ()
    assert isinstance(value, tuple) and len(value) == 2
    number, items = value
    return int(number), tuple(int(i) for i in items)


def parse_arguments(text: str) -> Arguments:
    """Parse `0,2,decoder_input_ids=1,use_cache=false,size=(64,64),points=1[0]`.

    Each value is a probe input's number (`1`), an item of one (`1[0]`: its first item along the first axis),
    or a constant: `true`, `false`, `none`, a number (a bare whole number is a probe input: a constant integer
    takes a sign, `+5`, `-1`), a quoted string, or a tuple of constants in parentheses (`(64, 64)`, `(1,)`, `()`),
    where whole numbers are integers.

    Raises:
        AutomapError: the spec is malformed (one line naming what and where, with the expected form).
    """
    tokens = _tokenize(text)
    positional: list[tuple[str, object]] = []
    keywords: list[tuple[str, tuple[str, object]]] = []
    at = 0
    while at < len(tokens):
        keyword = ""
        if at + 1 < len(tokens) and tokens[at + 1] == ("punct", "="):
            keyword = tokens[at][1]
            if tokens[at][0] != "word" or not _NAME.match(keyword):
                _bad_arguments(text, f"{keyword!r} is not a keyword")
            at += 2
        elif keywords and tokens[at] != ("punct", ","):
            _bad_arguments(text, f"positional {_shown(tokens, at)!r} after a keyword")
        if at < len(tokens) and tokens[at] == ("punct", ","):
            if keyword:
                _bad_arguments(text, f"no value after {keyword}=")
            at += 1  # an empty item (`0,,1`, a trailing comma) is skipped
            continue
        entry, at = _value(tokens, at, text, top=True)
        if keyword:
            keywords.append((keyword, entry))
        else:
            positional.append(entry)
        if at < len(tokens):
            if tokens[at] != ("punct", ","):
                _bad_arguments(text, f"{_shown(tokens, at)!r} where a comma should end the value")
            at += 1
    return Arguments(tuple(positional), tuple(keywords), text)


Token = tuple[str, str]


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    for string, punct, word, other in _TOKENS.findall(text):
        if other:
            reason = "an unclosed quote" if other in "'\"" else f"unexpected {other!r}"
            _bad_arguments(text, reason)
        tokens.append(("string", string) if string else ("punct", punct) if punct else ("word", word))
    return tokens


def _shown(tokens: Sequence[Token], at: int) -> str:
    return tokens[at][1] if at < len(tokens) else "the end"


def _value(tokens: Sequence[Token], at: int, text: str, *, top: bool) -> tuple[tuple[str, object], int]:
    """One value from `tokens[at]` on, and where the next token is."""
    if at >= len(tokens):
        _bad_arguments(text, "a value is missing at the end")
    kind, token = tokens[at]
    if kind == "string":
        return ("constant", token[1:-1]), at + 1
    if token == "(":
        items: list[object] = []
        at += 1
        while at < len(tokens) and tokens[at] != ("punct", ")"):
            (_, item), at = _value(tokens, at, text, top=False)
            items.append(item)
            if at < len(tokens) and tokens[at] == ("punct", ","):
                at += 1
            elif at < len(tokens) and tokens[at] != ("punct", ")"):
                _bad_arguments(text, f"{_shown(tokens, at)!r} in a tuple where a comma or ')' should be")
        if at >= len(tokens):
            _bad_arguments(text, "a tuple's '(' has no ')'")
        return ("constant", tuple(items)), at + 1
    if kind != "word":
        _bad_arguments(text, f"{token!r} where a value should be")
    if top and token.isdigit():
        return _item(tokens, at, text)
    lowered = token.lower()
    if lowered in _CONSTANTS:
        return ("constant", _CONSTANTS[lowered]), at + 1
    for convert in (int, float):
        try:
            return ("constant", convert(token)), at + 1
        except ValueError:
            continue
    what = "a probe input number" if top else "a constant"
    _bad_arguments(text, f"{token!r} is neither {what} nor true, false, none, a number, a quoted string or a tuple")
    raise AssertionError  # unreachable: _bad_arguments raises


def _item(tokens: Sequence[Token], at: int, text: str) -> tuple[tuple[str, object], int]:
    """A probe input's number, with the items it is indexed by (`1[0]`)."""
    number, at = int(tokens[at][1]), at + 1
    items: list[int] = []
    while at < len(tokens) and tokens[at] == ("punct", "["):
        inside = tokens[at + 1 : at + 3]
        if len(inside) < 2 or not inside[0][1].isdigit() or inside[1] != ("punct", "]"):
            _bad_arguments(text, f"probe input {number}'s item is not a whole number in brackets, as in {number}[0]")
        items.append(int(inside[0][1]))
        at += 3
    return (("item", (number, tuple(items))) if items else ("input", number)), at


def _bad_arguments(text: str, reason: str) -> None:
    msg = (
        f"arguments {text!r}: {reason}; expected positions then keywords, each a probe input number (or an item "
        f"of one, 1[0]) or a constant (true, false, none, a number, 'text', a tuple (64,64)), e.g. {_EXAMPLE}"
    )
    raise AutomapError(msg)


def parse_outputs(text: str | Sequence[str | int]) -> tuple[str | int, ...]:
    """Parse `logits` or `0,2` (names or positions), or take a list as it is."""
    items = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    return tuple(int(i) if isinstance(i, str) and i.isdigit() else i for i in items if i != "")


def select_outputs(names: Sequence[str], wanted: Sequence[str | int], framework: str) -> tuple[str, ...]:
    """The output names a selection keeps, in the order asked (positions are counted in `names`).

    Raises:
        AutomapError: a name or position matches no output; the message lists the outputs.
    """
    out: list[str] = []
    for item in wanted:
        if isinstance(item, int):
            if item >= len(names):
                _no_output(item, names, framework)
            out.append(names[item])
            continue
        found = [n for n in names if n == item or n.startswith(item + ".")]
        if not found:
            _no_output(item, names, framework)
        out.extend(n for n in found if n not in out)
    return tuple(out)


def _no_output(item: str | int, names: Sequence[str], framework: str) -> None:
    shown = ", ".join(f"{i}: {n or '(the output)'}" for i, n in enumerate(names[:12]))
    msg = f"the {framework} model has no output {item!r}; its outputs are {shown}"
    raise AutomapError(msg)


@dataclass(frozen=True)
class OutputChoice:
    """Which outputs of the two models are compared, and how the choice was made.

    Attributes:
        source: names of the source model's outputs compared, in order.
        target: names of the target model's outputs compared with them, in the same order.
        automatic: paired by shape (the models' outputs were not given or did not correspond one to one).
        left_out: outputs of either model not compared (`framework: name`).
    """

    source: tuple[str, ...]
    target: tuple[str, ...]
    automatic: bool = False
    left_out: tuple[str, ...] = ()
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def lines(self, source_title: str = "source", target_title: str = "target") -> list[str]:
        """One line per compared pair, and one for what was left out."""
        how = "paired by shape" if self.automatic else "as given"
        out = [f"outputs compared ({how}):"]
        for a, b in zip(self.source, self.target, strict=True):
            out.append(
                f"  {source_title} {a or '(the output)'} {list(self.shapes.get('source:' + a, ()))} ~ "
                f"{target_title} {b or '(the output)'} {list(self.shapes.get('target:' + b, ()))}"
            )
        if self.left_out:
            more = f", ... ({len(self.left_out)} in all)" if len(self.left_out) > 6 else ""
            shown = ", ".join(self.left_out[:6]) + more
            out.append(f"  not compared: {shown}")
        return out


def match_outputs(
    source: Sequence[tuple[str, tuple[int, ...]]],
    target: Sequence[tuple[str, tuple[int, ...]]],
    titles: tuple[str, str],
) -> OutputChoice:
    """Pair the outputs of two models by shape, in order, when they do not correspond one to one.

    Args:
        source: (name, shape) of each output of the source model.
        target: (name, shape) of each output of the target model.
        titles: the two models' framework titles, for `left_out`.
    """
    shapes = {**{f"source:{n}": s for n, s in source}, **{f"target:{n}": s for n, s in target}}
    if len(source) == len(target) and all(arrangements(a, b) for (_, a), (_, b) in zip(source, target, strict=True)):
        return OutputChoice(tuple(n for n, _ in source), tuple(n for n, _ in target), shapes=shapes)
    taken: set[int] = set()
    pairs: list[tuple[str, str]] = []
    for exact in (True, False):
        for name, shape in source:
            if name in {a for a, _ in pairs}:
                continue
            for number, (other, other_shape) in enumerate(target):
                if number in taken:
                    continue
                if (shape == other_shape) if exact else bool(arrangements(shape, other_shape)):
                    taken.add(number)
                    pairs.append((name, other))
                    break
    order = {n: i for i, (n, _) in enumerate(source)}
    pairs.sort(key=lambda p: order[p[0]])
    used_source = {a for a, _ in pairs}
    left = [f"{titles[0]} {n or '(the output)'} {list(s)}" for n, s in source if n not in used_source]
    left += [f"{titles[1]} {n or '(the output)'} {list(s)}" for i, (n, s) in enumerate(target) if i not in taken]
    return OutputChoice(tuple(a for a, _ in pairs), tuple(b for _, b in pairs), True, tuple(left), shapes)
