"""Traps found on real third-party ports (EnCodec, wav2vec2 and SAM between transformers and MindSpore ports).

Names come from the real code where the test can build it (PyTorch's weight-norm parametrization); the rest are
hand-written tables in the shape of those ports, with the truth written by hand. A pair may be flagged; a wrong
pair may never be confident.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from automap._decisions import DecidedBy
from automap._types import Framework
from automap.engine.inference import infer_mapping
from automap.engine.names import spelled
from automap.records import NameMapping, ParamRecord, ParamTable

Spec = tuple[str, tuple[int, ...]]


def _table(framework: Framework, specs: Sequence[Spec]) -> ParamTable:
    records = tuple(ParamRecord(name, shape, "float32", i) for i, (name, shape) in enumerate(specs))
    return ParamTable(framework, f"{framework}-model", records)


def _check(mapping: NameMapping, truth: Mapping[str, str | None]) -> tuple[list[str], list[str]]:
    """(targets paired wrongly at or above the threshold, targets paired rightly at or above it)."""
    wrong, right = [], []
    for pair in mapping.pairs:
        sure = pair.confidence >= mapping.threshold
        if pair.source == truth[pair.target]:
            right += [pair.target] if sure else []
        elif sure:
            wrong.append(f"{pair.target} <- {pair.source} ({pair.confidence:.3f})")
    return wrong, right


def test_pytorch_parametrization_names_are_read_as_the_tensors_they_store() -> None:
    assert spelled("dec.conv.parametrizations.weight.original0") == "dec.conv.weight_g"
    assert spelled("dec.conv.parametrizations.weight.original1") == "dec.conv.weight_v"
    assert spelled("parametrizations.weight.original") == "weight"
    assert spelled("a.parametrizations.weight.original2") == "a.parametrizations.weight.original2"
    assert spelled("encoder.layers.0.weight") == "encoder.layers.0.weight"


def _weight_norm_convs() -> list[Spec]:
    torch = pytest.importorskip("torch")
    from torch.nn.utils.parametrizations import weight_norm

    net = torch.nn.Sequential(
        *(weight_norm(torch.nn.Conv1d(8, 8, 3)) for _ in range(3)), weight_norm(torch.nn.Conv1d(8, 4, 1))
    )
    return [(name, tuple(t.shape)) for name, t in net.state_dict().items()]


def test_weight_norm_pieces_pair_with_the_ports_g_and_v_beside_a_recomputed_weight() -> None:
    # PyTorch >= 2.1 writes `parametrizations.weight.original0/1`; a MindSpore port keeps `weight_g`/`weight_v`
    # (and mindone's weight-norm cell also stores the weight it recomputes, which has no source)
    torch_specs = _weight_norm_convs()
    port: list[Spec] = []
    truth: dict[str, str | None] = {}
    for name, shape in torch_specs:
        module, _, rest = name.partition(".parametrizations.weight.")
        if not rest:
            port.append((name, shape))
            truth[name] = name
            continue
        leaf = {"original0": "weight_g", "original1": "weight_v"}[rest]
        port_shape = (*shape[:2], 1, shape[2])  # MindSpore's Conv1d weight is 4-D
        port.append((f"{module}.{leaf}", port_shape))
        truth[f"{module}.{leaf}"] = name
        if leaf == "weight_v":
            port.append((f"{module}.weight_norm_cell.weight", port_shape))
            truth[f"{module}.weight_norm_cell.weight"] = None
    mapping = infer_mapping(_table("pytorch", torch_specs), _table("mindspore", port))
    wrong, right = _check(mapping, truth)
    assert wrong == []
    assert {t for t in truth if t.endswith(("weight_g", "weight_v"))} <= set(right)


def _wav2vec2_layer(prefix: str) -> list[Spec]:
    return [
        (prefix + "attention.k_proj.weight", (16, 16)),
        (prefix + "attention.q_proj.weight", (16, 16)),
        (prefix + "attention.v_proj.weight", (16, 16)),
        (prefix + "attention.out_proj.weight", (16, 16)),
        (prefix + "layer_norm.weight", (16,)),
        (prefix + "layer_norm.bias", (16,)),
        (prefix + "feed_forward.intermediate_dense.weight", (32, 16)),
        (prefix + "feed_forward.output_dense.weight", (16, 32)),
        (prefix + "final_layer_norm.weight", (16,)),
        (prefix + "final_layer_norm.bias", (16,)),
    ]


@pytest.mark.parametrize("weights", [{}, {"convention": 0.0}], ids=["with tables", "without tables"])
def test_a_port_that_keeps_huggingface_names_is_not_renamed_by_an_alias(weights: dict[str, float]) -> None:
    # transformers renamed fairseq's `self_attn_layer_norm` to `layer_norm`, and calls other models' last norm
    # `final_layer_norm` where their original says `layer_norm`: a port that kept transformers' names (mindone)
    # must still pair each norm with itself
    specs = [spec for i in range(2) for spec in _wav2vec2_layer(f"encoder.layers.{i}.")]
    mapping = infer_mapping(_table("pytorch", specs), _table("mindspore", specs), weights=weights)
    wrong, right = _check(mapping, {name: name for name, _ in specs})
    assert wrong == []
    assert {n for n, _ in specs if "layer_norm" in n} <= set(right)


def _two_way_attention(prefix: str) -> list[Spec]:
    return [
        (prefix + f"{block}.{proj}.{leaf}", (8, 8) if leaf == "weight" else (8,))
        for block in ("cross_attn_token_to_image", "cross_attn_image_to_token")
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj")
        for leaf in ("weight", "bias")
    ]


def test_token_to_image_is_not_image_to_token() -> None:
    # SAM's two-way transformer: the same words in the other order are the other attention
    specs = [spec for i in range(2) for spec in _two_way_attention(f"mask_decoder.transformer.layers.{i}.")]
    mapping = infer_mapping(_table("pytorch", sorted(specs)), _table("mindspore", specs))
    wrong, right = _check(mapping, {name: name for name, _ in specs})
    assert wrong == []
    assert len(right) == len(specs)


def test_agreeing_numbers_in_containers_of_unequal_size_are_flagged() -> None:
    # the original SAM MLP numbers its three layers `layers.0-2`; transformers keeps `layers` for the hidden
    # ones only (`proj_in`, `layers.0`, `proj_out`): its `layers.0` is the original's `layers.1`
    hf: list[Spec] = []
    port: list[Spec] = []
    truth: dict[str, str | None] = {}
    for i in range(2):
        h = f"mask_decoder.output_hypernetworks_mlps.{i}."
        for leaf, shape in (("weight", (16, 16)), ("bias", (16,))):
            hf += [(h + f"proj_in.{leaf}", shape), (h + f"layers.0.{leaf}", shape)]
            port += [(h + f"layers.0.{leaf}", shape), (h + f"layers.1.{leaf}", shape)]
            truth[h + f"layers.0.{leaf}"] = h + f"proj_in.{leaf}"
            truth[h + f"layers.1.{leaf}"] = h + f"layers.0.{leaf}"
        out_shapes = (("weight", (4, 16)), ("bias", (4,)))
        hf += [(h + f"proj_out.{leaf}", shape) for leaf, shape in out_shapes]
        port += [(h + f"layers.2.{leaf}", shape) for leaf, shape in out_shapes]
        truth.update({h + f"layers.2.{leaf}": h + f"proj_out.{leaf}" for leaf, _ in out_shapes})
    mapping = infer_mapping(_table("pytorch", sorted(hf)), _table("mindspore", port))
    wrong, right = _check(mapping, truth)
    assert wrong == []
    flagged = {p.target for p in mapping.pairs if p.decided_by is DecidedBy.RENUMBERED}
    assert {t for t in truth if ".layers.0." in t or ".layers.1." in t} <= flagged
    assert {t for t in truth if ".layers.2." in t} <= set(right)  # the last layer's shape settles it
    # the file sorted as text shows no order, but the names do: `proj_in` first, `proj_out` last, the numbered
    # layers between them; the flagged members are paired by that rank
    assert {p.target: p.source for p in mapping.pairs} == truth


@pytest.mark.parametrize("other", ["norm", "proj_in_out"])
def test_a_member_whose_place_no_name_shows_keeps_the_renumbered_container_unordered(other: str) -> None:
    # beside `proj_in`, `layers.*` and `proj_out`, a member such as `norm` has no place in that order (nor has a
    # name that says both): no rank is given, and the members stay as the numbers put them, flagged
    hf: list[Spec] = []
    port: list[Spec] = []
    h = "mlp."
    for module, port_module in (("proj_in", "layers.0"), ("layers.0", "layers.1"), (other, "layers.2")):
        hf += [(h + f"{module}.weight", (16, 16)), (h + f"{module}.bias", (16,))]
        port += [(h + f"{port_module}.weight", (16, 16)), (h + f"{port_module}.bias", (16,))]
    mapping = infer_mapping(_table("pytorch", sorted(hf)), _table("mindspore", port))
    by_target = {p.target: p for p in mapping.pairs}
    assert by_target["mlp.layers.0.weight"].source != "mlp.proj_in.weight"
    assert all(p.confidence < mapping.threshold for p in mapping.pairs if ".layers.0." in p.target)


def test_where_both_files_keep_declaration_order_the_order_decides_and_the_pairs_stay_flagged() -> None:
    # the same MLPs saved with torch.save (declaration order: proj_in, layers, proj_out), not sorted as text
    hf: list[Spec] = []
    port: list[Spec] = []
    truth: dict[str, str | None] = {}
    for i in range(2):
        h = f"mlps.{i}."
        for module, port_module, shape in (
            ("proj_in", "layers.0", 16),
            ("layers.0", "layers.1", 16),
            ("proj_out", "layers.2", 4),
        ):
            for leaf, leaf_shape in (("weight", (shape, 16)), ("bias", (shape,))):
                hf.append((h + f"{module}.{leaf}", leaf_shape))
                port.append((h + f"{port_module}.{leaf}", leaf_shape))
                truth[h + f"{port_module}.{leaf}"] = h + f"{module}.{leaf}"
    mapping = infer_mapping(_table("pytorch", hf), _table("mindspore", port))
    for pair in mapping.pairs:
        assert pair.source == truth[pair.target], pair
        if ".layers.0." in pair.target or ".layers.1." in pair.target:
            assert pair.confidence < mapping.threshold


def test_containers_numbered_alike_are_not_flagged() -> None:
    specs = [
        (f"encoder.layers.{i}.{leaf}", (16, 16) if leaf == "weight" else (16,))
        for i in range(3)
        for leaf in ("weight", "bias")
    ]
    mapping = infer_mapping(_table("pytorch", specs), _table("mindspore", specs))
    assert not [p for p in mapping.pairs if p.decided_by is DecidedBy.RENUMBERED]


def _mixed_layout_port() -> tuple[ParamTable, ParamTable]:
    """A port that keeps its attention layers `(out, in)` but stores its MLP's layers `(in, out)`, square one too."""
    hidden, inner = 16, 32
    source: list[Spec] = []
    target: list[Spec] = []
    for i in range(2):
        for layer, shape in (("qkv", (3 * hidden, hidden)), ("kv", (2 * hidden, hidden)), ("gate", (8, hidden))):
            source.append((f"blocks.{i}.attn.{layer}.weight", shape))
            target.append((f"blocks.{i}.attention.{layer}.weight", shape))
        for layer, shape in (("fc1", (inner, hidden)), ("mid", (inner, inner)), ("fc2", (hidden, inner))):
            source.append((f"blocks.{i}.mlp.{layer}.weight", shape))
            target.append((f"blocks.{i}.ffn.{layer}.weight", shape[::-1]))
    return _table("pytorch", source), _table("mindspore", target)


