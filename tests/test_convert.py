"""Conversion end to end with real files and real networks, both directions, plus the streaming guarantees.

Every converted checkpoint is loaded by the target framework's own API into a fresh network, which must
compute what the source network computes.
"""

from __future__ import annotations

import json
import os
import weakref
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

import _convert_nets as nets  # noqa: E402  # after the skips: it builds networks of both frameworks

import automap.conversion._checksums  # noqa: E402
import automap.conversion._writecheck  # noqa: E402
import automap.conversion.readback  # noqa: E402
import automap.conversion.writer  # noqa: E402
import automap.io  # noqa: E402
from automap import cli, save_checkpoint  # noqa: E402
from automap._errors import ConversionError  # noqa: E402
from automap.conversion import convert  # noqa: E402
from automap.conversion._pages import MappedPages, file_id  # noqa: E402
from automap.conversion._progress import Progress  # noqa: E402
from automap.conversion.plan import plan_conversion  # noqa: E402
from automap.conversion.readback import Verifier, _verify_file  # noqa: E402
from automap.io import load_checkpoint  # noqa: E402
from automap.mapping import load_mapping, mapping_from_json  # noqa: E402
from automap.records import ParamRecord, ParamTable  # noqa: E402

RNG = np.random.default_rng(7)
NET_INPUT = RNG.standard_normal((2, nets.C_IN, 5, 5)).astype(np.float32)
ATTENTION_INPUT = RNG.standard_normal((2, 4, nets.D_MODEL)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real checkpoints: the torch nets' state dicts and the MindSpore nets saved by mindspore.save_checkpoint."""
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    folder = tmp_path_factory.mktemp("convert")
    paths = {
        "net.pth": folder / "net.pth",
        "net.ckpt": folder / "net.ckpt",
        "train.ckpt": folder / "train.ckpt",
        "attention.pth": folder / "attention.pth",
        "attention.ckpt": folder / "attention.ckpt",
    }
    torch.save(nets.torch_net().state_dict(), paths["net.pth"])
    ms.save_checkpoint(nets.mindspore_net(), str(paths["net.ckpt"]))
    ms.save_checkpoint(_training_cell(nets.mindspore_net()), str(paths["train.ckpt"]))
    torch.save(nets.torch_attention().state_dict(), paths["attention.pth"])
    ms.save_checkpoint(nets.mindspore_attention(), str(paths["attention.ckpt"]))
    return paths


def _training_cell(net: Any) -> Any:
    """The net wrapped with a loss and a Momentum optimizer, so that its checkpoint carries training state."""
    from mindspore import nn

    return nn.TrainOneStepCell(nn.WithLossCell(net, nn.MSELoss()), nn.Momentum(net.trainable_params(), 0.01, 0.9))


def _write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return path


def _torch_output(module: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x)).numpy()


def _mindspore_output(cell: Any, x: np.ndarray) -> np.ndarray:
    cell.set_train(False)
    return cell(ms.Tensor(x)).asnumpy()


def _load_into_fresh_mindspore(factory: Any, path: Path, **options: Any) -> Any:
    """mindspore.load_checkpoint + load_param_into_net into a new cell; every parameter must be loaded."""
    cell = factory()
    params = ms.load_checkpoint(str(path), **options)
    not_loaded, unused = ms.load_param_into_net(cell, params, strict_load=True)
    assert not_loaded == [] and unused == []
    return cell


def _load_into_fresh_torch(factory: Any, state: dict[str, Any]) -> Any:
    module = factory()
    module.load_state_dict(state, strict=True)
    return module


