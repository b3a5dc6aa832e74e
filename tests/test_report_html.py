"""The HTML report as a document: summary counts, histogram, embedded data, escaping of hostile names,
self-containedness (no network, script and style pinned by hash), atomic writing, and the `--html` options of
`automap infer` and `automap audit` on real checkpoints."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from automap import cli
from automap._errors import ConversionError
from automap.mapping import load_mapping, mapping_from_json
from automap.records import DEFAULT_THRESHOLD, Alternative, Endpoint, Match, NameMapping, ParamRecord, ParamTable
from automap.report.html import render_html, write_html
from automap.transforms import Concat, Split, Step, Transpose

_SPLIT = (Split(0, 3, 0),)
_SCORES = {"shape": 1.0, "leaf": 0.25, "path": 0.5, "order": 0.13}
_DECIDED = {"decided_by": "names and structure"}


def _split(index: int) -> tuple[Step, ...]:
    return (Split(0, 3, index),)


def sample_mapping(threshold: float = 0.5, **names: str) -> NameMapping:
    """Nine target parameters covering every kind of pair; `names` replaces some names (hostile tests)."""
    qkv = names.get("qkv", "blocks.0.qkv.weight")
    gamma = names.get("gamma", "backbone.blocks.0.norm.gamma")
    embed = names.get("embed", "embed.weight")
    pairs = (
        Match("backbone.embed.weight", embed, 1.0, (), (10, 4), (10, 4), _SCORES, labels=_DECIDED),
        Match("backbone.blocks.0.q.weight", qkv, 0.95, _split(0), (4, 4), (12, 4), _SCORES, labels=_DECIDED),
        Match("backbone.blocks.0.k.weight", qkv, 0.8, _split(1), (4, 4), (12, 4), _SCORES, labels=_DECIDED),
        Match("backbone.blocks.0.v.weight", qkv, 0.6, _split(2), (4, 4), (12, 4), _SCORES, labels=_DECIDED),
        Match(
            "backbone.blocks.0.proj_w",
            "blocks.0.proj.weight",
            0.45,
            (Transpose(),),
            (4, 6),
            (6, 4),
            _SCORES,
            (Alternative("blocks.0.unused.weight", 0.41), Alternative(embed, 0.0)),
            labels={"decided_by": "order only (interchangeable candidates)"},
        ),
        Match(
            gamma,
            "blocks.0.norm.weight",
            0.3,
            (),
            (4,),
            (4,),
            _SCORES,
            (Alternative("fc.weight", 0.2),),
            labels=_DECIDED,
        ),
        Match(
            "backbone.fused.weight",
            ("a.weight", "b.weight"),
            0.97,
            (Concat(0),),
            (8, 4),
            ((4, 4), (4, 4)),
            labels={"note": "built by concatenating 2 source tensors"},
        ),
        Match("head.weight", "fc.weight", 0.2, (), (5, 4), (5, 4), _SCORES, pinned=True, labels=_DECIDED),
        Match("head.extra", None, 0.0, (), (5,), None, labels={"note": "no source tensor fits well enough"}),
    )
    return NameMapping(
        source=Endpoint(names.get("source_path", "model.pth"), "pytorch", 8, "f00d"),
        target=Endpoint("template.ckpt", "mindspore", 9, "beef"),
        pairs=pairs,
        threshold=threshold,
        unmatched_source=("blocks.0.unused.weight",),
        excluded_source=("optimizer.state.0.exp_avg",),
        excluded_target=("global_step", "learning_rate"),
        notes=(names.get("note", "learned name correspondences: gamma~weight"),),
    )


_VOID = {"meta", "input", "br", "img", "link", "hr", "area", "base", "col", "embed", "source", "track", "wbr"}


class Page(HTMLParser):
    """Every element with its attributes, the text of each `data-k` element, and each script's content."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.values: dict[str, str] = {}
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self._open: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in _VOID:
            self._open.append((tag, dict(attrs), []))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            name, attrs, text = self._open.pop()
            if attrs.get("data-k"):
                self.values[str(attrs["data-k"])] = "".join(text)
            if name == "script":
                self.scripts.append((attrs, "".join(text)))
            if name == "style":
                self.styles.append("".join(text))
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, _, text in self._open:
            text.append(data)

    def data(self) -> Any:
        """The embedded JSON, parsed."""
        (content,) = [text for attrs, text in self.scripts if attrs.get("type") == "application/json"]
        return json.loads(content)