def test_a_square_weight_whose_layout_nothing_shows_follows_its_sibling_layers_and_stays_flagged() -> None:
    # most of the port's non-square layers are kept (out, in), but the MLP beside the square `mid` is transposed
    source, target = _mixed_layout_port()
    mapping = infer_mapping(source, target)
    by_target = {p.target: p for p in mapping.pairs}
    for i in range(2):
        mid = by_target[f"blocks.{i}.ffn.mid.weight"]
        assert mid.source == f"blocks.{i}.mlp.mid.weight"
        assert [s.to_json()["op"] for s in mid.transform] == ["transpose"]
        assert mid.confidence < mapping.threshold and mid.decided_by is DecidedBy.LAYOUT_ONLY
        fc1 = by_target[f"blocks.{i}.ffn.fc1.weight"]
        assert [s.to_json()["op"] for s in fc1.transform] == ["transpose"]


def test_a_square_piece_of_a_fused_weight_takes_the_layout_its_published_table_states() -> None:
    # MindFormers' ViT script cuts timm's qkv into dense1-3 as they are, but transposes the projection and the
    # MLP: the port mixes layouts in one module, and only the table tells the pieces' layout
    dim = 16
    source: list[Spec] = []
    target: list[Spec] = []
    for i in range(2):
        source += [
            (f"blocks.{i}.attn.qkv.weight", (3 * dim, dim)),
            (f"blocks.{i}.attn.proj.weight", (dim, dim)),
            (f"blocks.{i}.mlp.fc1.weight", (4 * dim, dim)),
            (f"blocks.{i}.mlp.fc2.weight", (dim, 4 * dim)),
        ]
        target += [(f"vit.blocks.{i}.attention.dense{k}.weight", (dim, dim)) for k in (1, 2, 3)]
        target += [
            (f"vit.blocks.{i}.attention.projection.weight", (dim, dim)),
            (f"vit.blocks.{i}.output.mapping.weight", (dim, 4 * dim)),
            (f"vit.blocks.{i}.output.projection.weight", (4 * dim, dim)),
        ]
    mapping = infer_mapping(_table("pytorch", source), _table("mindspore", target))
    by_target = {p.target: p for p in mapping.pairs}
    for i in range(2):
        for k in range(3):
            piece = by_target[f"vit.blocks.{i}.attention.dense{k + 1}.weight"]
            assert piece.source == f"blocks.{i}.attn.qkv.weight"
            assert [s.to_json() for s in piece.transform] == [{"op": "split", "axis": 0, "parts": 3, "index": k}]
        projection = by_target[f"vit.blocks.{i}.attention.projection.weight"]
        assert [s.to_json()["op"] for s in projection.transform] == ["transpose"]


