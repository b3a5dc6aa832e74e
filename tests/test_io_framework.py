"""Tables are bounded in bulk (all names in one search, each shape once), with the same errors as record by record."""

from __future__ import annotations

import pytest

from automap._errors import CheckpointFormatError
from automap.io._framework import build_table

GOOD = [("a.weight", (2, 3), "float32", None), ("b.weight", (2, 3), "float16", None), ("c", (), "int64", None)]


def test_a_good_table_is_built_in_order_with_training_state_set_aside() -> None:
    records = [*GOOD, ("adam_m.a.weight", (2, 3), "float32", None)]
    table = build_table("mindspore", "f.ckpt", records, ["a note"], "mindspore-ckpt")
    assert [(r.name, r.shape, r.dtype, r.index) for r in table.params] == [
        ("a.weight", (2, 3), "float32", 0),
        ("b.weight", (2, 3), "float16", 1),
        ("c", (), "int64", 2),
    ]
    assert [r.name for r in table.excluded] == ["adam_m.a.weight"]
    assert table.notes == ("a note",)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (("x\u202ey", (1,), "float32", None), r"'x\\u202ey' contains the unprintable character"),
        (("z\n", (1,), "float32", None), r"contains the unprintable character '\\n'"),
        (("", (1,), "float32", None), "has an empty name"),
        (("n" * 70_000, (1,), "float32", None), "is longer than"),
        ((7, (1,), "float32", None), "is a int, not text"),
        (("deep", (1,) * 33, "float32", None), "has 33 axes"),
        (("huge", (2**40, 2**40), "float32", None), "over 2\\*\\*63 bytes"),
        (("odd", (1,), "complex256", None), "unsupported dtype"),
        (("a.weight", (1,), "float32", None), "'a.weight' occurs twice"),
    ],
)
def test_a_bad_record_is_refused_with_its_own_message(bad: tuple, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(CheckpointFormatError, match=message):
        build_table("pytorch", "f.pth", [*GOOD, bad], [], "pytorch")


def test_the_first_bad_record_in_file_order_is_the_one_named() -> None:
    records = [*GOOD, ("deep", (1,) * 40, "float32", None), ("bad\x00name", (1,), "float32", None)]
    with pytest.raises(CheckpointFormatError, match="'deep' has 40 axes"):
        build_table("pytorch", "f.pth", records, [], "pytorch")
    records = [*GOOD, ("bad\x00name", (1,), "float32", None), ("deep", (1,) * 40, "float32", None)]
    with pytest.raises(CheckpointFormatError, match="unprintable character"):
        build_table("pytorch", "f.pth", records, [], "pytorch")