def _full_names(side: dict[str, Any]) -> list[str]:
    """Rebuild each parameter's name from the embedded module tree (independently of the page's script)."""

    def path(node: int) -> list[str]:
        parts: list[str] = []
        while node > 0:
            parent, segment = side["nodes"][node]
            parts.append(segment)
            node = parent
        return parts[::-1]

    return [".".join([*path(node), leaf]) for node, leaf, _, _ in side["params"]]


def test_summary_counts() -> None:
    page = Page(render_html(sample_mapping()))
    counts = {k: page.values[k] for k in page.values if not k.endswith("-listed")}
    assert counts == {
        "pairs": "8",
        "doubtful": "2",  # 0.45 and 0.3; the pinned 0.2 was reviewed
        "unmatched-target": "1",
        "unmatched-source": "1",
        "excluded": "1 source \u00b7 2 target",
        "excluded-source": "1",
        "excluded-target": "2",
        "threshold": "0.50",
        "pinned": "1",
        "transforms": "1 transposed \u00b7 3 split \u00b7 1 fused",
        "transposed": "1",
        "split": "3",
        "fused": "1",
        "review": "3",
    }


def test_threshold_override_reflags_pairs() -> None:
    page = Page(render_html(sample_mapping(), threshold=0.9))
    assert (page.values["doubtful"], page.values["threshold"], page.values["review"]) == ("4", "0.90", "5")
    assert page.data()["threshold"] == 0.9
    assert page.data()["mapping_threshold"] == 0.5
    with pytest.raises(ValueError, match="between 0 and 1"):
        render_html(sample_mapping(), threshold=1.5)


def test_histogram_counts_matched_pairs_per_bin() -> None:
    page = Page(render_html(sample_mapping()))
    bars = [a for tag, a in page.elements if tag == "rect" and "bar" in str(a.get("class"))]
    assert len(bars) == 20
    below = [a["data-hi"] for a in bars if "below" in str(a["class"])]
    assert below == [f"{(i + 1) / 20:.2f}" for i in range(10)]  # every bin ending at or before 0.50
    counts = re.findall(r"<title>(\d\.\d\d)\u2013\d\.\d\d: (\d+) pairs?</title>", render_html(sample_mapping()))
    assert {low: int(n) for low, n in counts if n != "0"} == {
        "0.20": 1,
        "0.30": 1,
        "0.45": 1,
        "0.60": 1,
        "0.80": 1,
        "0.95": 3,  # 0.95, 0.97 and 1.0
    }


def test_embedded_data_rebuilds_every_name_and_pair() -> None:
    mapping = sample_mapping()
    data = Page(render_html(mapping)).data()
    targets, sources = _full_names(data["target"]), _full_names(data["source"])
    assert targets == [p.target for p in mapping.pairs]
    # without the source checkpoint, sources come in the order the targets use them, then the unused one
    assert sources == [
        "embed.weight",
        "blocks.0.qkv.weight",
        "blocks.0.proj.weight",
        "blocks.0.norm.weight",
        "a.weight",
        "b.weight",
        "fc.weight",
        "blocks.0.unused.weight",
    ]
    pairs = data["pairs"]
    assert [p[0] for p in pairs] == [0, 1, 1, 1, 2, 3, [4, 5], 6, -1]
    assert [p[1] for p in pairs] == [1, 0.95, 0.8, 0.6, 0.45, 0.3, 0.97, 0.2, 0]
    assert [p[2] for p in pairs] == [0, 0, 0, 0, 0, 0, 0, 1, 0]
    kinds = [data["transforms"][p[3]][1:] if p[3] >= 0 else None for p in pairs]
    # [kind bits (1 split, 2 fused, 4 transposed), part, parts]
    assert kinds == [None, [1, 0, 3], [1, 1, 3], [1, 2, 3], [4, 0, 0], None, [2, 0, 2], None, None]
    scores = dict(zip(data["evidence_numeric"], pairs[0][4], strict=False))
    assert scores == {"shape": 100, "leaf": 25, "path": 50, "order": 13}
    notes = {k: data["strings"][v] for k, v in zip(data["evidence_text"], pairs[4][5], strict=False) if v is not None}
    assert notes == {"decided_by": "order only (interchangeable candidates)"}
    assert pairs[4][6] == [[7, 0.41], [0, 0]]  # alternatives: source index, confidence
    assert data["excluded"] == {
        "source": ["optimizer.state.0.exp_avg"],
        "target": ["global_step", "learning_rate"],
        "source_count": 1,
        "target_count": 2,
    }


