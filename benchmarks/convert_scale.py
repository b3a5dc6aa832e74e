"""Conversion at scale: time and peak memory of `automap convert` against `cp` and the naive route, in one run.

A LLaMA-shaped checkpoint of float32 tensors (TinyLlama-1.1B's shapes by default: 4.4 GB, largest tensor
262 MB) is generated tensor by tensor, as a PyTorch `.pth` and as a `.safetensors` file with HuggingFace
names, and as a MindSpore `.ckpt` with MindFormers names. Each route then runs in its own subprocess, one after
the other on the same disk, and its wall time and peak resident memory (`ru_maxrss` of the finished child, from
`wait4`) are taken:

- `cp` of the `.pth`, then `cp` followed by `sync` of the copy (a conversion fsyncs its output, so this is
  the fair yardstick), and `cp` + `sync` of the `.safetensors` and of the `.ckpt`: every route is compared with
  the copy of the file it reads, since two files of the same size need not read equally fast from a virtual disk,
- `automap convert model.pth -o model.ckpt` (renaming to MindFormers names, verified), also with `--no-verify`,
- `automap convert model.safetensors -o out.safetensors` (verified), also with `--no-verify`,
- the way back: `automap convert model.ckpt -o out.safetensors` (a MindSpore checkpoint with MindFormers names to
  HuggingFace names, verified), also with `--no-verify`,
- the naive route: `torch.load` of the whole file, a `mindspore.Tensor` per tensor, `mindspore.save_checkpoint`
  of the whole list,
- a reference: the `.safetensors` file copied tensor by tensor with `os.copy_file_range` and fsynced, by a bare
  script that plans nothing and checks nothing. It is the floor for any converter that picks tensors out one at
  a time, in the kernel, as automap's verified routes do; an automap route against it shows what automap itself
  adds. The `--no-verify` routes write past the page cache instead (`automap._direct`), so they can beat it, and
  `cp + sync` too.

The automap routes run through `benchmarks._phased`, which runs the same command and records where its time went
(`automap._phases`); a second table gives the median seconds of each phase: start (the interpreter and imports),
open (the source, the mapping and the plan), read, transform, write, the waits for the helper threads, fsync and
verify on the main thread, which add up to the wall time, and the seconds the helper threads spend comparing the
output with the source right after writing, or taking CRC-32s, which overlap them.

Before each route, the writes of the routes before it are flushed (`sync`, untimed: `cp` leaves its copy unwritten
and removing an output makes the filesystem free its blocks, which would otherwise share the disk with the next
route), and the source file's pages are evicted from the page cache (`posix_fadvise DONTNEED`, no privileges
needed), so every route reads from disk; `--warm` keeps them cached. Outputs are removed after each route and
everything is removed at the end (`--keep` keeps the generated checkpoints, `--reuse FOLDER` runs on kept ones,
generating any that is missing). The routes run `--rounds` times (5), interleaved, each round in an order of its
own (`shuffled`), so that no route always follows the same one or falls at the same moment of a round; the table
gives median times, the worst peak RSS, and every ratio per round (median, min-max), so that a slow moment of a
shared machine hits all routes alike. Run from the repository root:

    python -m benchmarks.convert_scale                    # 4.4 GB; needs ~18 GB free disk, ~12 GB RAM (naive)
    python -m benchmarks.convert_scale --layers 4         # a quick 1.2 GB run
    python -m benchmarks.convert_scale --skip-naive --json results.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")
MB = 1e6
RSS_HEADROOM = 500 * MB  # target: peak RSS <= largest tensor + this
THROUGHPUT_TARGET = 0.9  # target: at least this fraction of cp + sync's throughput, verified (median of the rounds)
NO_VERIFY_TARGET = 0.95  # the same with --no-verify


@dataclass(frozen=True)
class Shape:
    layers: int = 22
    hidden: int = 2048
    intermediate: int = 5632
    heads: int = 32
    kv_heads: int = 4
    vocab: int = 32000


@dataclass
class Result:
    route: str
    seconds: float
    nbytes: int
    peak_rss: int  # bytes
    returncode: int
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase (automap routes)

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / MB / self.seconds if self.seconds else math.inf


def llama_tensors(shape: Shape) -> list[tuple[str, str, tuple[int, ...]]]:
    """(HuggingFace name, MindFormers name, shape) of every tensor, in HuggingFace's file order."""
    h, kv = shape.hidden, shape.hidden // shape.heads * shape.kv_heads
    out = [("model.embed_tokens.weight", "model.tok_embeddings.embedding_weight", (shape.vocab, h))]
    for i in range(shape.layers):
        hf, ms = f"model.layers.{i}", f"model.layers.{i}"
        out += [
            (f"{hf}.self_attn.q_proj.weight", f"{ms}.attention.wq.weight", (h, h)),
            (f"{hf}.self_attn.k_proj.weight", f"{ms}.attention.wk.weight", (kv, h)),
            (f"{hf}.self_attn.v_proj.weight", f"{ms}.attention.wv.weight", (kv, h)),
            (f"{hf}.self_attn.o_proj.weight", f"{ms}.attention.wo.weight", (h, h)),
            (f"{hf}.mlp.gate_proj.weight", f"{ms}.feed_forward.w1.weight", (shape.intermediate, h)),
            (f"{hf}.mlp.up_proj.weight", f"{ms}.feed_forward.w3.weight", (shape.intermediate, h)),
            (f"{hf}.mlp.down_proj.weight", f"{ms}.feed_forward.w2.weight", (h, shape.intermediate)),
            (f"{hf}.input_layernorm.weight", f"{ms}.attention_norm.weight", (h,)),
            (f"{hf}.post_attention_layernorm.weight", f"{ms}.ffn_norm.weight", (h,)),
        ]
    out += [
        ("model.norm.weight", "model.norm_out.weight", (h,)),
        ("lm_head.weight", "lm_head.weight", (shape.vocab, h)),
    ]
    return out


