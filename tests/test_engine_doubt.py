"""The engine's honesty on the failure classes real ports show: what the checkpoints cannot settle is flagged.

Each test is a small hand-built pair of tables in the shape of a real port (HuggingFace names against a
MindFormers-style port, a T5-style block of numbered sub-layers, a safetensors file whose names are sorted as
text) whose truth is written by hand. A pair may be flagged; a wrong pair may never be confident. The engine
runs without the libraries' published rename tables here (`PLAIN`), which would settle these ports by name:
the point is what it does without them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from automap._decisions import DecidedBy
from automap._types import Framework
from automap.engine.inference import infer_mapping
from automap.records import NameMapping, ParamRecord, ParamTable
from automap.transforms import Transpose

Spec = tuple[str, tuple[int, ...]]
PLAIN = {"convention": 0.0}


def _table(framework: Framework, specs: Sequence[Spec]) -> ParamTable:
    records = tuple(ParamRecord(name, shape, "float32", i) for i, (name, shape) in enumerate(specs))
    return ParamTable(framework, f"{framework}-model", records)


def _confidently_wrong(mapping: NameMapping, truth: Mapping[str, str]) -> list[str]:
    """Targets whose pair is wrong (source or transposition) and not flagged for review."""
    doubtful = {p.target for p in mapping.doubtful}
    out = []
    for pair in mapping.pairs:
        source, transposed = truth[pair.target].split("|") if "|" in truth[pair.target] else (truth[pair.target], "")
        wrong = pair.source != source or any(isinstance(s, Transpose) for s in pair.transform) != bool(transposed)
        if wrong and pair.target not in doubtful:
            out.append(pair.target)
    return out


def _decoder(layers: int) -> tuple[ParamTable, ParamTable, dict[str, str]]:
    """HF LLaMA names (a safetensors file: sorted as text) against MindFormers' (declaration order)."""
    hf: list[Spec] = [("lm_head.weight", (128, 16)), ("model.embed_tokens.weight", (128, 16))]
    port: list[Spec] = [("model.tok_embeddings.embedding_weight", (128, 16))]
    truth = {"model.tok_embeddings.embedding_weight": "model.embed_tokens.weight", "lm_head.weight": "lm_head.weight"}
    for i in range(layers):
        h, m = f"model.layers.{i}.", f"model.layers.{i}."
        hf += [
            (h + "input_layernorm.weight", (16,)),
            (h + "mlp.down_proj.weight", (16, 24)),
            (h + "mlp.gate_proj.weight", (24, 16)),
            (h + "mlp.up_proj.weight", (24, 16)),
            (h + "post_attention_layernorm.weight", (16,)),
            (h + "self_attn.k_proj.weight", (8, 16)),
            (h + "self_attn.o_proj.weight", (16, 16)),
            (h + "self_attn.q_proj.weight", (16, 16)),
            (h + "self_attn.v_proj.weight", (8, 16)),
        ]
        # the port declares the norm before the MLP first, as MindFormers' decoder layer does
        port += [
            (m + "ffn_norm.weight", (16,)),
            (m + "attention_norm.weight", (16,)),
            (m + "attention.wq.weight", (16, 16)),
            (m + "attention.wk.weight", (8, 16)),
            (m + "attention.wv.weight", (8, 16)),
            (m + "attention.wo.weight", (16, 16)),
            (m + "feed_forward.w1.weight", (24, 16)),
            (m + "feed_forward.w2.weight", (16, 24)),
            (m + "feed_forward.w3.weight", (24, 16)),
        ]
        truth.update(
            {
                m + "attention_norm.weight": h + "input_layernorm.weight",
                m + "ffn_norm.weight": h + "post_attention_layernorm.weight",
                m + "attention.wq.weight": h + "self_attn.q_proj.weight",
                m + "attention.wk.weight": h + "self_attn.k_proj.weight",
                m + "attention.wv.weight": h + "self_attn.v_proj.weight",
                m + "attention.wo.weight": h + "self_attn.o_proj.weight",
                m + "feed_forward.w1.weight": h + "mlp.gate_proj.weight",
                m + "feed_forward.w2.weight": h + "mlp.down_proj.weight",
                m + "feed_forward.w3.weight": h + "mlp.up_proj.weight",
            }
        )
    port += [("model.norm_out.weight", (16,)), ("lm_head.weight", (128, 16))]
    truth["model.norm_out.weight"] = "model.norm.weight"
    hf.insert(2 + 9 * layers, ("model.norm.weight", (16,)))
    return _table("pytorch", sorted(hf)), _table("mindspore", port), truth


def test_a_qualifier_marks_the_words_it_governs() -> None:
    from automap.engine.names import qualify, tokenize

    assert qualify(["post", "attention", "layernorm"]) == ["post", "post:attention", "layernorm"]
    assert qualify(["attention", "norm"]) == ["attention", "norm"]
    assert qualify(["pre", "feedforward", "layernorm"]) == ["pre", "pre:feedforward", "layernorm"]
    # the norm after attention shares no attention token with the port's attention norm
    after = tokenize("model.layers.0.post_attention_layernorm.weight")
    before = tokenize("model.layers.0.attention_norm.weight")
    assert not ({"attention", "=attention"} & set(after.path))
    assert {"attention", "=attention"} <= set(before.path)