def _convert(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = cli.main(["convert", *args, "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


# --- PyTorch -> MindSpore ------------------------------------------------------------------------------------


def test_versioned_mapping_to_mindspore_computes_the_same(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    source, template = load_checkpoint(files["net.pth"]), load_checkpoint(files["net.ckpt"])
    mapping = _write_json(tmp_path / "m.json", nets.versioned_mapping(nets.NET_TO_MINDSPORE, source, template))
    out = tmp_path / "out.ckpt"
    text = _convert(capsys, str(files["net.pth"]), "--mapping", str(mapping), "-o", str(out))
    assert "verified 12 tensors bit-exact (dtype, shape, CRC-32) with mindspore.load_checkpoint" in text
    assert "pytorch -> mindspore" in text
    assert list(ms.load_checkpoint(str(out))) == list(nets.NET_TO_MINDSPORE)  # the target's order
    cell = _load_into_fresh_mindspore(nets.mindspore_net, out)
    expected = _torch_output(nets.torch_net(), NET_INPUT)
    np.testing.assert_allclose(_mindspore_output(cell, NET_INPUT), expected, rtol=1e-4, atol=1e-5)


def test_flat_mapping_with_a_template_reshapes_conv1d_and_says_so(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    flat = dict(reversed(nets.flat_mapping(nets.NET_TO_MINDSPORE).items()))  # the template decides the order
    mapping = _write_json(tmp_path / "flat.json", flat)
    out = tmp_path / "out.ckpt"
    text = _convert(
        capsys, str(files["net.pth"]), "--mapping", str(mapping), "--target", str(files["net.ckpt"]), "-o", str(out)
    )
    assert "automatic: mixer.weight: reshaped [6, 4, 3] -> [6, 4, 1, 3]" in text
    assert list(ms.load_checkpoint(str(out))) == list(nets.NET_TO_MINDSPORE)
    cell = _load_into_fresh_mindspore(nets.mindspore_net, out)
    expected = _torch_output(nets.torch_net(), NET_INPUT)
    np.testing.assert_allclose(_mindspore_output(cell, NET_INPUT), expected, rtol=1e-4, atol=1e-5)


def test_flat_mapping_without_a_template_keeps_its_key_order(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    flat = dict(reversed(nets.flat_mapping(nets.NET_TO_MINDSPORE).items()))
    mapping = _write_json(tmp_path / "flat.json", flat)
    out = tmp_path / "out.ckpt"
    _convert(capsys, str(files["net.pth"]), "--mapping", str(mapping), "-o", str(out))
    loaded = ms.load_checkpoint(str(out))
    assert list(loaded) == list(flat)
    assert tuple(loaded["mixer.weight"].shape) == (6, 4, 3)  # nothing says the target wants [6, 4, 1, 3]


def test_the_report_says_whether_the_output_was_checked_against_the_target(files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mapping = _write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_MINDSPORE))
    unchecked = convert(files["net.pth"], mapping, tmp_path / "a.ckpt")
    assert (unchecked.verified, unchecked.target_checked) == (12, False)
    assert any(line.startswith("WARNING: NOT verified against the target model") for line in unchecked.lines())
    checked = convert(files["net.pth"], mapping, tmp_path / "b.ckpt", target=files["net.ckpt"])
    assert (checked.verified, checked.target_checked) == (12, True)
    source, template = load_checkpoint(files["net.pth"]), load_checkpoint(files["net.ckpt"])
    versioned = _write_json(tmp_path / "m.json", nets.versioned_mapping(nets.NET_TO_MINDSPORE, source, template))
    assert convert(files["net.pth"], versioned, tmp_path / "c.ckpt").target_checked  # it records the target's shapes


def test_swapped_source_and_target_are_refused_before_anything_is_written(files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mapping = _write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_TORCH))
    with pytest.raises(ConversionError, match="did you swap them"):
        convert(files["net.ckpt"], mapping, tmp_path / "out.ckpt", target=files["net.pth"], allow_missing=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.json"]


def test_mindspore_flavoured_safetensors_loads_into_mindspore(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    source, template = load_checkpoint(files["net.pth"]), load_checkpoint(files["net.ckpt"])
    mapping = _write_json(tmp_path / "m.json", nets.versioned_mapping(nets.NET_TO_MINDSPORE, source, template))
    out = tmp_path / "out.safetensors"
    text = _convert(capsys, str(files["net.pth"]), "--mapping", str(mapping), "-o", str(out))
    assert "mindspore.load_checkpoint(format='safetensors')" in text
    cell = _load_into_fresh_mindspore(nets.mindspore_net, out, format="safetensors")
    expected = _torch_output(nets.torch_net(), NET_INPUT)
    np.testing.assert_allclose(_mindspore_output(cell, NET_INPUT), expected, rtol=1e-4, atol=1e-5)


def test_fused_qkv_is_split_and_the_projection_transposed(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    source, template = load_checkpoint(files["attention.pth"]), load_checkpoint(files["attention.ckpt"])
    document = nets.versioned_mapping(nets.ATTENTION_TO_MINDSPORE, source, template)
    mapping = _write_json(tmp_path / "m.json", document)
    out = tmp_path / "out.ckpt"
    _convert(capsys, str(files["attention.pth"]), "--mapping", str(mapping), "-o", str(out))
    loaded = ms.load_checkpoint(str(out))
    qkv = torch.load(files["attention.pth"], weights_only=True)["qkv.weight"].numpy()
    np.testing.assert_array_equal(loaded["k.weight"].asnumpy(), qkv[nets.D_MODEL : 2 * nets.D_MODEL])
    cell = _load_into_fresh_mindspore(nets.mindspore_attention, out)
    expected = _torch_output(nets.torch_attention(), ATTENTION_INPUT)
    np.testing.assert_allclose(_mindspore_output(cell, ATTENTION_INPUT), expected, rtol=1e-4, atol=1e-5)


# --- MindSpore -> PyTorch ------------------------------------------------------------------------------------


def test_versioned_mapping_to_pytorch_computes_the_same(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    source = load_checkpoint(files["train.ckpt"])  # a training checkpoint: optimizer state is set aside
    template = load_checkpoint(files["net.pth"])
    mapping = _write_json(tmp_path / "m.json", nets.versioned_mapping(nets.NET_TO_TORCH, source, template))
    out = tmp_path / "out.pth"
    text = _convert(capsys, str(files["train.ckpt"]), "--mapping", str(mapping), "-o", str(out))
    assert "verified 12 tensors bit-exact (dtype, shape, CRC-32) with torch.load(weights_only=True)" in text
    assert "num_batches_tracked" in text  # left to PyTorch's loader, and said so
    state = torch.load(out, weights_only=True)
    assert list(state) == [n for n in template.names if not n.endswith("num_batches_tracked")]
    module = _load_into_fresh_torch(nets.torch_net, state)
    expected = _mindspore_output(nets.mindspore_net(), NET_INPUT)  # the net train.ckpt was saved from
    np.testing.assert_allclose(_torch_output(module, NET_INPUT), expected, rtol=1e-4, atol=1e-5)


def test_a_doubtful_source_for_what_the_loader_restores_is_left_to_the_loader(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`num_batches_tracked` guessed from some other integer scalar (a detection head's `stride`) is not written."""
    net = load_checkpoint(files["net.ckpt"])
    counter = np.array(7, dtype=np.int64)
    extra = ParamRecord("head.stride", (), "int64", len(net), lambda: counter)
    source_path = tmp_path / "with-counter.ckpt"
    save_checkpoint(ParamTable("mindspore", "net", (*net.params, extra)), source_path)
    source, template = load_checkpoint(source_path), load_checkpoint(files["net.pth"])
    entries = {**nets.NET_TO_TORCH, "bn.num_batches_tracked": "head.stride"}
    document = nets.versioned_mapping(entries, source, template, confidence={"bn.num_batches_tracked": 0.3})
    out = tmp_path / "out.pth"
    text = _convert(
        capsys, str(source_path), "--mapping", str(_write_json(tmp_path / "m.json", document)), "-o", str(out)
    )
    assert "num_batches_tracked" in text  # left to PyTorch's loader, and said so
    state = torch.load(out, weights_only=True)
    assert "bn.num_batches_tracked" not in state
    assert list(state) == [n for n in template.names if not n.endswith("num_batches_tracked")]


def test_separate_qkv_are_concatenated_for_pytorch(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    source, template = load_checkpoint(files["attention.ckpt"]), load_checkpoint(files["attention.pth"])
    document = nets.versioned_mapping(nets.ATTENTION_TO_TORCH, source, template)
    mapping = _write_json(tmp_path / "m.json", document)
    out = tmp_path / "out.safetensors"
    _convert(capsys, str(files["attention.ckpt"]), "--mapping", str(mapping), "-o", str(out))
    from safetensors.torch import load_file

    module = _load_into_fresh_torch(nets.torch_attention, load_file(str(out)))
    expected = _mindspore_output(nets.mindspore_attention(), ATTENTION_INPUT)
    np.testing.assert_allclose(_torch_output(module, ATTENTION_INPUT), expected, rtol=1e-4, atol=1e-5)


def test_flat_list_source_is_concatenated_along_axis_0(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    flat = {"qkv.weight": ["q.weight", "k.weight", "v.weight"], "proj.bias": "proj_b"}
    mapping = _write_json(tmp_path / "flat.json", flat)
    out = tmp_path / "out.pth"
    text = _convert(capsys, str(files["attention.ckpt"]), "--mapping", str(mapping), "-o", str(out))
    assert "concatenated 3 sources along axis 0" in text
    loaded = ms.load_checkpoint(str(files["attention.ckpt"]))
    parts = [loaded[f"{p}.weight"].asnumpy() for p in "qkv"]
    np.testing.assert_array_equal(torch.load(out, weights_only=True)["qkv.weight"].numpy(), np.concatenate(parts))


# --- dtypes --------------------------------------------------------------------------------------------------


def test_bfloat16_stays_bfloat16_in_both_directions(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    state = {
        k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in nets.torch_net().state_dict().items()
    }
    bf16_pth = tmp_path / "bf16.pth"
    torch.save(state, bf16_pth)
    mapping = _write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_MINDSPORE))
    out = tmp_path / "bf16.ckpt"
    _convert(capsys, str(bf16_pth), "--mapping", str(mapping), "--target", str(files["net.ckpt"]), "-o", str(out))
    loaded = ms.load_checkpoint(str(out))
    assert str(loaded["head.weight"].dtype) == "BFloat16"
    assert bytes(loaded["head.weight"].get_bytes()) == state["fc.weight"].view(torch.int16).numpy().tobytes()
    assert bytes(loaded["mixer.weight"].get_bytes()) == state["conv1d.weight"].view(torch.int16).numpy().tobytes()

    back = _write_json(tmp_path / "back.json", nets.flat_mapping(nets.NET_TO_TORCH))
    round_trip = tmp_path / "back.pth"
    _convert(capsys, str(out), "--mapping", str(back), "--target", str(bf16_pth), "-o", str(round_trip))
    again = torch.load(round_trip, weights_only=True)
    for name, tensor in again.items():
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor.view(torch.int16), state[name].view(torch.int16)), name


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_casts_floats_and_keeps_integers(files, tmp_path, capsys, dtype) -> None:  # type: ignore[no-untyped-def]
    original = torch.load(files["net.pth"], weights_only=True)
    rename = {f"renamed.{k}": k for k in original}  # same framework, new names
    mapping = _write_json(tmp_path / "flat.json", rename)
    out = tmp_path / "cast.pth"
    text = _convert(capsys, str(files["net.pth"]), "--mapping", str(mapping), "--dtype", dtype, "-o", str(out))
    assert f"cast 12 floating-point tensors to {dtype}" in text
    cast = torch.load(out, weights_only=True)
    want = getattr(torch, dtype)
    for name, tensor in original.items():
        got = cast[f"renamed.{name}"]
        if tensor.is_floating_point():
            assert got.dtype == want
            assert torch.equal(got.view(torch.int16), tensor.to(want).view(torch.int16)), name
        else:
            assert got.dtype == tensor.dtype and torch.equal(got, tensor)


# --- checking before writing ---------------------------------------------------------------------------------


def test_every_problem_is_listed_at_once(files) -> None:  # type: ignore[no-untyped-def]
    source, template = load_checkpoint(files["attention.pth"]), load_checkpoint(files["attention.ckpt"])
    document = nets.versioned_mapping(nets.ATTENTION_TO_MINDSPORE, source, template)
    pairs = {p["target"]: p for p in document["pairs"]}
    pairs["q.weight"]["source"] = "qkv.weight_typo"  # unknown source
    pairs["k.bias"]["transform"][0]["index"] = 0  # same split part as q.bias
    pairs["v.weight"]["transform"] = [{"op": "split", "axis": 0, "parts": 5, "index": 0}]  # impossible
    pairs["proj_b"]["source"] = None  # missing target
    mapping = mapping_from_json(document)
    with pytest.raises(ConversionError) as caught:
        plan_conversion(source, mapping, target=template)
    message = str(caught.value)
    assert "4 problems" in message
    assert "'qkv.weight_typo' not in" in message and "did you mean 'qkv.weight'" in message
    assert "source 'qkv.bias' feeds 3 targets ('q.bias', 'k.bias', 'v.bias')" in message
    assert "does not split into 5 equal parts" in message
    assert "1 target parameter has no source: 'proj_b'" in message


def test_a_shape_mismatch_without_transform_is_refused(files) -> None:  # type: ignore[no-untyped-def]
    source, template = load_checkpoint(files["net.pth"]), load_checkpoint(files["net.ckpt"])
    document = nets.versioned_mapping(nets.NET_TO_MINDSPORE, source, template)
    pair = next(p for p in document["pairs"] if p["target"] == "mixer.weight")
    pair["transform"] = None
    with pytest.raises(ConversionError, match=r"'mixer.weight': source 'conv1d.weight' \[6, 4, 3\] gives \[6, 4, 3\]"):
        plan_conversion(source, mapping_from_json(document), target=template)


def test_low_confidence_pairs_are_refused_unless_accepted(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    source, template = load_checkpoint(files["net.pth"]), load_checkpoint(files["net.ckpt"])
    document = nets.versioned_mapping(
        nets.NET_TO_MINDSPORE, source, template, confidence={"norm.gamma": 0.3, "norm.beta": 0.2}
    )
    mapping = _write_json(tmp_path / "m.json", document)
    out = tmp_path / "out.ckpt"
    code = cli.main(["convert", str(files["net.pth"]), "--mapping", str(mapping), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "2 pairs are below the confidence threshold 0.5: norm.gamma <- 'ln.weight' (0.30)" in err
    assert "--accept-low-confidence" in err
    args = [str(files["net.pth"]), "--mapping", str(mapping), "-o", str(out), "--accept-low-confidence"]
    _convert(capsys, *args)
    assert out.exists()


def test_a_changed_dtype_needs_ignore_fingerprint(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    source, template = load_checkpoint(files["net.pth"]), load_checkpoint(files["net.ckpt"])
    mapping = _write_json(tmp_path / "m.json", nets.versioned_mapping(nets.NET_TO_MINDSPORE, source, template))
    half = tmp_path / "half.pth"
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in torch.load(files["net.pth"]).items()}, half)
    out = tmp_path / "out.ckpt"
    assert cli.main(["convert", str(half), "--mapping", str(mapping), "-o", str(out)]) == 1
    assert "is not the source checkpoint the mapping was made from" in capsys.readouterr().err
    _convert(capsys, str(half), "--mapping", str(mapping), "-o", str(out), "--ignore-fingerprint")
    assert str(ms.load_checkpoint(str(out))["head.weight"].dtype) == "Float16"


# --- streaming, interruption, verification -------------------------------------------------------------------


def _with_loader(table: ParamTable, name: str, loader: Any) -> ParamTable:
    params = tuple(ParamRecord(r.name, r.shape, r.dtype, r.index, loader) if r.name == name else r for r in table)
    return ParamTable(table.framework, table.source, params, table.excluded, table.notes, table.format)


@pytest.mark.parametrize("suffix", [".ckpt", ".pth", ".safetensors"])
@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_an_interruption_mid_write_leaves_no_file(files, tmp_path, suffix, failure) -> None:  # type: ignore[no-untyped-def]
    source = load_checkpoint(files["net.pth"])
    reads: list[str] = []

    def interrupted() -> np.ndarray:
        reads.append("ln.weight")
        raise failure

    broken = _with_loader(source, "ln.weight", interrupted)
    out = tmp_path / f"out{suffix}"
    mapping = load_mapping(_write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_MINDSPORE)))
    with pytest.raises(failure):
        convert(broken, mapping, out)
    assert reads == ["ln.weight"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.json"]  # no output, no partial file


@pytest.mark.parametrize("suffix", [".ckpt", ".pth", ".safetensors"])
def test_each_source_tensor_is_read_once_and_held_alone(files, tmp_path, suffix) -> None:  # type: ignore[no-untyped-def]
    """Streaming: one read per source tensor, in target order, and none alive when the next is read."""
    source = load_checkpoint(files["net.pth"])
    events: list[str] = []
    alive: list[weakref.ref[np.ndarray]] = []
    held: list[int] = []
    for record in source.params:
        source = _with_loader(source, record.name, _tracked(record, events, alive, held))
    mapping = load_mapping(_write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_MINDSPORE)))
    report = convert(source, mapping, tmp_path / f"out{suffix}")  # verification included
    sources = [v if isinstance(v, str) else v["source"] for v in nets.NET_TO_MINDSPORE.values()]
    assert events == sources  # each read once, when the writer reached its target; the check reads the output
    assert held == [0] * len(sources)
    assert report.verified == len(sources)


def _tracked(record: ParamRecord, events: list[str], alive: list[Any], held: list[int]) -> Any:
    def load() -> np.ndarray:
        held.append(sum(ref() is not None for ref in alive))
        events.append(record.name)
        array = np.array(record.read())  # a private copy, so that its lifetime can be watched
        alive.append(weakref.ref(array))
        return array

    return load


@pytest.mark.parametrize("whole_file_limit", [None, 100], ids=["framework-loader", "large-file-check"])
@pytest.mark.parametrize("suffix", [".ckpt", ".pth", ".safetensors"])
def test_verification_fails_when_the_file_differs_from_what_was_converted(  # type: ignore[no-untyped-def]
    files, tmp_path, suffix, whole_file_limit, monkeypatch
) -> None:
    """A writer that alters a tensor: the re-read file no longer matches, so the output is removed."""
    if whole_file_limit is not None:
        monkeypatch.setattr(automap.conversion.readback, "FRAMEWORK_CHECK_LIMIT", whole_file_limit)
    real = automap.io.save_checkpoint

    def altering(records: list[ParamRecord], path: Any, **options: Any) -> None:
        def bumped(record: ParamRecord) -> ParamRecord:
            return ParamRecord(record.name, record.shape, record.dtype, record.index, lambda: record.read() + 1)

        real([bumped(r) if r.name == "head.bias" else r for r in records], path, **options)

    monkeypatch.setattr(automap.conversion.writer, "save_checkpoint", altering)
    mapping = load_mapping(_write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_MINDSPORE)))
    with pytest.raises(ConversionError, match=r"verification of .* failed.*'head.bias'.*values differ"):
        convert(load_checkpoint(files["net.pth"]), mapping, tmp_path / f"out{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.json"]


def test_files_too_large_to_load_whole_are_checked_with_automaps_reader(files, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(automap.conversion.readback, "FRAMEWORK_CHECK_LIMIT", 100)
    mapping = load_mapping(_write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_MINDSPORE)))
    source = load_checkpoint(files["net.pth"])
    report = convert(source, mapping, tmp_path / "out.ckpt")
    assert report.verified == 12
    assert report.verified_with.startswith("automap's reader (mindspore.load_checkpoint reads a whole file")
    assert "checks files up to 100 B" in report.verified_with
    report = convert(source, mapping, tmp_path / "out.safetensors", framework="mindspore")
    assert report.verified == 12
    assert report.verified_with.startswith("safetensors.safe_open (names, dtypes, shapes) and automap's reader")
    report = convert(source, mapping, tmp_path / "out.pth")
    assert report.verified_with == "torch.load(weights_only=True)"  # memory-mapped: any size


@pytest.mark.parametrize(
    ("suffix", "verifier"),
    [
        (".ckpt", Verifier.AUTOMAP_READER),
        (".ckpt", Verifier.MINDSPORE_LOADER),
        (".pth", Verifier.TORCH_LOADER),
        (".safetensors", Verifier.SAFETENSORS),
        (".safetensors", Verifier.SAFETENSORS_HEADER),
        (".safetensors", Verifier.MINDSPORE_SAFETENSORS_LOADER),
    ],
    ids=lambda value: value.name if isinstance(value, Verifier) else value,
)
@pytest.mark.parametrize("offset", [3, 300_001, 399_999], ids=["first-piece", "deep", "last-byte"])
@pytest.mark.parametrize("expected", ["crc32", "source-bytes"])
def test_a_byte_changed_on_disk_inside_a_tensor_of_many_pieces_is_found(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch, suffix, verifier, offset, expected
) -> None:
    """A file written by automap, checked with 4 KiB pieces, then one byte of a 98-piece tensor changed on disk.

    What the tensor must read back as is either its piece CRC-32s (a tensor written from memory) or the bytes of a
    memory-mapped source file (a renamed tensor): both find the byte.
    """
    piece = 4096
    monkeypatch.setattr(automap.conversion._checksums, "PIECE_BYTES", piece)
    rng = np.random.default_rng(5)
    arrays = {
        "embed.weight": rng.standard_normal((1000, 100)).astype(np.float32),  # 400,000 bytes: 98 pieces
        "head.bias": rng.standard_normal(7).astype(np.float32),
    }
    records = [ParamRecord(n, a.shape, "float32", i, lambda a=a: a) for i, (n, a) in enumerate(arrays.items())]
    source = tmp_path / "source.safetensors"
    save_checkpoint(records, source)
    source_table = load_checkpoint(source)
    digests: dict[str, Any] = {
        n: tuple(zlib.crc32(a.tobytes()[i : i + piece]) for i in range(0, a.nbytes, piece))
        if expected == "crc32"
        else source_table[n].read()  # a view of the mapped source file
        for n, a in arrays.items()
    }
    path = tmp_path / f"out{suffix}"
    save_checkpoint(records, path)

    def problems() -> list[str]:
        with MappedPages([path, source]) as pages, Progress(0, len(records), label="verifying", enabled=False) as bar:
            return _verify_file(path, verifier, verifier.describe(), records, digests, bar, pages)

    assert problems() == []
    blob = bytearray(path.read_bytes())
    at = blob.find(arrays["embed.weight"].tobytes())
    assert at >= 0
    blob[at + offset] ^= 0x10
    path.write_bytes(bytes(blob))
    assert problems() == [
        "'embed.weight': read back as float32[1000, 100], expected float32[1000, 100] (values differ)"
    ]


_LOADERS = [
    (".ckpt", Verifier.AUTOMAP_READER),
    (".ckpt", Verifier.MINDSPORE_LOADER),
    (".pth", Verifier.TORCH_LOADER),
    (".safetensors", Verifier.SAFETENSORS),
    (".safetensors", Verifier.SAFETENSORS_HEADER),
    (".safetensors", Verifier.MINDSPORE_SAFETENSORS_LOADER),
]
_VIEW_LOADERS = [
    (".ckpt", Verifier.AUTOMAP_READER),
    (".pth", Verifier.TORCH_LOADER),
    (".safetensors", Verifier.SAFETENSORS_HEADER),
]
"""Loaders that show a tensor as a view of the file's own pages (memory-mapped); the others may copy it."""


@pytest.mark.parametrize(
    ("suffix", "verifier", "place"),
    [(*loader, "exact") for loader in _VIEW_LOADERS]
    + [(*loader, place) for loader in _LOADERS for place in ("other-offset", "other-length", "other-file")],
    ids=lambda value: value.name if isinstance(value, Verifier) else value,
)
def test_bytes_checked_right_after_writing_are_trusted_only_where_the_loader_shows_them(  # type: ignore[no-untyped-def]
    tmp_path, suffix, verifier, place
) -> None:
    """The read-back after the fsync takes a tensor as compared only at exactly the range compared when written.

    The expected CRC-32s given here are wrong, so any tensor compared again is reported: only a loader that shows
    the tensor as a view of the file, at the very range (file, offset, length) checked, skips it.
    """
    rng = np.random.default_rng(6)
    arrays = {"embed.weight": rng.standard_normal((1000, 100)).astype(np.float32)}
    records = [ParamRecord(n, a.shape, "float32", i, lambda a=a: a) for i, (n, a) in enumerate(arrays.items())]
    path = tmp_path / f"out{suffix}"
    save_checkpoint(records, path)
    data = arrays["embed.weight"].tobytes()
    offset = path.read_bytes().find(data)
    assert offset > 0
    identity = file_id(path.stat())
    other = file_id((tmp_path / "other").stat()) if (tmp_path / "other").touch() is None else identity
    checked = {
        "exact": (identity, offset, len(data)),
        "other-offset": (identity, offset + 4096, len(data)),
        "other-length": (identity, offset, len(data) - 4),
        "other-file": (other, offset, len(data)),
    }[place]
    wrong = {"embed.weight": (0,) * (len(data) // automap.conversion._checksums.PIECE_BYTES + 1)}
    with MappedPages([path]) as pages, Progress(0, len(records), label="verifying", enabled=False) as bar:
        problems = _verify_file(path, verifier, verifier.describe(), records, wrong, bar, pages, checked={checked})
    trusted = place == "exact"
    assert problems == (
        []
        if trusted
        else ["'embed.weight': read back as float32[1000, 100], expected float32[1000, 100] (values differ)"]
    )


def _renaming(tmp_path: Path) -> tuple[Path, Path]:
    """A source of one tensor large enough to go file to file, and a flat mapping renaming it."""
    big = np.random.default_rng(8).standard_normal((1024, 600)).astype(np.float32)  # 2.4 MB
    small = np.arange(5, dtype=np.float32)
    source = tmp_path / "source.safetensors"
    records = [
        ParamRecord("a.big", big.shape, "float32", 0, lambda: big),
        ParamRecord("a.small", (5,), "float32", 1, lambda: small),
    ]
    save_checkpoint(records, source)
    return source, _write_json(tmp_path / "flat.json", {"b.big": "a.big", "b.small": "a.small"})


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors", ".pth"])
@pytest.mark.parametrize("dtype", [None, "float16"])
def test_renamed_tensors_are_compared_with_the_source_right_after_being_written(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch, suffix, dtype
) -> None:
    """Views of the mapped source are compared with it as soon as written; cast tensors, from memory, are not."""
    source, mapping = _renaming(tmp_path)
    compared: list[str] = []
    real = automap.conversion._writecheck.WriteCheck._compare

    def spy(self: Any, task: Any) -> bool:
        compared.append(task.name)
        return real(self, task)

    monkeypatch.setattr(automap.conversion._writecheck.WriteCheck, "_compare", spy)
    report = convert(source, mapping, tmp_path / f"out{suffix}", dtype=dtype)
    assert report.verified == 2
    assert compared == (["b.big", "b.small"] if dtype is None else [])  # cast: compared by CRC-32s after the fsync
    written = load_checkpoint(tmp_path / f"out{suffix}")["b.big"].read()
    np.testing.assert_array_equal(written, load_checkpoint(source)["a.big"].read().astype(dtype or "float32"))


def test_tensors_of_every_shard_checked_when_written_are_not_read_again(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """torch.load maps each shard as it is opened, maybe where the last one was: each is found and trusted."""
    rng = np.random.default_rng(9)
    # 2.4 MB each, named so that each lies at another offset of its shard
    arrays = {f"a.{'x' * 150 * i}": rng.standard_normal((1024, 600)).astype(np.float32) for i in range(3)}
    source = tmp_path / "source.safetensors"
    save_checkpoint(
        [ParamRecord(n, a.shape, "float32", i, lambda a=a: a) for i, (n, a) in enumerate(arrays.items())], source
    )
    mapping = _write_json(tmp_path / "flat.json", {n.replace("a.", "b."): n for n in arrays})
    compared_again: list[Any] = []
    real = automap.conversion.readback._matches
    monkeypatch.setattr(
        automap.conversion.readback, "_matches", lambda *args: compared_again.append(args) or real(*args)
    )
    report = convert(source, mapping, tmp_path / "out.pth", max_shard_size="3MB")
    assert len(report.shards) == 3 and report.verified == 3
    assert report.verified_with.startswith("torch.load(weights_only=True) (3 shards)")
    assert compared_again == []


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors", ".pth"])
@pytest.mark.parametrize("back", [1, 1_000_000, 2_457_600], ids=["last-byte", "deep", "first-byte"])
def test_a_kernel_copy_that_writes_a_wrong_byte_is_found_and_nothing_is_left(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch, suffix, back
) -> None:
    """The kernel copy of a 2.4 MB tensor (600 pieces of 4 KiB here) flips one byte `back` bytes before its end."""
    monkeypatch.setattr(automap.conversion._checksums, "PIECE_BYTES", 4096)
    source, mapping = _renaming(tmp_path)
    real = os.copy_file_range

    def corrupting(source_fd: int, target_fd: int, count: int, *args: Any) -> int:
        moved = real(source_fd, target_fd, count, *args)
        end = os.lseek(target_fd, 0, os.SEEK_CUR)
        byte = os.pread(target_fd, 1, end - back)
        os.pwrite(target_fd, bytes([byte[0] ^ 0x01]), end - back)
        return moved

    monkeypatch.setattr(os, "copy_file_range", corrupting)
    out = tmp_path / f"out{suffix}"
    with pytest.raises(ConversionError) as caught:
        convert(source, mapping, out)
    assert "'b.big': the bytes in the file right after writing differ from the source's" in str(caught.value)
    assert "so the file was removed" in str(caught.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.json", "source.safetensors"]


def test_sharded_output_loads_shard_by_shard_in_mindspore(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    source, template = load_checkpoint(files["net.pth"]), load_checkpoint(files["net.ckpt"])
    mapping = _write_json(tmp_path / "m.json", nets.versioned_mapping(nets.NET_TO_MINDSPORE, source, template))
    out = tmp_path / "net.ckpt"
    text = _convert(capsys, str(files["net.pth"]), "--mapping", str(mapping), "-o", str(out), "--max-shard-size", "300")
    index = tmp_path / "net.ckpt.index.json"
    shards = sorted(p.name for p in tmp_path.glob("net-*-of-*.ckpt"))
    assert len(shards) > 2 and not out.exists()
    assert f"sharded into {len(shards)} files" in text and str(index) in text
    assert (
        f"verified 12 tensors bit-exact (dtype, shape, CRC-32) with mindspore.load_checkpoint ({len(shards)} shards)"
        in text
    )
    weight_map = json.loads(index.read_text())["weight_map"]
    assert list(weight_map) == list(nets.NET_TO_MINDSPORE)
    merged: dict[str, Any] = {}
    for shard in shards:
        params = ms.load_checkpoint(str(tmp_path / shard))
        assert {weight_map[name] for name in params} == {shard}
        merged.update(params)
    cell = nets.mindspore_net()
    assert ms.load_param_into_net(cell, merged, strict_load=True) == ([], [])
    expected = _torch_output(nets.torch_net(), NET_INPUT)
    np.testing.assert_allclose(_mindspore_output(cell, NET_INPUT), expected, rtol=1e-4, atol=1e-5)
    assert load_checkpoint(index).names == tuple(nets.NET_TO_MINDSPORE)


def test_a_sharded_source_converts_to_sharded_pth_that_torch_loads(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    save_checkpoint(load_checkpoint(files["net.ckpt"]), tmp_path / "src.ckpt", max_shard_size=200)
    mapping = _write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_TORCH))
    out = tmp_path / "pytorch_model.bin.index.json"  # naming the index works too
    source = str(tmp_path / "src.ckpt.index.json")
    options = ["--target", str(files["net.pth"]), "--max-shard-size", "1kB"]  # the template's shapes and order
    _convert(capsys, source, "--mapping", str(mapping), "-o", str(out), *options)
    state: dict[str, Any] = {}
    for shard in sorted(set(json.loads(out.read_text())["weight_map"].values())):
        assert shard.startswith("pytorch_model-")
        state.update(torch.load(tmp_path / shard, weights_only=True))
    module = _load_into_fresh_torch(nets.torch_net, state)
    expected = _mindspore_output(nets.mindspore_net(), NET_INPUT)  # the net net.ckpt was saved from
    np.testing.assert_allclose(_torch_output(module, NET_INPUT), expected, rtol=1e-4, atol=1e-5)


def test_a_sharded_output_is_checked_before_any_work(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    mapping = _write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_MINDSPORE))
    args = ["convert", str(files["net.pth"]), "--mapping", str(mapping), "-o", str(tmp_path / "out.safetensors")]
    assert cli.main([*args, "--max-shard-size", "2 parsecs"]) == 2
    assert "--max-shard-size" in capsys.readouterr().err
    (tmp_path / "out.safetensors.index.json").write_text("{}")
    assert cli.main([*args, "--max-shard-size", "300"]) == 1
    assert "out.safetensors.index.json' already exists; pass --force" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.json", "out.safetensors.index.json"]


def test_progress_bar_is_drawn_on_a_terminal_unless_quiet(files, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import automap.conversion._progress

    monkeypatch.setattr(automap.conversion._progress, "_DELAY", 0.0)
    monkeypatch.setattr(automap.conversion._progress, "_is_terminal", lambda stream: True)
    mapping = _write_json(tmp_path / "flat.json", nets.flat_mapping(nets.NET_TO_MINDSPORE))
    args = ["convert", str(files["net.pth"]), "--mapping", str(mapping)]
    assert cli.main([*args, "-o", str(tmp_path / "a.ckpt")]) == 0
    assert "writing" in capsys.readouterr().err
    assert cli.main([*args, "-o", str(tmp_path / "b.ckpt"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
