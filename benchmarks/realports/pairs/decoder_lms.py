"""Decoder language models: HF transformers against mindformers (1.x)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.realports._pair import Inputs, RealPair, Truth, token_ids, transposed

_VOCAB, _LENGTH, _BATCH = 128, 16, 2


def hf_logits(model: Any, inputs: Inputs) -> list[np.ndarray]:
    """A HF causal LM's logits for the token ids."""
    import torch

    with torch.no_grad():
        return [model(input_ids=torch.from_numpy(inputs[0])).logits.float().numpy()]


def mindformers_logits(net: Any, inputs: Inputs) -> list[np.ndarray]:
    """A mindformers causal LM's logits (its first output in eval mode), token ids as int32."""
    import mindspore

    out = net(mindspore.Tensor(inputs[0].astype(np.int32)))
    return [(out[0] if isinstance(out, tuple) else out).asnumpy()]


def _mindformers_setup() -> None:
    from benchmarks.realports._setup import mindformers_on_cpu

    mindformers_on_cpu()


# --------------------------------------------------------------------------------- LLaMA (GQA), 1.3.2
# HF:          model.embed_tokens, model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj,
#              input_layernorm, post_attention_layernorm}, model.norm, lm_head.
# mindformers: model.tok_embeddings.embedding_weight, model.layers.N.{attention.w{q,k,v,o},
#              feed_forward.{w1 (gate), w3 (up), w2 (down)}, attention_norm (before attention), ffn_norm
#              (before the MLP, HF's post_attention_layernorm)}, model.norm_out, lm_head; ffn_norm listed first.
_LLAMA = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "ffn": 96}


def _llama_torch() -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=_VOCAB,
        hidden_size=_LLAMA["hidden"],
        intermediate_size=_LLAMA["ffn"],
        num_hidden_layers=_LLAMA["layers"],
        num_attention_heads=_LLAMA["heads"],
        num_key_value_heads=_LLAMA["kv_heads"],
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    return LlamaForCausalLM(config)


def _llama_mindspore() -> Any:
    from mindformers import LlamaConfig, LlamaForCausalLM

    from benchmarks.realports._setup import mindformers_missing_cast

    config = LlamaConfig(
        batch_size=_BATCH,
        seq_length=_LENGTH,
        vocab_size=_VOCAB,
        hidden_size=_LLAMA["hidden"],
        intermediate_size=_LLAMA["ffn"],
        num_layers=_LLAMA["layers"],
        num_heads=_LLAMA["heads"],
        n_kv_heads=_LLAMA["kv_heads"],
        rms_norm_eps=1e-5,
        theta=10000.0,
        compute_dtype="float32",
        layernorm_compute_type="float32",
        softmax_compute_type="float32",
        rotary_dtype="float32",
        param_init_type="float32",
        use_past=False,
        use_flash_attention=False,
        qkv_concat=False,
        use_rope_slice=True,  # the rotate-half by matrix product does not broadcast on the CPU
    )
    return mindformers_missing_cast(LlamaForCausalLM(config))


def _llama_truth() -> Truth:
    """{HF name: mindformers name} (MindSpore -> PyTorch)."""
    truth: Truth = {"model.embed_tokens.weight": "model.tok_embeddings.embedding_weight"}
    for n in range(_LLAMA["layers"]):
        hf, mf = f"model.layers.{n}", f"model.layers.{n}"
        for hf_proj, mf_proj in (("q_proj", "wq"), ("k_proj", "wk"), ("v_proj", "wv"), ("o_proj", "wo")):
            truth[f"{hf}.self_attn.{hf_proj}.weight"] = f"{mf}.attention.{mf_proj}.weight"
        for hf_proj, mf_proj in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2")):
            truth[f"{hf}.mlp.{hf_proj}.weight"] = f"{mf}.feed_forward.{mf_proj}.weight"
        truth[f"{hf}.input_layernorm.weight"] = f"{mf}.attention_norm.weight"
        truth[f"{hf}.post_attention_layernorm.weight"] = f"{mf}.ffn_norm.weight"
    truth["model.norm.weight"] = "model.norm_out.weight"
    truth["lm_head.weight"] = "lm_head.weight"
    return truth


