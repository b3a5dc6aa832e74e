"""Inference at scale, end to end from the command line, on synthetic but realistic listings (names and shapes
only) from LLaMA 7B to DeepSeek-V3 size.

The PyTorch side uses HuggingFace naming, the MindSpore side a MindFormers-style port (different module names,
`embedding_weight`, `w1/w2/w3`, norms declared in their own order). Each size's two listings are written as files
(the form `automap inspect --json` writes). Then, in rounds that interleave the sizes, each measurement runs in a
fresh process:

- `python -m automap infer SRC TGT -o M.json`, and the same with `--html R.html`: wall time and the peak memory
  of that process (its own resource usage, from `wait4`);
- the `--html` command again with each phase timed: read inputs, infer, summary, write mapping, write HTML
  (the rest is interpreter start-up, imports and exit); it runs `automap.cli.main` with those functions wrapped;
- the baseline: plain `json.load` of both listings, and `json.load` + `json.dumps` of the mapping just written.

Times are medians over the rounds; each ratio compares a time with the baseline of the same round, since
absolute times move with the machine and its load. Run from the repository root:

    python -m benchmarks.scale                                     # every size, 3 rounds
    python -m benchmarks.scale --sizes deepseek-v3-6l,deepseek-v3 --rounds 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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


PHASES = ("read inputs", "infer", "summary", "write mapping", "write HTML")
TARGET_SECONDS, TARGET_MB = 5.0, 500  # for the largest size, end to end


def write_inputs(name: str, folder: Path, source_format: str = "listing") -> tuple[Path, Path, dict[str, str]]:
    """The size's two input files and its ground truth.

    Listings are written as `automap inspect --json` writes them. A safetensors source has a real header and
    no data: the file is sparse (its data, terabytes at full size, is a hole that takes no disk space), which
    is all `automap infer` reads of it.
    """
    from automap.io.listing import write_to

    source, target, truth = listings(CONFIGS[name])
    paths = []
    for side, table in (("source", source), ("target", target)):
        if side == "source" and source_format == "safetensors":
            path = folder / f"{name}.{side}.safetensors"
            _write_sparse_safetensors(table, path)
        else:
            path = folder / f"{name}.{side}.json"
            with path.open("wb") as handle:
                write_to(handle, table.params, framework=table.framework, path=path.name)
        paths.append(path)
    return paths[0], paths[1], truth


def _write_sparse_safetensors(table: ParamTable, path: Path) -> None:
    """A safetensors file of `table`'s names and shapes (float32) whose data is a hole."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for record in table.params:
        size = math.prod(record.shape) * 4
        header[record.name] = {"dtype": "F32", "shape": list(record.shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with path.open("wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        handle.truncate(8 + len(encoded) + offset)


# Runs the command and reports its wall time and rusage. A process's peak-memory figure starts from that of the
# process that forked it (Linux carries it across exec), so the command is started from this small launcher,
# not from the benchmark, which holds listings of its own.
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps([seconds, cpu, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)]))
"""


def run_child(command: Sequence[str]) -> tuple[float, float, float]:
    """Run a command in a fresh process: (wall seconds, its CPU seconds, its peak resident memory in MB)."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *command], capture_output=True, text=True, check=False
    )
    if done.returncode or not done.stdout.strip():
        msg = f"{' '.join(command)}: the launcher failed:\n{done.stderr}"
        raise RuntimeError(msg)
    seconds, cpu, peak_mb, status = json.loads(done.stdout.strip().splitlines()[-1])
    if status:
        msg = f"{' '.join(command)} failed ({status}):\n{done.stderr}"
        raise RuntimeError(msg)
    return float(seconds), float(cpu), float(peak_mb)


