"""PyTorch `.pth`/`.pt`/`.bin`: files written by torch.save (zip and legacy formats), containers around state
dicts, the `module.` prefix, pickles that would run code, corrupt files, lazy reading, and automap's writer."""

from __future__ import annotations

import copy
import os
import pickle
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from automap import CheckpointFormatError, UnsafeCheckpointError, load_checkpoint, save_checkpoint


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2)
    )


def _state() -> dict[str, torch.Tensor]:
    return dict(_model().state_dict())


def _assert_same(table_path: Path, state: dict[str, torch.Tensor], **kwargs: object) -> None:
    table = load_checkpoint(table_path, **kwargs)  # type: ignore[arg-type]
    assert table.names == tuple(state)
    for record, (name, tensor) in zip(table, state.items(), strict=True):
        assert record.shape == tuple(tensor.shape), name
        np.testing.assert_array_equal(record.read(), tensor.numpy(), err_msg=name)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_reads_torch_save_zip_format_in_order(suffix: str, tmp_path: Path) -> None:
    state = _state()
    torch.save(state, tmp_path / f"model{suffix}")
    _assert_same(tmp_path / f"model{suffix}", state)
    table = load_checkpoint(tmp_path / f"model{suffix}")
    assert (table.framework, table.format, table.notes, table.excluded) == ("pytorch", "pytorch", (), ())
    assert table["1.num_batches_tracked"].dtype == "int64"
    assert table["1.num_batches_tracked"].shape == ()


def test_reads_the_legacy_non_zip_format(tmp_path: Path) -> None:
    state = _state()
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert not (tmp_path / "legacy.pth").read_bytes().startswith(b"PK")
    _assert_same(tmp_path / "legacy.pth", state)
    assert any("legacy" in note for note in load_checkpoint(tmp_path / "legacy.pth").notes)


def test_non_contiguous_and_shared_tensors(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    state = {"t": base.t(), "tied.a": base, "tied.b": base, "slice": base[1:, ::2]}
    torch.save(state, tmp_path / "views.pth")
    _assert_same(tmp_path / "views.pth", state)


@pytest.mark.parametrize(
    ("wrap", "where"),
    [
        (lambda sd: {"state_dict": sd}, "state_dict"),
        (lambda sd: {"model": sd, "epoch": 3, "config": {"lr": 0.1}}, "model"),
        (lambda sd: {"model_state_dict": sd, "epoch": 3}, "model_state_dict"),
        (lambda sd: {"module": sd}, "module"),
        (lambda sd: {"net": {"model": sd}}, "net/model"),
    ],
    ids=["state_dict", "model", "model_state_dict", "module", "nested"],
)
def test_containers_are_unwrapped_and_named_in_the_notes(wrap, where: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state = _state()
    torch.save(wrap(state), tmp_path / "wrapped.pth")
    _assert_same(tmp_path / "wrapped.pth", state)
    assert f"state dict taken from key {where!r}" in load_checkpoint(tmp_path / "wrapped.pth").notes


def test_several_state_dicts_need_a_key(tmp_path: Path) -> None:
    state = _state()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"model": state, "model_ema": ema, "epoch": 7}, tmp_path / "ema.pth")
    with pytest.raises(
        CheckpointFormatError, match=r"ema\.pth.*several state dicts.*'model'.*'model_ema'.*key='model'"
    ):
        load_checkpoint(tmp_path / "ema.pth")
    _assert_same(tmp_path / "ema.pth", ema, key="model_ema")
    _assert_same(tmp_path / "ema.pth", state, key="model")


def test_nested_ema_copy_is_chosen_by_path(tmp_path: Path) -> None:
    state = _state()
    ema = copy.deepcopy(state)
    ema["3.bias"] = ema["3.bias"] * 0 + 5
    torch.save({"state_dict": state, "ema": {"state_dict": ema}}, tmp_path / "ema.pth")
    with pytest.raises(CheckpointFormatError, match=r"'state_dict'.*'ema/state_dict'"):
        load_checkpoint(tmp_path / "ema.pth")
    _assert_same(tmp_path / "ema.pth", ema, key="ema/state_dict")


def test_a_key_holding_several_state_dicts_is_refused_too(tmp_path: Path) -> None:
    state = _state()
    torch.save({"ema": {"fast": state, "slow": copy.deepcopy(state)}}, tmp_path / "ema.pth")
    with pytest.raises(CheckpointFormatError, match=r"several state dicts: 'ema/fast'.*'ema/slow'.*key='ema/fast'"):
        load_checkpoint(tmp_path / "ema.pth", key="ema")
    _assert_same(tmp_path / "ema.pth", state, key="ema/slow")
    assert "state dict taken from key 'ema/slow'" in load_checkpoint(tmp_path / "ema.pth", key="ema/slow").notes


def test_a_missing_key_lists_the_keys_there(tmp_path: Path) -> None:
    torch.save({"model": _state(), "epoch": 3}, tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointFormatError, match=r"ckpt\.pth.*no key 'ema'.*\['epoch', 'model'\]"):
        load_checkpoint(tmp_path / "ckpt.pth", key="ema")