LLAMA = RealPair(
    name="llama_gqa_mindformers_hf",
    family="decoder-lm",
    direction="ms2pt",
    packages=("mindformers", "transformers"),
    torch_model=_llama_torch,
    mindspore_model=_llama_mindspore,
    truth=_llama_truth,
    inputs=token_ids(_VOCAB, _LENGTH, _BATCH),
    torch_forward=hf_logits,
    mindspore_forward=mindformers_logits,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    swap=("model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"),
    setup=_mindformers_setup,
    notes="LLaMA with grouped-query attention (4 heads, 2 KV heads). mindformers 1.3.2 on the CPU: fused-kernel "
    "checks answer no, rotary embedding by slicing (use_rope_slice), and the RotaryEmbedding cell gets the Cast it "
    "lacks. The swap exchanges the two norms of a layer (attention_norm vs ffn_norm).",
)

# ----------------------------------------------------------------------------------------------- GPT-2
# HF:          wte, wpe, h.N.{ln_1, attn.c_attn (fused q|k|v, Conv1D (in, out)), attn.c_proj, ln_2, mlp.c_fc,
#              mlp.c_proj}, ln_f; lm_head tied to wte (save_pretrained leaves it out of the file).
# mindformers: backbone.embedding.{word,position}_embedding.embedding_table, backbone.blocks.N.{layernorm1,
#              layernorm2, attention.{projection, dense1 (q), dense2 (k), dense3 (v)}, output.{mapping,
#              projection}}, backbone.layernorm; q/k/v stored (out, in), the rest (in, out) like HF's Conv1D.
_GPT2 = {"hidden": 64, "layers": 2, "heads": 4, "positions": 32}


def _gpt2_torch() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=_VOCAB,
        n_positions=_GPT2["positions"],
        n_embd=_GPT2["hidden"],
        n_layer=_GPT2["layers"],
        n_head=_GPT2["heads"],
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        attn_implementation="eager",
    )
    return GPT2LMHeadModel(config)


def _gpt2_mindspore() -> Any:
    from mindformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        batch_size=_BATCH,
        seq_length=_LENGTH,
        vocab_size=_VOCAB,
        hidden_size=_GPT2["hidden"],
        num_layers=_GPT2["layers"],
        num_heads=_GPT2["heads"],
        max_position_embeddings=_GPT2["positions"],
        compute_dtype="float32",
        layernorm_compute_type="float32",
        softmax_compute_type="float32",
        param_init_type="float32",
        hidden_dropout_rate=0.0,
        attention_dropout_rate=0.0,
        use_past=False,
        use_flash_attention=False,
    )
    from benchmarks.realports._setup import mindformers_float32

    return mindformers_float32(GPT2LMHeadModel(config))


def _gpt2_truth() -> Truth:
    """{HF name: mindformers name} (MindSpore -> PyTorch)."""
    truth: Truth = {
        "transformer.wte.weight": "backbone.embedding.word_embedding.embedding_table",
        "transformer.wpe.weight": "backbone.embedding.position_embedding.embedding_table",
    }
    for n in range(_GPT2["layers"]):
        hf, mf = f"transformer.h.{n}", f"backbone.blocks.{n}"
        qkv = [f"{mf}.attention.dense{i}" for i in (1, 2, 3)]
        truth.update(
            {
                f"{hf}.ln_1.weight": f"{mf}.layernorm1.gamma",
                f"{hf}.ln_1.bias": f"{mf}.layernorm1.beta",
                f"{hf}.attn.c_attn.weight": {
                    "source": [f"{d}.weight" for d in qkv],
                    "transform": [{"op": "concat", "axis": 0}, {"op": "transpose"}],
                },
                f"{hf}.attn.c_attn.bias": {"source": [f"{d}.bias" for d in qkv], "transform": [{"op": "concat"}]},
                f"{hf}.attn.c_proj.weight": f"{mf}.attention.projection.weight",
                f"{hf}.attn.c_proj.bias": f"{mf}.attention.projection.bias",
                f"{hf}.ln_2.weight": f"{mf}.layernorm2.gamma",
                f"{hf}.ln_2.bias": f"{mf}.layernorm2.beta",
                f"{hf}.mlp.c_fc.weight": f"{mf}.output.mapping.weight",
                f"{hf}.mlp.c_fc.bias": f"{mf}.output.mapping.bias",
                f"{hf}.mlp.c_proj.weight": f"{mf}.output.projection.weight",
                f"{hf}.mlp.c_proj.bias": f"{mf}.output.projection.bias",
            }
        )
    truth["transformer.ln_f.weight"] = "backbone.layernorm.gamma"
    truth["transformer.ln_f.bias"] = "backbone.layernorm.beta"
    return truth