def test_tables_add_dtypes_and_the_true_source_order() -> None:
    mapping = sample_mapping()
    source_names = ["fc.weight", "blocks.0.unused.weight", "embed.weight", "blocks.0.qkv.weight"]
    source_names += ["blocks.0.proj.weight", "blocks.0.norm.weight", "a.weight", "b.weight"]
    source = ParamTable(
        "pytorch", "model.pth", tuple(ParamRecord(n, (4,), "bfloat16", i) for i, n in enumerate(source_names))
    )
    target = ParamTable(
        "mindspore",
        "template.ckpt",
        tuple(ParamRecord(p.target, (7,), "float16", i) for i, p in enumerate(mapping.pairs)),
    )
    text = render_html(mapping, source_table=source, target_table=target)
    page = Page(text)
    data = page.data()
    assert _full_names(data["source"]) == source_names
    assert data["source_order_known"] is True
    assert data["dtypes"] == ["bfloat16", "float16"] or data["dtypes"] == ["float16", "bfloat16"]
    assert {data["dtypes"][p[3]] for p in data["target"]["params"]} == {"float16"}
    assert {tuple(data["shapes"][p[2]]) for p in data["target"]["params"]} == {(7,)}  # the table's shapes
    assert ("body", {"class": "no-dtype"}) not in page.elements
    assert ("body", {"class": "no-dtype"}) in Page(render_html(mapping)).elements  # no dtypes: columns hidden


def test_a_flat_mapping_has_unknown_shapes_and_nothing_to_review() -> None:
    mapping = mapping_from_json({"head.weight": "fc.weight", "qkv": ["q", "k", "v"]})
    page = Page(render_html(mapping))
    # a flat file records no review: its pairs are given, not reviewed
    assert (page.values["pairs"], page.values["doubtful"], page.values["pinned"]) == ("2", "0", "0")
    data = page.data()
    assert [p[2] for p in data["target"]["params"]] == [-1, -1]
    assert [p[2] for p in data["source"]["params"]] == [-1, -1, -1, -1]


_HOSTILE = "</script><script>document.title='pwned'</script>"
_HOSTILE_IMG = "<img src=x onerror=\"document.title='pwned'\">"
_HOSTILE_TEXT = "a\u2028b\u2029c &amp; <!-- ]]> \"quotes\" 'single'"


def test_hostile_names_are_text_in_the_page_and_intact_in_the_data() -> None:
    mapping = sample_mapping(
        qkv=_HOSTILE,
        gamma=f"backbone.{_HOSTILE_IMG}",
        embed=_HOSTILE_TEXT,
        source_path=f"/models/{_HOSTILE}.pth",
        note=_HOSTILE_TEXT,
    )
    text = render_html(mapping)
    page = Page(text)
    # nothing broke out: the two scripts the page has, no image, no event handler attribute
    assert [attrs for attrs, _ in page.scripts] == [{"type": "application/json", "id": "automap-data"}, {}]
    assert not [tag for tag, _ in page.elements if tag == "img"]
    assert not [a for _, attrs in page.elements for a in attrs if a.startswith("on")]
    for raw in ("<script>document", "<img", "<!-- ]]>"):
        assert raw not in text
    # the JSON block holds no character that could end it or break a JavaScript string
    (content,) = [content for attrs, content in page.scripts if attrs]
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in content
    # the path and the note are shown, escaped
    assert "/models/&lt;/script&gt;&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;.pth" in text
    assert "&amp;amp; &lt;!-- ]]&gt;" in text
    # and the data gives every name back exactly
    data = page.data()
    assert _HOSTILE in _full_names(data["source"])
    assert _HOSTILE_TEXT in _full_names(data["source"])
    assert f"backbone.{_HOSTILE_IMG}" in _full_names(data["target"])