def test_a_target_concatenated_from_square_pieces_takes_the_layout_their_published_table_states() -> None:
    # MindFormers' GPT-2 keeps q, k, v as square `dense1-3` stored (out, in); HuggingFace's Conv1D `c_attn` is
    # (in, 3 * out): the pieces go in transposed, which their square shapes cannot show but the script states
    dim = 16
    source: list[Spec] = []
    target: list[Spec] = []
    for i in range(2):
        for k in (1, 2, 3):
            source += [(f"backbone.blocks.{i}.attention.dense{k}.weight", (dim, dim))]
            source += [(f"backbone.blocks.{i}.attention.dense{k}.bias", (dim,))]
        source += [(f"backbone.blocks.{i}.attention.projection.weight", (dim, dim))]
        source += [(f"backbone.blocks.{i}.output.mapping.weight", (dim, 4 * dim))]
        target += [(f"transformer.h.{i}.attn.c_attn.weight", (dim, 3 * dim))]
        target += [(f"transformer.h.{i}.attn.c_attn.bias", (3 * dim,))]
        target += [(f"transformer.h.{i}.attn.c_proj.weight", (dim, dim))]
        target += [(f"transformer.h.{i}.mlp.c_fc.weight", (dim, 4 * dim))]
    mapping = infer_mapping(_table("mindspore", source), _table("pytorch", target))
    by_target = {p.target: p for p in mapping.pairs}
    for i in range(2):
        fused = by_target[f"transformer.h.{i}.attn.c_attn.weight"]
        assert fused.source_names == tuple(f"backbone.blocks.{i}.attention.dense{k}.weight" for k in (1, 2, 3))
        assert [s.to_json() for s in fused.transform] == [{"op": "concat", "axis": 0}, {"op": "transpose"}]