def generate(tensors: list[tuple[str, str, tuple[int, ...]]], *paths: Path) -> None:
    """Write the checkpoints, generating each tensor when the writer asks for it (one in memory at a time).

    The same tensors in every file: HuggingFace names in a `.pth` or `.safetensors`, MindFormers names in a `.ckpt`.

    Runs in a child process: the driver imports neither numpy nor torch, since a child's peak RSS counts
    the memory it shared with the driver between fork and exec.
    """
    import numpy as np

    from automap import ParamRecord, save_checkpoint

    def loader(index: int, dims: tuple[int, ...]):  # type: ignore[no-untyped-def]
        def load() -> np.ndarray:
            rng = np.random.default_rng(index)
            return rng.random(dims, dtype=np.float32) - np.float32(0.5)

        return load

    for path in paths:
        records = [
            ParamRecord(ms if path.suffix == ".ckpt" else hf, dims, "float32", i, loader(i, dims))
            for i, (hf, ms, dims) in enumerate(tensors)
        ]
        save_checkpoint(records, path)


_NAIVE = """
import sys, json, torch, mindspore
source, mapping, out = sys.argv[1:4]
names = {v: k for k, v in json.load(open(mapping)).items()}
state = torch.load(source, map_location="cpu", weights_only=True)
params = [{"name": names[k], "data": mindspore.Tensor(v.numpy())} for k, v in state.items()]
mindspore.save_checkpoint(params, out)
"""


