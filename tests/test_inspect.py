"""`automap inspect`, run in-process through `automap.cli.main`: tables, side by side, JSON, and one clear error
line for every kind of bad input."""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import torch

from automap import load_checkpoint, save_checkpoint
from automap.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _torch_file(folder: Path) -> Path:
    state = {
        "conv.weight": torch.zeros(4, 3, 3, 3),  # 108 elements, 432 B
        "fc.weight": torch.zeros(64, 64, dtype=torch.float16),  # 4,096 elements, 8.0 KiB
        "bn.num_batches_tracked": torch.tensor(7),  # a scalar
    }
    torch.save(state, folder / "model.pth")
    return folder / "model.pth"


def test_one_file_lists_every_parameter_and_the_totals(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = _run(capsys, "inspect", str(_torch_file(tmp_path)))
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'model.pth'}  (pytorch, pytorch; 3 parameters, 4,205 elements")
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines if re.match(r"\s*\d+\s", line)]
    assert rows == [
        ["0", "conv.weight", "[4, 3, 3, 3]", "float32", "108", "432 B"],
        ["1", "fc.weight", "[64, 64]", "float16", "4,096", "8.0 KiB"],
        ["2", "bn.num_batches_tracked", "[]", "int64", "1", "8 B"],
    ]
    header = next(line for line in lines if line.startswith("#"))
    assert re.split(r"\s{2,}", header.strip()) == ["#", "name", "shape", "dtype", "numel", "size"]
    assert lines[-1] == "Total: 3 parameters, 4,205 elements, 8.4 KiB"


@pytest.mark.mindspore
def test_training_state_is_marked_and_counted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mindspore_cpu: Any
) -> None:
    ms = mindspore_cpu
    net = ms.nn.Dense(4, 3)
    train = ms.nn.TrainOneStepCell(
        ms.nn.WithLossCell(net, ms.nn.MSELoss()), ms.nn.Momentum(net.trainable_params(), 0.1, 0.9)
    )
    ms.save_checkpoint(train, str(tmp_path / "train.ckpt"), append_dict={"epoch_num": 1})
    table = load_checkpoint(tmp_path / "train.ckpt")

    status, out, _ = _run(capsys, "inspect", str(tmp_path / "train.ckpt"))
    assert status == 0
    lines = out.splitlines()
    aside = lines.index(f"training state, set aside ({len(table.excluded)}):")
    marked = [line.split()[1] for line in lines[aside + 2 :] if line.rstrip().endswith("train")]
    assert marked == [r.name for r in table.excluded]
    assert {"global_step", "learning_rate", "momentum", "moments.weight", "moments.bias", "epoch_num"} <= set(marked)
    unmarked = [line.split()[1] for line in lines[:aside] if re.match(r"\s*\d+\s", line)]
    assert unmarked == ["weight", "bias"]
    assert lines[-1].endswith(f"; {len(table.excluded)} training-state entries set aside")


def test_two_files_side_by_side(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    torch.save({"a.weight": torch.zeros(3, 4), "a.bias": torch.zeros(3), "extra": torch.zeros(2)}, tmp_path / "a.pth")
    safetensors.numpy.save_file(
        {"x.gamma": np.zeros(12, np.float32), "x.beta": np.zeros(5, np.float16)}, tmp_path / "b.safetensors"
    )
    status, out, _ = _run(capsys, "inspect", str(tmp_path / "a.pth"), str(tmp_path / "b.safetensors"))
    assert status == 0
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if re.match(r"\d+\s", line)]
    b_names = load_checkpoint(tmp_path / "b.safetensors").names  # in file order
    assert b_names == ("x.gamma", "x.beta")
    assert rows == [
        ["0", "a.weight", "[3, 4]", "float32", "|", "x.gamma", "[12]", "float32"],
        ["1", "a.bias", "[3]", "float32", "!", "x.beta", "[5]", "float16"],
        ["2", "extra", "[2]", "float32", "!"],
    ]
    assert out.splitlines()[0].startswith(f"A: {tmp_path / 'a.pth'}")
    assert "A: Total: 3 parameters, 17 elements, 68 B" in out
    assert "B: Total: 2 parameters, 17 elements, 58 B" in out


def test_json_lists_the_same_and_reads_back_as_a_listing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "train.pth")
    table = load_checkpoint(tmp_path / "train.pth")
    assert table.excluded

    status, out, _ = _run(capsys, "inspect", str(tmp_path / "train.pth"), "--json")
    assert status == 0
    document = json.loads(out)
    assert [(p["name"], tuple(p["shape"]), p["dtype"]) for p in document["params"]] == [
        (r.name, r.shape, r.dtype) for r in table
    ]
    assert [p["name"] for p in document["excluded"]] == [r.name for r in table.excluded]
    assert all(p["training_state"] for p in document["excluded"])
    assert document["totals"]["params"] == len(model.state_dict())

    (tmp_path / "template.json").write_text(out)
    listing = load_checkpoint(tmp_path / "template.json")
    assert listing.format == "listing"
    assert listing.framework == table.framework
    assert [(r.name, r.shape, r.dtype) for r in listing] == [(r.name, r.shape, r.dtype) for r in table]
    assert [r.name for r in listing.excluded] == [r.name for r in table.excluded]
    # and inspecting the listing prints the same JSON listing again (apart from where it came from)
    status, again, _ = _run(capsys, "inspect", str(tmp_path / "template.json"), "--json")
    assert status == 0
    second = json.loads(again)
    assert second["params"] == document["params"]
    assert second["excluded"] == document["excluded"]


