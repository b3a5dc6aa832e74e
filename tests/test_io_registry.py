"""The format registry: one protocol (sniff, read, write), dispatch by content for files and folders, the rules
of registration, a missing framework named with its extra, and one reader for every kind of index."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import torch

from automap import CheckpointFormatError, ParamRecord, ParamTable, load_checkpoint, save_checkpoint
from automap.io import safetensors as safetensors_io
from automap.io._registry import Format, Registry
from automap.io.formats import FILE_FORMATS, FORMATS, INDEX, LISTING, MINDSPORE, PYTORCH, SAFETENSORS

ARRAYS = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "fc.bias": np.ones(2, np.float32)}


def _records(arrays: dict[str, np.ndarray] = ARRAYS) -> list[ParamRecord]:
    def loader(array: np.ndarray) -> Any:
        return lambda: array

    return [ParamRecord(n, a.shape, str(a.dtype), i, loader(a)) for i, (n, a) in enumerate(arrays.items())]


# --- a folder layout, as the distributed readers will add: one .safetensors per tensor, named after it ----------


def _sniff_tensor_folder(path: Path) -> bool:
    return (path / "tensors.txt").is_file()


def _read_tensor_folder(path: Path, *, framework: Any = None, **_: object) -> ParamTable:
    tables = [safetensors_io.read(path / f"{name}.safetensors") for name in (path / "tensors.txt").read_text().split()]
    params = tuple(r.with_index(i) for i, r in enumerate(r for t in tables for r in t.params))
    return ParamTable(framework or "pytorch", str(path), params, format="tensor-folder")


TENSOR_FOLDER = Format(
    "tensor-folder", sniff=_sniff_tensor_folder, read=_read_tensor_folder, description="a tensors.txt", directory=True
)


def test_a_folder_layout_is_sniffed_and_read_once_registered(tmp_path: Path) -> None:
    folder = tmp_path / "model.ckpt"  # a folder's name suggests nothing, so no name-vs-content note
    folder.mkdir()
    for name, array in ARRAYS.items():
        safetensors.numpy.save_file({name: array}, folder / f"{name}.safetensors")
    (folder / "tensors.txt").write_text("fc.weight fc.bias")
    registry = Registry([*FORMATS, TENSOR_FOLDER])

    table = registry.load(folder, framework="mindspore")
    assert registry.detect(folder) is TENSOR_FOLDER
    assert (table.format, table.framework, table.names, table.notes) == (
        "tensor-folder",
        "mindspore",
        ("fc.weight", "fc.bias"),
        (),
    )
    np.testing.assert_array_equal(table["fc.weight"].read(), ARRAYS["fc.weight"])
    assert registry.detect(folder / "fc.bias.safetensors") is SAFETENSORS  # files still go to file formats

    (folder / "tensors.txt").unlink()
    with pytest.raises(CheckpointFormatError, match=r"model\.ckpt' is a directory but no checkpoint folder automap "):
        registry.load(folder)
    with pytest.raises(CheckpointFormatError, match=r"; a tensors\.txt\); give the checkpoint file"):
        registry.load(folder)
    with pytest.raises(CheckpointFormatError, match=r"model\.ckpt' is a directory but no .*\(PyTorch distributed"):
        load_checkpoint(folder)  # the built-in registry lists the folder layouts it reads


def test_the_first_format_whose_sniffer_claims_a_file_reads_it(tmp_path: Path) -> None:
    save_checkpoint(_records(), tmp_path / "model.safetensors")
    claims_everything = Format("everything", sniff=lambda path: True, read=lambda path, **_: ParamTable("pytorch", ""))
    registry = Registry(FORMATS)
    registry.register(claims_everything, before="safetensors")
    assert registry.detect(tmp_path / "model.safetensors") is claims_everything
    assert Registry([*FORMATS, claims_everything]).detect(tmp_path / "model.safetensors") is SAFETENSORS


def test_registration_refuses_a_taken_name_or_suffix_and_lookups_name_the_key() -> None:
    registry = Registry(FORMATS)
    with pytest.raises(ValueError, match="'safetensors' is registered already"):
        registry.register(Format("safetensors", sniff=SAFETENSORS.sniff, read=SAFETENSORS.read))
    with pytest.raises(ValueError, match=r"suffix '\.ckpt' of format 'slices' belongs to format 'mindspore'"):
        registry.register(Format("slices", sniff=MINDSPORE.sniff, read=MINDSPORE.read, suffixes=(".ckpt",)))
    with pytest.raises(ValueError, match="no format named 'nothing'"):
        registry.register(TENSOR_FOLDER, before="nothing")
    with pytest.raises(CheckpointFormatError, match="no checkpoint format named 'hdf5'"):
        registry.get("hdf5")
    assert [f.name for f in registry] == [
        "torch",
        "safetensors",
        "mindspore",
        "index",
        "listing",
        "dcp",
        "mindspore-distributed",
        "fsdp",
    ]
    assert registry.get("index") is INDEX


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("m.pth", PYTORCH),
        ("m.PT", PYTORCH),
        ("pytorch_model.bin", PYTORCH),
        ("m.safetensors", SAFETENSORS),
        ("m.ckpt", MINDSPORE),
        ("m.json", LISTING),
        ("m.safetensors.index.json", LISTING),  # the last suffix names it; its content makes it an index
        ("m.h5", None),
        ("model", None),
    ],
)
def test_a_name_suggests_a_format_by_its_last_suffix(name: str, expected: Format | None) -> None:
    assert FORMATS.for_suffix(Path(name)) is expected


def test_what_the_formats_declare() -> None:
    assert FORMATS.suffixes(writable=True) == [".bin", ".ckpt", ".json", ".pt", ".pth", ".safetensors"]
    assert [f.framework for f in (PYTORCH, SAFETENSORS, MINDSPORE, LISTING)] == ["pytorch", None, "mindspore", None]
    assert [f.name for f in FORMATS if not f.holds_data] == ["listing"]
    assert INDEX.write_to is None and INDEX not in list(FILE_FORMATS)


# --- a missing framework --------------------------------------------------------------------------------------


def _without_torch(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter where `import torch` fails as it does when torch is not installed."""
    prelude = "import sys\nsys.modules['torch'] = None  # what an interpreter without torch raises on import\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, check=False
    )


