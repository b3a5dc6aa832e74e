"""Mapping files: the JSON format byte for byte, round trips (versioned and flat), and every kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from automap._decisions import DECIDED_BY, DecidedBy
from automap._errors import ConversionError, MappingFileError
from automap.mapping import (
    fingerprint,
    flat_problems,
    hand_edited,
    load_mapping,
    mapping_from_json,
    mapping_to_json,
    save_mapping,
)
from automap.records import Alternative, Endpoint, Match, NameMapping, ParamRecord, ParamTable
from automap.transforms import Concat, Reorder, Reshape, Split, Squeeze, Transpose, Unsqueeze

DATA = Path(__file__).parent / "data"

# Hand-built: every kind of pair the format has to carry (plain, split, concatenated, layout change, pinned,
# unmatched), floats that need rounding, alternatives with and without a transform, and the side lists.
MAPPING = NameMapping(
    source=Endpoint("model.pth", "pytorch", 7, "0123456789abcdef"),
    target=Endpoint("model.ckpt", "mindspore", 6, "fedcba9876543210"),
    pairs=(
        Match(
            "stem.conv.weight",
            "conv.weight",
            1.0,
            target_shape=(4, 3, 3, 3),
            source_shape=(4, 3, 3, 3),
            evidence={"shape": 1.0, "leaf": 1.0},
            labels={"decided_by": "names and structure"},
        ),
        Match(
            "stem.bn.gamma",
            "bn.weight",
            0.812345678,
            target_shape=(4,),
            source_shape=(4,),
            evidence={"leaf": 0.6666666, "order": 0.25},
            labels={"decided_by": "names and structure"},
            alternatives=(Alternative("bn.bias", 0.1234567),),
        ),
        Match(
            "attn.k.weight",
            "attn.qkv.weight",
            0.45,
            (Split(0, 3, 1),),
            (8, 8),
            (24, 8),
            {},
            (Alternative("attn.qkv.weight", 0.3, (Split(0, 3, 2),)),),
            labels={"decided_by": "order only (interchangeable candidates)"},
        ),
        Match(
            "experts.w1",
            ("experts.0.w1", "experts.1.w1"),
            0.9,
            (Concat(0), Reshape((2, 6, 4))),
            (2, 6, 4),
            ((6, 4), (6, 4)),
            labels={"note": "built by concatenating 2 source tensors"},
        ),
        Match(
            "mixer.weight",
            "conv1d.weight",
            1.0,
            (Unsqueeze(2),),
            (6, 4, 1, 3),
            (6, 4, 3),
            pinned=True,
            labels={"pinned": "fixed by a person"},
        ),
        Match("head.extra", None, 0.0, target_shape=(5,), labels={"note": "no source tensor fits well enough"}),
    ),
    threshold=0.5,
    unmatched_source=("bn.num_batches_tracked",),
    excluded_source=("optimizer.step",),
    excluded_target=("global_step",),
    notes=("learned name correspondences: head~fc",),
)


def _rounded(value: float) -> float:
    return round(value, 4)


# --- the format ----------------------------------------------------------------------------------------------


def test_versioned_file_is_byte_exact(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    save_mapping(MAPPING, out)
    assert out.read_bytes() == (DATA / "mapping_golden.json").read_bytes()


# What a flat {target: source} file can carry: confident pairs that need no layout step (a list of sources is
# joined along axis 0, so a bare concat along axis 0 is carried too); unmatched targets are left out.
FLAT_SAFE = NameMapping(
    MAPPING.source,
    MAPPING.target,
    (
        MAPPING.pairs[0],
        MAPPING.pairs[1],
        Match("experts.w1", ("experts.0.w1", "experts.1.w1"), 0.9, (Concat(0),), (12, 4), ((6, 4), (6, 4))),
        Match("norm.gamma", "ln.weight", 0.2, target_shape=(4,), source_shape=(4,), pinned=True),
        MAPPING.pairs[-1],
    ),
    threshold=MAPPING.threshold,
)


def test_flat_file_is_byte_exact_and_leaves_unmatched_targets_out(tmp_path: Path) -> None:
    out = tmp_path / "m.flat.json"
    save_mapping(FLAT_SAFE, out, flat=True)
    assert out.read_bytes() == (DATA / "mapping_golden.flat.json").read_bytes()
    assert "head.extra" not in json.loads(out.read_text(encoding="utf-8"))


def test_a_flat_file_is_refused_for_pairs_it_cannot_carry(tmp_path: Path) -> None:
    """A flat file has no room for a transform or a confidence: writing one would drop them silently."""
    out = tmp_path / "m.flat.json"
    with pytest.raises(MappingFileError) as refused:
        save_mapping(MAPPING, out, flat=True)
    message = str(refused.value)
    assert "3 pairs" in message
    assert "'attn.k.weight' (split(axis 0, 3 parts)[1]; confidence 0.45)" in message
    assert "'experts.w1' (concat(axis 0) -> reshape(2, 6, 4))" in message
    assert "'mixer.weight' (unsqueeze(axis 2))" in message
    assert "stem.bn.gamma" not in message and "head.extra" not in message
    assert list(tmp_path.iterdir()) == []
    assert [p.target for p in flat_problems(MAPPING)] == ["attn.k.weight", "experts.w1", "mixer.weight"]
    assert flat_problems(FLAT_SAFE) == ()


def test_document_key_order() -> None:
    document = mapping_to_json(MAPPING)
    assert list(document) == [
        "format",
        "version",
        "source",
        "target",
        "threshold",
        "notes",
        "pairs",
        "unmatched_source",
        "excluded_source",
        "excluded_target",
        "digest",
    ]
    assert list(document["pairs"][0]) == [
        "target",
        "source",
        "confidence",
        "transform",
        "target_shape",
        "source_shape",
        "evidence",
        "alternatives",
        "pinned",
    ]
    assert [p["target"] for p in document["pairs"]] == [p.target for p in MAPPING.pairs]  # target order kept


def test_saving_twice_and_resaving_a_loaded_file_give_the_same_bytes(tmp_path: Path) -> None:
    first, second, again = tmp_path / "1.json", tmp_path / "2.json", tmp_path / "3.json"
    save_mapping(MAPPING, first)
    save_mapping(MAPPING, second)
    save_mapping(load_mapping(first), again)
    assert first.read_bytes() == second.read_bytes() == again.read_bytes()


# --- round trips ---------------------------------------------------------------------------------------------


def test_versioned_round_trip_keeps_everything(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    save_mapping(MAPPING, out)
    loaded = load_mapping(out)
    assert loaded.source == MAPPING.source and loaded.target == MAPPING.target
    assert loaded.threshold == MAPPING.threshold
    assert loaded.notes == MAPPING.notes
    assert loaded.unmatched_source == MAPPING.unmatched_source
    assert loaded.excluded_source == MAPPING.excluded_source
    assert loaded.excluded_target == MAPPING.excluded_target
    assert len(loaded.pairs) == len(MAPPING.pairs)
    for got, want in zip(loaded.pairs, MAPPING.pairs, strict=True):
        assert got.target == want.target
        assert got.source == want.source  # a tuple of names stays a tuple
        assert got.confidence == _rounded(want.confidence)
        assert got.transform == want.transform
        assert got.target_shape == want.target_shape
        assert got.source_shape == want.source_shape
        assert got.pinned == want.pinned
        assert dict(got.evidence) == {k: _rounded(v) for k, v in want.evidence.items()}
        assert dict(got.labels) == dict(want.labels)
        assert got.decided_by == want.decided_by
        assert [(a.source, a.confidence, a.transform) for a in got.alternatives] == [
            (a.source, _rounded(a.confidence), a.transform) for a in want.alternatives
        ]
    assert [p.target for p in loaded.doubtful] == ["attn.k.weight", "head.extra"]


def test_flat_pairs_are_given_not_reviewed(tmp_path: Path) -> None:
    """A flat file records no confidence and no review: its pairs are neither doubtful nor pinned."""
    out = tmp_path / "m.flat.json"
    save_mapping(FLAT_SAFE, out, flat=True)
    loaded = load_mapping(out)
    assert [(p.target, p.source) for p in loaded.pairs] == [
        ("stem.conv.weight", "conv.weight"),
        ("stem.bn.gamma", "bn.weight"),
        ("experts.w1", ("experts.0.w1", "experts.1.w1")),
        ("norm.gamma", "ln.weight"),
    ]
    assert not any(p.pinned for p in loaded.pairs)
    assert all(p.decided_by is DecidedBy.FLAT_MAPPING for p in loaded.pairs)
    assert loaded.doubtful == ()
    assert loaded.flat() == FLAT_SAFE.flat()


def test_existing_file_is_kept_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    out.write_text("keep me", encoding="utf-8")
    with pytest.raises(ConversionError, match="exists"):
        save_mapping(MAPPING, out, overwrite=False)
    assert out.read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temporary file left behind


def test_the_digest_tells_a_hand_edited_file_from_the_one_automap_wrote(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    save_mapping(MAPPING, out)
    assert hand_edited(load_mapping(out)) is False
    document = json.loads(out.read_text(encoding="utf-8"))
    document["pairs"][0]["confidence"] = 0.1  # evidence, confidence and review are not decisions: no edit
    document["pairs"][0]["evidence"] = {}
    document["pairs"][0]["pinned"] = True
    out.write_text(json.dumps(document), encoding="utf-8")
    assert hand_edited(load_mapping(out)) is False
    document["pairs"][1]["source"] = "bn.bias"  # a person changed a decision
    out.write_text(json.dumps(document), encoding="utf-8")
    assert hand_edited(load_mapping(out)) is True
    del document["digest"]  # a file that does not say what automap wrote
    out.write_text(json.dumps(document), encoding="utf-8")
    assert hand_edited(load_mapping(out)) is None


def test_fingerprint_follows_names_shapes_and_dtypes() -> None:
    def table(*records: tuple[str, tuple[int, ...], str]) -> ParamTable:
        return ParamTable("pytorch", "x", tuple(ParamRecord(n, s, d, i) for i, (n, s, d) in enumerate(records)))

    base = fingerprint(table(("a", (2,), "float32"), ("b", (3,), "float32")))
    assert len(base) == 16
    assert base == fingerprint(table(("a", (2,), "float32"), ("b", (3,), "float32")))
    assert base != fingerprint(table(("a", (2,), "float32"), ("b", (4,), "float32")))
    assert base != fingerprint(table(("a", (2,), "float32"), ("b", (3,), "float16")))
    assert base != fingerprint(table(("a", (2,), "float32"), ("c", (3,), "float32")))
    assert base != fingerprint(table(("b", (3,), "float32"), ("a", (2,), "float32")))


# --- bad files -----------------------------------------------------------------------------------------------


def _document() -> dict[str, Any]:
    return mapping_to_json(MAPPING)


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def _fails(tmp_path: Path, document: Any, *problems: str) -> str:
    with pytest.raises(MappingFileError) as error:
        load_mapping(_write(tmp_path, document))
    message = str(error.value)
    assert "bad.json" in message
    assert "\n" not in message
    for problem in problems:
        assert problem in message, message
    return message


def test_malformed_json(tmp_path: Path) -> None:
    _fails(tmp_path, '{"format": "automap.mapping", "pairs": [', "not valid JSON")


def test_duplicate_key_within_an_object(tmp_path: Path) -> None:
    _fails(tmp_path, '{"a.weight": "x", "a.weight": "y"}', "not valid JSON", "'a.weight' appears twice")


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_version(tmp_path: Path, version: Any) -> None:
    document = _document()
    document["version"] = version
    _fails(tmp_path, document, "is not supported", "reads version 1")


def test_wrong_format_name(tmp_path: Path) -> None:
    document = _document()
    document["format"] = "automap.mappings"
    _fails(tmp_path, document, "'format' is 'automap.mappings'", "expected 'automap.mapping'")


def test_duplicate_targets(tmp_path: Path) -> None:
    document = _document()
    document["pairs"].append(dict(document["pairs"][0]))
    _fails(tmp_path, document, "target 'stem.conv.weight' appears in two pairs")


@pytest.mark.parametrize(
    ("transform", "problem"),
    [
        ([{"op": "rotate"}], "unknown step"),
        ([{"op": "split", "axis": 0}], "step 'split' takes"),
        ("transpose", "must be null or a list"),
        ([{"op": "squeeze", "axis": 1.5}], "needs a small integer 'axis'"),
    ],
)
def test_bad_transforms(tmp_path: Path, transform: Any, problem: str) -> None:
    document = _document()
    document["pairs"][1]["transform"] = transform
    _fails(tmp_path, document, "pair 1", "stem.bn.gamma", problem)


def test_bad_transform_of_an_alternative(tmp_path: Path) -> None:
    document = _document()
    document["pairs"][2]["alternatives"][0]["transform"] = [{"op": "explode"}]
    _fails(tmp_path, document, "attn.k.weight", "alternative", "unknown step")


@pytest.mark.parametrize("confidence", [1.5, -0.1, "high", None, True])
def test_bad_confidence(tmp_path: Path, confidence: Any) -> None:
    document = _document()
    document["pairs"][0]["confidence"] = confidence
    if confidence is True:  # a JSON boolean is an int to Python: 1, which is a valid confidence
        load_mapping(_write(tmp_path, document))
        return
    _fails(tmp_path, document, "pair 0", "stem.conv.weight", "'confidence' must be a number in [0, 1]")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(threshold=2), "'threshold' must be a number in [0, 1]"),
        (lambda d: d.update(pairs={}), "'pairs' must be a list"),
        (lambda d: d["pairs"][0].pop("target"), "each pair needs a 'target' name"),
        (lambda d: d["pairs"][0].update(source=3), "'source' must be a name, a list of names"),
        (lambda d: d["pairs"][0].update(source=[]), "'source' must be a name, a list of names"),
        (lambda d: d["pairs"][0].update(target_shape=[4, -1]), "must be a list of non-negative integers"),
        (lambda d: d["pairs"][3].update(source_shape=[[6, 4]]), "'source_shape' needs one shape per source"),
        (lambda d: d["pairs"][0].update(evidence={"leaf": [1]}), "'evidence' must map names to numbers or strings"),
        (lambda d: d["pairs"][0].update(pinned="yes"), "'pinned' must be true or false"),
        (lambda d: d["source"].update(framework="jax"), "framework must be one of ['pytorch', 'mindspore']"),
        (lambda d: d.update(target="model.ckpt"), "'target' must be an object"),
        (lambda d: d.update(unmatched_source="a"), "'unmatched_source' must be a list of names"),
        (lambda d: d["pairs"][0].update(source="conv.\u202eweight"), "unprintable character"),
    ],
)
def test_inconsistent_documents(tmp_path: Path, change: Any, problem: str) -> None:
    document = _document()
    change(document)
    _fails(tmp_path, document, problem)


@pytest.mark.parametrize(("document", "problem"), [([1, 2], "must be a JSON object"), ({"a": 1}, "'source' must be")])
def test_not_a_mapping(tmp_path: Path, document: Any, problem: str) -> None:
    _fails(tmp_path, document, problem)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match="no such mapping file"):
        load_mapping(tmp_path / "absent.json")
    with pytest.raises(MappingFileError, match="is a directory"):
        load_mapping(tmp_path)


def test_mapping_from_json_checks_the_same_way() -> None:
    with pytest.raises(MappingFileError, match=r"^'hand-made': mapping version 9"):
        mapping_from_json({"format": "automap.mapping", "version": 9, "pairs": []}, where="hand-made")


# --- every kind of step, byte for byte -----------------------------------------------------------------------


# One pair per kind of layout step (and a chain of them), with the evidence layouts the engine, the block
# decomposition and the network-aware mode write; the golden file was written before steps became typed, so
# the bytes prove the typed steps and the split evidence serialise exactly as the dict steps did.
def _decided(how: DecidedBy) -> dict[str, str]:
    return {DECIDED_BY: how.value}


STEP_KINDS = NameMapping(
    source=Endpoint("src.pth", "pytorch", 10, "00112233445566ff"),
    target=Endpoint("dst.ckpt", "mindspore", 9, "ff66554433221100"),
    pairs=(
        Match(
            "t.transpose",
            "s.linear",
            0.97,
            (Transpose(),),
            (6, 4),
            (4, 6),
            {"shape": 1.0, "leaf": 0.75},
            (Alternative("s.other", 0.0213, (Transpose((1, 0)),)),),
            labels=_decided(DecidedBy.NAMES_AND_STRUCTURE),
        ),
        Match(
            "t.permute",
            "s.permute",
            0.44,
            (Transpose((2, 0, 1)),),
            (4, 2, 3),
            (2, 3, 4),
            {"shape": 1.0, "order": 0.5},
            labels=_decided(DecidedBy.NAMES_AND_ORDER_DISAGREE),
        ),
        Match(
            "t.reshape",
            "s.flat",
            0.45,
            (Reshape((3, 8)),),
            (3, 8),
            (6, 4),
            {"shape": 0.5},
            labels=_decided(DecidedBy.RESHAPE_ONLY),
        ),
        Match(
            "t.squeeze",
            "s.conv2d",
            0.3,
            (Squeeze(2),),
            (6, 4, 3),
            (6, 4, 1, 3),
            {"shape": 1.0},
            labels=_decided(DecidedBy.TIE),
        ),
        Match(
            "t.unsqueeze",
            "s.conv1d",
            1.0,
            (Unsqueeze(-2),),
            (6, 4, 1, 3),
            (6, 4, 3),
            pinned=True,
            labels={"pinned": "fixed by a person"},
        ),
        Match(
            "t.k",
            "s.qkv",
            0.45,
            (Split(0, 3, 1),),
            (8, 8),
            (24, 8),
            {"order": 0.25},
            (
                Alternative("s.qkv", 0.3, (Split(0, 3, 2),)),
                Alternative(("s.a", "s.b"), 0.01, (Concat(1), Transpose())),
            ),
            labels=_decided(DecidedBy.ORDER_ONLY) | {"block": "same as block 0 (repeated structure)"},
        ),
        Match(
            "t.experts",
            ("s.e0", "s.e1"),
            0.41,
            (Concat(0), Reshape((2, 6, 4))),
            (2, 6, 4),
            ((6, 4), (6, 4)),
            {"shape": 1.0},
            labels=_decided(DecidedBy.FOLLOWED_BLOCK_ORDER) | {"note": "built by concatenating 2 source tensors"},
        ),
        Match(
            "t.gates",
            "s.gates",
            0.995,
            (Reorder(0, 4, (0, 1, 3, 2)),),
            (8, 3),
            (8, 3),
            {"leaf": 1.0},
            labels=_decided(DecidedBy.CONFIRMED_NUMERICALLY)
            | {
                "numeric": "confirmed numerically: rnn vs rnn agree (max rel diff 0); 2 trials",
                "proof": "proven: the converted model reproduces the source model (max rel diff 1e-07)",
            },
        ),
        Match(
            "t.chain",
            "s.fused",
            0.6,
            (
                Split(1, 2, 0),
                Transpose(),
                Unsqueeze(0),
                Squeeze(0),
                Reshape((16,)),
            ),
            (16,),
            (4, 8),
            labels={
                "note": "inference chose s.other; the probe chose this",
                "numeric": "unresolved: no candidate agreed",
            },
        ),
        Match(
            "t.hand",
            "s.hand",
            1.0,
            target_shape=(2,),
            source_shape=(2,),
            evidence={"shape": 1.0},
            labels={"decided_by": "hand-written for the tests"},
        ),
    ),
    threshold=0.5,
)


def test_every_kind_of_step_is_written_byte_for_byte_and_read_back(tmp_path: Path) -> None:
    out = tmp_path / "steps.json"
    save_mapping(STEP_KINDS, out)
    assert out.read_bytes() == (DATA / "mapping_steps_golden.json").read_bytes()
    loaded = load_mapping(out)
    assert [p.transform for p in loaded.pairs] == [p.transform for p in STEP_KINDS.pairs]
    assert [[a.transform for a in p.alternatives] for p in loaded.pairs] == [
        [a.transform for a in p.alternatives] for p in STEP_KINDS.pairs
    ]
    save_mapping(loaded, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == out.read_bytes()


def test_evidence_is_read_as_scores_labels_and_a_typed_decision() -> None:
    loaded = mapping_from_json(json.loads((DATA / "mapping_steps_golden.json").read_text(encoding="utf-8")))
    assert [p.decided_by for p in loaded.pairs] == [
        DecidedBy.NAMES_AND_STRUCTURE,
        DecidedBy.NAMES_AND_ORDER_DISAGREE,
        DecidedBy.RESHAPE_ONLY,
        DecidedBy.TIE,
        None,  # pinned
        DecidedBy.ORDER_ONLY,
        DecidedBy.FOLLOWED_BLOCK_ORDER,
        DecidedBy.CONFIRMED_NUMERICALLY,
        None,  # changed by the probes, not confirmed
        None,  # text that names no decision stays a label
    ]
    hand = loaded.pairs[-1]
    assert dict(hand.evidence) == {"shape": 1.0}
    assert dict(hand.labels) == {"decided_by": "hand-written for the tests"}
    assert all(isinstance(v, float) for p in loaded.pairs for v in p.evidence.values())


def test_a_key_cannot_be_both_a_score_and_a_label() -> None:
    with pytest.raises(ValueError, match=r"\['note'\] are both scores and labels"):
        Match("t", "s", 1.0, evidence={"note": 1.0}, labels={"note": "x"})