def test_json_of_two_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _torch_file(tmp_path)
    status, out, _ = _run(capsys, "inspect", str(path), str(path), "--json")
    assert status == 0
    document = json.loads(out)
    assert [len(d["params"]) for d in document["checkpoints"]] == [3, 3]


def test_key_chooses_among_state_dicts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    torch.save({"model": {"w": torch.zeros(2)}, "ema": {"w": torch.ones(2), "v": torch.ones(1)}}, tmp_path / "e.pth")
    status, _, err = _run(capsys, "inspect", str(tmp_path / "e.pth"))
    assert status == 1
    assert "--key" in err
    status, out, _ = _run(capsys, "inspect", str(tmp_path / "e.pth"), "--key", "ema")
    assert status == 0
    assert "state dict taken from key 'ema'" in out


def test_verify_checks_the_crc_and_reads_every_tensor(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    save_checkpoint(load_checkpoint(_torch_file(tmp_path)), tmp_path / "m.ckpt", crc=True)
    assert _run(capsys, "inspect", "--verify", str(tmp_path / "m.ckpt"))[0] == 0
    raw = bytearray((tmp_path / "m.ckpt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the 8 KiB of fc.weight
    (tmp_path / "m.ckpt").write_bytes(bytes(raw))
    assert _run(capsys, "inspect", str(tmp_path / "m.ckpt"))[0] == 0  # listing alone does not check the CRC
    status, _, err = _run(capsys, "inspect", "--verify", str(tmp_path / "m.ckpt"))
    assert status == 1
    assert "CRC check failed" in err


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = str(_torch_file(tmp_path))
    status, _, err = _run(capsys, "inspect", path, path, path)
    assert status == 2
    assert "inspect takes one or two files, got 3" in err
    assert _run(capsys, "inspect")[0] == 2
    assert _run(capsys, "frobnicate")[0] == 2


# Each maker writes one kind of bad input into the folder and returns the path to inspect.
def _evil_pickle(folder: Path) -> Path:
    class RunsCode:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {folder / 'code-ran'}",))

    (folder / "evil.pth").write_bytes(pickle.dumps({"w": RunsCode()}, protocol=2))
    return folder / "evil.pth"


def _truncated(suffix: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        source = load_checkpoint(_torch_file(folder))
        save_checkpoint(source, folder / f"full{suffix}")
        raw = (folder / f"full{suffix}").read_bytes()
        (folder / f"cut{suffix}").write_bytes(raw[: len(raw) // 2])
        return folder / f"cut{suffix}"

    return make


def _corrupt(suffix: str, damage: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        save_checkpoint(load_checkpoint(_torch_file(folder)), folder / f"full{suffix}")
        (folder / f"bad{suffix}").write_bytes(damage((folder / f"full{suffix}").read_bytes()))
        return folder / f"bad{suffix}"

    return make


def _inside_pickle(raw: bytes) -> bytes:
    at = raw.find(b"data.pkl") + 100
    return raw[:at] + b"\xff" * 40 + raw[at + 40 :]


def _index(weight_map: dict[str, str]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        safetensors.numpy.save_file({"w": np.zeros(2, np.float32)}, folder / "shard-1.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        return folder / "model.safetensors.index.json"

    return make


def _write(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(content)
        return folder / name

    return make


def _several_state_dicts(folder: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(1)}, "ema": {"w": torch.zeros(1)}}, folder / "two.pth")
    return folder / "two.pth"


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing file": (lambda folder: folder / "missing.pth", "no such file"),
    "directory": (lambda folder: folder, "is a directory"),
    "empty file": (_write("empty.ckpt", b""), "is empty"),
    "unknown format": (_write("notes.txt", b"just some words"), "not a checkpoint automap can read"),
    "truncated pth": (_truncated(".pth"), "truncated or corrupt"),
    "truncated safetensors": (_truncated(".safetensors"), "truncated"),
    "truncated ckpt": (_truncated(".ckpt"), "truncated or corrupt"),
    "corrupt pth": (_corrupt(".pth", _inside_pickle), "corrupt"),
    "corrupt safetensors": (_corrupt(".safetensors", lambda raw: raw[:8] + b"{" + b"\x00" * 20 + raw[29:]), "JSON"),
    "corrupt ckpt": (_corrupt(".ckpt", lambda raw: raw.replace(b"Float16", b"Float99")), "'Float99'"),
    "pickle running code": (_evil_pickle, "refused"),
    "several state dicts": (_several_state_dicts, "--key"),
    "shard missing": (_index({"w": "shard-2.safetensors"}), "is missing"),
    "shard outside": (_index({"w": "../shard-1.safetensors"}), "outside the index's folder"),
    "listing not json": (_write("bad.json", b"{oops"), "not valid JSON"),
    "listing bad shape": (_write("bad.json", b'{"w": [2, -3]}'), "non-negative integers"),
    "listing bad dtype": (_write("bad.json", b'{"w": {"shape": [2], "dtype": "float7"}}'), "unsupported dtype"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_clear_line(case: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    make, message = BAD_INPUTS[case]
    path = make(tmp_path)
    status, out, err = _run(capsys, "inspect", str(path))
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("automap: error: ")
    assert path.name in err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.mindspore
def test_encrypted_ckpt_gives_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mindspore_cpu: Any
) -> None:
    ms = mindspore_cpu
    ms.save_checkpoint(ms.nn.Dense(2, 2), str(tmp_path / "secret.ckpt"), enc_key=b"0123456789abcdef")
    status, out, err = _run(capsys, "inspect", str(tmp_path / "secret.ckpt"))
    assert (status, out) == (1, "")
    assert err.count("\n") == 1
    assert re.match(r"automap: error: '.*secret\.ckpt' is an encrypted MindSpore checkpoint; decrypt it first", err)
