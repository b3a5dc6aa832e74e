"""Hostile and broken inputs through every command, in child processes under time and memory limits.

The catalogue (tests/hostile/catalogue.py) is generated here from valid seeds; one child process runs all of
it through `automap.cli.main` under an address-space limit, and each case is then checked: a non-zero exit with
exactly one `automap: error:` line that names the file and matches the case's reason (or, for inputs that are
odd but valid, a success), nothing escaped as a traceback, no file appeared, changed or vanished in the case's
folder, memory stayed proportional to what the files really hold, and no payload ever ran. Real
`python -m automap` processes then cover the opt-in to unsafe pickles, each command once, and a conversion
killed with SIGKILL while writing.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import torch

from automap import load_checkpoint, save_checkpoint
from tests.hostile import catalogue

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="limits and probes use Linux's /proc")

ROOT = Path(__file__).resolve().parent.parent
ADDRESS_SPACE = 4 << 30  # torch + MindSpore imports and a small conversion peak near 1.5 GiB of address space
BATCH_TIMEOUT = 900  # a hang detector, far above the batch's normal run time
MEMORY_SLACK_KIB = 256 * 1024
MEMORY_PER_BYTE = 32  # resident bytes allowed per byte the case's files really occupy on disk


def _limits() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _env() -> dict[str, str]:
    return {**os.environ, "GLOG_v": "3", "PYTHONPATH": str(ROOT)}


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _on_disk(folder: Path) -> int:
    """Bytes the folder's regular files really occupy (sparse holes do not count)."""
    total = 0
    for path in folder.rglob("*"):
        info = path.lstat()
        if path.is_file() and not path.is_symlink():
            total += min(info.st_size, info.st_blocks * 512)
    return total


@dataclasses.dataclass
class Batch:
    root: Path
    seeds: catalogue.Seeds
    runs: list[catalogue.Run]
    results: dict[str, dict[str, Any]]
    skipped: dict[str, str]
    seeds_before: dict[str, str]
    stderr: str


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    root = tmp_path_factory.mktemp("hostile")
    seeds, runs, skipped = catalogue.build(root)
    seeds_before = _digests(seeds.folder)
    warm = root / "warm-up"
    warm.mkdir()
    linear = torch.nn.Linear(4, 2)
    torch.save(linear.state_dict(), warm / "linear.pth")
    save_checkpoint(load_checkpoint(warm / "linear.pth"), warm / "dense.ckpt")  # MindSpore's Dense: same names
    # Valid runs first: they load what the commands import lazily, and prove the harness sees a success.
    warm_up = [
        ("inspect", str(seeds.pth)),
        ("infer", str(seeds.pth), str(seeds.ckpt)),
        ("convert", str(seeds.pth), "--mapping", str(seeds.flat), "-o", str(warm / "out.ckpt")),
        ("audit", str(seeds.mapping), str(seeds.pth), str(seeds.ckpt)),
        (
            *catalogue.VERIFY,
            "--torch-weights",
            str(warm / "linear.pth"),
            "--mindspore-weights",
            str(warm / "dense.ckpt"),
        ),
    ]
    documents = [
        {"id": f"warm-up:{argv[0]}", "argv": argv, "folder": str(warm), "culprit": "", "expect": None, "stdout": None}
        for argv in warm_up
    ]
    documents += [dataclasses.asdict(run) for run in runs]
    (root / "runs.json").write_text(json.dumps(documents))
    done = subprocess.run(
        [sys.executable, "-m", "tests.hostile.driver", str(root / "runs.json"), str(root / "results.jsonl")],
        cwd=ROOT,
        env=_env(),
        preexec_fn=_limits,
        capture_output=True,
        text=True,
        timeout=BATCH_TIMEOUT,
        check=False,
    )
    results = {}
    if (root / "results.jsonl").exists():
        for line in (root / "results.jsonl").read_text().splitlines():
            result = json.loads(line)
            results[result["id"]] = result
    yield Batch(root, seeds, runs, results, skipped, seeds_before, done.stderr[-4000:])
    # A hostile folder with a FIFO or a mode-000 file must not trip up the temporary-folder cleanup.
    shutil.rmtree(root, ignore_errors=True)