def timed_phases(out: str, argv: list[str]) -> int:
    """Run `automap <argv>` in this process with each phase's function wrapped; write the times to `out`."""
    import automap.cli
    import automap.cli.infer as command
    import automap.engine.inference as inference
    import automap.mapping as mapping
    import automap.report.html as html

    times = dict.fromkeys(PHASES, 0.0)
    cpu = dict.fromkeys(PHASES, 0.0)

    def wrap(module: Any, name: str, phase: str) -> None:
        original: Callable[..., Any] = getattr(module, name)  # fails loudly if the command was reorganised

        def timed(*args: Any, **kwargs: Any) -> Any:
            begin, begin_cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                times[phase] += time.perf_counter() - begin
                cpu[phase] += time.process_time() - begin_cpu

        setattr(module, name, timed)

    wrap(command, "load", "read inputs")
    wrap(inference, "infer_mapping", "infer")
    wrap(command, "summary", "summary")
    wrap(mapping, "save_mapping", "write mapping")
    wrap(html, "write_html", "write HTML")
    status = automap.cli.main(argv)
    Path(out).write_text(json.dumps({"wall": times, "cpu": cpu}), encoding="utf-8")
    return status


def baseline(out: str, source: str, target: str, mapping: str) -> int:
    """Plain json on the same files: load both inputs (a safetensors file's header); load the written mapping and
    dump it again."""
    start = time.perf_counter()
    for path in (source, target):
        with Path(path).open("rb") as handle:
            if path.endswith(".safetensors"):
                json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
            else:
                json.load(handle)
    loaded = time.perf_counter()
    with Path(mapping).open(encoding="utf-8") as handle:
        document = json.load(handle)
    mapping_loaded = time.perf_counter()
    json.dumps(document)
    dumped = time.perf_counter()
    times = {
        "json.load listings": loaded - start,
        "json.load mapping": mapping_loaded - loaded,
        "json.dumps mapping": dumped - mapping_loaded,
    }
    Path(out).write_text(json.dumps(times), encoding="utf-8")
    return 0


def score(mapping_path: Path, truth: dict[str, str]) -> dict[str, Any]:
    """Accuracy against the ground truth, pairs flagged for review, and wrong pairs above the threshold."""
    document = json.loads(mapping_path.read_text(encoding="utf-8"))
    threshold = document["threshold"]
    right = flagged = wrong_confident = 0
    for pair in document["pairs"]:
        correct = pair["source"] == truth[pair["target"]] and not pair["transform"]
        right += correct
        flagged += pair["source"] is None or (pair["confidence"] < threshold and not pair["pinned"])
        wrong_confident += not correct and pair["confidence"] >= threshold
    return {
        "accuracy": right / len(document["pairs"]),
        "flagged": flagged,
        "wrong_confident": wrong_confident,
    }


def measure_round(name: str, source: Path, target: Path, folder: Path) -> dict[str, Any]:
    """One round of one size: both commands end to end, the timed phases, and the baseline."""
    python = sys.executable
    mapping, report, times = folder / f"{name}.mapping.json", folder / f"{name}.html", folder / f"{name}.times.json"
    infer = ["infer", str(source), str(target), "-o", str(mapping), "--force"]
    with_html = [*infer, "--html", str(report)]
    row: dict[str, Any] = {"load": os.getloadavg()[0]}
    row["seconds"], row["cpu"], row["peak_mb"] = run_child([python, "-m", "automap", *infer])
    row["html_seconds"], row["html_cpu"], row["html_peak_mb"] = run_child([python, "-m", "automap", *with_html])
    wall, cpu, _ = run_child([python, "-m", "benchmarks.scale", "--timed-phases", str(times), "--", *with_html])
    timed = json.loads(times.read_text(encoding="utf-8"))
    row["phases"] = {**timed["wall"], "other": wall - sum(timed["wall"].values())}
    row["phases_cpu"] = {**timed["cpu"], "other": cpu - sum(timed["cpu"].values())}
    run_child([python, "-m", "benchmarks.scale", "--baseline", str(times), str(source), str(target), str(mapping)])
    row["baseline"] = json.loads(times.read_text(encoding="utf-8"))
    return row


