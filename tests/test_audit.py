"""`automap audit`: doubtful pairs first with their evidence, then unmatched parameters, then a summary;
--strict exit codes; --accept rewrites the mapping atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from automap import cli
from automap._decisions import DecidedBy
from automap._errors import MappingFileError
from automap.mapping import load_mapping, mapping_from_json
from automap.report.audit import accept, audit

_ENDPOINTS = {
    "source": {"path": "model.pth", "framework": "pytorch", "params": 7, "fingerprint": ""},
    "target": {"path": "template.ckpt", "framework": "mindspore", "params": 6, "fingerprint": ""},
}


def _pair(target: str, source: Any, confidence: float, **extra: Any) -> dict[str, Any]:
    shape = None if source is None else [4]
    pair = {"target": target, "source": source, "confidence": confidence, "target_shape": [4], "source_shape": shape}
    return pair | extra


def _document() -> dict[str, Any]:
    return {
        "format": "automap.mapping",
        "version": 1,
        **_ENDPOINTS,
        "threshold": 0.5,
        "pairs": [
            _pair("stem.conv.bias", "conv.bias", 0.99),
            _pair(
                "stem.bn.gamma",
                "bn.weight",
                0.31,
                evidence={"shape": 1.0, "leaf": 0.12, "decided_by": "shape and position"},
                alternatives=[{"source": "bn.bias", "confidence": 0.29}],
            ),
            _pair("stem.bn.beta", "bn.bias", 0.08, alternatives=[{"source": "bn.weight", "confidence": 0.07}]),
            _pair("norm.gamma", "ln.weight", 0.2, pinned=True),
            _pair("head.extra", None, 0.0, evidence={"note": "no source tensor fits well enough"}),
            _pair("norm.beta", "ln.bias", 0.95),
        ],
        "unmatched_source": ["bn.running_mean", "fc.weight"],
    }


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(_document(), indent=1), encoding="utf-8")
    return path


def test_report_is_data_in_review_order() -> None:
    report = audit(mapping_from_json(_document()))
    assert [p.target for p in report.doubtful] == ["stem.bn.beta", "stem.bn.gamma"]  # most doubtful first
    assert [p.target for p in report.unmatched_targets] == ["head.extra"]
    assert report.unmatched_sources == ("bn.running_mean", "fc.weight")
    assert (report.confident, report.pinned) == (2, 1)
    assert report.needs_review


def test_rendering_order_and_evidence(mapping_file, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["audit", str(mapping_file)]) == 0
    out = capsys.readouterr().out
    positions = [
        out.index("Doubtful pairs (2)"),
        out.index("[1] stem.bn.beta"),
        out.index("[2] stem.bn.gamma"),
        out.index("Targets without a source (1)"),
        out.index("Source parameters not used (2)"),
        out.index("Summary:"),
    ]
    assert positions == sorted(positions)
    assert "<- bn.weight  [4]" in out
    assert "confidence 0.31" in out
    assert "evidence: shape 1.00, leaf 0.12; decided_by: shape and position" in out
    assert "alternatives: bn.bias 0.29" in out
    assert "(target #1 of 6)" in out
    assert "norm.gamma" not in out.split("Targets without a source")[0]  # pinned: reviewed, not doubtful
    assert "6 pairs: 2 confident, 1 reviewed (pinned), 2 doubtful (below 0.50)" in out


def test_strict_exits_3_while_anything_needs_review(mapping_file, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["audit", str(mapping_file), "--strict"]) == 3
    clean = _document()
    clean["pairs"] = [p for p in clean["pairs"] if p["confidence"] >= 0.5 or p.get("pinned")]
    path = tmp_path / "clean.json"
    path.write_text(json.dumps(clean))
    assert cli.main(["audit", str(path), "--strict"]) == 0
    assert "Nothing needs review." in capsys.readouterr().out
    assert cli.main(["audit", str(path), "--strict", "--threshold", "0.99"]) == 3  # norm.beta at 0.95 now doubtful


def test_accept_marks_pairs_reviewed_and_rewrites_the_file(mapping_file, capsys) -> None:  # type: ignore[no-untyped-def]
    code = cli.main(["audit", str(mapping_file), "--accept", "stem.bn.beta", "--accept", "stem.bn.g*", "--strict"])
    out = capsys.readouterr().out
    assert code == 3  # head.extra still has no source
    assert "marked 2 pairs as reviewed: stem.bn.gamma, stem.bn.beta" in out
    reloaded = load_mapping(mapping_file)
    assert {p.target for p in reloaded.pairs if p.pinned} == {"stem.bn.gamma", "stem.bn.beta", "norm.gamma"}
    assert [p.target for p in reloaded.doubtful] == ["head.extra"]
    gamma = reloaded.pair_for("stem.bn.gamma")
    assert gamma is not None and gamma.source == "bn.weight" and gamma.confidence == pytest.approx(0.31)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("stem.bn.gama", "no pair with target 'stem.bn.gama' (did you mean 'stem.bn.gamma'?)"),
        ("head.extra", "cannot mark 'head.extra' reviewed: no source"),
    ],
)
def test_accept_refuses_what_it_cannot_mark_and_leaves_the_file(mapping_file, capsys, name, message) -> None:  # type: ignore[no-untyped-def]
    before = mapping_file.read_bytes()
    assert cli.main(["audit", str(mapping_file), "--accept", name]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert mapping_file.read_bytes() == before


def test_accept_by_source_name() -> None:
    mapping, marked = accept(mapping_from_json(_document()), ["bn.bias"])
    assert marked == ("stem.bn.beta",)
    assert [p.target for p in audit(mapping).doubtful] == ["stem.bn.gamma"]


def test_audit_against_the_checkpoints_lists_problems(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    source = tmp_path / "model.pth"
    torch.save({"conv.bias": torch.zeros(4), "bn.weight": torch.zeros(3)}, source)
    document = _document()
    document["pairs"] = document["pairs"][:2]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(document))
    assert cli.main(["audit", str(path), str(source), "--strict"]) == 3
    out = capsys.readouterr().out
    assert "Problems with the checkpoints (1):" in out
    assert "'stem.bn.gamma': source 'bn.weight' [3] gives [3] with no transform, the target needs [4]" in out
    assert "(source #1)" in out  # positions come from the checkpoint


def test_a_flat_mapping_is_given_not_reviewed(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A flat file records neither confidence nor review: its pairs are counted apart, and nothing can be marked."""
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"head.weight": "fc.weight", "head.bias": "fc.bias"}))
    report = audit(load_mapping(path))
    assert (report.confident, report.pinned, report.given, len(report.doubtful)) == (0, 0, 2, 0)
    assert cli.main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 pairs: 0 confident, 0 reviewed (pinned), 2 given by a flat mapping (no confidence recorded)" in out
    before = path.read_bytes()
    for option in (["--accept", "head.weight"], ["--choose", "head.weight=fc.weight"]):
        assert cli.main(["audit", str(path), *option]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is a flat {target: source} mapping" in err, err
        assert path.read_bytes() == before


# --- repeated blocks: grouped in the report, chosen once for the whole pattern ---------------------------------

LAYER = "model.layers.{}.{}.weight"


@pytest.fixture
def llama_file(tmp_path: Path) -> Path:
    """A LLaMA-style port, 4 layers: both norms of every layer are doubtful (same shape, names that do not tell).

    Inferred without the published rename tables (which settle these norms); every other pair is marked
    reviewed, so that the norms are exactly what is left to review, and each layer's norms are guessed the right
    way round (as a tie-break may guess them), so that what the tests choose differs from the guess.
    """
    import dataclasses

    from automap.engine.inference import infer_mapping
    from automap.mapping import save_mapping
    from benchmarks.scale import CONFIGS, listings

    source, target, truth = listings(dataclasses.replace(CONFIGS["llama-7b"], layers=4, vocab=1000))
    inferred = infer_mapping(source, target, weights={"convention": 0.0})
    norms = {LAYER.format(i, norm) for i in range(4) for norm in ("attention_norm", "ffn_norm")}
    assert norms <= {p.target for p in inferred.doubtful}
    mapping = dataclasses.replace(
        inferred,
        pairs=tuple(
            dataclasses.replace(p, source=truth[p.target])
            if p.target in norms
            else dataclasses.replace(p, source=truth[p.target], transform=(), pinned=True)
            for p in inferred.pairs
        ),
    )
    assert sorted(p.target for p in mapping.doubtful) == sorted(
        LAYER.format(i, norm) for i in range(4) for norm in ("attention_norm", "ffn_norm")
    )
    path = tmp_path / "llama.json"
    save_mapping(mapping, path)
    return path


def test_audit_groups_a_repeated_pattern_once(llama_file, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["audit", str(llama_file)]) == 0
    out = capsys.readouterr().out
    assert "Doubtful pairs (8, in 2 patterns), most doubtful first:" in out
    assert out.count("      <- ") == 2  # one full entry per pattern
    assert "the same pattern model.layers.#.attention_norm.weight in 3 more pairs" in out
    assert "the same pattern model.layers.#.ffn_norm.weight in 3 more pairs" in out
    assert "8 doubtful (below 0.90)" in out  # the counts still count every pair


def _norms(i: int) -> dict[str, str]:
    return {
        "attention": LAYER.format(i, "attention_norm"),
        "ffn": LAYER.format(i, "ffn_norm"),
        "input": LAYER.format(i, "input_layernorm"),
        "post": LAYER.format(i, "post_attention_layernorm"),
    }


def test_choose_sets_a_source_for_the_whole_pattern(llama_file, capsys) -> None:  # type: ignore[no-untyped-def]
    """A person chooses layer 0's norms (here the other way round); every layer of the pattern follows."""
    first = _norms(0)
    choices = ["--choose", f"{first['attention']}={first['post']}", "--choose", f"{first['ffn']}={first['input']}"]
    reviewed_before = sum(p.pinned for p in load_mapping(llama_file).pairs)
    assert cli.main(["audit", str(llama_file), *choices, "--strict"]) == 0  # nothing is left to review
    out = capsys.readouterr().out
    assert "chose 2 pairs: " in out
    assert f"{first['attention']} <- {first['post']}" in out and f"{first['ffn']} <- {first['input']}" in out
    assert "spread to 6 more pairs of the same patterns (marked 'same pattern as a reviewed pair')" in out
    assert f"{reviewed_before + 8} reviewed (pinned; 6 of them spread from a reviewed pattern)" in out
    mapping = load_mapping(llama_file)
    for i in range(4):
        names = _norms(i)
        attention, ffn = mapping.pair_for(names["attention"]), mapping.pair_for(names["ffn"])
        assert attention is not None and ffn is not None
        assert (attention.source, ffn.source) == (names["post"], names["input"])
        assert attention.pinned and ffn.pinned
        spread = DecidedBy.SAME_PATTERN if i else None
        assert attention.decided_by is spread and ffn.decided_by is spread


def test_choose_refuses_a_source_left_feeding_another_target(llama_file, capsys) -> None:  # type: ignore[no-untyped-def]
    first = _norms(0)
    before = llama_file.read_bytes()
    assert cli.main(["audit", str(llama_file), "--choose", f"{first['attention']}={first['post']}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{first['post']!r} would also feed {first['ffn']!r}" in err
    assert f"--choose {first['ffn']}={first['input']}" in err  # the source it frees, as a hint
    assert llama_file.read_bytes() == before


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        ("model.layers.0.attention_norm.weight=model.layers.0.input_layernorm.weihgt", "no source named"),
        ("model.layers.0.attention_norm.weight=model.layers.0.self_attn.q_proj.weight", "gives [4096, 4096]"),
        ("model.layers.0.atention_norm.weight=model.layers.0.input_layernorm.weight", "did you mean"),
    ],
)
def test_choose_refuses_what_cannot_be(llama_file, capsys, choice, message) -> None:  # type: ignore[no-untyped-def]
    before = llama_file.read_bytes()
    assert cli.main(["audit", str(llama_file), "--choose", choice]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert llama_file.read_bytes() == before


def test_choose_needs_target_equals_source(llama_file, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["audit", str(llama_file), "--choose", "model.layers.0.attention_norm.weight"]) == 2
    assert "TARGET=SOURCE" in capsys.readouterr().err


def test_choose_joins_several_sources_with_a_plus() -> None:
    from automap.records import ParamRecord, ParamTable
    from automap.report.audit import choose
    from automap.transforms import Concat

    source = ParamTable("mindspore", "s", tuple(ParamRecord(n, (4,), "float32", i) for i, n in enumerate("qkvx")))
    document = _document()
    document["pairs"] = [_pair("qkv", ["x", "q", "k"], 0.4, target_shape=[12], source_shape=[[4], [4], [4]])]
    mapping, chosen, spread = choose(mapping_from_json(document), [("qkv", "q+k+v")], source=source)
    pair = mapping.pair_for("qkv")
    assert pair is not None and (pair.source, pair.transform, pair.pinned) == (("q", "k", "v"), (Concat(0),), True)
    assert (chosen, spread) == (("qkv",), ())
    assert mapping.unmatched_source[-1] == "x"  # freed
    with pytest.raises(MappingFileError, match=r"source 'q \+ k' \[4\] \+ \[4\] gives \[8\], the target needs \[12\]"):
        choose(mapping_from_json(document), [("qkv", "q+k")], source=source)