GPT2 = RealPair(
    name="gpt2_mindformers_hf",
    family="decoder-lm",
    direction="ms2pt",
    packages=("mindformers", "transformers"),
    torch_model=_gpt2_torch,
    mindspore_model=_gpt2_mindspore,
    truth=_gpt2_truth,
    inputs=token_ids(_VOCAB, _LENGTH, _BATCH),
    torch_forward=hf_logits,
    mindspore_forward=mindformers_logits,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    swap=("transformer.h.0.ln_1.weight", "transformer.h.0.ln_2.weight"),
    setup=_mindformers_setup,
    notes="GPT-2 (2 layers, width 64). HF's fused c_attn (Conv1D, (in, out)) is mindformers' separate dense1/2/3 "
    "stored (out, in): concatenated and transposed. lm_head is tied to wte on both sides and absent from both "
    "files.",
)

# ----------------------------------------------------------------------------------------------- BLOOM
# HF:          transformer.word_embeddings, transformer.word_embeddings_layernorm, transformer.h.N.{input_layernorm,
#              self_attention.query_key_value (fused, interleaved per head: [heads, 3, head_dim] rows),
#              self_attention.dense, post_attention_layernorm, mlp.dense_h_to_4h, mlp.dense_4h_to_h},
#              transformer.ln_f; lm_head tied to the word embeddings (not in the file).
# mindformers: embedding.word_embedding.embedding_table, embedding.norm, blocks.N.{layernorm1, attention.{dense1,
#              dense2, dense3 (q/k/v, (out, in)), projection ((in, out))}, layernorm2, output.{mapping,
#              projection} ((in, out))}, ln_f.
_BLOOM = {"hidden": 64, "layers": 2, "heads": 4}


def _bloom_torch() -> Any:
    from transformers import BloomConfig, BloomForCausalLM

    config = BloomConfig(
        vocab_size=_VOCAB,
        hidden_size=_BLOOM["hidden"],
        n_layer=_BLOOM["layers"],
        n_head=_BLOOM["heads"],
        hidden_dropout=0.0,
        attention_dropout=0.0,
        attn_implementation="eager",
    )
    return BloomForCausalLM(config)


def _bloom_mindspore() -> Any:
    from mindformers import BloomConfig, BloomLMHeadModel

    from benchmarks.realports._setup import mindformers_float32, mindformers_missing_cast

    config = BloomConfig(
        batch_size=_BATCH,
        seq_length=_LENGTH,
        vocab_size=_VOCAB,
        hidden_size=_BLOOM["hidden"],
        num_layers=_BLOOM["layers"],
        num_heads=_BLOOM["heads"],
        hidden_dropout_rate=0.0,
        attention_dropout_rate=0.0,
        compute_dtype="float32",
        layernorm_compute_type="float32",
        softmax_compute_type="float32",
        param_init_type="float32",
        embedding_init_type="float32",
        use_past=False,
        use_flash_attention=False,
    )
    net = mindformers_float32(mindformers_missing_cast(BloomLMHeadModel(config)))
    _bloom_embedding_in_float32(net.transformer.embedding)
    return net


def _bloom_embedding_in_float32(layer: Any) -> None:
    """mindformers 1.3.2's BLOOM embedding layer rounds its output to float16 in `construct`, whatever the compute
    type; the same computation without that rounding, for this one cell (no parameter changes)."""
    import types

    def construct(self: Any, input_ids: Any) -> Any:
        word_embedding, word_table = self.word_embedding(input_ids)
        return self.norm(word_embedding), word_table

    object.__setattr__(layer, "construct", types.MethodType(construct, layer))


