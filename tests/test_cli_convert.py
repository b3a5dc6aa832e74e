"""`automap convert` on bad input: each case exits 1 with one clear line and writes nothing.

Also `--like`, which infers the mapping from a template, writes it beside the output and refuses to convert
while pairs need review.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

import _convert_nets as nets  # noqa: E402  # after the skips: it builds networks of both frameworks

from automap import cli  # noqa: E402
from automap.io import load_checkpoint  # noqa: E402
from automap.mapping import load_mapping  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    folder = tmp_path_factory.mktemp("cli-convert")
    paths = {name: folder / name for name in ("net.pth", "net.ckpt", "other.pth")}
    torch.save(nets.torch_net().state_dict(), paths["net.pth"])
    ms.save_checkpoint(nets.mindspore_net(), str(paths["net.ckpt"]))
    other = nets.torch_net().state_dict()
    other["fc.weight"] = torch.zeros(nets.N_OUT + 1, nets.C_CONV1D)  # another model: a wider head
    other["fc.bias"] = torch.zeros(nets.N_OUT + 1)
    torch.save(other, paths["other.pth"])
    return paths


@pytest.fixture
def good_mapping(files: dict[str, Path]) -> dict[str, Any]:
    source, template = load_checkpoint(files["net.pth"]), load_checkpoint(files["net.ckpt"])
    return nets.versioned_mapping(nets.NET_TO_MINDSPORE, source, template)


def _pair(document: dict[str, Any], target: str) -> dict[str, Any]:
    return next(p for p in document["pairs"] if p["target"] == target)


def _fails(capsys: pytest.CaptureFixture[str], folder: Path, args: list[str], expected: str) -> None:
    """Exit 1, exactly one line on stderr containing `expected`, and no file added to `folder`."""
    before = sorted(folder.iterdir())
    code = cli.main(["convert", *args, "--quiet"])
    captured = capsys.readouterr()
    assert code == 1, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("automap: error: ")
    assert expected in lines[0], lines[0]
    assert "Traceback" not in captured.err
    assert sorted(folder.iterdir()) == before


def _mapping_file(tmp_path: Path, document: Any, name: str = "m.json") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return str(path)


def test_malformed_json(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    mapping = _mapping_file(tmp_path, '{"pairs": [')
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(tmp_path / "out.ckpt")]
    _fails(capsys, tmp_path, args, "not valid JSON")


def test_unknown_version(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    good_mapping["version"] = 7
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(tmp_path / "out.ckpt")]
    _fails(capsys, tmp_path, args, "mapping version 7 is not supported")


def test_source_renamed_by_hand_to_a_name_that_does_not_exist(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    _pair(good_mapping, "head.weight")["source"] = "fc.weights"
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(tmp_path / "out.ckpt")]
    _fails(capsys, tmp_path, args, "target 'head.weight': source 'fc.weights' not in")


def test_source_edited_to_one_of_another_shape(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    _pair(good_mapping, "head.bias")["source"] = "ln.bias"  # [6] where the target needs [5]
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(tmp_path / "out.ckpt")]
    _fails(
        capsys, tmp_path, args, "'head.bias': source 'ln.bias' [6] gives [6] with no transform, the target needs [5]"
    )


def test_source_used_twice(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    _pair(good_mapping, "stem.bn.beta")["source"] = "bn.weight"
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(tmp_path / "out.ckpt")]
    _fails(capsys, tmp_path, args, "source 'bn.weight' feeds 2 targets ('stem.bn.gamma', 'stem.bn.beta')")


def test_not_the_checkpoint_the_mapping_was_made_from(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(files["other.pth"]), "--mapping", mapping, "-o", str(tmp_path / "out.ckpt")]
    _fails(capsys, tmp_path, args, "is not the source checkpoint the mapping was made from")


def test_existing_output_is_kept(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.ckpt"
    out.write_bytes(b"precious")
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(out)]
    _fails(capsys, tmp_path, args, "already exists; pass --force")
    assert out.read_bytes() == b"precious"
    assert cli.main(["convert", *args, "--force", "--quiet"]) == 0
    assert list(ms.load_checkpoint(str(out))) == list(nets.NET_TO_MINDSPORE)


def test_missing_targets_fail_unless_allowed(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    flat = nets.flat_mapping(nets.NET_TO_MINDSPORE)
    del flat["norm.gamma"], flat["norm.beta"]
    mapping = _mapping_file(tmp_path, flat)
    out = tmp_path / "out.ckpt"
    args = [str(files["net.pth"]), "--mapping", mapping, "--target", str(files["net.ckpt"]), "-o", str(out)]
    _fails(capsys, tmp_path, args, "2 target parameters have no source: 'norm.gamma', 'norm.beta'")
    assert cli.main(["convert", *args, "--allow-missing", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "LEFT OUT (--allow-missing): norm.gamma, norm.beta" in captured.out
    assert "norm.gamma" not in ms.load_checkpoint(str(out))


def test_impossible_transform(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    _pair(good_mapping, "mixer.weight")["transform"] = [{"op": "squeeze", "axis": 1}]
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(tmp_path / "out.ckpt")]
    _fails(capsys, tmp_path, args, "cannot squeeze axis 1 of length 4")


def test_unknown_transform_step(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    _pair(good_mapping, "mixer.weight")["transform"] = [{"op": "rotate"}]
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(tmp_path / "out.ckpt")]
    _fails(capsys, tmp_path, args, "unknown step")


def test_output_over_the_source(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "net.ckpt"
    copy.write_bytes(files["net.ckpt"].read_bytes())
    mapping = _mapping_file(tmp_path, {name: name for name in nets.NET_TO_MINDSPORE})
    args = [str(copy), "--mapping", mapping, "-o", str(copy), "--force"]
    _fails(capsys, tmp_path, args, "is the source checkpoint")


def test_output_without_a_checkpoint_suffix(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(tmp_path / "out.json")]
    _fails(capsys, tmp_path, args, "name the output .ckpt (MindSpore), .pth (PyTorch) or .safetensors")


def test_missing_source_file(files, tmp_path, capsys, good_mapping) -> None:  # type: ignore[no-untyped-def]
    mapping = _mapping_file(tmp_path, good_mapping)
    args = [str(tmp_path / "nope.pth"), "--mapping", mapping, "-o", str(tmp_path / "out.ckpt")]
    _fails(capsys, tmp_path, args, "no such file")


# --- --like: the mapping inferred from a template ---------------------------------------------------------------


def test_like_infers_writes_the_mapping_and_converts(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "model.ckpt"
    code = cli.main(["convert", str(files["net.pth"]), "--like", str(files["net.ckpt"]), "-o", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "verified 12 tensors bit-exact" in captured.out
    mapping = load_mapping(tmp_path / "model.ckpt.mapping.json")
    assert {p.target: p.source for p in mapping.pairs} == nets.flat_mapping(nets.NET_TO_MINDSPORE)
    cell = nets.mindspore_net()
    assert ms.load_param_into_net(cell, ms.load_checkpoint(str(out)), strict_load=True) == ([], [])
    x = np.random.default_rng(0).standard_normal((2, nets.C_IN, 5, 5)).astype(np.float32)
    with torch.no_grad():
        expected = nets.torch_net()(torch.from_numpy(x)).numpy()
    cell.set_train(False)
    np.testing.assert_allclose(cell(ms.Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5)


def _template_with_an_extra_parameter(files: dict[str, Path], folder: Path) -> Path:
    """The MindSpore net's listing plus a parameter the torch model cannot supply."""
    table = load_checkpoint(files["net.ckpt"])
    listing = [{"name": r.name, "shape": list(r.shape), "dtype": r.dtype} for r in table.params]
    listing.append({"name": "extra.scale", "shape": [7, 7, 7], "dtype": "float32"})
    path = folder / "template.json"
    path.write_text(
        json.dumps({"format": "automap.listing", "version": 1, "framework": "mindspore", "params": listing})
    )
    return path


