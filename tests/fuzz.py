"""Long fuzz runs of every reader and the mapping parser: `python -m tests.fuzz`.

With atheris installed (`pip install atheris`, Linux), each target runs coverage-guided under libFuzzer in its
own process, restarted after each finding until its time is used; without it, a random mutation loop over
the same seeds and mutator runs instead (`--engine random`). Every input that breaks a target's contract
(see tests/hostile/fuzzing.py) is saved under OUT/<target>/findings with its traceback, to be turned into a
regression test in tests/test_fuzz.py. The corpus grows under OUT/<target>/corpus, so a later run resumes.

    python -m tests.fuzz --minutes 15                      # all targets, time split evenly
    python -m tests.fuzz --targets ckpt,safetensors --minutes 5 --out fuzz-out
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import os
import pkgutil
import random
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzers and print a summary; the exit status is 1 when anything was found."""
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", help="comma-separated targets (default: all)")
    parser.add_argument("--minutes", type=float, default=10.0, help="total time, split over the targets")
    parser.add_argument("--engine", choices=["auto", "atheris", "random"], default="auto")
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"), help="corpus and findings (default fuzz-out)")
    parser.add_argument("--seed", type=int, default=0, help="random engine: the random seed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one atheris process
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _atheris_worker(args.worker, args.seconds, args.out)

    from tests.hostile import fuzzing

    names = args.targets.split(",") if args.targets else list(fuzzing.TARGETS)
    unknown = [n for n in names if n not in fuzzing.TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(fuzzing.TARGETS)}")
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "random"
    seconds = args.minutes * 60 / len(names)
    rows = []
    for name in names:
        print(f"== {name}: {engine} for {seconds:.0f} s", flush=True)
        if engine == "atheris":
            executions, found = _atheris(name, seconds, args.out)
        else:
            executions, found = _random(name, seconds, args.out, args.seed)
        rows.append((name, executions, found))
    print(f"\n{'target':<14}{'inputs':>12}{'findings':>10}")
    for name, executions, found in rows:
        print(f"{name:<14}{executions:>12}{len(found):>10}")
        for kind in sorted(set(found)):
            print(f"{'':<14}  {found.count(kind)} x {kind}")
    print(f"{'total':<14}{sum(r[1] for r in rows):>12}{sum(len(r[2]) for r in rows):>10}")
    return 1 if any(found for _, _, found in rows) else 0


# ------------------------------------------------------------------------------------------ random engine


def _random(name: str, seconds: float, out: Path, seed: int) -> tuple[int, list[str]]:
    from tests.hostile import fuzzing

    workspace = fuzzing.Workspace()
    target = fuzzing.TARGETS[name]
    corpus = _corpus(out / name / "corpus", target.seeds(workspace.seeds))
    rng = random.Random(seed)
    found: list[str] = []
    executions = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            data = fuzzing.mutate(rng.choice(corpus), rng)
            executions += 1
            try:
                workspace.check(target, data)
            except Exception as error:  # a finding: anything the contract does not allow
                found.append(_save_finding(out / name / "findings", data, error))
    finally:
        workspace.close()
    return executions, found


def _corpus(folder: Path, seeds: list[bytes]) -> list[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    for data in seeds:
        (folder / f"seed-{hashlib.sha1(data).hexdigest()[:12]}").write_bytes(data)
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]


def _save_finding(folder: Path, data: bytes, error: BaseException) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    kind = _kind(error)
    digest = hashlib.sha1(data).hexdigest()[:12]
    (folder / f"{digest}.input").write_bytes(data)
    (folder / f"{digest}.txt").write_text("".join(traceback.format_exception(error)))
    return kind


def _kind(error: BaseException) -> str:
    """Where a finding comes from: the exception type and the innermost automap frame."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "automap" in f.filename]
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}{where}"


# ------------------------------------------------------------------------------------------ atheris engine


def _atheris(name: str, seconds: float, out: Path) -> tuple[int, list[str]]:
    """Run one target's workers until its time is used, restarting after each finding."""
    deadline = time.monotonic() + seconds
    executions = 0
    found: list[str] = []
    while (left := deadline - time.monotonic()) > 5:
        done = subprocess.run(
            [sys.executable, "-m", "tests.fuzz", "--worker", name, "--seconds", f"{left:.0f}", "--out", str(out)],
            cwd=_ROOT,
            env={**os.environ, "GLOG_v": "3", "PYTHONPATH": str(_ROOT)},
            capture_output=True,
            text=True,
            check=False,
        )
        runs = re.findall(r"stat::number_of_executed_units: (\d+)", done.stderr)
        executions += int(runs[-1]) if runs else 0
        if done.returncode == 0:
            break
        crash = re.search(r"Test unit written to (\S+)", done.stderr)
        log = out / name / "findings" / f"worker-{len(found) + 1}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(done.stdout[-20_000:] + done.stderr[-20_000:])
        if crash is None:
            print(done.stdout[-2000:] + done.stderr[-3000:], file=sys.stderr)
            break  # the worker itself failed (to start, or out of memory); restarting would fail again
        found.append(_reproduce(name, Path(crash.group(1)), out))
    return executions, found


def _reproduce(name: str, crash: Path, out: Path) -> str:
    """Run a saved crash again in this process, to name it and keep its traceback beside it."""
    from tests.hostile import fuzzing

    workspace = fuzzing.Workspace()
    try:
        workspace.check(fuzzing.TARGETS[name], crash.read_bytes())
    except Exception as error:
        return _save_finding(out / name / "findings", crash.read_bytes(), error)
    finally:
        workspace.close()
    return f"{crash.name}: does not reproduce in a fresh process"


def _atheris_worker(name: str, seconds: float, out: Path) -> int:
    import atheris

    with atheris.instrument_imports(include=["automap", "tests.hostile"]):
        import automap

        for module in pkgutil.walk_packages(automap.__path__, "automap."):
            if module.name.endswith("__main__"):
                continue  # importing it would run the command line
            try:
                importlib.import_module(module.name)
            except Exception:  # a module needing an absent extra; it is not fuzzed then
                continue
        from tests.hostile import fuzzing

    workspace = fuzzing.Workspace()
    target = fuzzing.TARGETS[name]
    corpus = out / name / "corpus"
    _corpus(corpus, target.seeds(workspace.seeds))
    findings = out / name / "findings"
    findings.mkdir(parents=True, exist_ok=True)
    longest = max(len(p.read_bytes()) for p in corpus.iterdir())

    def one(data: bytes) -> None:
        workspace.check(target, data)

    flags = [
        f"-max_total_time={max(int(seconds), 1)}",
        "-timeout=30",
        "-rss_limit_mb=6144",
        f"-max_len={max(4 * longest, 4096)}",
        f"-artifact_prefix={findings}/",
        "-print_final_stats=1",
    ]
    atheris.Setup([sys.argv[0], *flags, str(corpus)], one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