def _bloom_truth() -> Truth:
    """{mindformers name: HF name} (PyTorch -> MindSpore)."""
    hidden, heads = _BLOOM["hidden"], _BLOOM["heads"]
    head_dim = hidden // heads
    truth: Truth = {
        "embedding.word_embedding.embedding_table": "transformer.word_embeddings.weight",
        "embedding.norm.gamma": "transformer.word_embeddings_layernorm.weight",
        "embedding.norm.beta": "transformer.word_embeddings_layernorm.bias",
    }
    for n in range(_BLOOM["layers"]):
        mf, hf = f"blocks.{n}", f"transformer.h.{n}"
        truth[f"{mf}.layernorm1.gamma"] = f"{hf}.input_layernorm.weight"
        truth[f"{mf}.layernorm1.beta"] = f"{hf}.input_layernorm.bias"
        for index in range(3):  # rows grouped by head, then q|k|v inside each head
            truth[f"{mf}.attention.dense{index + 1}.weight"] = {
                "source": f"{hf}.self_attention.query_key_value.weight",
                "transform": [
                    {"op": "reshape", "shape": [heads, 3, head_dim, hidden]},
                    {"op": "split", "axis": 1, "parts": 3, "index": index},
                    {"op": "reshape", "shape": [hidden, hidden]},
                ],
            }
            truth[f"{mf}.attention.dense{index + 1}.bias"] = {
                "source": f"{hf}.self_attention.query_key_value.bias",
                "transform": [
                    {"op": "reshape", "shape": [heads, 3, head_dim]},
                    {"op": "split", "axis": 1, "parts": 3, "index": index},
                    {"op": "reshape", "shape": [hidden]},
                ],
            }
        truth[f"{mf}.attention.projection.weight"] = transposed(f"{hf}.self_attention.dense.weight")
        truth[f"{mf}.attention.projection.bias"] = f"{hf}.self_attention.dense.bias"
        truth[f"{mf}.layernorm2.gamma"] = f"{hf}.post_attention_layernorm.weight"
        truth[f"{mf}.layernorm2.beta"] = f"{hf}.post_attention_layernorm.bias"
        truth[f"{mf}.output.mapping.weight"] = transposed(f"{hf}.mlp.dense_h_to_4h.weight")
        truth[f"{mf}.output.mapping.bias"] = f"{hf}.mlp.dense_h_to_4h.bias"
        truth[f"{mf}.output.projection.weight"] = transposed(f"{hf}.mlp.dense_4h_to_h.weight")
        truth[f"{mf}.output.projection.bias"] = f"{hf}.mlp.dense_4h_to_h.bias"
    truth["ln_f.gamma"] = "transformer.ln_f.weight"
    truth["ln_f.beta"] = "transformer.ln_f.bias"
    return truth


def _flat_logits(model: Any, inputs: Inputs) -> list[np.ndarray]:
    """HF logits as [batch * length, vocab], the layout mindformers' BLOOM returns."""
    logits = hf_logits(model, inputs)[0]
    return [logits.reshape(-1, logits.shape[-1])]


BLOOM = RealPair(
    name="bloom_hf_mindformers",
    family="decoder-lm",
    direction="pt2ms",
    packages=("transformers", "mindformers"),
    torch_model=_bloom_torch,
    mindspore_model=_bloom_mindspore,
    truth=_bloom_truth,
    inputs=token_ids(_VOCAB, _LENGTH, _BATCH),
    torch_forward=_flat_logits,
    mindspore_forward=mindformers_logits,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    setup=_mindformers_setup,
    notes="BLOOM (2 layers, width 64, ALiBi). HF's fused query_key_value is interleaved per head ([heads, 3, "
    "head_dim] rows): each of mindformers' dense1/2/3 takes its third of every head (reshape, split, reshape). "
    "mindformers stores the attention projection and MLP weights (in, out). mindformers' embedding layer rounds "
    "its output to float16 in construct: run without that rounding for the proof.",
)

# ------------------------------------------------------------------------------ Mixture of experts (Mixtral)
# HF (as save_pretrained writes it): model.layers.N.block_sparse_moe.{gate, experts.E.{w1 (gate), w2 (down),
#              w3 (up)}}, otherwise LLaMA's names.
# mindformers: LLaMA with a MoE config: model.layers.N.feed_forward.{router.dense, ffn.{w1, w2, w3}} with the experts
#              stacked on a leading axis ([experts, out, in]), otherwise its LLaMA names.
_MOE = {**_LLAMA, "experts": 4, "chosen": 2}


