"""ParamRecord and ParamTable: sizes, lazy reads checked against the header, and table invariants."""

from __future__ import annotations

import numpy as np
import pytest

from automap import CheckpointFormatError, ParamRecord, ParamTable
from automap.records import Match, NameMapping


def _record(name: str, shape: tuple[int, ...], dtype: str, index: int, array: np.ndarray | None) -> ParamRecord:
    return ParamRecord(name, shape, dtype, index, None if array is None else (lambda: array))


@pytest.mark.parametrize(
    ("shape", "dtype", "numel", "nbytes"),
    [
        ((3, 4), "float32", 12, 48),
        ((), "int64", 1, 8),
        ((2, 0), "float16", 0, 0),
        ((5,), "bfloat16", 5, 10),
        ((7,), "float8_e5m2", 7, 7),
        ((2, 2), "bool", 4, 4),
        ((1,), "uint64", 1, 8),
    ],
)
def test_sizes(shape: tuple[int, ...], dtype: str, numel: int, nbytes: int) -> None:
    record = ParamRecord("x", shape, dtype, 0)
    assert (record.numel, record.nbytes) == (numel, nbytes)


def test_read_is_lazy_and_checked_against_the_header() -> None:
    calls: list[int] = []

    def load() -> np.ndarray:
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(2, 3)

    record = ParamRecord("fc.weight", (2, 3), "float32", 0, load)
    assert calls == []
    np.testing.assert_array_equal(record.read(), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert calls == [1]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 3), np.float64), r"'fc\.weight': data read as float64\[2, 3\], header says float32\[2, 3\]"),
        (np.zeros((3, 2), np.float32), r"data read as float32\[3, 2\].*the file is corrupt"),
    ],
)
def test_read_refuses_data_that_disagrees_with_the_header(array: np.ndarray, message: str) -> None:
    with pytest.raises(CheckpointFormatError, match=message):
        _record("fc.weight", (2, 3), "float32", 0, array).read()


def test_bfloat16_is_read_as_its_bits() -> None:
    bits = np.array([0x3F80, 0xFFFF], np.uint16)
    assert _record("x", (2,), "bfloat16", 0, bits).read().tobytes() == bits.tobytes()
    with pytest.raises(CheckpointFormatError, match="data read as float32"):
        _record("x", (2,), "bfloat16", 0, bits.astype(np.float32)).read()


def test_a_listing_record_has_no_data() -> None:
    record = ParamRecord("fc.weight", (2, 3), "float32", 0)
    assert not record.has_data
    with pytest.raises(CheckpointFormatError, match=r"'fc\.weight' has no tensor data"):
        record.read()


def test_equality_ignores_the_loader_and_with_index_keeps_it() -> None:
    array = np.ones(2, np.float32)
    a = _record("w", (2,), "float32", 0, array)
    assert a == ParamRecord("w", (2,), "float32", 0)
    moved = a.with_index(5)
    assert moved.index == 5
    assert moved.read() is array


def _table() -> ParamTable:
    params = (
        _record("conv.weight", (4, 3, 3, 3), "float32", 0, None),
        _record("conv.bias", (4,), "float16", 1, None),
    )
    excluded = (_record("moments.conv.weight", (4, 3, 3, 3), "float32", 0, None),)
    return ParamTable("mindspore", "model.ckpt", params, excluded, ("a note",), "mindspore-ckpt")


def test_table_access() -> None:
    table = _table()
    assert len(table) == 2
    assert table.names == ("conv.weight", "conv.bias")
    assert [r.name for r in table] == list(table.names)
    assert "conv.bias" in table
    assert "moments.conv.weight" not in table  # training state is not a model parameter
    assert table["conv.bias"].shape == (4,)
    assert table.get("nope") is None
    assert table.total_numel == 108 + 4
    assert table.total_nbytes == 432 + 8
    assert not table.has_data
    with pytest.raises(KeyError, match=r"model\.ckpt: no parameter named 'nope'"):
        table["nope"]


def test_table_invariants() -> None:
    with pytest.raises(ValueError, match="'b' has index 0, expected 1"):
        ParamTable("pytorch", "x", (ParamRecord("a", (1,), "float32", 0), ParamRecord("b", (1,), "float32", 0)))
    with pytest.raises(CheckpointFormatError, match=r"x\.pth: parameter name 'a' occurs twice"):
        ParamTable("pytorch", "x.pth", (ParamRecord("a", (1,), "float32", 0), ParamRecord("a", (1,), "float32", 1)))


def test_mapping_records() -> None:
    from automap.records import Endpoint

    pairs = (
        Match("fc.weight", "linear.weight", 0.9),
        Match("qkv.weight", ("q.weight", "k.weight", "v.weight"), 0.3),
        Match("extra.bias", None, 0.0),
        Match("pinned.weight", "p.weight", 0.1, pinned=True),
    )
    mapping = NameMapping(Endpoint("a.pth", "pytorch", 4), Endpoint("b.ckpt", "mindspore", 4), pairs)
    assert pairs[1].source_names == ("q.weight", "k.weight", "v.weight")
    assert pairs[2].source_names == ()
    assert [p.target for p in mapping.doubtful] == ["qkv.weight", "extra.bias"]
    assert mapping.pair_for("fc.weight") is pairs[0]
    assert mapping.pair_for("nope") is None
    assert mapping.flat() == {
        "fc.weight": "linear.weight",
        "qkv.weight": ["q.weight", "k.weight", "v.weight"],
        "pinned.weight": "p.weight",
    }