def _problems(run: catalogue.Run, result: dict[str, Any] | None, disk_bytes: int) -> list[str]:
    if result is None:
        return ["never ran: the batch stopped before it (see its stderr)"]
    problems = []
    if result["escaped"]:
        problems.append(f"an exception escaped cli.main:\n{result['escaped']}")
        return problems
    err, out = result["stderr"], result["stdout"]
    if run.expect is None:
        if result["status"] != 0:
            problems.append(f"should succeed, exited {result['status']}: {err.strip()}")
        elif run.stdout and not re.search(run.stdout, out):
            problems.append(f"output lacks /{run.stdout}/: {out[:600]}")
    else:
        if result["status"] not in (1, 2):
            problems.append(f"exit status {result['status']}, expected 1 or 2; stdout: {out[:300]}")
        if not err.startswith("automap: error: ") or err.count("\n") != 1:
            problems.append(f"stderr is not one 'automap: error:' line: {err[:600]!r}")
        if "Traceback" in err:
            problems.append("a traceback was printed")
        if not re.search(run.expect, err):
            problems.append(f"the error does not say /{run.expect}/: {err.strip()[:600]}")
        if run.culprit and run.culprit not in err:
            problems.append(f"the error does not name {run.culprit!r}")
    allowed = {str(Path(run.folder) / name) for name in run.writes}
    unexpected = {"new_files": set(result["new_files"]) - allowed}
    for kind in ("new_files", "changed_files", "removed_files"):
        if unexpected.get(kind, result[kind]):
            problems.append(f"{kind.replace('_', ' ')}: {sorted(unexpected.get(kind, result[kind]))}")
    limit = MEMORY_SLACK_KIB + MEMORY_PER_BYTE * disk_bytes // 1024
    if result["peak_kib"] is not None and result["peak_kib"] > limit:
        problems.append(f"peak memory {result['peak_kib']} KiB above the start, limit {limit} KiB")
    return problems


def test_the_batch_ran_to_the_end(batch: Batch) -> None:
    assert len(batch.results) == len(batch.runs) + 5, batch.stderr
    for name in ("warm-up:inspect", "warm-up:infer", "warm-up:convert", "warm-up:audit", "warm-up:verify"):
        result = batch.results[name]
        assert (result["status"], result["escaped"]) == (0, None), result
    assert batch.results["warm-up:convert"]["new_files"] == [str(batch.root / "warm-up" / "out.ckpt")]


@pytest.mark.parametrize("case", list(catalogue.CASES), ids=lambda c: c.id)
def test_hostile_input(case: catalogue.Case, batch: Batch) -> None:
    if case.id in batch.skipped:
        pytest.skip(batch.skipped[case.id])
    folder = batch.root / "cases" / case.id
    disk = _on_disk(folder)
    report = []
    for run in (r for r in batch.runs if r.id.startswith(f"{case.id}[")):
        problems = _problems(run, batch.results.get(run.id), disk)
        if problems:
            report.append(f"{run.id}: automap {' '.join(run.argv)}\n  " + "\n  ".join(problems))
    assert not report, "\n".join(report)


def test_no_payload_ever_ran_and_the_seeds_are_untouched(batch: Batch) -> None:
    assert list(batch.root.rglob(catalogue.MARKER)) == []
    assert _digests(batch.seeds.folder) == batch.seeds_before


_CONTROL = """
import sys, time, pickle, torch
from pathlib import Path
for name in sys.argv[1:]:
    path = Path(name)
    try:
        torch.load(path, weights_only=False)  # the unrestricted unpickler, as a careless loader would call it
    except Exception:
        pass
    if not (path.parent / "PWNED").exists():
        try:
            pickle.loads(path.read_bytes())
        except Exception:
            pass
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not all((Path(n).parent / "PWNED").exists() for n in sys.argv[1:]):
    time.sleep(0.05)  # subprocess.Popen's payload runs `touch` in the background
"""


def test_every_payload_is_live_when_unpickled_without_restrictions(tmp_path: Path) -> None:
    """The control: the same files, loaded as an unrestricted loader would, do run their payloads."""
    seeds = catalogue.make_seeds(tmp_path / "seeds")
    files = []
    for case in (c for c in catalogue.CASES if c.payload):
        folder = tmp_path / case.id
        folder.mkdir()
        files.append(case.make(folder, seeds))
    subprocess.run([sys.executable, "-c", _CONTROL, *map(str, files)], env=_env(), timeout=300, check=True)
    dead = [f.parent.name for f in files if not (f.parent / catalogue.MARKER).exists()]
    assert dead == [], f"these payloads would not run even unrestricted, so they prove nothing: {dead}"


