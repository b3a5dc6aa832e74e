"""`automap infer` end to end on real checkpoints of a PyTorch net and its MindSpore port, both directions.

The two nets compute the same function but name things their own way: `features.1.weight` vs `gamma`,
`running_mean` vs `moving_mean`, `linear` vs `dense`, `head` vs `classifier`, and a Conv1d weight that is 3-D in
PyTorch and 4-D in MindSpore. The inferred mapping must be the hand-written one below, and converting with it
must give a MindSpore net that computes what the PyTorch net computes (and back).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

from automap import cli  # noqa: E402
from automap.mapping import load_mapping  # noqa: E402

C_IN, C_MID, C_MIX, N_OUT = 3, 4, 6, 5

# {MindSpore name: (PyTorch name, transform)} in MindSpore's order: the ground truth, written by hand.
TO_MINDSPORE: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "features.0.weight": ("features.0.weight", []),
    "features.0.bias": ("features.0.bias", []),
    "features.1.moving_mean": ("features.1.running_mean", []),
    "features.1.moving_variance": ("features.1.running_var", []),
    "features.1.gamma": ("features.1.weight", []),
    "features.1.beta": ("features.1.bias", []),
    "mixer.weight": ("mixer.weight", [{"op": "unsqueeze", "axis": 2}]),
    "mixer.bias": ("mixer.bias", []),
    "norm.gamma": ("norm.weight", []),
    "norm.beta": ("norm.bias", []),
    "dense.weight": ("linear.weight", []),
    "dense.bias": ("linear.bias", []),
    "classifier.weight": ("head.weight", []),
    "classifier.bias": ("head.bias", []),
}
# {PyTorch name: (MindSpore name, transform)}; torch's num_batches_tracked has no MindSpore counterpart.
TO_TORCH: dict[str, tuple[str | None, list[dict[str, Any]]]] = {
    torch_name: (ms_name, [{"op": "squeeze", "axis": 2}] if steps else [])
    for ms_name, (torch_name, steps) in TO_MINDSPORE.items()
} | {"features.1.num_batches_tracked": (None, [])}

X = np.random.default_rng(0).standard_normal((2, C_IN, 5, 5)).astype(np.float32)


def torch_net() -> Any:
    from torch import nn

    class TorchClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(C_IN, C_MID, 3, padding=1), nn.BatchNorm2d(C_MID), nn.ReLU())
            self.mixer = nn.Conv1d(C_MID, C_MIX, 3, padding=1)
            self.norm = nn.LayerNorm(C_MIX)
            self.linear = nn.Linear(C_MIX, C_MIX)
            self.head = nn.Linear(C_MIX, N_OUT)

        def forward(self, x: Any) -> Any:
            x = self.features(x)
            x = self.mixer(x.flatten(2)).mean(dim=2)
            return self.head(torch.relu(self.linear(self.norm(x))))

    torch.manual_seed(0)
    module = TorchClassifier()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # no 0/1 defaults left: every value tells its tensor apart
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator) * 0.2
                tensor.copy_((tensor + noise).abs() + 0.5 if name.endswith("running_var") else tensor + noise)
    return module.eval()


def mindspore_net() -> Any:
    from mindspore import nn, ops

    class MsClassifier(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            conv = nn.Conv2d(C_IN, C_MID, 3, pad_mode="pad", padding=1, has_bias=True)
            self.features = nn.SequentialCell([conv, nn.BatchNorm2d(C_MID), nn.ReLU()])
            self.mixer = nn.Conv1d(C_MID, C_MIX, 3, pad_mode="pad", padding=1, has_bias=True)
            self.norm = nn.LayerNorm((C_MIX,), epsilon=1e-5)
            self.dense = nn.Dense(C_MIX, C_MIX)
            self.classifier = nn.Dense(C_MIX, N_OUT)

        def construct(self, x: Any) -> Any:
            x = self.features(x)
            x = self.mixer(x.reshape(x.shape[0], x.shape[1], -1)).mean(axis=2)
            return self.classifier(ops.relu(self.dense(self.norm(x))))

    cell = MsClassifier()
    rng = np.random.default_rng(3)
    for name, param in cell.parameters_and_names():
        values = rng.standard_normal(param.shape).astype(np.float32) * 0.3
        param.set_data(ms.Tensor(np.abs(values) + 0.5 if name.endswith("moving_variance") else values))
    cell.set_train(False)
    return cell


def _torch_output(module: Any) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(X)).numpy()


def _mindspore_output(cell: Any) -> np.ndarray:
    cell.set_train(False)
    return cell(ms.Tensor(X)).asnumpy()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """net.pth written by torch.save, net.ckpt by mindspore.save_checkpoint."""
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    folder = tmp_path_factory.mktemp("cli-infer")
    paths = {"pth": folder / "net.pth", "ckpt": folder / "net.ckpt"}
    torch.save(torch_net().state_dict(), paths["pth"])
    ms.save_checkpoint(mindspore_net(), str(paths["ckpt"]))
    assert list(ms.load_checkpoint(str(paths["ckpt"]))) == list(TO_MINDSPORE)  # the port's own order
    return paths


def _infer(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> str:
    code = cli.main(["infer", *args])
    captured = capsys.readouterr()
    assert code == expect, captured.err
    assert "Traceback" not in captured.err
    return captured.out


def _count(summary: str, row: str) -> int:
    found = re.search(rf"^{re.escape(row)}\s+(\d+)$", summary, re.MULTILINE)
    assert found is not None, summary
    return int(found.group(1))


def _pairs(path: Path) -> dict[str, tuple[object, list[dict[str, Any]]]]:
    mapping = load_mapping(path)
    return {p.target: (p.source, [s.to_json() for s in p.transform]) for p in mapping.pairs}


# --- PyTorch -> MindSpore ------------------------------------------------------------------------------------


def test_infer_to_mindspore_writes_the_right_mapping(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "m.json"
    summary = _infer(capsys, str(files["pth"]), str(files["ckpt"]), "-o", str(out))
    assert f"source: {files['pth']} (pytorch, 15 parameters)" in summary
    assert f"target: {files['ckpt']} (mindspore, 14 parameters)" in summary
    assert _count(summary, "pairs") == 14
    doubtful = [p.target for p in load_mapping(out).doubtful]
    assert _count(summary, "  confident (>= 0.90)") == 14 - len(doubtful)
    assert _count(summary, "  need review (< 0.90)") == len(doubtful)
    assert _count(summary, "  with a layout transform") == 1
    assert _count(summary, "unmatched target parameters") == 0
    assert _count(summary, "unmatched source parameters") == 1
    assert "unmatched source: features.1.num_batches_tracked" in summary
    assert f"mapping written to {out}" in summary
    # the BatchNorm names and the numbered layers settle every pair: nothing is left in doubt, all are right
    inferred = _pairs(out)
    assert doubtful == []
    assert inferred == TO_MINDSPORE
    # tensors of a shape nothing else has are never in doubt, so the check above is never vacuous
    assert not {"features.0.weight", "mixer.weight", "dense.weight", "classifier.weight"} & set(doubtful)
    review = summary.split("needs review: ")[-1]
    assert all(target in review for target in doubtful)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_review_then_convert_computes_the_same(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    """The whole workflow: infer, a person corrects and pins what was flagged, infer again with --pin, convert."""
    first, reviewed, out = tmp_path / "m.json", tmp_path / "reviewed.json", tmp_path / "converted.ckpt"
    _infer(capsys, str(files["pth"]), str(files["ckpt"]), "-o", str(first))
    document = json.loads(first.read_text(encoding="utf-8"))
    for pair in document["pairs"]:
        if pair["confidence"] < document["threshold"]:  # what the summary asked a person to review
            pair["source"], pair["transform"], pair["pinned"] = *TO_MINDSPORE[pair["target"]], True
    first.write_text(json.dumps(document), encoding="utf-8")
    _infer(capsys, str(files["pth"]), str(files["ckpt"]), "-o", str(reviewed), "--pin", str(first), "--strict")
    # no --accept-low-confidence: after review nothing is left below the threshold
    args = ["--target", str(files["ckpt"]), "-o", str(out), "--quiet"]
    code = cli.main(["convert", str(files["pth"]), "--mapping", str(reviewed), *args])
    assert code == 0, capsys.readouterr().err
    cell = mindspore_net()  # fresh weights, all replaced from the converted file
    not_loaded, unused = ms.load_param_into_net(cell, ms.load_checkpoint(str(out)), strict_load=True)
    assert not_loaded == [] and unused == []
    np.testing.assert_allclose(_mindspore_output(cell), _torch_output(torch_net()), rtol=1e-4, atol=1e-5)


# --- MindSpore -> PyTorch ------------------------------------------------------------------------------------


def test_infer_to_pytorch_and_strict_flags_the_counter_without_a_source(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    args = [str(files["ckpt"]), str(files["pth"]), "-o", str(out)]
    summary = _infer(capsys, *args)
    assert _count(summary, "pairs") == 14
    assert _count(summary, "unmatched target parameters") == 1
    assert _count(summary, "unmatched source parameters") == 0
    assert "features.1.num_batches_tracked" in summary.split("needs review: ")[1]
    assert _pairs(out) == {t: (s, steps) for t, (s, steps) in TO_TORCH.items()}
    # the same run with --strict: something needs review, so exit 3 (and the file is still written)
    _infer(capsys, *args, "--force", "--strict", expect=3)
    assert out.exists()


def test_converting_back_with_the_inferred_mapping_computes_the_same(files, tmp_path, capsys, mindspore_cpu) -> None:  # type: ignore[no-untyped-def]
    mapping, out = tmp_path / "r.json", tmp_path / "converted.pth"
    _infer(capsys, str(files["ckpt"]), str(files["pth"]), "-o", str(mapping))
    args = ["--target", str(files["pth"]), "-o", str(out), "--quiet"]
    code = cli.main(["convert", str(files["ckpt"]), "--mapping", str(mapping), *args])
    assert code == 0, capsys.readouterr().err
    module = torch_net()
    module.load_state_dict(torch.load(out, weights_only=True), strict=True)
    np.testing.assert_allclose(_torch_output(module), _mindspore_output(mindspore_net()), rtol=1e-4, atol=1e-5)


# --- options -------------------------------------------------------------------------------------------------


def test_existing_output_is_refused_without_force(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "m.json"
    out.write_text("{}", encoding="utf-8")
    code = cli.main(["infer", str(files["pth"]), str(files["ckpt"]), "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.splitlines() == [
        f"automap: error: output {str(out)!r} already exists; pass --force to overwrite it"
    ]
    assert captured.out == ""
    assert out.read_text(encoding="utf-8") == "{}"
    _infer(capsys, str(files["pth"]), str(files["ckpt"]), "-o", str(out), "--force")
    assert len(load_mapping(out).pairs) == 14


def test_an_existing_flat_output_is_refused_too(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m.flat.json").write_text("{}", encoding="utf-8")
    code = cli.main(["infer", str(files["pth"]), str(files["ckpt"]), "-o", str(tmp_path / "m.json"), "--flat"])
    assert code == 1
    assert "m.flat.json" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()  # nothing written when any output is refused


@pytest.mark.parametrize(
    ("args", "problem"),
    [(["--threshold", "1.5"], "--threshold must be between 0 and 1"), (["--flat"], "--flat needs a file name")],
)
def test_bad_options_fail_with_one_line(files, capsys, args, problem) -> None:  # type: ignore[no-untyped-def]
    code = cli.main(["infer", str(files["pth"]), str(files["ckpt"]), *args])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and problem in err


def test_pinned_edits_survive_a_rerun(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    first, second = tmp_path / "m.json", tmp_path / "again.json"
    _infer(capsys, str(files["pth"]), str(files["ckpt"]), "-o", str(first))
    # a person edits two pairs by hand (contrary to what inference chose) and pins them
    document = json.loads(first.read_text(encoding="utf-8"))
    edits = {"dense.bias": "norm.bias", "norm.beta": "linear.bias"}
    for pair in document["pairs"]:
        if pair["target"] in edits:
            pair["source"], pair["pinned"] = edits[pair["target"]], True
    first.write_text(json.dumps(document, indent=1), encoding="utf-8")
    summary = _infer(capsys, str(files["pth"]), str(files["ckpt"]), "-o", str(second), "--pin", str(first))
    assert _count(summary, "pairs") == 14
    again = load_mapping(second)
    for target, source in edits.items():
        pair = again.pair_for(target)
        assert pair is not None and (pair.source, pair.pinned, pair.confidence) == (source, True, 1.0)
    # the rest re-solved around the pins: right, or flagged for review
    doubtful = {p.target for p in again.doubtful}
    rest = {t: v for t, v in TO_MINDSPORE.items() if t not in edits and t not in doubtful}
    assert {t: v for t, v in _pairs(second).items() if t in rest} == rest
    assert {"features.0.weight", "mixer.weight", "dense.weight", "classifier.weight", "classifier.bias"} <= set(rest)


# --- the flat form: written only when it loses nothing ---------------------------------------------------------


def test_flat_is_refused_when_a_pair_needs_a_transform(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Conv1d's weight needs an unsqueeze, which a flat {target: source} file cannot carry: nothing is written."""
    code = cli.main(["infer", str(files["pth"]), str(files["ckpt"]), "-o", str(tmp_path / "m.json"), "--flat"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert "a flat {target: source} file cannot carry" in err
    assert "'mixer.weight' (unsqueeze(axis 2))" in err
    assert "the versioned mapping" in err
    assert list(tmp_path.iterdir()) == []


def test_flat_is_written_when_every_pair_is_plain_and_confident(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    flat = tmp_path / "m.flat.json"
    _infer(capsys, str(files["pth"]), str(files["pth"]), "-o", str(tmp_path / "m.json"), "--flat")
    names = list(torch.load(files["pth"], weights_only=True))
    assert json.loads(flat.read_text(encoding="utf-8")) == {n: n for n in names}


# --- the summary: where the mapping goes, counts that agree, labelled columns, what to do next -----------------


def test_without_output_it_says_where_the_mapping_would_go_and_what_next(files, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    summary = _infer(capsys, str(files["ckpt"]), str(files["pth"]))
    assert list(tmp_path.iterdir()) == []
    assert (
        f"the mapping was not written (no -o): automap infer {files['ckpt']} {files['pth']} -o mapping.json"
    ) in summary
    assert summary.strip().splitlines()[-1].startswith("Next: ")
    # the counts agree with the list below them
    review = summary.split("needs review: ")[1]
    header = review.splitlines()[1]
    rows = review.splitlines()[2:]
    rows = rows[: next((i for i, r in enumerate(rows) if not r.strip()), len(rows))]
    assert _count(summary, "needs review, listed below") == len(rows) == 1
    assert review.startswith("1 target (0 pairs below the threshold, 1 target without a source)")
    # every column has a label
    assert re.split(r"\s{2,}", header.strip()) == ["target", "source", "confidence", "times", "best alternative", "why"]


def test_with_output_the_next_step_names_the_files(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "m.json"
    summary = _infer(capsys, str(files["pth"]), str(files["ckpt"]), "-o", str(out))
    last = summary.strip().splitlines()[-1]
    assert last == (f"Next: automap convert {files['pth']} --mapping {out} --target {files['ckpt']} -o OUTPUT.ckpt"), (
        last
    )


def test_outputs_are_checked_before_inference(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    def refused(args: list[str], message: str) -> None:
        code = cli.main(["infer", *args])
        captured = capsys.readouterr()
        assert code == 1, captured
        assert captured.out == ""  # nothing inferred
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], captured.err

    both = [str(files["pth"]), str(files["ckpt"])]
    folder = tmp_path / "m.json"
    folder.mkdir()
    refused([*both, "-o", str(folder), "--force"], "is a directory")
    refused([*both, "-o", str(folder)], "is a directory")
    refused([*both, "-o", "/proc/automap-m.json"], "cannot write '/proc/automap-m.json'")
    refused([*both, "-o", str(tmp_path / "n.json"), "--html", "/proc/automap-r.html"], "/proc/automap-r.html")
    source = tmp_path / "net.pth"
    source.write_bytes(files["pth"].read_bytes())
    refused([str(source), str(files["ckpt"]), "-o", str(source), "--force"], "is the source checkpoint")
    assert source.read_bytes() == files["pth"].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "net.pth"]


def test_a_flat_file_given_to_pin_is_pinned_as_given(files, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A flat file records no review, but naming it with --pin is a person's statement: its pairs are kept."""
    flat, out = tmp_path / "edits.json", tmp_path / "m.json"
    edits = {"dense.bias": "norm.bias", "norm.beta": "linear.bias"}
    flat.write_text(json.dumps(edits), encoding="utf-8")
    summary = _infer(capsys, str(files["pth"]), str(files["ckpt"]), "-o", str(out), "--pin", str(flat))
    assert f"--pin {flat}: a flat mapping records no review; pinning all 2 of its pairs as given" in summary
    again = load_mapping(out)
    for target, source in edits.items():
        pair = again.pair_for(target)
        assert pair is not None and (pair.source, pair.pinned) == (source, True)


def _tie_files(folder: Path) -> tuple[Path, Path]:
    """One [8] target halfway between two [8] sources, no name in common: a doubt the engine holds for review."""
    rng = np.random.default_rng(0)
    source = {
        name: torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        for name, shape in (("foo", (8,)), ("other", (3,)), ("bar", (8,)))
    }
    torch.save(source, folder / "tie.pth")
    target = [
        {"name": name, "data": ms.Tensor(np.zeros(shape, np.float32))}
        for name, shape in (("first", (5,)), ("baz", (8,)), ("last", (7,)))
    ]
    ms.save_checkpoint(target, str(folder / "tie.ckpt"))
    return folder / "tie.pth", folder / "tie.ckpt"


def test_a_threshold_below_the_default_that_passes_doubts_is_said_loudly(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    source, target = _tie_files(tmp_path)
    assert cli.main(["infer", str(source), str(target)]) == 0
    default = capsys.readouterr()
    assert "need review (< 0.90)" in default.out and "WARNING" not in default.err
    # a script written when 0.5 was the default: the tie (0.86) now passes it, and the command says so
    assert cli.main(["infer", str(source), str(target), "--threshold", "0.5"]) == 0
    lowered = capsys.readouterr()
    assert "WARNING: --threshold 0.5 is below the default 0.9: 1 pair that automap would flag" in lowered.err
    assert "1 pair that automap would flag for review counts as confident here: baz (0.86)" in lowered.err
    out = tmp_path / "out.ckpt"
    cli.main(["convert", str(source), "--like", str(target), "-o", str(out), "--threshold", "0.5"])
    assert "WARNING: --threshold 0.5 is below the default 0.9" in capsys.readouterr().err