def test_like_refuses_while_pairs_need_review_and_says_how_to_proceed(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    template = _template_with_an_extra_parameter(files, tmp_path)
    out = tmp_path / "model.ckpt"
    code = cli.main(["convert", str(files["net.pth"]), "--like", str(template), "-o", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert not out.exists()
    assert (tmp_path / "model.ckpt.mapping.json").exists()  # kept for review
    assert "refusing to convert: 1 of 13 pairs" in captured.err
    assert "extra.scale  <- (no source)" in captured.err
    assert f"automap audit {tmp_path / 'model.ckpt.mapping.json'}" in captured.err
    assert "--accept-low-confidence" in captured.err

    args = [str(files["net.pth"]), "--like", str(template), "-o", str(out), "--quiet"]
    code = cli.main(["convert", *args, "--accept-low-confidence", "--allow-missing"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "LEFT OUT (--allow-missing): extra.scale" in captured.out
    assert "extra.scale" not in ms.load_checkpoint(str(out))


def test_like_keeps_the_pairs_a_person_reviewed(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    template = _template_with_an_extra_parameter(files, tmp_path)
    out = tmp_path / "model.ckpt"
    args = ["convert", str(files["net.pth"]), "--like", str(template), "-o", str(out), "--quiet"]
    assert cli.main(args) == 1
    mapping_path = tmp_path / "model.ckpt.mapping.json"
    assert cli.main(["audit", str(mapping_path), "--accept", "head.bias"]) == 0
    capsys.readouterr()
    assert cli.main(args) == 1  # extra.scale still has no source
    assert "keeping 1 reviewed pairs" in capsys.readouterr().out
    pair = load_mapping(mapping_path).pair_for("head.bias")
    assert pair is not None and pair.pinned and pair.source == "fc.bias"


def test_like_refuses_to_replace_another_conversions_mapping(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "model.ckpt"
    (tmp_path / "model.ckpt.mapping.json").write_text(json.dumps({"a": "b"}))
    args = [str(files["net.pth"]), "--like", str(files["net.ckpt"]), "-o", str(out)]
    _fails(capsys, tmp_path, args, "exists and belongs to another conversion; pass --force")


# --- a flat mapping knows nothing of the target: the output says so --------------------------------------------


def test_a_flat_mapping_without_a_target_is_not_reported_as_verified(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The flat form drops Conv1d's unsqueeze; without the target nothing can tell, and the output must say so."""
    mapping = _mapping_file(tmp_path, nets.flat_mapping(nets.NET_TO_MINDSPORE))
    out = tmp_path / "out.ckpt"
    assert cli.main(["convert", str(files["net.pth"]), "--mapping", mapping, "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert tuple(ms.load_checkpoint(str(out))["mixer.weight"].shape) == (6, 4, 3)  # not what the port needs
    assert "verified 12 tensors" not in text
    assert "read back 12 tensors bit-exact" in text
    assert "WARNING: NOT verified against the target model" in text and "--target TEMPLATE" in text
    # with the target, the same file is checked and converted right
    args = ["--target", str(files["net.ckpt"]), "--force", "--quiet"]
    assert cli.main(["convert", str(files["net.pth"]), "--mapping", mapping, "-o", str(out), *args]) == 0
    text = capsys.readouterr().out
    assert "verified 12 tensors bit-exact" in text and "NOT verified" not in text
    assert tuple(ms.load_checkpoint(str(out))["mixer.weight"].shape) == (6, 4, 1, 3)


# --- swapped arguments ------------------------------------------------------------------------------------------


def test_swapped_source_and_template_are_caught_before_anything_is_written(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = [str(files["net.ckpt"]), "--like", str(files["net.pth"]), "-o", str(tmp_path / "model.ckpt")]
    swap = f"did you swap them? automap convert {files['net.pth']} --like {files['net.ckpt']}"
    _fails(capsys, tmp_path, args, swap)
    # the advice other refusals give does not get past it
    _fails(capsys, tmp_path, [*args, "--allow-missing", "--accept-low-confidence"], swap)
    # nor does a given mapping with the target named
    mapping = _mapping_file(tmp_path, {"a": "b"})
    out = str(tmp_path / "model.ckpt")
    args = [str(files["net.ckpt"]), "--mapping", mapping, "--target", str(files["net.pth"]), "-o", out]
    _fails(capsys, tmp_path, args, f"the output {out!r} is a MindSpore checkpoint, but the target")


def test_a_listing_as_the_source_is_caught_before_inference(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    listing = tmp_path / "template.json"
    assert cli.main(["inspect", str(files["net.ckpt"]), "--json"]) == 0
    listing.write_text(capsys.readouterr().out, encoding="utf-8")
    args = [str(listing), "--like", str(files["net.pth"]), "-o", str(tmp_path / "model.pth")]
    _fails(capsys, tmp_path, args, "is a listing of names and shapes, with no tensor data to convert")


# --- --accept-low-confidence is as loud as --allow-missing ------------------------------------------------------


def test_accepting_low_confidence_says_what_was_accepted_and_where_the_list_is(  # type: ignore[no-untyped-def]
    files, tmp_path, capsys, good_mapping
) -> None:
    _pair(good_mapping, "norm.gamma")["confidence"] = 0.3
    _pair(good_mapping, "norm.beta")["confidence"] = 0.2
    mapping = _mapping_file(tmp_path, good_mapping)
    out = tmp_path / "out.ckpt"
    args = [str(files["net.pth"]), "--mapping", mapping, "-o", str(out), "--accept-low-confidence", "--quiet"]
    assert cli.main(["convert", *args]) == 0
    text = capsys.readouterr().out
    assert (
        "WARNING: 2 pairs below the confidence threshold 0.5 were converted UNREVIEWED (--accept-low-confidence): "
        "norm.gamma <- ln.weight (0.30), norm.beta <- ln.bias (0.20)"
    ) in text
    assert f"automap audit {mapping}" in text


# --- a hand-edited mapping survives a re-run of convert --like ---------------------------------------------------


def test_like_keeps_pairs_edited_by_hand(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "model.ckpt"
    mapping_path = tmp_path / "model.ckpt.mapping.json"
    args = ["convert", str(files["net.pth"]), "--like", str(files["net.ckpt"]), "-o", str(out), "--quiet"]
    assert cli.main(args) == 0
    assert cli.main([*args, "--force"]) == 0  # an unedited re-run keeps nothing as reviewed
    assert "edited by hand" not in capsys.readouterr().out
    assert not any(p.pinned for p in load_mapping(mapping_path).pairs)
    # a person swaps the LayerNorm's two tensors by hand, without marking anything
    document = json.loads(mapping_path.read_text(encoding="utf-8"))
    _pair(document, "norm.gamma")["source"] = "ln.bias"
    _pair(document, "norm.beta")["source"] = "ln.weight"
    mapping_path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    # then marks another pair reviewed: automap rewrites the file, and the edits must still count as edits
    assert cli.main(["audit", str(mapping_path), "--accept", "head.bias"]) == 0
    assert cli.main([*args, "--force"]) == 0
    text = capsys.readouterr().out
    assert "keeping 1 reviewed pairs" in text
    assert f"keeping 2 pairs edited by hand in {mapping_path} (now marked reviewed):" in text
    assert "norm.gamma <- ln.bias" in text
    kept = load_mapping(mapping_path)
    for target, source in (("norm.gamma", "ln.bias"), ("norm.beta", "ln.weight")):
        pair = kept.pair_for(target)
        assert pair is not None and (pair.source, pair.pinned) == (source, True)
    written = ms.load_checkpoint(str(out))
    state = torch.load(files["net.pth"], weights_only=True)
    np.testing.assert_array_equal(written["norm.gamma"].asnumpy(), state["ln.bias"].numpy())


def test_like_refuses_a_differing_mapping_that_does_not_say_what_automap_wrote(  # type: ignore[no-untyped-def]
    files, tmp_path, capsys, good_mapping
) -> None:
    """A file without the digest (an older automap's, or written by hand): edits cannot be told from drift."""
    _pair(good_mapping, "norm.gamma")["source"] = "ln.bias"
    _pair(good_mapping, "norm.beta")["source"] = "ln.weight"
    mapping_path = tmp_path / "model.ckpt.mapping.json"
    mapping_path.write_text(json.dumps(good_mapping), encoding="utf-8")
    before = mapping_path.read_bytes()
    args = [str(files["net.pth"]), "--like", str(files["net.ckpt"]), "-o", str(tmp_path / "model.ckpt")]
    _fails(capsys, tmp_path, args, "differs from what automap infers in 2 pairs (norm.gamma <- ln.bias")
    assert mapping_path.read_bytes() == before
    assert cli.main(["convert", *args, "--force", "--quiet"]) == 0  # --force replaces it
    assert load_mapping(mapping_path).pair_for("norm.gamma").source == "ln.weight"  # type: ignore[union-attr]


# --- outputs are checked before inference, and fail in one line ---------------------------------------------------


def test_an_output_that_cannot_be_written_fails_before_inference(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    like = [str(files["net.pth"]), "--like", str(files["net.ckpt"])]
    mapping = ["--save-mapping", str(tmp_path / "m.json")]
    _fails(capsys, tmp_path, [*like, "-o", "/proc/automap-out.ckpt", *mapping], "cannot write '/proc/automap-out.ckpt'")
    elsewhere = ["--save-mapping", "/proc/m.json"]
    _fails(capsys, tmp_path, [*like, "-o", str(tmp_path / "out.ckpt"), *elsewhere], "cannot write '/proc/m.json'")
    _fails(capsys, tmp_path, [*like, "-o", str(tmp_path / "out.json")], "name the output .ckpt (MindSpore)")
    (tmp_path / "file.txt").write_text("a file", encoding="utf-8")
    _fails(capsys, tmp_path, [*like, "-o", str(tmp_path / "file.txt" / "out.ckpt")], "is not a folder")
    (tmp_path / "out.ckpt.mapping.json").mkdir()
    _fails(capsys, tmp_path, [*like, "-o", str(tmp_path / "out.ckpt")], "is a directory")


def test_the_mapping_may_not_replace_the_source(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "net.pth"
    source.write_bytes(files["net.pth"].read_bytes())
    args = [str(source), "--like", str(files["net.ckpt"]), "-o", str(tmp_path / "out.ckpt"), "--force"]
    _fails(capsys, tmp_path, [*args, "--save-mapping", str(source)], "is the source checkpoint")
    assert source.read_bytes() == files["net.pth"].read_bytes()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_fails_in_one_line(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        args = [str(files["net.pth"]), "--like", str(files["net.ckpt"]), "-o", str(folder / "out.ckpt")]
        _fails(capsys, tmp_path, args, "cannot write")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


# --- a template of another dtype -----------------------------------------------------------------------------------


def test_a_float16_template_says_the_output_dtype_and_how_to_follow_it(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    table = load_checkpoint(files["net.ckpt"])
    listing = [{"name": r.name, "shape": list(r.shape), "dtype": "float16"} for r in table.params]
    template = tmp_path / "half.json"
    document = {"format": "automap.listing", "version": 1, "framework": "mindspore", "params": listing}
    template.write_text(json.dumps(document), encoding="utf-8")
    out = tmp_path / "out.ckpt"
    args = ["convert", str(files["net.pth"]), "--like", str(template), "-o", str(out), "--quiet"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert (
        "note: the output keeps the source's dtypes: 12 tensors are float32 where the template has float16; "
        "pass --dtype float16 to follow the template"
    ) in text
    assert ms.load_checkpoint(str(out))["norm.gamma"].dtype == ms.float32
    assert cli.main([*args, "--force", "--dtype", "float16"]) == 0
    assert "pass --dtype" not in capsys.readouterr().out
    assert ms.load_checkpoint(str(out))["norm.gamma"].dtype == ms.float16