def test_an_integer_tensor_is_never_cut_into_pieces_for_counters() -> None:
    # mindyolo keeps its detection head's `stride` (int32 [3]); ultralytics' BatchNorms count batches in int64
    # scalars that no MindSpore BatchNorm stores: the stride's elements are not counters, the counters stay
    # without a source (PyTorch's loader restores them)
    norms = [f"head.cv{n}.bn" for n in range(3)]
    source = [(f"{n}.{leaf}", (8,)) for n in norms for leaf in ("gamma", "beta", "moving_mean", "moving_variance")]
    records = [ParamRecord(name, shape, "float32", i) for i, (name, shape) in enumerate(source)]
    records.append(ParamRecord("head.stride", (3,), "int32", len(records)))
    leaves = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    target = [
        ParamRecord(
            f"{n}.{leaf}", () if leaf == "num_batches_tracked" else (8,), "int64" if leaf[0] == "n" else "float32", 0
        )
        for n in norms
        for leaf in leaves
    ]
    target = [ParamRecord(r.name, r.shape, r.dtype, i) for i, r in enumerate(target)]
    mapping = infer_mapping(ParamTable("mindspore", "ms", tuple(records)), ParamTable("pytorch", "pt", tuple(target)))
    counters = [p for p in mapping.pairs if p.target.endswith("num_batches_tracked")]
    assert len(counters) == 3 and all(p.source is None for p in counters), counters
    weights = {p.target: p.source for p in mapping.pairs if not p.target.endswith("num_batches_tracked")}
    assert weights["head.cv1.bn.running_var"] == "head.cv1.bn.moving_variance"


