"""JSON listings: names, shapes and dtypes without data, in every accepted form, and their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automap import CheckpointFormatError, ConversionError, load_checkpoint, save_checkpoint
from automap.io.listing import listing_document


def _write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_a_saved_listing_reads_back_without_data(tmp_path: Path) -> None:
    state = {"conv.weight": torch.zeros(4, 3, 3, 3, dtype=torch.float16), "bn.running_mean": torch.zeros(4)}
    torch.save(state, tmp_path / "model.pth")
    save_checkpoint(load_checkpoint(tmp_path / "model.pth"), tmp_path / "model.json")

    document = json.loads((tmp_path / "model.json").read_text())
    assert document["format"] == "automap.listing"
    assert document["totals"] == {"params": 2, "numel": 112, "nbytes": 2 * 108 + 4 * 4}

    table = load_checkpoint(tmp_path / "model.json")
    assert table.format == "listing"
    assert table.framework == "pytorch"
    assert [(r.name, r.shape, r.dtype) for r in table] == [
        ("conv.weight", (4, 3, 3, 3), "float16"),
        ("bn.running_mean", (4,), "float32"),
    ]
    assert not table.has_data
    with pytest.raises(CheckpointFormatError, match=r"'conv\.weight' has no tensor data"):
        table["conv.weight"].read()


def test_a_listing_cannot_be_saved_as_a_checkpoint(tmp_path: Path) -> None:
    listing = load_checkpoint(_write(tmp_path / "l.json", {"fc.weight": [2, 3]}))
    for suffix in (".pth", ".safetensors", ".ckpt"):
        with pytest.raises(ConversionError, match=r"'fc\.weight' has no tensor data.*only be saved as \.json"):
            save_checkpoint(listing, tmp_path / f"out{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.json"]


@pytest.mark.parametrize(
    "document",
    [
        [{"name": "fc.weight", "shape": [2, 3]}, {"name": "fc.bias", "shape": [2], "dtype": "bfloat16"}],
        {"fc.weight": [2, 3], "fc.bias": {"shape": [2], "dtype": "bfloat16"}},
        {"format": "automap.listing", "version": 1, "params": [{"name": "fc.weight", "shape": [2, 3]}]}
        | {"excluded": [], "framework": "pytorch"}
        | {"params": [{"name": "fc.weight", "shape": [2, 3]}, {"name": "fc.bias", "shape": [2], "dtype": "bfloat16"}]},
    ],
    ids=["list", "mapping", "automap.listing"],
)
def test_accepted_forms(document: Any, tmp_path: Path) -> None:
    table = load_checkpoint(_write(tmp_path / "l.json", document))
    assert [(r.name, r.shape, r.dtype) for r in table] == [
        ("fc.weight", (2, 3), "float32"),
        ("fc.bias", (2,), "bfloat16"),
    ]
    assert [r.index for r in table] == [0, 1]


def test_excluded_entries_and_declared_framework(tmp_path: Path) -> None:
    document = {
        "format": "automap.listing",
        "version": 1,
        "framework": "ms",
        "params": [{"name": "fc.weight", "shape": [2, 3]}],
        "excluded": [{"name": "moments.fc.weight", "shape": [2, 3]}, {"name": "global_step", "shape": [1]}],
    }
    table = load_checkpoint(_write(tmp_path / "l.json", document))
    assert table.framework == "mindspore"
    assert table.names == ("fc.weight",)
    assert [r.name for r in table.excluded] == ["moments.fc.weight", "global_step"]
    assert load_checkpoint(tmp_path / "l.json", framework="pytorch").framework == "pytorch"


def test_framework_is_guessed_from_names(tmp_path: Path) -> None:
    mindspore = {"bn.gamma": [3], "bn.beta": [3], "bn.moving_mean": [3], "bn.moving_variance": [3]}
    pytorch = {"bn.weight": [3], "bn.bias": [3], "bn.running_mean": [3], "bn.running_var": [3]}
    assert load_checkpoint(_write(tmp_path / "ms.json", mindspore)).framework == "mindspore"
    assert load_checkpoint(_write(tmp_path / "pt.json", pytorch)).framework == "pytorch"


def test_listing_document_of_a_checkpoint(tmp_path: Path) -> None:
    arrays = {"a": np.zeros((2, 2), np.float32), "b": np.zeros(3, np.int8)}
    torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, tmp_path / "m.pth")
    document = listing_document(load_checkpoint(tmp_path / "m.pth"))
    assert [(p["index"], p["name"], p["shape"], p["dtype"], p["numel"], p["nbytes"]) for p in document["params"]] == [
        (0, "a", [2, 2], "float32", 4, 16),
        (1, "b", [3], "int8", 3, 3),
    ]
    assert document["totals"] == {"params": 2, "numel": 7, "nbytes": 19}
    assert document["file_format"] == "pytorch"


BAD = {
    "version": ({"format": "automap.listing", "version": 2, "params": []}, "version 2 is not supported"),
    "params not a list": ({"format": "automap.listing", "version": 1, "params": {}}, "'params'"),
    "unknown framework": (
        {"format": "automap.listing", "version": 1, "framework": "jax", "params": []},
        "unknown framework 'jax'",
    ),
    "entry without name": ([{"shape": [2]}], "needs a string 'name'"),
    "negative dim": ({"w": [-1, 2]}, r"'w' needs 'shape' as a list of non-negative integers"),
    "float dim": ({"w": [2.5]}, r"'w' needs 'shape'"),
    "shape is text": ({"w": {"shape": "2x3"}}, r"'w' needs 'shape'"),
    "bad dtype": ({"w": {"shape": [2], "dtype": "float128"}}, r"'w': unsupported dtype 'float128'"),
    "dtype not text": ({"w": {"shape": [2], "dtype": 32}}, r"'w' has a non-string dtype"),
    "twice": ([{"name": "w", "shape": [2]}, {"name": "w", "shape": [3]}], r"'w' is listed twice"),
    "bool dim": ({"w": [True, 2]}, r"'w' needs 'shape'"),
    "dim too large": ({"w": [2**48]}, r"'w' needs 'shape'"),
    # every entry's name is checked before any shape, as it always was, whichever entry comes first
    "name checked first": ([{"name": "a", "shape": [-1]}, {"shape": [2]}], "needs a string 'name'"),
    "excluded name checked first": (
        {"format": "automap.listing", "version": 1, "params": [{"name": "a", "shape": [-1]}], "excluded": [{}]},
        "needs a string 'name'",
    ),
    "not a listing": ("just a string", "not valid JSON|not a listing"),
    "two listings": ({"checkpoints": [{}, {}]}, r"holds 2 listings.*inspect FILE --json"),
    "mapping file": ({"format": "automap.mapping", "pairs": []}, "is a mapping file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_listings(case: str, tmp_path: Path) -> None:
    document, message = BAD[case]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document) if case != "not a listing" else '"just a string"')
    with pytest.raises(CheckpointFormatError, match=r"bad\.json.*(" + message + ")"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[" * 100_000 + "]" * 100_000, "nested too deeply"), ('{"a": [1, 2', "JSON")],
    ids=["syntax", "too deep", "truncated"],
)
def test_invalid_json(text: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(CheckpointFormatError, match=r"bad\.json.*" + message):
        load_checkpoint(tmp_path / "bad.json")
