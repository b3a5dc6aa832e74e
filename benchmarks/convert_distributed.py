"""Distributed checkpoints at scale: `automap convert --workers 1` against `--workers 2` and `cp`, in one run.

The input is float32 tensors (LLaMA-shaped, hidden size 2048; about 2 GB by default), every one cut along axis 0
over 2 ranks, saved in one of two layouts (`--input`):

- `dcp`: by real `torch.distributed.checkpoint` from 2 gloo processes, every tensor a DTensor, so the folder
  holds one `.distcp` file per rank and a `.metadata` index;
- `mindspore`: as MindSpore's non-merged saving leaves it, `rank_0/`, `rank_1/` with one `.ckpt` each, written
  by `mindspore.save_checkpoint` with that rank's half of every tensor, and the parallel strategy file
  (MindSpore's own protobuf class, as the tests write it) saying each is cut along axis 0 over 2 devices.

Each route then runs in its own
subprocess, one after the other on the same disk, and its wall time and peak resident memory are taken
(`ru_maxrss` from `wait4`: the largest of the process and its reaped children, so with workers it is the
largest single process; the workers' own peaks are read from the report):

- `cp -r` of the checkpoint folder (the same bytes), then `cp -r` followed by `sync` (a conversion fsyncs
  its output, so this is the fair yardstick),
- `automap convert DIR --mapping m.json -o out/model.safetensors --max-shard-size SIZE` into sharded
  HuggingFace safetensors with its index, verified, with `--workers 1` and with `--workers 2`.

Before each route the writes of the routes before it are flushed (`sync`, untimed) and the source's pages are
evicted from the page cache (`--warm` keeps them). The routes run `--rounds` times (3), interleaved, each round in
an order of its own (as in `benchmarks.convert_scale`); the table gives median times, the worst peak RSS and the
per-round ratios (median, min-max). Run from the repository root:

    python -m benchmarks.convert_distributed                   # about 1.9 GB; needs ~6 GB free disk
    python -m benchmarks.convert_distributed --layers 2        # a quick 0.9 GB run
    python -m benchmarks.convert_distributed --input mindspore # MindSpore rank folders + strategy instead
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.convert_scale import MB, Result, _load, _median, _spread, evict, run, settle, shuffled

HIDDEN, INTERMEDIATE, VOCAB, KV = 2048, 5632, 32000, 256


def tensors(layers: int) -> list[tuple[str, tuple[int, int]]]:
    """(name, shape) of every tensor, HuggingFace's LLaMA names; every axis 0 is even (2 ranks cut it)."""
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
        prefix = f"model.layers.{i}"
        out += [
            (f"{prefix}.self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
            (f"{prefix}.self_attn.k_proj.weight", (KV, HIDDEN)),
            (f"{prefix}.self_attn.v_proj.weight", (KV, HIDDEN)),
            (f"{prefix}.self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
            (f"{prefix}.mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)),
            (f"{prefix}.mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)),
            (f"{prefix}.mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)),
            (f"{prefix}.input_layernorm.weight", (HIDDEN, 1)),
        ]
    return [*out, ("model.norm.weight", (HIDDEN, 1)), ("lm_head.weight", (VOCAB, HIDDEN))]


def _rank(rank: int, world: int, folder: str, port: int, layers: int) -> None:
    """One rank: its half of every tensor as a DTensor (generated here, never whole), saved with DCP."""
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        state: dict[str, Any] = {}
        for index, (name, (rows, cols)) in enumerate(tensors(layers)):
            generator = torch.Generator().manual_seed(index * world + rank)
            local = torch.rand((rows // world, cols), generator=generator) - 0.5
            state[name] = DTensor.from_local(local, mesh, [Shard(0)], run_check=False)
        dcp.save({"model": state}, checkpoint_id=folder)
    finally:
        dist.destroy_process_group()


def generate_mindspore(folder: Path, layers: int) -> None:
    """Write each rank's half of every tensor with `mindspore.save_checkpoint`, and the strategy (child process)."""
    import mindspore as ms
    import numpy as np

    from tests._distributed_fixtures import strategy_message

    listed = tensors(layers)
    layouts = {name: (shape, "float32", [2], [0, -1], 0, 0) for name, shape in listed}
    (folder / "strategy").mkdir(parents=True)
    (folder / "strategy" / "strategy.ckpt").write_bytes(strategy_message(layouts, 0).SerializeToString())
    for rank in range(2):
        rank_folder = folder / "checkpoint" / f"rank_{rank}"
        rank_folder.mkdir(parents=True)
        halves = []
        for index, (name, (rows, cols)) in enumerate(listed):
            local = np.random.default_rng(index * 2 + rank).random((rows // 2, cols), dtype=np.float32) - 0.5
            halves.append({"name": name, "data": ms.Tensor(local)})
        ms.save_checkpoint(halves, str(rank_folder / f"net_rank_{rank}.ckpt"))
        del halves


def generate(folder: Path, layers: int) -> None:
    """Save the checkpoint from 2 forked ranks (runs in a child process, so the driver imports no torch)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.start_processes(_rank, args=(2, str(folder), port, layers), nprocs=2, join=True, start_method="fork")


def _sizes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _workers_rss(log: Path) -> int:
    """The sum of the workers' peak memory in the last route's report (`worker N: ..., peak memory X MiB`)."""
    last = log.read_text(errors="replace").rsplit("\n== ", 1)[-1]
    units = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    found = re.findall(r"^worker \d+: .*peak memory ([\d.]+) (\w+)$", last, re.MULTILINE)
    return int(sum(float(value) * units[unit] for value, unit in found))


def table(runs: dict[str, list[Result]], workers_rss: dict[str, list[int]]) -> str:
    """Markdown: median seconds and MB/s, worst peak RSS, per-round ratios (median, min-max)."""
    rows = [
        "| route | seconds | MB/s | peak RSS, one process (MB) | workers' peaks summed (MB) | throughput vs cp + sync "
        "| vs cp | vs --workers 1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    one = next((r for r in runs if r.endswith("--workers 1")), "")
    for route, results in runs.items():
        seconds = _median([r.seconds for r in results])
        failed = [r.returncode for r in results if r.returncode]
        name = route + (f" (FAILED, exit {failed[0]})" if failed else "")
        summed = max(workers_rss.get(route, [0]))
        rows.append(
            f"| {name} | {seconds:.1f} | {results[0].nbytes / MB / seconds:.0f} "
            f"| {max(r.peak_rss for r in results) / MB:.0f} | {summed / MB:.0f} "
            f"| {_spread(_ratio(runs, route, 'cp + sync'))} | {_spread(_ratio(runs, route, 'cp'))} "
            f"| {_spread(_ratio(runs, route, one)) if route.startswith('automap') else '-'} |"
        )
    return "\n".join(rows)


def _ratio(runs: dict[str, list[Result]], route: str, reference: str) -> list[float]:
    """Per-round throughput ratios: the reference's time over the route's."""
    return [ref.seconds / r.seconds for ref, r in zip(runs.get(reference, []), runs[route], strict=False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8, help="transformer layers (8: about 1.9 GB)")
    parser.add_argument("--input", choices=("dcp", "mindspore"), default="dcp", help="the layout to convert from")
    parser.add_argument("--max-shard-size", default="250MB", help="shard size of the output (default 250MB)")
    parser.add_argument("--dir", type=Path, help="where to write (default: a new temporary folder)")
    parser.add_argument("--rounds", type=int, default=3, help="run every route this many times, interleaved")
    parser.add_argument("--warm", action="store_true", help="keep the source in the page cache between routes")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)  # the child that saves the checkpoint
    args = parser.parse_args(argv)
    if args.generate_into:
        (generate_mindspore if args.input == "mindspore" else generate)(args.generate_into, args.layers)
        return 0

    folder = Path(tempfile.mkdtemp(prefix="automap-convert-distributed-", dir=args.dir))
    log = folder / "routes.log"
    saved, copy, out = folder / args.input, folder / "copy", folder / "out"
    # the folder automap is given; a MindSpore run finds its strategy in the `strategy/` folder beside it
    source = saved / "checkpoint" if args.input == "mindspore" else saved
    listed = tensors(args.layers)
    total = sum(math.prod(shape) * 4 for _, shape in listed)
    largest = max(math.prod(shape) * 4 for _, shape in listed)
    python = sys.executable
    runs: dict[str, list[Result]] = {}
    workers_rss: dict[str, list[int]] = {}
    try:
        start = time.perf_counter()
        command = [python, "-m", "benchmarks.convert_distributed", f"--layers={args.layers}", f"--input={args.input}"]
        subprocess.run([*command, f"--generate-into={saved}"], check=True)
        on_disk = _sizes(saved)
        data = sorted(p for p in source.rglob("*") if p.is_file())
        files = [str(p.relative_to(source)) for p in data]
        writer = "mindspore.save_checkpoint per rank" if args.input == "mindspore" else "torch.distributed.checkpoint"
        print(
            f"{len(listed)} float32 tensors, {total / 1e9:.2f} GB (largest {largest / MB:.0f} MB), saved by "
            f"{writer} from 2 ranks in {time.perf_counter() - start:.0f} s: {', '.join(files)} ({on_disk / 1e9:.2f} GB)"
        )
        mapping = folder / "mapping.json"
        subprocess.run(
            [python, "-m", "automap", "infer", str(source), str(source), "-o", str(mapping)],
            check=True,
            capture_output=True,
        )
        convert = [python, "-m", "automap", "convert", str(source), "--mapping", str(mapping), "--target", str(source)]
        sharded = ["-o", str(out / "model.safetensors"), "--max-shard-size", args.max_shard_size, "--quiet"]
        routes = [
            ("cp", ["cp", "-r", str(saved), str(copy)], copy),
            ("cp + sync", ["sh", "-c", 'cp -r "$1" "$2" && sync', "sh", str(saved), str(copy)], copy),
            ("automap convert --workers 1", [*convert, *sharded, "--workers", "1"], out),
            ("automap convert --workers 2", [*convert, *sharded, "--workers", "2"], out),
        ]
        runs.update((route, []) for route, _, _ in routes)  # the table lists them in this order
        loads = [_load()]
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}/{args.rounds} (load average {_load():.2f})")
            for route, argv_, output in shuffled(routes, round_):
                if route.startswith("automap"):
                    output.mkdir()
                settle()
                if not args.warm:
                    evict(*data)
                result = run(route, argv_, total, log)
                runs.setdefault(route, []).append(result)
                if route.startswith("automap"):
                    workers_rss.setdefault(route, []).append(_workers_rss(log))
                status = "" if result.returncode == 0 else f"  FAILED (exit {result.returncode})"
                print(f"  {route}: {result.seconds:.1f} s, peak RSS {result.peak_rss / MB:.0f} MB{status}")
                if result.returncode:
                    print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
                shutil.rmtree(output, ignore_errors=True)
        loads.append(_load())
        print()
        print(f"load average (1 min) {loads[0]:.2f} at the start, {loads[-1]:.2f} at the end, on {os.cpu_count()} CPUs")
        print(
            f"{total / 1e9:.2f} GB in {len(data)} {args.input} files -> sharded safetensors "
            f"({args.max_shard_size} shards, verified), "
            f"{'warm' if args.warm else 'cold'} page cache, {args.rounds} interleaved rounds: median seconds, worst "
            "peak RSS, ratios per round as median (min-max)"
        )
        print(table(runs, workers_rss))
        last = log.read_text(errors="replace").rsplit("\n== ", 1)[-1]
        print()
        print("the last --workers 2 run's report:")
        print("\n".join("  " + line for line in last.splitlines()[1:] if line.startswith(("worker", "verified"))))
        if args.json:
            document = {
                "input": args.input,
                "total_bytes": total,
                "largest_tensor_bytes": largest,
                "max_shard_size": args.max_shard_size,
                "cache": "warm" if args.warm else "cold",
                "load_average": loads,
                "runs": {route: [vars(r) for r in results] for route, results in runs.items()},
                "workers_rss": workers_rss,
            }
            args.json.write_text(json.dumps(document, indent=1) + "\n")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if all(r.returncode == 0 for results in runs.values() for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