def _t5_decoder_block(prefix: str) -> list[Spec]:
    """HF T5's decoder block: each sublayer's norm inside the sublayer's own container (as sorted by safetensors)."""
    specs: list[Spec] = []
    for number, (module, weights) in enumerate(
        (("SelfAttention", "koqv"), ("EncDecAttention", "koqv"), ("DenseReluDense", ("wi", "wo")))
    ):
        for weight in weights:
            shape = (16, 8) if weight == "wi" else (8, 16) if weight == "wo" else (8, 8)
            specs.append((f"{prefix}.layer.{number}.{module}.{weight}.weight", shape))
        specs.append((f"{prefix}.layer.{number}.layer_norm.weight", (8,)))
    return specs


def _mindformers_t5_block(prefix: str) -> list[Spec]:
    """MindFormers' T5 block: numbered norms first, the cross-attention's norm named after it, all side by side."""
    specs: list[Spec] = [(f"{prefix}.layernorm1.gamma", (8,)), (f"{prefix}.layernorm2.gamma", (8,))]
    for attention in ("attention", "cross_attention"):
        specs += [(f"{prefix}.{attention}.{n}.weight", (8, 8)) for n in ("projection", "dense1", "dense2", "dense3")]
    specs.append((f"{prefix}.cross_attention_layernorm.gamma", (8,)))
    return [*specs, (f"{prefix}.output.mapping.weight", (16, 8)), (f"{prefix}.output.projection.weight", (8, 16))]


def _t5_truth(direction: str, blocks: int) -> dict[str, str]:
    """{target: source} of the T5 blocks' norms, the MindFormers names on the left."""
    truth = {}
    for b in range(blocks):
        ms, hf = f"decoder.blocks.{b}", f"decoder.block.{b}.layer"
        truth[f"{ms}.layernorm1.gamma"] = f"{hf}.0.layer_norm.weight"
        truth[f"{ms}.cross_attention_layernorm.gamma"] = f"{hf}.1.layer_norm.weight"
        truth[f"{ms}.layernorm2.gamma"] = f"{hf}.2.layer_norm.weight"
    return truth if direction == "pt2ms" else {hf_name: ms_name for ms_name, hf_name in truth.items()}