_KERNEL_COPY = """
import json, os, struct, sys
source, out = sys.argv[1:3]
fi = os.open(source, os.O_RDONLY)
fo = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
size = struct.unpack("<Q", os.pread(fi, 8, 0))[0]
header = json.loads(os.pread(fi, size, 8))
header.pop("__metadata__", None)
os.write(fo, os.pread(fi, 8 + size, 0))
for begin, end in sorted(tuple(entry["data_offsets"]) for entry in header.values()):
    done = 0
    while done < end - begin:
        done += os.copy_file_range(fi, fo, end - begin - done, 8 + size + begin + done)
os.fsync(fo)
os.close(fo)
"""


def run(route: str, argv: list[str], nbytes: int, log: Path, phases: Path | None = None) -> Result:
    """Run one route in a subprocess; wall time, the child's peak RSS and the phases it wrote to `phases`."""
    env = {**os.environ, "GLOG_v": "3"}
    if phases is not None:
        remove(phases)
    with log.open("ab") as sink:
        sink.write(f"\n== {route}: {' '.join(argv)}\n".encode())
        sink.flush()
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=sink, stderr=sink, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    times: dict[str, float] = {}
    if phases is not None and phases.exists():
        times = json.loads(phases.read_text())
        command = times.pop("command", seconds)
        times = {"start": seconds - command, **times, "open": command - sum(times.get(p, 0.0) for p in MAIN_PHASES)}
    return Result(route, seconds, nbytes, usage.ru_maxrss * 1024, child.returncode, times)


def evict(*paths: Path) -> None:
    """Drop files from the page cache, so that the next reader reads the disk (clean pages only)."""
    for path in paths:
        with contextlib.suppress(OSError), path.open("rb") as handle:
            os.fsync(handle.fileno())
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def settle() -> None:
    """Let the writes of earlier routes reach the disk, so that no route pays for the one before it.

    `cp` leaves its copy in the page cache, unwritten; removing a file has the filesystem free its blocks. Without
    this, whatever runs next shares the disk with that work.
    """
    os.sync()


def remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


NAIVE = "naive: torch.load + mindspore.save_checkpoint"
CP_SYNC = "cp + sync"
CP_SYNC_SAFETENSORS = "cp + sync .safetensors"
CP_SYNC_CKPT = "cp + sync .ckpt"
KERNEL_COPY = "reference: copy_file_range per tensor + fsync"
PTH_TO_CKPT = "automap convert .pth -> .ckpt"
SAFETENSORS_TO_SAFETENSORS = "automap convert .safetensors -> .safetensors"
CKPT_TO_SAFETENSORS = "automap convert .ckpt -> .safetensors"
NO_VERIFY = " --no-verify"
_COPY_OF_SOURCE = {
    PTH_TO_CKPT: CP_SYNC,
    SAFETENSORS_TO_SAFETENSORS: CP_SYNC_SAFETENSORS,
    CKPT_TO_SAFETENSORS: CP_SYNC_CKPT,
}
YARDSTICKS = {
    **{route + tail: copy for route, copy in _COPY_OF_SOURCE.items() for tail in ("", NO_VERIFY)},
    KERNEL_COPY: CP_SYNC_SAFETENSORS,
}
"""The `cp + sync` route each route is measured against: the copy of the file it reads."""
MAIN_PHASES = (
    "read",
    "transform",
    "write",
    "waiting for the crc thread",
    "waiting for the write check",
    "fsync",
    "verify",
)
"""Phases of the conversion's main thread (`automap._phases`): with start and open they add up to the wall time."""
THREAD_PHASES = (
    "crc of the written tensors (thread)",
    "comparing with the source (threads)",
    "crc of the read-back tensors (threads)",
)
"""Seconds of the helper threads, overlapping the main thread's phases."""


def _load() -> float:
    """The 1-minute load average (the machine is shared: the figures mean more beside it)."""
    return os.getloadavg()[0]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def yardstick(route: str) -> str:
    """The `cp + sync` route a route is measured against: the copy of the file it reads (`YARDSTICKS`)."""
    return YARDSTICKS.get(route, CP_SYNC)


