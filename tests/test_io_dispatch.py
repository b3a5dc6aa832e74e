"""load_checkpoint/save_checkpoint dispatch: formats recognised by content, names that disagree, files that are
no checkpoint at all, and adapters that import their framework only when a file needs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch

from automap import CheckpointFormatError, ConversionError, ParamRecord, ParamTable, load_checkpoint, save_checkpoint
from automap.io.formats import FORMATS


def _one_of_each(folder: Path) -> dict[str, Path]:
    """The same two tensors as a torch zip file, a legacy torch file, safetensors, a .ckpt and a listing."""
    state = {"fc.weight": torch.arange(6.0).reshape(2, 3), "fc.bias": torch.ones(2)}
    paths = {
        "torch": folder / "zip.pth",
        "legacy": folder / "legacy.pth",
        "safetensors": folder / "st.safetensors",
        "mindspore": folder / "ms.ckpt",
        "json": folder / "listing.json",
    }
    torch.save(state, paths["torch"])
    torch.save(state, paths["legacy"], _use_new_zipfile_serialization=False)
    safetensors.numpy.save_file({k: v.numpy() for k, v in state.items()}, paths["safetensors"])
    save_checkpoint(load_checkpoint(paths["torch"]), paths["mindspore"])
    save_checkpoint(load_checkpoint(paths["torch"]), paths["json"])
    return paths


@pytest.mark.parametrize("kind", ["torch", "legacy", "safetensors", "mindspore", "json"])
@pytest.mark.parametrize("name", ["model.pth", "model.ckpt", "model.safetensors", "model.bin", "model", "model.json"])
def test_content_decides_and_a_disagreeing_name_is_noted(kind: str, name: str, tmp_path: Path) -> None:
    source = _one_of_each(tmp_path)[kind]
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / name).write_bytes(source.read_bytes())

    table = load_checkpoint(renamed / name)
    assert set(table.names) == {"fc.weight", "fc.bias"}
    assert table["fc.weight"].shape == (2, 3)
    if kind != "json":
        np.testing.assert_array_equal(table["fc.weight"].read(), np.arange(6.0, dtype=np.float32).reshape(2, 3))
    content = "torch" if kind == "legacy" else kind
    named = FORMATS.for_suffix(Path(name))
    said = named.label if named is not None else None
    disagreement = [note for note in table.notes if "the name says" in note]
    if said is None or said == content:
        assert disagreement == []
    else:
        assert disagreement == [f"the name says {said} but the content is {content}; read as {content}"]


def test_a_listing_that_starts_with_a_newline_is_json(tmp_path: Path) -> None:
    """0x0a also starts every .ckpt; JSON must still be recognised."""
    (tmp_path / "l.json").write_text("\n\n" + json.dumps({"fc.weight": [2, 3]}, indent=2))
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([{"name": "x", "shape": [1]}]).encode())
    assert load_checkpoint(tmp_path / "l.json").names == ("fc.weight",)
    assert load_checkpoint(tmp_path / "bom.json").names == ("x",)


def test_a_ckpt_that_starts_like_a_json_text_is_still_a_ckpt(tmp_path: Path) -> None:
    # A first record of 123 bytes starts 0x0a 0x7b, i.e. "\n{", like a JSON text.
    array = np.arange(3, dtype=np.float32)
    name = "layers." + "x" * 87  # 94 bytes: 2 + 94 + 2 + 25 bytes of tensor = 123
    save_checkpoint([ParamRecord(name, (3,), "float32", 0, lambda: array)], tmp_path / "model.ckpt")
    assert (tmp_path / "model.ckpt").read_bytes()[:2] == b"\n{"
    table = load_checkpoint(tmp_path / "model.ckpt")
    assert table.names == (name,)
    assert table.format == "mindspore-ckpt"
    np.testing.assert_array_equal(table[name].read(), array)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (
            b"hello, I am not a checkpoint",
            "model.bin",
            "not a checkpoint automap can read although its name says torch",
        ),
        (b"\x00\x01\x02\x03 binary junk", "weights", "not a checkpoint automap can read: its first bytes match no"),
        (b"GIF89a....", "model.ckpt", "although its name says mindspore"),
    ],
)
def test_unknown_content(content: bytes, name: str, message: str, tmp_path: Path) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointFormatError, match=f"{name}.*{message}"):
        load_checkpoint(tmp_path / name)


def test_missing_empty_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFormatError, match=r"nothing\.pth': no such file"):
        load_checkpoint(tmp_path / "nothing.pth")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointFormatError, match=r"empty\.ckpt' is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.ckpt")
    (tmp_path / "folder.safetensors").mkdir()
    with pytest.raises(CheckpointFormatError, match=r"folder\.safetensors' is a directory.*index\.json"):
        load_checkpoint(tmp_path / "folder.safetensors")


def test_save_refuses_an_unknown_suffix_and_repeated_names(tmp_path: Path) -> None:
    array = np.zeros(2, np.float32)
    record = ParamRecord("w", (2,), "float32", 0, lambda: array)
    with pytest.raises(CheckpointFormatError, match=r"'out\.h5'.*\.safetensors"):
        save_checkpoint([record], tmp_path / "out.h5")
    with pytest.raises(ConversionError, match=r"'w' occurs twice"):
        save_checkpoint([record, record.with_index(1)], tmp_path / "out.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_framework_argument_overrides_the_guess(tmp_path: Path) -> None:
    paths = _one_of_each(tmp_path)
    assert load_checkpoint(paths["safetensors"]).framework == "pytorch"
    assert load_checkpoint(paths["safetensors"], framework="mindspore").framework == "mindspore"
    assert load_checkpoint(paths["mindspore"]).framework == "mindspore"


def test_save_uses_the_tables_framework_for_safetensors_flavour(tmp_path: Path) -> None:
    array = np.zeros(2, np.float32)
    table = ParamTable("mindspore", "memory", (ParamRecord("w", (2,), "float32", 0, lambda: array),))
    save_checkpoint(table, tmp_path / "ms.safetensors")
    assert load_checkpoint(tmp_path / "ms.safetensors").framework == "mindspore"
    save_checkpoint(table, tmp_path / "pt.safetensors", framework="pytorch")
    assert load_checkpoint(tmp_path / "pt.safetensors").framework == "pytorch"


def test_frameworks_are_imported_only_when_a_file_needs_them(tmp_path: Path) -> None:
    paths = _one_of_each(tmp_path)
    legacy = tmp_path / "legacy.pt"  # torch's pre-1.6 format: only torch.load reads it
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    script = textwrap.dedent(
        f"""
        import sys
        import automap
        for path in {[str(paths[k]) for k in ("safetensors", "mindspore", "json", "torch")]!r}:
            table = automap.load_checkpoint(path)
            [r.read() for r in table if r.has_data]
            automap.save_checkpoint(table, path + ".out.json")
        assert "torch" not in sys.modules and "mindspore" not in sys.modules, "framework imported early"
        automap.load_checkpoint({str(legacy)!r})
        assert "torch" in sys.modules and "mindspore" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