@pytest.mark.parametrize("direction", ["pt2ms", "ms2pt"])
def test_norms_named_after_a_sibling_or_numbered_pair_with_the_norms_inside_their_sublayers(direction: str) -> None:
    # T5: the cross-attention's norm is `layer.1.layer_norm` beside `layer.1.EncDecAttention` in HF, and
    # `cross_attention_layernorm` beside `cross_attention` in MindFormers; the other two are `layernorm1`/`layernorm2`
    # there and `layer.0`/`layer.2` here: numbered from 1 among the norms against 0 among the sublayers
    hf = _table("pytorch", [s for b in range(2) for s in _t5_decoder_block(f"decoder.block.{b}")])
    ms = _table("mindspore", [s for b in range(2) for s in _mindformers_t5_block(f"decoder.blocks.{b}")])
    source, target = (hf, ms) if direction == "pt2ms" else (ms, hf)
    mapping = infer_mapping(source, target)
    truth = _t5_truth(direction, 2)
    chosen = {p.target: p for p in mapping.pairs}
    assert {t: chosen[t].source for t in truth} == truth
    for name, pair in chosen.items():
        if name in truth and ("layernorm1" in name + str(pair.source) or "layernorm2" in name + str(pair.source)):
            assert pair.confidence < mapping.threshold, pair  # the order of the numbers is words: still flagged


def test_ordinals_of_numbered_siblings() -> None:
    from automap.engine.ordinals import ordinal

    assert ordinal("t5.blocks.0.layernorm2.gamma") == ("glued", "t5.blocks.0/layernorm/gamma", 2)
    assert ordinal("block.3.layer.1.layer_norm.weight") == ("index", "block.3.layer/layer_norm.weight", 1)
    assert ordinal("blocks.0.layernorm_after.weight") == ("placed", "blocks.0/layernorm/weight", 1)
    assert ordinal("blocks.0.pre_norm.weight") == ("placed", "blocks.0/norm/weight", 0)
    assert ordinal("vit.layers.0.attention.k_proj.weight") == ("placed", "vit.layers.0.attention/proj/weight", 1)
    assert ordinal("block.0.SelfAttention.v.weight") == ("placed", "block.0.SelfAttention//weight", 2)
    assert ordinal("encoder.norm.weight") is None


def test_only_a_norm_that_starts_with_its_siblings_name_serves_it() -> None:
    from automap.engine.features import role_modules
    from automap.engine.graph import ModuleTree

    table = _table(
        "pytorch",
        [
            *((f"layers.0.{m}.weight", (4, 4)) for m in ("self_attn", "attention", "conv")),
            *((f"layers.0.{m}.weight", (4,)) for m in ("self_attn_layer_norm", "post_attention_layernorm", "conv_1")),
            ("layers.0.attention_norm.weight", (4,)),
        ],
    )
    roles = role_modules(ModuleTree(table))
    assert roles == {
        "layers.0.self_attn_layer_norm": "layers.0.self_attn",
        "layers.0.attention_norm": "layers.0.attention",
    }


