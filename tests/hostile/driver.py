"""Run a batch of catalogue runs through `automap.cli.main` in this (child) process and report each outcome.

`python -m tests.hostile.driver RUNS.json RESULTS.jsonl` is started by the tests under an address-space limit
and a time limit. For every run it records the exit status, stdout and stderr, any exception that escaped
`cli.main` (with its traceback), the peak resident memory above the level before the run (Linux: the
high-water mark is reset before each run), and which files appeared in or changed under the case's folder.
A per-run alarm turns a hang into a reported timeout instead of a stuck batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

_PER_RUN_SECONDS = 120


class _TimeoutError(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _TimeoutError


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
        return True
    except OSError:
        return False


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (links not followed) with a fingerprint of its content."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if Path(root, d).is_symlink()]:
            path = Path(root, name)
            try:
                info = path.lstat()
            except OSError:
                continue
            if not path.is_file() or path.is_symlink() or info.st_blocks * 512 < info.st_size // 2:
                found[str(path)] = f"{info.st_mode:o}:{info.st_size}"  # special, linked or sparse: no reading
            else:
                digest = hashlib.sha256()
                with path.open("rb") as handle:
                    for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                        digest.update(block)
                found[str(path)] = digest.hexdigest()
    return found


def run_one(run: dict[str, Any]) -> dict[str, Any]:
    """Execute one run in-process and describe what happened."""
    from automap import cli

    folder = Path(run["folder"])
    before = _snapshot(folder)
    out, err = io.StringIO(), io.StringIO()
    escaped = None
    status: int | None = None
    rss_before = _status_kib("VmRSS")
    measured = _reset_peak()
    start = time.monotonic()
    signal.alarm(_PER_RUN_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(list(run["argv"]))
    except _TimeoutError:
        escaped = f"timeout: still running after {_PER_RUN_SECONDS} s"
    except BaseException:  # anything escaping cli.main is a bug: report it with its traceback
        escaped = traceback.format_exc()
    finally:
        signal.alarm(0)
    seconds = time.monotonic() - start
    peak = _status_kib("VmHWM")
    after = _snapshot(folder)
    return {
        "id": run["id"],
        "status": status,
        "stdout": out.getvalue()[-20_000:],
        "stderr": err.getvalue()[-20_000:],
        "escaped": escaped,
        "seconds": round(seconds, 3),
        "peak_kib": (peak - rss_before) if measured and peak is not None and rss_before is not None else None,
        "new_files": sorted(set(after) - set(before)),
        "changed_files": sorted(p for p in before if p in after and before[p] != after[p]),
        "removed_files": sorted(set(before) - set(after)),
    }


def warm_up() -> None:
    """Import the frameworks first, so that their one-time cost is not charged to the first run.

    The batch should also begin with a few valid runs (the tests put them first), which load whatever the
    commands import lazily.
    """
    import numpy  # noqa: F401
    import torch  # noqa: F401

    with contextlib.suppress(ImportError):
        import mindspore  # noqa: F401


def main(argv: list[str]) -> int:
    """Run the batch in RUNS.json, write RESULTS.jsonl; print each run's id to stderr as it starts."""
    runs_file, results_file = Path(argv[0]), Path(argv[1])
    runs = json.loads(runs_file.read_text())
    signal.signal(signal.SIGALRM, _alarm)
    warm_up()
    with results_file.open("w") as results:  # one JSON line per run, as it goes: a killed batch says how far
        for run in runs:
            print(f"running {run['id']}", file=sys.__stderr__, flush=True)
            results.write(json.dumps(run_one(run)) + "\n")
            results.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    sys.exit(main(sys.argv[1:]))
