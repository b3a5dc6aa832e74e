"""Inference at scale: synthetic but realistic listings (names and shapes only) from LLaMA 7B to DeepSeek-V3 size.

The PyTorch side uses HuggingFace naming, the MindSpore side a MindFormers-style port (different module names,
`embedding_weight`, `w1/w2/w3`, norms declared in their own order). Each size runs in a fresh subprocess so its
peak memory is its own. Run from the repository root:

    python -m benchmarks.scale            # every size
    python -m benchmarks.scale --sizes llama-7b,mixtral-8x7b
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automap.records import ParamRecord, ParamTable


@dataclass(frozen=True)
class Config:
    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    experts: int = 0  # routed experts per MoE layer (0: dense)
    expert_intermediate: int = 0
    dense_layers: int = 0  # leading layers with a dense MLP in an MoE model
    shared_experts: int = 0
    fp8_scales: bool = False  # fp8 checkpoints carry a weight_scale_inv beside every matrix


CONFIGS = {
    c.name: c
    for c in (
        Config("llama-7b", 32, 4096, 11008, 32, 32, 32000),
        Config("llama-13b", 40, 5120, 13824, 40, 40, 32000),
        Config("llama-70b", 80, 8192, 28672, 64, 8, 32000),
        Config("llama-405b", 126, 16384, 53248, 128, 8, 128256),
        Config("mixtral-8x7b", 32, 4096, 14336, 32, 8, 32000, experts=8, expert_intermediate=14336),
        Config("mixtral-8x22b", 56, 6144, 16384, 48, 8, 32768, experts=8, expert_intermediate=16384),
        Config(  # the same MoE with a tenth of the layers: the 10x growth step up to full size
            "deepseek-v3-6l",
            6,
            7168,
            18432,
            128,
            128,
            129280,
            experts=256,
            expert_intermediate=2048,
            dense_layers=1,
            shared_experts=1,
            fp8_scales=True,
        ),
        Config(
            "deepseek-v3",
            61,
            7168,
            18432,
            128,
            128,
            129280,
            experts=256,
            expert_intermediate=2048,
            dense_layers=3,
            shared_experts=1,
            fp8_scales=True,
        ),
    )
}


def listings(config: Config) -> tuple[ParamTable, ParamTable, dict[str, str]]:
    """(torch listing, MindSpore listing, ground truth {ms name: torch name}) for one configuration."""
    torch_params: list[tuple[str, tuple[int, ...]]] = []
    ms_params: list[tuple[str, tuple[int, ...]]] = []
    truth: dict[str, str] = {}

    def pair(pt: str, ms: str, shape: tuple[int, ...], scaled: bool = False) -> None:
        torch_params.append((pt, shape))
        ms_params.append((ms, shape))
        truth[ms] = pt
        if scaled and config.fp8_scales and len(shape) == 2:
            scale = (math.ceil(shape[0] / 128), math.ceil(shape[1] / 128))
            pair(pt.replace(".weight", ".weight_scale_inv"), ms.replace(".weight", ".weight_scale_inv"), scale)

    h, head_dim = config.hidden, config.hidden // config.heads
    kv = config.kv_heads * head_dim
    pair("model.embed_tokens.weight", "model.tok_embeddings.embedding_weight", (config.vocab, h))
    for i in range(config.layers):
        pt, ms = f"model.layers.{i}", f"model.layers.{i}"
        # MindFormers declares the norms first, then attention, then the feed-forward block
        pair(f"{pt}.input_layernorm.weight", f"{ms}.attention_norm.weight", (h,))
        for proj, w, out, inp in (("q", "wq", h, h), ("k", "wk", kv, h), ("v", "wv", kv, h), ("o", "wo", h, h)):
            pair(f"{pt}.self_attn.{proj}_proj.weight", f"{ms}.attention.{w}.weight", (out, inp), scaled=True)
        pair(f"{pt}.post_attention_layernorm.weight", f"{ms}.ffn_norm.weight", (h,))
        if config.experts and i >= config.dense_layers:
            pair(f"{pt}.mlp.gate.weight", f"{ms}.feed_forward.router.dense.weight", (config.experts, h))
            f = config.expert_intermediate
            for e in range(config.experts):
                base, port = f"{pt}.mlp.experts.{e}", f"{ms}.feed_forward.routed_experts.{e}"
                pair(f"{base}.gate_proj.weight", f"{port}.w1.weight", (f, h), scaled=True)
                pair(f"{base}.down_proj.weight", f"{port}.w2.weight", (h, f), scaled=True)
                pair(f"{base}.up_proj.weight", f"{port}.w3.weight", (f, h), scaled=True)
            for _ in range(config.shared_experts):
                base, port = f"{pt}.mlp.shared_experts", f"{ms}.feed_forward.shared_experts"
                pair(f"{base}.gate_proj.weight", f"{port}.w1.weight", (f, h), scaled=True)
                pair(f"{base}.down_proj.weight", f"{port}.w2.weight", (h, f), scaled=True)
                pair(f"{base}.up_proj.weight", f"{port}.w3.weight", (f, h), scaled=True)
        else:
            f = config.intermediate
            pair(f"{pt}.mlp.gate_proj.weight", f"{ms}.feed_forward.w1.weight", (f, h), scaled=True)
            pair(f"{pt}.mlp.down_proj.weight", f"{ms}.feed_forward.w2.weight", (h, f), scaled=True)
            pair(f"{pt}.mlp.up_proj.weight", f"{ms}.feed_forward.w3.weight", (f, h), scaled=True)
    pair("model.norm.weight", "model.norm_out.weight", (h,))
    pair("lm_head.weight", "lm_head.weight", (config.vocab, h))

    def table(framework: Any, params: list[tuple[str, tuple[int, ...]]], order: list[str]) -> ParamTable:
        position = {name: i for i, name in enumerate(order)}
        ordered = sorted(params, key=lambda p: position[p[0]])
        return ParamTable(
            framework, config.name, tuple(ParamRecord(n, s, "float32", i) for i, (n, s) in enumerate(ordered))
        )

    # the orders the real files have (the corpus's llama_gqa and mixtral pairs): a HuggingFace checkpoint is a
    # safetensors file, sorted as text; MindFormers' .ckpt follows the port's declarations
    torch_order = sorted(n for n, _ in torch_params)
    ms_order = _mindformers_order([n for n, _ in ms_params])
    return table("pytorch", torch_params, torch_order), table("mindspore", ms_params, ms_order), truth


def _mindformers_order(names: list[str]) -> list[str]:
    """MindFormers' declaration order: the embedding, then per layer `ffn_norm`, `attention_norm`, attention, the
    feed-forward block (experts before their router), and last `norm_out` and `lm_head`."""

    def key(item: tuple[int, str]) -> tuple[int, int, int]:
        index, name = item
        parts = name.split(".")
        layer = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else (-1 if "embedding" in name else 10**9)
        kind = (
            0
            if name.endswith("ffn_norm.weight")
            else 1
            if name.endswith("attention_norm.weight")
            else 3
            if ".router." in name
            else 2
        )
        return (layer, kind, index)

    return [name for _, name in sorted(enumerate(names), key=key)]


def measure(name: str) -> dict[str, Any]:
    """Infer one size in this process and return its figures (run in a fresh subprocess by `main`)."""
    from automap.engine.inference import infer_mapping

    source, target, truth = listings(CONFIGS[name])
    start = time.perf_counter()
    mapping = infer_mapping(source, target)
    seconds = time.perf_counter() - start
    right = sum(1 for p in mapping.pairs if p.source == truth[p.target] and not p.transform)
    flagged = len(mapping.doubtful)
    wrong_confident = sum(
        1 for p in mapping.pairs if (p.source != truth[p.target] or p.transform) and p.confidence >= mapping.threshold
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": name,
        "tensors": len(target),
        "seconds": round(seconds, 2),
        "peak_mb": round(peak_mb),
        "accuracy": right / len(target),
        "flagged": flagged,
        "wrong_confident": wrong_confident,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--sizes", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
    rows = []
    for name in args.sizes.split(","):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale", "--one", name], capture_output=True, text=True, check=False
        )
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: {rows[-1]}", file=sys.stderr)
    print(
        f"{'model':15s} {'tensors':>8s} {'seconds':>8s} {'peak MB':>8s} {'accuracy':>9s} {'flagged':>8s} "
        f"{'wrong>=thr':>10s} {'time ratio / tensor ratio vs previous':>40s}"
    )
    previous = None
    for row in rows:
        growth = ""
        if previous is not None:
            tensor_ratio = row["tensors"] / previous["tensors"]
            time_ratio = row["seconds"] / max(previous["seconds"], 1e-9)
            growth = f"{time_ratio:.2f}x time for {tensor_ratio:.2f}x tensors"
        print(
            f"{row['model']:15s} {row['tensors']:8d} {row['seconds']:8.2f} {row['peak_mb']:8d} "
            f"{row['accuracy']:9.2%} {row['flagged']:8d} {row['wrong_confident']:10d} {growth:>40s}"
        )
        previous = row
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