@pytest.mark.parametrize("direction", ["pt2ms", "ms2pt"])
def test_norms_placed_by_before_and_after_pair_with_numbered_norms_in_order(direction: str) -> None:
    # HF's Swin/ViT blocks: `layernorm_before`, `layernorm_after`; the ports: `norm1`, `norm2` (no rename table)
    hf, ms = [], []
    for b in range(2):
        hf += [(f"blocks.{b}.layernorm_{w}.{leaf}", (8,)) for w in ("after", "before") for leaf in ("bias", "weight")]
        hf += [(f"blocks.{b}.attention.query.weight", (8, 8)), (f"blocks.{b}.intermediate.dense.weight", (16, 8))]
        ms += [(f"layers.{b}.norm{n}.{leaf}", (8,)) for n in (1, 2) for leaf in ("gamma", "beta")]
        ms += [(f"layers.{b}.attn.q.weight", (8, 8)), (f"layers.{b}.mlp.fc1.weight", (16, 8))]
    hf_table, ms_table = _table("pytorch", hf), _table("mindspore", ms)
    source, target = (hf_table, ms_table) if direction == "pt2ms" else (ms_table, hf_table)
    mapping = infer_mapping(source, target, weights={"convention": 0.0})
    truth = {}
    for b in range(2):
        for n, word in ((1, "before"), (2, "after")):
            truth[f"layers.{b}.norm{n}.gamma"] = f"blocks.{b}.layernorm_{word}.weight"
            truth[f"layers.{b}.norm{n}.beta"] = f"blocks.{b}.layernorm_{word}.bias"
    if direction == "ms2pt":
        truth = {hf_name: ms_name for ms_name, hf_name in truth.items()}
    chosen = {p.target: p for p in mapping.pairs}
    assert {t: chosen[t].source for t in truth} == truth
    assert all(chosen[t].confidence < mapping.threshold for t in truth)  # the place comes from words: flagged


def _vit_tables() -> tuple[ParamTable, ParamTable]:
    """transformers' ViT (5.x names: separate `q_proj`...`o_proj`) and mindcv's (fused `qkv`, then `proj`), as
    both packages list them for width 64, 2 blocks, patch 8 on 32x32 images, 10 classes."""
    d, m = 64, 128
    hf: list[Spec] = [("vit.embeddings.cls_token", (1, 1, d)), ("vit.embeddings.position_embeddings", (1, 17, d))]
    hf += [("vit.embeddings.patch_embeddings.projection.weight", (d, 3, 8, 8))]
    hf += [("vit.embeddings.patch_embeddings.projection.bias", (d,))]
    ms: list[Spec] = [("cls_token", (1, 1, d)), ("pos_embed", (1, 17, d)), ("patch_embed.proj.weight", (d, 3, 8, 8))]
    ms += [("patch_embed.proj.bias", (d,))]
    for b in range(2):
        layer = f"vit.layers.{b}"
        for p in "qkvo":
            hf += [(f"{layer}.attention.{p}_proj.weight", (d, d)), (f"{layer}.attention.{p}_proj.bias", (d,))]
        hf += [(f"{layer}.layernorm_{w}.{leaf}", (d,)) for w in ("before", "after") for leaf in ("weight", "bias")]
        hf += [(f"{layer}.mlp.fc1.weight", (m, d)), (f"{layer}.mlp.fc1.bias", (m,))]
        hf += [(f"{layer}.mlp.fc2.weight", (d, m)), (f"{layer}.mlp.fc2.bias", (d,))]
        block = f"blocks.{b}"
        ms += [(f"{block}.norm1.gamma", (d,)), (f"{block}.norm1.beta", (d,))]
        ms += [(f"{block}.attn.qkv.weight", (3 * d, d)), (f"{block}.attn.qkv.bias", (3 * d,))]
        ms += [(f"{block}.attn.proj.weight", (d, d)), (f"{block}.attn.proj.bias", (d,))]
        ms += [(f"{block}.norm2.gamma", (d,)), (f"{block}.norm2.beta", (d,))]
        ms += [(f"{block}.mlp.fc1.weight", (m, d)), (f"{block}.mlp.fc1.bias", (m,))]
        ms += [(f"{block}.mlp.fc2.weight", (d, m)), (f"{block}.mlp.fc2.bias", (d,))]
    hf += [("vit.layernorm.weight", (d,)), ("vit.layernorm.bias", (d,))]
    hf += [("classifier.weight", (10, d)), ("classifier.bias", (10,))]
    ms += [("norm.gamma", (d,)), ("norm.beta", (d,)), ("head.weight", (10, d)), ("head.bias", (10,))]
    return _table("pytorch", hf), _table("mindspore", ms)