def _mixtral_torch() -> Any:
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(
        vocab_size=_VOCAB,
        hidden_size=_MOE["hidden"],
        intermediate_size=_MOE["ffn"],
        num_hidden_layers=_MOE["layers"],
        num_attention_heads=_MOE["heads"],
        num_key_value_heads=_MOE["kv_heads"],
        num_local_experts=_MOE["experts"],
        num_experts_per_tok=_MOE["chosen"],
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    return MixtralForCausalLM(config)


def _mindformers_moe() -> Any:
    from mindformers import LlamaConfig, LlamaForCausalLM
    from mindformers.modules.transformer.moe import MoEConfig

    from benchmarks.realports._setup import mindformers_float32, mindformers_missing_cast, mindspore_cpu_batch_matmul

    moe = MoEConfig(
        expert_num=_MOE["experts"],
        num_experts_chosen=_MOE["chosen"],
        capacity_factor=float(_MOE["experts"]),  # room for every token in every expert: nothing dropped
        aux_loss_factor=0.01,
        routing_policy="TopkRouterV2",
        norm_topk_prob=True,
    )
    config = LlamaConfig(
        batch_size=_BATCH,
        seq_length=_LENGTH,
        vocab_size=_VOCAB,
        hidden_size=_MOE["hidden"],
        intermediate_size=_MOE["ffn"],
        num_layers=_MOE["layers"],
        num_heads=_MOE["heads"],
        n_kv_heads=_MOE["kv_heads"],
        rms_norm_eps=1e-5,
        theta=10000.0,
        compute_dtype="float32",
        layernorm_compute_type="float32",
        softmax_compute_type="float32",
        rotary_dtype="float32",
        param_init_type="float32",
        use_past=False,
        use_flash_attention=False,
        qkv_concat=False,
        use_rope_slice=True,
        moe_config=moe,
    )
    net = LlamaForCausalLM(config)
    return mindspore_cpu_batch_matmul(mindformers_float32(mindformers_missing_cast(net)))


def _mixtral_truth() -> Truth:
    """{HF name: mindformers name} (MindSpore -> PyTorch)."""
    truth = {k: v for k, v in _llama_truth().items() if ".mlp." not in k}
    for n in range(_MOE["layers"]):
        hf, mf = f"model.layers.{n}.block_sparse_moe", f"model.layers.{n}.feed_forward"
        truth[f"{hf}.gate.weight"] = f"{mf}.router.dense.weight"
        for expert in range(_MOE["experts"]):
            for w in ("w1", "w2", "w3"):
                truth[f"{hf}.experts.{expert}.{w}.weight"] = {
                    "source": f"{mf}.ffn.{w}.weight",
                    "transform": [
                        {"op": "split", "axis": 0, "parts": _MOE["experts"], "index": expert},
                        {"op": "squeeze", "axis": 0},
                    ],
                }
    return truth


MIXTRAL = RealPair(
    name="mixtral_moe_mindformers_hf",
    family="decoder-lm",
    direction="ms2pt",
    packages=("mindformers", "transformers"),
    torch_model=_mixtral_torch,
    mindspore_model=_mindformers_moe,
    truth=_mixtral_truth,
    inputs=token_ids(_VOCAB, _LENGTH, _BATCH),
    torch_forward=hf_logits,
    mindspore_forward=mindformers_logits,
    torch_format="safetensors",
    rtol=1e-4,
    atol=1e-4,
    setup=_mindformers_setup,
    notes="Mixtral-style MoE (4 experts, top-2, grouped-query attention): mindformers' LLaMA with a MoE config "
    "(TopkRouterV2, capacity large enough that no token is dropped) against HF Mixtral as save_pretrained writes it "
    "(experts one by one, w1/w2/w3). mindformers stacks the experts: each HF expert is one slice. On the CPU the "
    "expert layers' batched matrix product gets its operands broadcast first.",
)

PAIRS = [LLAMA, GPT2, BLOOM, MIXTRAL]