def shuffled(routes: list[_T], round_: int) -> list[_T]:
    """The routes in the order of round `round_`: a permutation of its own, the same in every run of the benchmark.

    A fixed order, or one merely rotated, has every route follow the same route in every round and fall at the
    same moment of each round, so whatever the route before leaves behind, or anything on the machine that comes
    back with the period of a round, would land on the same route every time.
    """
    order = list(routes)
    random.Random(round_).shuffle(order)
    return order


def _ratios(runs: dict[str, list[Result]], route: str, reference: str, *, inverse: bool = False) -> list[float]:
    """Per-round ratios: the reference's time over the route's (a throughput ratio), or the inverse."""
    pairs = zip(runs.get(reference, []), runs[route], strict=False)
    return [(r.seconds / ref.seconds) if inverse else (ref.seconds / r.seconds) for ref, r in pairs]


def _spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    text = f"{_median(values):.{digits}f}"
    return text if len(values) == 1 else f"{text} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(runs: dict[str, list[Result]], largest: int) -> str:
    """Markdown: median seconds and MB/s, worst peak RSS, per-round ratios (median, min-max)."""
    rows = [
        "| route | seconds | MB/s | peak RSS (MB) | peak RSS - largest tensor (MB) | throughput vs cp + sync "
        "| vs cp | time vs naive |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for route, results in runs.items():
        seconds = _median([r.seconds for r in results])
        nbytes = results[0].nbytes
        rss = max(r.peak_rss for r in results)
        failed = [r.returncode for r in results if r.returncode]
        name = route + (f" (FAILED, exit {failed[0]})" if failed else "")
        rows.append(
            f"| {name} | {seconds:.1f} | {nbytes / MB / seconds:.0f} | {rss / MB:.0f} | {(rss - largest) / MB:.0f} "
            f"| {_spread(_ratios(runs, route, yardstick(route)))} | {_spread(_ratios(runs, route, 'cp'))} "
            f"| {_spread(_ratios(runs, route, NAIVE, inverse=True))} |"
        )
    return "\n".join(rows)


def breakdown(runs: dict[str, list[Result]]) -> str:
    """Markdown: median seconds of each phase of the automap routes (the main thread's add up to the wall time)."""
    columns = [
        ("start", "start"),
        ("open", "open + plan"),
        ("read", "read"),
        ("transform", "transform"),
        ("write", "write"),
        ("waiting for the crc thread", "wait for crc"),
        ("waiting for the write check", "wait for write check"),
        ("fsync", "fsync"),
        ("verify", "verify"),
        (THREAD_PHASES[0], "threads: crc of written"),
        (THREAD_PHASES[1], "threads: compare with source"),
        (THREAD_PHASES[2], "threads: crc of read back"),
    ]
    rows = [
        "| route | seconds | " + " | ".join(title for _, title in columns) + " |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for route, results in runs.items():
        if not any(r.phases for r in results):
            continue
        cells = [_median([r.phases.get(phase, 0.0) for r in results]) for phase, _ in columns]
        rows.append(
            f"| {route} | {_median([r.seconds for r in results]):.2f} | "
            + " | ".join(f"{c:.2f}" if c >= 0.005 else "-" for c in cells)
            + " |"
        )
    return "\n".join(rows)


def percent_down(ratio: float) -> str:
    """A ratio in percent to a tenth, never rounded up: a FAIL must not read as the target itself (95% < 95%)."""
    return f"{math.floor(round(ratio * 1000, 6)) / 10:.1f}%"


def targets(runs: dict[str, list[Result]], largest: int) -> list[str]:
    """PASS/FAIL lines for the issue's targets, on the worst peak RSS and the median throughput ratio."""
    lines = []
    for route, results in runs.items():
        if not route.startswith("automap"):
            continue
        rss = max(r.peak_rss for r in results)
        lines.append(
            f"{'PASS' if rss <= largest + RSS_HEADROOM else 'FAIL'} {route}: peak RSS {rss / MB:.0f} MB <= largest "
            f"tensor {largest / MB:.0f} MB + {RSS_HEADROOM / MB:.0f} MB"
        )
        floor = _ratios(runs, route, KERNEL_COPY)
        if floor:
            lines.append(
                f"     {route}: {_median(floor):.0%} of the throughput of a bare copy_file_range per tensor "
                f"(median, worst round {min(floor):.0%})"
            )
        ratios = _ratios(runs, route, yardstick(route))
        if ratios:
            ratio = _median(ratios)
            target = NO_VERIFY_TARGET if route.endswith(NO_VERIFY) else THROUGHPUT_TARGET
            lines.append(
                f"{'PASS' if ratio >= target else 'FAIL'} {route}: throughput {percent_down(ratio)} of "
                f"{yardstick(route)} (median of {len(ratios)} rounds, worst round {percent_down(min(ratios))}; "
                f"target >= {target:.0%})"
            )
        if NAIVE in runs:
            naive_rss = max(r.peak_rss for r in runs[NAIVE])
            lines.append(
                f"     {route}: {_median(_ratios(runs, route, NAIVE)):.1f}x the naive route's throughput, "
                f"peak RSS {naive_rss / rss:.0f}x lower"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Shape()
    for option in ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab"):
        parser.add_argument(f"--{option.replace('_', '-')}", type=int, default=getattr(defaults, option))
    parser.add_argument("--dir", type=Path, help="where to write (default: a new temporary folder)")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive route (needs ~2.5x RAM)")
    parser.add_argument("--warm", action="store_true", help="keep the source in the page cache between routes")
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--rounds", type=int, default=5, help="run every route this many times, interleaved")
    parser.add_argument("--reuse", type=Path, help="a folder kept by --keep: use its checkpoints, keep them")
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)  # the child that writes the files
    args = parser.parse_args(argv)
    shape = Shape(args.layers, args.hidden, args.intermediate, args.heads, args.kv_heads, args.vocab)
    if args.generate_into:
        wanted = (args.generate_into / f"model.{suffix}" for suffix in ("pth", "safetensors", "ckpt"))
        generate(llama_tensors(shape), *(path for path in wanted if not path.exists()))  # --reuse: the missing ones
        return 0

    folder = args.reuse or Path(tempfile.mkdtemp(prefix="automap-convert-scale-", dir=args.dir))
    keep = args.keep or args.reuse is not None
    log = folder / "routes.log"
    tensors = llama_tensors(shape)
    total = sum(math.prod(d) * 4 for _, _, d in tensors)
    largest = max(math.prod(d) * 4 for _, _, d in tensors)
    pth, st, ckpt = folder / "model.pth", folder / "model.safetensors", folder / "model.ckpt"
    mapping, back = folder / "mapping.json", folder / "mapping-back.json"
    mapping.write_text(json.dumps({ms: hf for hf, ms, _ in tensors}, indent=1))
    back.write_text(json.dumps({hf: ms for hf, ms, _ in tensors}, indent=1))
    python = sys.executable
    runs: dict[str, list[Result]] = {}  # in the order listed, whatever order the rounds run them in
    try:
        print(f"{len(tensors)} float32 tensors, {total / 1e9:.2f} GB (largest {largest / MB:.0f} MB)")
        if not all(path.exists() for path in (pth, st, ckpt)):
            start = time.perf_counter()
            shape_args = [f"--{f.replace('_', '-')}={v}" for f, v in asdict(shape).items()]
            command = [python, "-m", "benchmarks.convert_scale", *shape_args, f"--generate-into={folder}"]
            subprocess.run(command, check=True)
            print(f"  generated in {time.perf_counter() - start:.0f} s: {pth.name}, {st.name}, {ckpt.name} in {folder}")
        outputs = {
            "copy": folder / "copy.pth",
            "ckpt": folder / "out.ckpt",
            "st": folder / "out.safetensors",
            "naive": folder / "naive.ckpt",
        }
        phases = folder / "phases.json"
        automap = [python, "-m", "benchmarks._phased", str(phases), "convert"]
        copy_and_sync = ["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh"]
        routes: list[tuple[str, list[str], Path]] = [
            ("cp", ["cp", str(pth), str(outputs["copy"])], outputs["copy"]),
            (CP_SYNC, [*copy_and_sync, str(pth), str(outputs["copy"])], outputs["copy"]),
            (CP_SYNC_SAFETENSORS, [*copy_and_sync, str(st), str(outputs["st"])], outputs["st"]),
            (CP_SYNC_CKPT, [*copy_and_sync, str(ckpt), str(outputs["ckpt"])], outputs["ckpt"]),
        ]
        conversions = [
            (PTH_TO_CKPT, pth, mapping, outputs["ckpt"]),
            (SAFETENSORS_TO_SAFETENSORS, st, mapping, outputs["st"]),
            (CKPT_TO_SAFETENSORS, ckpt, back, outputs["st"]),
        ]
        for route, source, names, output in conversions:
            command = [*automap, str(source), "--mapping", str(names), "-o", str(output), "--quiet"]
            routes += [(route, command, output), (route + NO_VERIFY, [*command, "--no-verify"], output)]
        routes.append((KERNEL_COPY, [python, "-c", _KERNEL_COPY, str(st), str(outputs["st"])], outputs["st"]))
        if not args.skip_naive:
            routes.append(
                (
                    "naive: torch.load + mindspore.save_checkpoint",
                    [python, "-c", _NAIVE, str(pth), str(mapping), str(outputs["naive"])],
                    outputs["naive"],
                )
            )
        runs.update((route, []) for route, _, _ in routes)
        remove(*outputs.values())  # left by an interrupted run: a route must not fail on it
        loads = [_load()]
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}/{args.rounds} (load average {_load():.2f})")
            for route, command, output in shuffled(routes, round_):
                settle()
                if not args.warm:
                    evict(pth, st, ckpt)
                result = run(route, command, total, log, phases if route.startswith("automap") else None)
                runs[route].append(result)
                status = "" if result.returncode == 0 else f"  FAILED (exit {result.returncode}):"
                print(f"  {route}: {result.seconds:.1f} s, peak RSS {result.peak_rss / MB:.0f} MB{status}")
                if result.returncode:
                    print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
                remove(output)
        loads.append(_load())
        print()
        print(f"load average (1 min) {loads[0]:.2f} at the start, {loads[-1]:.2f} at the end, on {os.cpu_count()} CPUs")
        print(
            f"{total / 1e9:.2f} GB of float32 in {len(tensors)} tensors (largest {largest / MB:.0f} MB), "
            f"{'warm' if args.warm else 'cold'} page cache, {args.rounds} interleaved rounds: median seconds, "
            "worst peak RSS, ratios per round as median (min-max)"
        )
        print(table(runs, largest))
        print()
        print("Where the time goes: median seconds per phase (the main thread's, start to verify, add up to the wall")
        print("time; the helper threads' overlap them)")
        print(breakdown(runs))
        print()
        print("\n".join(targets(runs, largest)))
        if args.json:
            document = {
                "shape": asdict(shape),
                "total_bytes": total,
                "largest_tensor_bytes": largest,
                "cache": "warm" if args.warm else "cold",
                "load_average": loads,
                "runs": {route: [asdict(r) for r in results] for route, results in runs.items()},
            }
            args.json.write_text(json.dumps(document, indent=1) + "\n")
    finally:
        remove(*(folder / n for n in ("copy.pth", "out.ckpt", "out.safetensors", "naive.ckpt", "phases.json")))
        if keep:
            print(f"kept {pth}, {st} and {ckpt}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    ok = all(r.returncode == 0 for results in runs.values() for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