@pytest.mark.parametrize("weights", [None, {"convention": 0.0}])
def test_a_weight_alone_of_its_shape_in_its_block_is_not_placed_first_among_the_others(
    weights: dict[str, float] | None,
) -> None:
    # mindcv's `attn.proj` is the only [d, d] weight of its block (q, k and v are fused into `qkv`); transformers
    # has four: a rank among them says nothing about which one `proj` is, and must not pull it to the first, `q_proj`
    source, target = _vit_tables()
    mapping = infer_mapping(source, target, weights=weights)
    chosen = {p.target: p.source_names for p in mapping.pairs}
    for b in range(2):
        layer = f"vit.layers.{b}.attention"
        assert chosen[f"blocks.{b}.attn.proj.weight"] == (f"{layer}.o_proj.weight",)
        assert chosen[f"blocks.{b}.attn.proj.bias"] == (f"{layer}.o_proj.bias",)
        assert chosen[f"blocks.{b}.attn.qkv.weight"] == tuple(f"{layer}.{p}_proj.weight" for p in "qkv")
        assert chosen[f"blocks.{b}.attn.qkv.bias"] == tuple(f"{layer}.{p}_proj.bias" for p in "qkv")


def _mindformers_vit_table() -> ParamTable:
    """MindFormers' ViT as it lists itself: norms first, the attention's `projection` before `dense1..3` (q, k, v)."""
    d, m = 64, 128
    specs: list[Spec] = [("vit.cls_tokens", (1, 1, d)), ("vit.pos_embed", (1, 17, d))]
    specs += [("vit.patch_embed.proj.weight", (d, 3, 8, 8)), ("vit.patch_embed.proj.bias", (d,))]
    for b in range(2):
        block = f"vit.blocks.{b}"
        specs += [(f"{block}.layernorm{n}.{leaf}", (d,)) for n in (1, 2) for leaf in ("gamma", "beta")]
        for dense in ("projection", "dense1", "dense2", "dense3"):
            specs += [(f"{block}.attention.{dense}.weight", (d, d)), (f"{block}.attention.{dense}.bias", (d,))]
        specs += [(f"{block}.output.mapping.weight", (d, m)), (f"{block}.output.mapping.bias", (m,))]
        specs += [(f"{block}.output.projection.weight", (m, d)), (f"{block}.output.projection.bias", (d,))]
    specs += [("vit.fc_norm.gamma", (d,)), ("vit.fc_norm.beta", (d,)), ("head.weight", (10, d)), ("head.bias", (10,))]
    return _table("mindspore", specs)


@pytest.mark.parametrize("direction", ["pt2ms", "ms2pt"])
def test_a_numbered_series_pairs_with_a_named_one_in_order_and_the_one_left_with_the_other(direction: str) -> None:
    # MindFormers' attention lists `projection` (the output) before `dense1..3` (q, k, v); transformers' 5.x names
    # are `q_proj`, `k_proj`, `v_proj`, `o_proj`; no rename table covers the pair, and file order shifts every one
    hf, _ = _vit_tables()
    ms = _mindformers_vit_table()
    source, target = (hf, ms) if direction == "pt2ms" else (ms, hf)
    mapping = infer_mapping(source, target)
    truth = {}
    for b in range(2):
        for dense, proj in (("projection", "o"), ("dense1", "q"), ("dense2", "k"), ("dense3", "v")):
            for leaf in ("weight", "bias"):
                truth[f"vit.blocks.{b}.attention.{dense}.{leaf}"] = f"vit.layers.{b}.attention.{proj}_proj.{leaf}"
    if direction == "ms2pt":
        truth = {hf_name: ms_name for ms_name, hf_name in truth.items()}
    chosen = {p.target: p for p in mapping.pairs}
    assert {t: chosen[t].source for t in truth} == truth
    assert all(chosen[t].confidence < mapping.threshold for t in truth)  # the series' order is words: flagged