def test_the_page_is_self_contained() -> None:
    text = render_html(sample_mapping())
    page = Page(text)
    assert "http:" not in text and "https:" not in text and "//" not in text.replace("://", "")
    assert "url(" not in text and "@import" not in text
    for tag, attrs in page.elements:
        assert tag not in {"link", "img", "iframe", "object", "embed", "base", "form", "audio", "video"}
        assert "src" not in attrs and "srcset" not in attrs and "action" not in attrs
        assert str(attrs.get("href", "#")).startswith("#")
    (policy,) = [a["content"] for t, a in page.elements if a.get("http-equiv") == "Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in str(policy).split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'none'"
    # inline code runs only because its hash is allowed: the hashes must be those of the actual contents
    (code,) = [content for attrs, content in page.scripts if not attrs]
    (style,) = page.styles

    def digest(content: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(content.encode()).digest()).decode() + "'"

    assert directives["script-src"] == digest(code)
    assert directives["style-src"] == digest(style)
    assert "innerHTML" not in code and "insertAdjacentHTML" not in code and "eval(" not in code


def test_the_page_inlines_its_asset_files() -> None:
    """The skeleton, CSS and script are package data (tests/test_packaging.py checks the wheel carries them); the
    page inlines each file's text as it is."""
    root = Path(__file__).resolve().parent.parent
    assets = root / "automap" / "report" / "assets"
    files = sorted(f"assets/{p.name}" for p in assets.iterdir())
    assert {"assets/report.css", "assets/report.html", "assets/report.js"} <= set(files)
    page = Page(render_html(sample_mapping()))
    (code,) = [content for attrs, content in page.scripts if not attrs]
    (style,) = page.styles
    assert code == "\n" + (assets / "report.js").read_text(encoding="utf-8")
    assert style == "\n" + (assets / "report.css").read_text(encoding="utf-8")


def test_size_per_pair_stays_small() -> None:
    """A 20,000-pair mapping of a deep model: bytes per pair of the whole page."""
    pairs = []
    for layer in range(2000):
        for leaf in ("attention.wq", "attention.wk", "attention.wv", "attention.wo", "ffn.w1"):
            for kind in ("weight", "bias"):
                pairs.append(
                    Match(
                        f"model.layers.{layer}.{leaf}.{kind}",
                        f"model.blocks.{layer}.{leaf.replace('attention', 'attn')}.{kind}",
                        0.87,
                        (),
                        (512, 512),
                        (512, 512),
                        {**_SCORES, "path": 0.4321, "order": 0.9876},
                        (Alternative(f"model.blocks.{layer}.ffn.w1.{kind}", 0.123),),
                        labels=_DECIDED,
                    )
                )
    mapping = NameMapping(Endpoint("a.pth", "pytorch", 20000), Endpoint("b.ckpt", "mindspore", 20000), tuple(pairs))
    size = len(render_html(mapping).encode())
    per_pair = size / len(pairs)
    print(f"report size: {size} bytes, {per_pair:.0f} bytes per pair")
    assert per_pair < 150


def test_write_html_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_html(sample_mapping(), out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    before = out.read_bytes()
    with pytest.raises(ConversionError, match="already exists"):
        write_html(sample_mapping(), out, threshold=0.9, overwrite=False)
    assert out.read_bytes() == before
    with pytest.raises(ConversionError, match="does not exist"):
        write_html(sample_mapping(), tmp_path / "missing" / "report.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no partial file left


# --- the command line, on real checkpoints ------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fused-qkv attention in PyTorch and its three-Dense, transposed-output port in MindSpore."""
    torch = pytest.importorskip("torch")
    ms = pytest.importorskip("mindspore")
    from tests import _convert_nets as nets

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    folder = tmp_path_factory.mktemp("report")
    paths = {"pth": folder / "attention.pth", "ckpt": folder / "attention.ckpt"}
    torch.save(nets.torch_attention().state_dict(), paths["pth"])
    ms.save_checkpoint(nets.mindspore_attention(), str(paths["ckpt"]))
    return paths


def _expected_counts(mapping_file: Path, threshold: float) -> dict[str, str]:
    document = json.loads(mapping_file.read_text())
    matched = [p for p in document["pairs"] if p["source"] is not None]
    return {
        "pairs": str(len(matched)),
        "doubtful": str(sum(1 for p in matched if p["confidence"] < threshold and not p["pinned"])),
        "unmatched-target": str(len(document["pairs"]) - len(matched)),
        "split": str(sum(1 for p in matched if any(s["op"] == "split" for s in p["transform"] or []))),
        "transposed": str(sum(1 for p in matched if any(s["op"] == "transpose" for s in p["transform"] or []))),
    }


def test_infer_and_audit_write_the_report(checkpoints, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    mapping_file, report = tmp_path / "m.json", tmp_path / "infer.html"
    args = ["infer", str(checkpoints["ckpt"]), str(checkpoints["pth"]), "-o", str(mapping_file), "--html", str(report)]
    assert cli.main(args) == 0
    assert f"report written to {report}" in capsys.readouterr().out
    page = Page(report.read_text(encoding="utf-8"))
    expected = _expected_counts(mapping_file, DEFAULT_THRESHOLD)
    assert {k: page.values[k] for k in expected} == expected
    assert int(expected["split"]) == 0 and page.data()["dtypes"] == ["float32"]  # MindSpore -> PyTorch: concat
    assert page.values["fused"] == "2"  # qkv.weight and qkv.bias each built from three source tensors

    audit_report = tmp_path / "audit.html"
    assert cli.main(["audit", str(mapping_file), "--threshold", "0.99", "--html", str(audit_report)]) == 0
    page = Page(audit_report.read_text(encoding="utf-8"))
    expected = _expected_counts(mapping_file, 0.99)
    assert {k: page.values[k] for k in expected} == expected
    assert page.values["threshold"] == "0.99"


def test_infer_html_refuses_an_existing_file_before_any_work(checkpoints, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    report = tmp_path / "r.html"
    report.write_text("keep me")
    assert cli.main(["infer", str(checkpoints["pth"]), str(checkpoints["ckpt"]), "--html", str(report)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert report.read_text() == "keep me"
    assert cli.main(["infer", str(checkpoints["pth"]), str(checkpoints["ckpt"]), "--html", str(report), "--force"]) == 0
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_audit_html_into_a_missing_folder_is_one_clear_error(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    mapping_file = tmp_path / "m.json"
    mapping_file.write_text(json.dumps({"head.weight": "fc.weight"}))
    assert cli.main(["audit", str(mapping_file), "--html", str(tmp_path / "no" / "r.html")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("automap: error:") and "does not exist" in err and err.count("\n") == 1
    assert load_mapping(mapping_file).flat() == {"head.weight": "fc.weight"}


def test_scores_and_labels_shared_between_pairs_read_back_per_pair() -> None:
    # Carried-over pairs share one scores dict and one labels dict; keys first seen late must not shift earlier pairs.
    scores = {"shape": 1.0, "leaf": 0.25}
    more = {"order": 0.5, "shape": 0.75}
    labels = {"decided_by": "names and structure"}
    other = {"block": "same as block 0 (repeated structure)", "decided_by": "tie"}
    evidence = [(scores, labels), (more, labels), (scores, other), (more, {}), (scores, labels)]
    pairs = tuple(
        Match(f"t.{i}.weight", f"s.{i}.weight", 0.9, target_shape=(2,), source_shape=(2,), evidence=e, labels=t)
        for i, (e, t) in enumerate(evidence)
    )
    mapping = NameMapping(Endpoint("s", "pytorch", 5), Endpoint("t", "mindspore", 5), pairs)
    data = Page(render_html(mapping)).data()
    for pair, (scores_of, labels_of) in zip(data["pairs"], evidence, strict=True):
        numbers = {k: v for k, v in zip(data["evidence_numeric"], pair[4], strict=False) if v is not None}
        texts = {k: data["strings"][v] for k, v in zip(data["evidence_text"], pair[5], strict=False) if v is not None}
        assert numbers == {k: round(v * 100) for k, v in scores_of.items()}
        assert texts == labels_of