def _automap(*argv: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "automap", *argv],
        cwd=cwd,
        env=_env(),
        preexec_fn=_limits,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_each_command_in_a_real_process(tmp_path: Path) -> None:
    """`python -m automap` itself, once per command, on inputs that attack it in different ways."""
    seeds = catalogue.make_seeds(tmp_path / "seeds")
    cases = {c.id: c for c in catalogue.CASES}
    made = {}
    for name in ("zip-os-system", "pth-zip-bomb-pickle", "pth-expanded-strides", "mapping-deep", "st-terabyte-tensor"):
        folder = tmp_path / name
        folder.mkdir()
        made[name] = cases[name].make(folder, seeds)
    commands = [
        ("inspect", str(made["zip-os-system"])),
        ("infer", str(seeds.pth), str(made["pth-zip-bomb-pickle"])),
        ("convert", str(made["pth-expanded-strides"]), "--mapping", str(seeds.flat), "-o", str(tmp_path / "o.ckpt")),
        ("audit", str(made["mapping-deep"])),
        ("convert", str(seeds.pth), "--like", str(made["st-terabyte-tensor"]), "-o", str(tmp_path / "o.ckpt")),
    ]
    for argv, name in zip(commands, made, strict=True):
        done = _automap(*argv, cwd=tmp_path)
        assert done.returncode == 1, (argv, done.stderr)
        assert done.stderr.startswith("automap: error: ") and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert made[name].name in done.stderr
    assert not list(tmp_path.rglob(catalogue.MARKER))
    assert not (tmp_path / "o.ckpt").exists()
    assert not list(tmp_path.glob(".*"))


def test_nothing_in_automap_unpickles_without_restriction() -> None:
    """A guard for future code: every torch.load passes weights_only (never a literal False), and no module
    calls pickle's own loaders or numpy's with allow_pickle."""
    offenders = []
    for path in sorted((ROOT / "automap").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            where = f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
            if name.endswith("torch.load"):
                value = keywords.get("weights_only")
                if value is None or (isinstance(value, ast.Constant) and value.value is not True):
                    offenders.append(where)
            elif name in {
                "pickle.load",
                "pickle.loads",
                "pickle.Unpickler",
                "_pickle.loads",
                "dill.load",
                "joblib.load",
            }:
                offenders.append(where)
            elif name.endswith(("np.load", "numpy.load")) and "allow_pickle" in keywords:
                offenders.append(where)
    assert offenders == []


def test_the_unsafe_pickle_opt_in_is_explicit_and_loud(tmp_path: Path) -> None:
    seeds = catalogue.make_seeds(tmp_path / "seeds")
    case = next(c for c in catalogue.CASES if c.id == "zip-nested-in-state-dict")
    (tmp_path / "case").mkdir()
    evil = case.make(tmp_path / "case", seeds)
    refused = _automap("inspect", str(evil), cwd=tmp_path)
    assert refused.returncode == 1 and "--unsafe-pickle" in refused.stderr
    assert not (tmp_path / "case" / catalogue.MARKER).exists()
    opted_in = _automap("inspect", "--unsafe-pickle", str(evil), cwd=tmp_path)
    assert "code execution ENABLED (--unsafe-pickle)" in opted_in.stderr
    assert (tmp_path / "case" / catalogue.MARKER).exists()  # the flag really does what it warns about


def _written(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "replacing-with-force"])
def test_a_conversion_killed_mid_write_leaves_nothing(existing: bool, tmp_path: Path) -> None:
    tensors = {f"layer{i}.weight": np.full((1024, 4096), i, np.float32) for i in range(16)}  # 256 MiB
    source = tmp_path / "big.safetensors"
    safetensors.numpy.save_file(tensors, str(source))
    (tmp_path / "flat.json").write_text(json.dumps({name: name for name in tensors}))
    out = tmp_path / "out.ckpt"
    if existing:
        out.write_bytes(b"the previous output")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    argv = [sys.executable, "-m", "automap", "convert", str(source), "--mapping", str(tmp_path / "flat.json")]
    argv += ["-o", str(out), "--quiet", *(["--force"] if existing else [])]
    process = subprocess.Popen(argv, cwd=tmp_path, env=_env(), preexec_fn=_limits, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    killed_at = None
    try:
        while time.monotonic() < deadline and process.poll() is None:
            written = _written(process.pid)
            if written > 32 << 20:  # well into the 256 MiB output
                process.send_signal(signal.SIGKILL)
                killed_at = written
                break
            time.sleep(0.002)
    finally:
        process.kill()
        stderr = process.communicate()[1].decode(errors="replace")
    assert killed_at is not None, f"the conversion ended before it could be killed: {stderr[-2000:]}"
    assert killed_at < 200 << 20
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before  # no output, no partial or temporary file, inputs and the old output untouched