def test_the_norm_after_attention_is_never_confidently_the_attention_norm() -> None:
    source, target, truth = _decoder(2)
    mapping = infer_mapping(source, target, weights=PLAIN)
    assert _confidently_wrong(mapping, truth) == []
    for i in range(2):
        pair = mapping.pair_for(f"model.layers.{i}.attention_norm.weight")
        assert pair is not None
        assert pair.source != f"model.layers.{i}.post_attention_layernorm.weight" or pair.confidence < mapping.threshold


def test_a_file_sorted_as_text_lends_no_order_inside_a_block() -> None:
    # q/k/v/o: names tell q and o apart (`wq` ~ `q_proj`), the alphabet of the sorted file (`o_proj` before
    # `q_proj`) must not override them
    source, target, _ = _decoder(2)
    mapping = infer_mapping(source, target, weights=PLAIN)
    for i in range(2):
        for short, long in (("q", "q"), ("o", "o")):
            pair = mapping.pair_for(f"model.layers.{i}.attention.w{short}.weight")
            assert pair is not None and pair.source == f"model.layers.{i}.self_attn.{long}_proj.weight"


def test_mlp_weights_only_the_layout_tells_apart_are_flagged_until_a_reviewed_pair_settles_the_family() -> None:
    # w1 [24,16] against gate_proj/up_proj [24,16] (exact) and down_proj [16,24] (transposed): no name says which
    source, target, truth = _decoder(3)
    mapping = infer_mapping(source, target, weights=PLAIN)
    assert _confidently_wrong(mapping, truth) == []
    w2 = mapping.pair_for("model.layers.1.feed_forward.w2.weight")
    assert w2 is not None and w2.confidence < mapping.threshold
    # a person reviews layer 0's MLP; that settles how the family is stored, and the pattern spreads
    reviewed = tuple(
        replace(p, source=truth[p.target], transform=(), pinned=True)
        if ".layers.0.feed_forward." in p.target
        or ".layers.0.attention_norm" in p.target
        or ".layers.0.ffn_n" in p.target
        else p
        for p in mapping.pairs
    )
    again = infer_mapping(source, target, pins=replace(mapping, pairs=reviewed), weights=PLAIN)
    assert _confidently_wrong(again, truth) == []
    for i in range(3):
        pair = again.pair_for(f"model.layers.{i}.feed_forward.w2.weight")
        assert pair is not None and pair.source == truth[pair.target] and pair.confidence >= again.threshold


def _t5_block() -> tuple[ParamTable, ParamTable, dict[str, str]]:
    """Numbered sub-layers of different kinds (self-attention, cross-attention, MLP) with a norm each."""
    hf: list[Spec] = []
    for i in range(2):
        b = f"decoder.block.{i}.layer."
        hf += [
            (b + "0.SelfAttention.q.weight", (16, 16)),
            (b + "0.layer_norm.weight", (16,)),
            (b + "1.EncDecAttention.q.weight", (16, 16)),
            (b + "1.layer_norm.weight", (16,)),
            (b + "2.DenseReluDense.wi.weight", (32, 16)),
            (b + "2.layer_norm.weight", (16,)),
        ]
    port: list[Spec] = []
    truth: dict[str, str] = {}
    for i in range(2):
        m, h = f"decoder.blocks.{i}.", f"decoder.block.{i}.layer."
        # the port declares its norms together, against the order they run in
        port += [
            (m + "layernorm1.gamma", (16,)),
            (m + "layernorm2.gamma", (16,)),
            (m + "attention.dense1.weight", (16, 16)),
            (m + "cross_attention.dense1.weight", (16, 16)),
            (m + "cross_attention_layernorm.gamma", (16,)),
            (m + "output.mapping.weight", (32, 16)),
        ]
        truth.update(
            {
                m + "layernorm1.gamma": h + "0.layer_norm.weight",
                m + "cross_attention_layernorm.gamma": h + "1.layer_norm.weight",
                m + "layernorm2.gamma": h + "2.layer_norm.weight",
                m + "attention.dense1.weight": h + "0.SelfAttention.q.weight",
                m + "cross_attention.dense1.weight": h + "1.EncDecAttention.q.weight",
                m + "output.mapping.weight": h + "2.DenseReluDense.wi.weight",
            }
        )
    return _table("pytorch", hf), _table("mindspore", port), truth


def test_numbered_sub_layers_of_different_kinds_lend_no_order() -> None:
    source, target, truth = _t5_block()
    mapping = infer_mapping(source, target, weights=PLAIN)
    assert _confidently_wrong(mapping, truth) == []
    norms = [p for p in mapping.pairs if "norm" in p.target]
    wrong = [p for p in norms if p.source != truth[p.target]]
    assert all(p.confidence < mapping.threshold for p in wrong)
    assert any(p.decided_by in (DecidedBy.ORDER_ONLY, DecidedBy.TIE) for p in norms)


def test_the_published_rename_tables_settle_the_port_by_name() -> None:
    # MindFormers' LLaMA conversion script states every one of these correspondences: nothing is left to review
    source, target, truth = _decoder(3)
    mapping = infer_mapping(source, target)
    assert _confidently_wrong(mapping, truth) == []
    assert [p.target for p in mapping.pairs if p.source != truth[p.target]] == []
    assert mapping.doubtful == ()