def test_a_missing_torch_names_the_extra_to_install(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.pth"  # only torch.load reads the pre-1.6 format
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    plain = tmp_path / "plain.pth"  # a plain state dict in the zip format needs no torch
    torch.save({"w": torch.ones(2)}, plain)
    result = _without_torch(
        f"""
        import automap
        from automap.cli import main
        assert automap.load_checkpoint({str(plain)!r}).names == ("w",)
        try:
            automap.load_checkpoint({str(legacy)!r})
        except automap.MissingDependencyError as error:
            print(error)
        try:
            automap.save_checkpoint(automap.load_checkpoint({str(plain)!r}), {str(tmp_path / "out.pth")!r})
        except automap.MissingDependencyError as error:
            print(error)
        sys.exit(main(["inspect", {str(legacy)!r}]))
        """
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"reading {str(legacy)!r} needs torch, which is not installed; run: pip install 'automap[torch]'",
        "writing a PyTorch checkpoint needs torch, which is not installed; run: pip install 'automap[torch]'",
    ]
    assert result.stderr == (
        f"automap: error: reading {str(legacy)!r} needs torch, which is not installed; "
        "run: pip install 'automap[torch]'\n"
    )
    assert not (tmp_path / "out.pth").exists()


# --- one reader for every kind of index ------------------------------------------------------------------------


def test_shards_are_read_by_their_content_whatever_their_names(tmp_path: Path) -> None:
    save_checkpoint(_records(), tmp_path / "model.ckpt", max_shard_size=24)
    index = json.loads((tmp_path / "model.ckpt.index.json").read_text())
    renamed = {}
    for name, shard in index["weight_map"].items():
        (tmp_path / shard).rename(tmp_path / f"{name}.safetensors")  # .ckpt content under a misleading name
        renamed[name] = f"{name}.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": renamed}))
    table = load_checkpoint(tmp_path / "model.safetensors.index.json")
    assert (table.format, table.framework) == ("mindspore-ckpt-sharded", "mindspore")
    assert table.names == ("fc.bias", "fc.weight")  # shard by shard, in the order of the shards' names
    np.testing.assert_array_equal(table["fc.weight"].read(), ARRAYS["fc.weight"])


def test_an_index_over_shards_of_two_formats_is_refused(tmp_path: Path) -> None:
    save_checkpoint(_records({"a": ARRAYS["fc.weight"]}), tmp_path / "one.ckpt")
    save_checkpoint(_records({"b": ARRAYS["fc.bias"]}), tmp_path / "two.safetensors")
    (tmp_path / "m.index.json").write_text(json.dumps({"weight_map": {"a": "one.ckpt", "b": "two.safetensors"}}))
    with pytest.raises(CheckpointFormatError, match=r"m\.index\.json': its shards are of different formats"):
        load_checkpoint(tmp_path / "m.index.json")


def test_an_index_takes_the_framework_its_shards_declare(tmp_path: Path) -> None:
    table = ParamTable("mindspore", "memory", tuple(_records()))
    save_checkpoint(table, tmp_path / "ms.safetensors", max_shard_size=24)  # metadata {"format": "ms"}
    loaded = load_checkpoint(tmp_path / "ms.safetensors.index.json")
    assert (loaded.format, loaded.framework) == ("safetensors-sharded", "mindspore")
    assert load_checkpoint(tmp_path / "ms.safetensors.index.json", framework="pytorch").framework == "pytorch"


def test_training_state_in_ckpt_shards_is_set_aside(tmp_path: Path) -> None:
    arrays = {**ARRAYS, "moments.fc.weight": np.zeros((2, 3), np.float32), "global_step": np.zeros(1, np.int32)}
    save_checkpoint(_records(arrays), tmp_path / "train.ckpt", max_shard_size=24)
    table = load_checkpoint(tmp_path / "train.ckpt.index.json")
    assert table.names == tuple(ARRAYS)
    assert [r.name for r in table.excluded] == ["moments.fc.weight", "global_step"]