def summarise(name: str, tensors: int, rounds: list[dict[str, Any]], scores: dict[str, Any]) -> dict[str, Any]:
    """Medians (and ranges) over the rounds, and the ratios against each round's own baseline."""

    def median(get: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(get(r) for r in rounds)

    def spread(get: Callable[[dict[str, Any]], float]) -> list[float]:
        values = [get(r) for r in rounds]
        return [round(min(values), 3), round(max(values), 3)]

    def plain_json(r: dict[str, Any]) -> float:
        return float(r["baseline"]["json.load listings"] + r["baseline"]["json.dumps mapping"])

    summary: dict[str, Any] = {"model": name, "tensors": tensors, **scores}
    for key in ("seconds", "html_seconds"):
        summary[key] = round(median(lambda r, k=key: r[k]), 3)
        summary[f"{key}_range"] = spread(lambda r, k=key: r[k])
        summary[f"{key}_vs_json"] = round(median(lambda r, k=key: r[k] / plain_json(r)), 2)
    summary["cpu"] = round(median(lambda r: r["cpu"]), 3)
    summary["html_cpu"] = round(median(lambda r: r["html_cpu"]), 3)
    summary["peak_mb"] = round(max(r["peak_mb"] for r in rounds))
    summary["html_peak_mb"] = round(max(r["html_peak_mb"] for r in rounds))
    summary["phases"] = {p: round(median(lambda r, p=p: r["phases"][p]), 3) for p in (*PHASES, "other")}
    summary["phases_cpu"] = {p: round(median(lambda r, p=p: r["phases_cpu"][p]), 3) for p in (*PHASES, "other")}
    summary["baseline"] = {k: round(median(lambda r, k=k: r["baseline"][k]), 3) for k in rounds[0]["baseline"]}
    summary["plain_json"] = round(median(plain_json), 3)
    summary["read_vs_json_load"] = round(
        median(lambda r: r["phases"]["read inputs"] / r["baseline"]["json.load listings"]), 2
    )
    summary["write_vs_json_dumps"] = round(
        median(lambda r: r["phases"]["write mapping"] / r["baseline"]["json.dumps mapping"]), 2
    )
    summary["load_range"] = spread(lambda r: r["load"])
    return summary


def report(rows: list[dict[str, Any]]) -> str:
    """The tables: end to end, the phases, the growth from size to size, and the targets."""
    lines = [
        "End to end: `infer -o M.json`, then with `--html R.html` (wall seconds: median over rounds, min-max; cpu: "
        "median user+sys seconds;",
        "peak: the worst round; x json: wall / (json.load of both inputs + json.dumps of the mapping), same round):",
        f"{'model':15s} {'tensors':>8s} {'-o s':>6s} {'range':>11s} {'cpu':>5s} {'peak MB':>8s} {'x json':>7s} "
        f"{'+html s':>8s} {'range':>11s} {'cpu':>5s} {'peak MB':>8s} {'x json':>7s} {'accuracy':>9s} "
        f"{'flagged':>8s} {'wrong>=thr':>10s}",
    ]
    for r in rows:
        lines.append(
            f"{r['model']:15s} {r['tensors']:8d} {r['seconds']:6.2f} {_range(r['seconds_range']):>11s} "
            f"{r['cpu']:5.2f} {r['peak_mb']:8d} {r['seconds_vs_json']:7.2f} {r['html_seconds']:8.2f} "
            f"{_range(r['html_seconds_range']):>11s} {r['html_cpu']:5.2f} {r['html_peak_mb']:8d} "
            f"{r['html_seconds_vs_json']:7.2f} {r['accuracy']:9.2%} {r['flagged']:8d} {r['wrong_confident']:10d}"
        )
    lines += [
        "",
        "Phases of `infer -o M.json --html R.html` (median wall seconds, then CPU seconds; other = start-up, "
        "imports, exit), and the baseline (wall):",
        f"{'model':15s} "
        + " ".join(f"{p:>13s}" for p in (*PHASES, "other"))
        + f" {'json.load':>10s} {'json.dumps':>10s} {'read/load':>10s} {'write/dumps':>11s}",
    ]
    for r in rows:
        lines.append(
            f"{r['model']:15s} "
            + " ".join(f"{r['phases'][p]:13.3f}" for p in (*PHASES, "other"))
            + f" {r['baseline']['json.load listings']:10.3f} {r['baseline']['json.dumps mapping']:10.3f}"
            f" {r['read_vs_json_load']:10.2f} {r['write_vs_json_dumps']:11.2f}"
        )
        lines.append(f"{'  cpu':15s} " + " ".join(f"{r['phases_cpu'][p]:13.3f}" for p in (*PHASES, "other")))
    lines += ["", "Growth from the size before (time ratio for the tensor ratio; linear or better when <= it):"]
    for before, after in itertools.pairwise(rows):
        lines.append(_growth(before, after))
    by_name = {r["model"]: r for r in rows}
    if "deepseek-v3-6l" in by_name and "deepseek-v3" in by_name:
        lines += ["", "Growth 9k -> 90k:", _growth(by_name["deepseek-v3-6l"], by_name["deepseek-v3"])]
    largest = max(rows, key=lambda r: r["tensors"])
    worst = max(largest["seconds"], largest["html_seconds"])
    peak = max(largest["peak_mb"], largest["html_peak_mb"])
    lines += [
        "",
        f"Targets at {largest['model']} ({largest['tensors']:,} tensors): {worst:.2f} s end to end "
        f"(<= {TARGET_SECONDS:.0f} s: {'met' if worst <= TARGET_SECONDS else 'NOT met'}), peak {peak} MB "
        f"(<= {TARGET_MB} MB: {'met' if peak <= TARGET_MB else 'NOT met'}); CPU {largest['cpu']:.2f} s, "
        f"{largest['html_cpu']:.2f} s with HTML (what an idle machine's wall time comes to, less waiting for the disk)",
        "Load average (1 min) at the start of each measurement: "
        f"{min(r['load_range'][0] for r in rows):.1f}-{max(r['load_range'][1] for r in rows):.1f} "
        f"on {os.cpu_count()} cores",
    ]
    return "\n".join(lines)


def _range(values: list[float]) -> str:
    return f"{values[0]:.2f}-{values[1]:.2f}"


def _growth(before: dict[str, Any], after: dict[str, Any]) -> str:
    tensors = after["tensors"] / before["tensors"]
    parts = [f"{key} {after[key] / max(before[key], 1e-9):.2f}x" for key in ("seconds", "html_seconds")] + [
        f"{p} {after['phases'][p] / max(before['phases'][p], 1e-9):.2f}x"
        for p in ("read inputs", "infer", "write mapping", "write HTML")
    ]
    return f"  {before['model']} -> {after['model']}: {tensors:.2f}x tensors; " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--sizes", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all sizes (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", metavar="DIR", help="write the listings and outputs here (default: a temp dir)")
    parser.add_argument(
        "--source-format",
        choices=["listing", "safetensors"],
        default="listing",
        help="the source as a listing, or as a safetensors file (real header, no data: a sparse file)",
    )
    parser.add_argument("--timed-phases", nargs=1, help=argparse.SUPPRESS)  # internal: one timed command
    parser.add_argument("--baseline", nargs=4, help=argparse.SUPPRESS)  # internal: the plain json baseline
    args, rest = parser.parse_known_args(argv)
    if args.timed_phases:
        return timed_phases(args.timed_phases[0], [a for a in rest if a != "--"])
    if args.baseline:
        return baseline(*args.baseline)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    names = [n for n in args.sizes.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; known: {', '.join(CONFIGS)}")
    with tempfile.TemporaryDirectory(prefix="automap-scale-") as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        inputs = {name: write_inputs(name, folder, args.source_format) for name in names}
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for number in range(args.rounds):
            for name in names:
                source, target, _ = inputs[name]
                rounds[name].append(measure_round(name, source, target, folder))
                last = rounds[name][-1]
                print(
                    f"round {number + 1}: {name}: {last['seconds']:.2f} s, with HTML {last['html_seconds']:.2f} s "
                    f"(load {last['load']:.1f})",
                    file=sys.stderr,
                )
        rows = []
        for name in names:
            source, target, truth = inputs[name]
            scores = score(folder / f"{name}.mapping.json", truth)
            rows.append(summarise(name, len(truth), rounds[name], scores))
    print(report(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