def test_data_parallel_prefix_is_reported_and_names_kept(tmp_path: Path) -> None:
    wrapped = torch.nn.DataParallel(_model())
    state = dict(wrapped.state_dict())
    assert all(name.startswith("module.") for name in state)
    torch.save(state, tmp_path / "ddp.pth")
    _assert_same(tmp_path / "ddp.pth", state)
    notes = load_checkpoint(tmp_path / "ddp.pth").notes
    assert any("'module.'" in note and "DataParallel" in note for note in notes)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (torch.zeros(3), "single tensor"),
        ({"epoch": 3, "lr": 0.1}, "holds no state dict"),
        ({"w": torch.zeros(3, 3).to_sparse(), "b": torch.zeros(3)}, r"'w' is a sparse_coo tensor.*to_dense"),
        ({"w": torch.zeros(3, dtype=torch.complex64), "b": torch.zeros(3)}, "complex64, which automap does not"),
    ],
    ids=["single tensor", "no tensors", "sparse", "complex"],
)
def test_files_without_a_usable_state_dict(content: object, message: str, tmp_path: Path) -> None:
    torch.save(content, tmp_path / "odd.pth")
    with pytest.raises(CheckpointFormatError, match=r"odd\.pth.*" + message):
        load_checkpoint(tmp_path / "odd.pth")


def test_a_torchscript_archive_is_named_as_such(tmp_path: Path) -> None:
    torch.jit.script(_model()).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(CheckpointFormatError, match=r"scripted\.pt' is a TorchScript archive.*torch\.jit\.load"):
        load_checkpoint(tmp_path / "scripted.pt")


class _RunsCode:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_pickle_that_would_run_code_is_refused(writer: str, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save({"weight": torch.zeros(2), "bias": _RunsCode(marker)}, path)
    else:  # a bare pickle, which torch reads as its legacy format
        path.write_bytes(pickle.dumps({"bias": _RunsCode(marker)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth.*refused.*system.*unsafe_pickle=True"):
        load_checkpoint(path)
    assert not marker.exists()
    # The payload is live: an unrestricted unpickler runs it.
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())  # our own file, to prove the payload works
    assert marker.exists()


def test_a_whole_module_pickle_needs_the_unsafe_opt_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model()
    torch.save(model, tmp_path / "module.pth")  # pickles the class: loading it would import and build objects
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_checkpoint(tmp_path / "module.pth")
    _assert_same(tmp_path / "module.pth", dict(model.state_dict()), unsafe_pickle=True)
    assert "code execution ENABLED" in capsys.readouterr().err


def test_corrupt_pickle_is_reported_as_corrupt_not_as_unsafe(tmp_path: Path) -> None:
    torch.save(_state(), tmp_path / "model.pth")
    raw = bytearray((tmp_path / "model.pth").read_bytes())
    at = bytes(raw).find(b"data.pkl") + 100  # inside the pickle stream
    raw[at : at + 40] = b"\xff" * 40
    (tmp_path / "bad.pth").write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError, match=r"bad\.pth.*corrupt") as error:
        load_checkpoint(tmp_path / "bad.pth")
    assert not isinstance(error.value, UnsafeCheckpointError)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_file_is_reported(legacy: bool, tmp_path: Path) -> None:
    torch.save(_state(), tmp_path / "model.pth", _use_new_zipfile_serialization=not legacy)
    raw = (tmp_path / "model.pth").read_bytes()
    for keep in (20, len(raw) // 2, len(raw) - 10):
        (tmp_path / "cut.pth").write_bytes(raw[:keep])
        with pytest.raises(CheckpointFormatError, match=r"cut\.pth.*(truncated|corrupt)"):
            load_checkpoint(tmp_path / "cut.pth")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_random_damage_never_escapes_as_another_error(legacy: bool, tmp_path: Path) -> None:
    torch.save(_state(), tmp_path / "model.pth", _use_new_zipfile_serialization=not legacy)
    raw = (tmp_path / "model.pth").read_bytes()
    rng = random.Random(1)
    for _ in range(60):
        damaged = bytearray(raw)
        at = rng.randrange(len(raw))
        damaged[at : at + 8] = bytes(rng.randrange(256) for _ in range(8))
        (tmp_path / "damaged.pth").write_bytes(bytes(damaged))
        try:
            table = load_checkpoint(tmp_path / "damaged.pth")
            for record in table:
                record.read()
        except CheckpointFormatError:
            pass  # anything but a CheckpointFormatError fails the test


def _anon_rss() -> int:
    """Anonymous resident memory of this process (heap, not file-backed pages), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    msg = "no RssAnon line in /proc/self/status"
    raise AssertionError(msg)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_listing_a_large_file_keeps_its_data_on_disk(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    torch.save({"huge": torch.ones(size // 4), "small": torch.zeros(3)}, tmp_path / "huge.pth")

    before = _anon_rss()
    eager = torch.load(tmp_path / "huge.pth", weights_only=True)  # control: what reading everything costs
    eager_cost = _anon_rss() - before
    del eager

    before = _anon_rss()
    table = load_checkpoint(tmp_path / "huge.pth")
    listing_cost = _anon_rss() - before

    assert table["huge"].nbytes == size
    assert eager_cost > size // 2  # the measurement sees a full read
    assert listing_cost < size // 4
    assert table["huge"].read()[-1] == 1.0


def test_automap_pth_round_trip_restores_the_model(tmp_path: Path) -> None:
    model = _model().eval()
    torch.save(model.state_dict(), tmp_path / "model.pth")
    save_checkpoint(load_checkpoint(tmp_path / "model.pth"), tmp_path / "model.ckpt")  # through MindSpore's format
    save_checkpoint(load_checkpoint(tmp_path / "model.ckpt"), tmp_path / "back.pth")

    state = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(state) == list(model.state_dict())
    fresh = _model()
    for parameter in fresh.parameters():
        torch.nn.init.zeros_(parameter)
    fresh.load_state_dict(state, strict=True)
    fresh.eval()
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(fresh(x), model(x))
