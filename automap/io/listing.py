"""Read and write listings: names, shapes and dtypes of a checkpoint as JSON, with no tensor data.

A listing lets a user give a target template without a checkpoint, e.g. one written by
`automap inspect --json`. Accepted forms, from the richest to the plainest:

- `{"format": "automap.listing", "version": 1, "framework": "mindspore", "params": [{"name", "shape", "dtype"}]}`
- `[{"name": "fc.weight", "shape": [10, 4], "dtype": "float32"}, ...]`
- `{"fc.weight": [10, 4], ...}` or `{"fc.weight": {"shape": [10, 4], "dtype": "float16"}, ...}`

The dtype defaults to float32 when a listing leaves it out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from automap._errors import CheckpointFormatError
from automap._types import Framework, StrPath
from automap.dtypes import get_dtype
from automap.records import ParamRecord, ParamTable

from ._framework import RawRecord, build_table, guess_framework
from ._sniff import read_json

__all__ = ["LISTING_FORMAT", "listing_document", "read", "table_from_json", "write_to"]

LISTING_FORMAT = "automap.listing"
_FRAMEWORKS = {"pytorch": "pytorch", "torch": "pytorch", "mindspore": "mindspore", "ms": "mindspore"}
_MAX_DIM = 2**48  # bound on one axis of a listed shape


def read(path: StrPath, *, framework: Framework | None = None, **_: object) -> ParamTable:
    """Read a listing file (see the module docstring for the forms accepted); other load options are ignored.

    Raises:
        CheckpointFormatError: the file is not valid JSON, is a mapping file, or is no listing.
    """
    file = Path(path)
    document = read_json(file)
    if isinstance(document, dict) and document.get("format") == "automap.mapping":
        msg = f"{str(file)!r} is a mapping file, not a checkpoint or listing"
        raise CheckpointFormatError(msg)
    return table_from_json(document, str(file), framework=framework)


def table_from_json(document: Any, source: str, *, framework: Framework | None = None) -> ParamTable:
    """Build a data-less table from any accepted listing form."""
    declared: str | None = None
    entries: list[Any]
    excluded: list[Any] = []
    if isinstance(document, dict) and document.get("format") == LISTING_FORMAT:
        version = document.get("version")
        if version != 1:
            msg = f"{source!r}: listing version {version!r} is not supported (this automap reads version 1)"
            raise CheckpointFormatError(msg)
        declared = document.get("framework")
        params = document.get("params")
        excluded = document.get("excluded", [])
        if not isinstance(params, list) or not isinstance(excluded, list):
            msg = f"{source!r}: a listing needs 'params' (and optionally 'excluded') as lists"
            raise CheckpointFormatError(msg)
        entries, named = params + excluded, True
    elif isinstance(document, dict) and isinstance(document.get("checkpoints"), list):
        count = len(document["checkpoints"])
        msg = (
            f"{source!r} holds {count} listings (the output of `automap inspect A B --json`); "
            "save one file's listing at a time: automap inspect FILE --json"
        )
        raise CheckpointFormatError(msg)
    elif isinstance(document, list):
        entries, named = document, True
    elif isinstance(document, dict):
        entries, named = list(document.items()), False
    else:
        msg = f"{source!r}: not a listing (expected a JSON object or list of parameters)"
        raise CheckpointFormatError(msg)
    records = _records(entries, named)
    if records is None:  # something is wrong: the checks entry by entry say what, as they always have
        pairs = [(_name(source, e), e) for e in entries] if named else entries
        records = [(name, *_shape_dtype(source, name, value), None) for name, value in pairs]
    excluded_names = frozenset(_name(source, e) for e in excluded)
    if framework is None:
        if declared is not None and declared not in _FRAMEWORKS:
            msg = f"{source!r}: unknown framework {declared!r}; use 'pytorch' or 'mindspore'"
            raise CheckpointFormatError(msg)
        framework = _FRAMEWORKS[declared] if declared else guess_framework(r[0] for r in records)  # type: ignore[assignment]
    names = [r[0] for r in records]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        msg = f"{source!r}: parameter {duplicate!r} is listed twice"
        raise CheckpointFormatError(msg)
    return build_table(
        framework,  # type: ignore[arg-type]
        source,
        records,
        (),
        "listing",
        excluded_names=excluded_names,
    )


def listing_document(table: ParamTable) -> dict[str, Any]:
    """The JSON document `write` saves and `automap inspect --json` prints for a table."""

    def entry(record: ParamRecord, training_state: bool) -> dict[str, Any]:
        return {
            "index": record.index,
            "name": record.name,
            "shape": list(record.shape),
            "dtype": record.dtype,
            "numel": record.numel,
            "nbytes": record.nbytes,
            "training_state": training_state,
        }

    return {
        "format": LISTING_FORMAT,
        "version": 1,
        "framework": table.framework,
        "source": table.source,
        "file_format": table.format,
        "notes": list(table.notes),
        "totals": {"params": len(table), "numel": table.total_numel, "nbytes": table.total_nbytes},
        "params": [entry(r, False) for r in table.params],
        "excluded": [entry(r, True) for r in table.excluded],
    }


def write_to(
    handle: BinaryIO, records: Sequence[ParamRecord], *, framework: Framework, path: StrPath = "", **_: object
) -> None:
    """Write a listing of `records` (names, shapes, dtypes; no data) into an open file; `path` is its source."""
    table = ParamTable(framework, str(path), tuple(r.with_index(i) for i, r in enumerate(records)), format="listing")
    handle.write((json.dumps(listing_document(table), indent=1) + "\n").encode())


def _records(entries: list[Any], named: bool) -> list[RawRecord] | None:
    """Each entry's (name, shape, dtype) in one pass, equal shapes sharing one tuple; None if any entry is wrong.

    `named`: entries are objects with a `name`, else `(name, shape or object)` items of a `{name: ...}` listing.
    """
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
    dtypes: set[str] = set()
    records: list[RawRecord] = []
    name: Any
    value: Any
    for entry in entries:
        if named:
            if type(entry) is not dict:
                return None
            name, value = entry.get("name"), entry
        else:
            name, value = entry
        if type(value) is dict:
            shape, dtype = value.get("shape"), value.get("dtype", "float32")
        elif type(value) is list:
            shape, dtype = value, "float32"
        else:
            return None
        if type(name) is not str or type(shape) is not list:
            return None
        for dim in shape:
            if type(dim) is not int or not 0 <= dim < _MAX_DIM:
                return None
        if dtype not in dtypes:
            if type(dtype) is not str or not _known_dtype(dtype):
                return None
            dtypes.add(dtype)
        key = tuple(shape)
        records.append((name, shapes.setdefault(key, key), dtype, None))
    return records


def _known_dtype(name: str) -> bool:
    try:
        get_dtype(name)
    except CheckpointFormatError:
        return False
    return True


def _name(source: str, entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        msg = f"{source!r}: every listed parameter needs a string 'name'; got {str(entry)[:80]!r}"
        raise CheckpointFormatError(msg)
    return str(entry["name"])


def _shape_dtype(source: str, name: str, value: Any) -> tuple[tuple[int, ...], str]:
    shape, dtype = (value, "float32") if isinstance(value, list) else (None, None)
    if isinstance(value, dict):
        shape, dtype = value.get("shape"), value.get("dtype", "float32")
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < _MAX_DIM for d in shape)):
        msg = f"{source!r}: parameter {name!r} needs 'shape' as a list of non-negative integers; got {shape!r}"
        raise CheckpointFormatError(msg)
    if not isinstance(dtype, str):
        msg = f"{source!r}: parameter {name!r} has a non-string dtype {dtype!r}"
        raise CheckpointFormatError(msg)
    try:
        get_dtype(dtype)
    except CheckpointFormatError as error:
        msg = f"{source!r}: parameter {name!r}: {error}"
        raise CheckpointFormatError(msg) from None
    return tuple(shape), dtype
