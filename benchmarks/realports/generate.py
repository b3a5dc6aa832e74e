"""Build the real-port corpus: for each pair, write both checkpoints, prove the truth, commit listings and truth.

Run inside the third-party environment (`benchmarks/realports/env.sh`), from the repository root:

    python -m benchmarks.realports.generate                  # every pair whose data is out of date
    python -m benchmarks.realports.generate --pairs resnet18_tv_mindcv,bert_hf_mindformers --force
    python -m benchmarks.realports.generate --keep-files ../realports-files   # also keep the weight files

Each pair runs in its own process (MindSpore keeps global state, and a pair may need a package folder of its
own on sys.path). What it writes to `tests/data/realports/<pair>/`:

- `source.json`, `target.json`: `automap inspect FILE --json` listings of the two real files, in file order
  (no tensor data);
- `truth.json`: the proven truth, the proof's figures (max abs/rel difference, the swap that broke it), the
  package versions and the generator version.

A pair is skipped when its truth.json carries the same cache key (generator version, the pair's code, package
versions) unless --force.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._pair import RealPair
from .pairs import all_pairs, get_pair

GENERATOR_VERSION = 1
_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = _ROOT / "tests" / "data" / "realports"
_CORE_PACKAGES = ("torch", "mindspore", "numpy")
_FRAMEWORK_FILES = ("_pair.py", "_prove.py", "_setup.py", "generate.py", "pairs/_align.py")


def package_versions(pair: RealPair) -> dict[str, str]:
    """Installed versions of the frameworks and of the packages the pair's networks come from."""
    versions = {}
    for name in (*_CORE_PACKAGES, *pair.packages):
        version = _site_version(pair, name)
        if version is None:
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                version = "not installed"
        versions[name] = version
    return versions


def _site_version(pair: RealPair, name: str) -> str | None:
    """The version of a package installed in the pair's own folder (see `RealPair.site`), which comes first."""
    if pair.site is None:
        return None
    stem = name.replace("-", "_")
    for info in (Path(sys.prefix) / pair.site).glob(f"{stem}-*.dist-info"):
        return info.name[len(stem) + 1 : -len(".dist-info")]
    return None


def cache_key(pair: RealPair) -> str:
    """Changes when the generator (its modules, the shared alignments), the pair's module or a package version
    changes."""
    here = Path(__file__).parent
    digest = hashlib.sha256(f"generator {GENERATOR_VERSION}\n".encode())
    for name in _FRAMEWORK_FILES:
        digest.update((here / name).read_bytes())
    digest.update(inspect.getsource(sys.modules[pair.torch_model.__module__]).encode())
    digest.update(json.dumps(package_versions(pair), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def up_to_date(pair: RealPair, out: Path) -> bool:
    """The pair's data exists and was made by this generator, pair code and package versions."""
    folder = out / pair.name
    truth = folder / "truth.json"
    if not all((folder / f).is_file() for f in ("source.json", "target.json", "truth.json")):
        return False
    try:
        recorded = json.loads(truth.read_text())["generator"]["cache_key"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(recorded == cache_key(pair))


def generate_one(name: str, out: Path, keep: Path | None) -> dict[str, Any]:
    """Prove one pair and write its data (runs in the pair's own process)."""
    from ._prove import prove
    from ._setup import prepare

    pair = get_pair(name)
    prepare()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"realports-{name}-") as scratch:
        work = keep / name if keep is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        proof = prove(pair, work)
        torch_side, ms_side = ("pytorch", "mindspore") if pair.direction == "pt2ms" else ("mindspore", "pytorch")
        source_listing = _listing(proof.source_file, torch_side)
        target_listing = _listing(proof.target_file, ms_side)
    seconds = time.perf_counter() - started
    truth = pair.truth()
    target_order = [p["name"] for p in target_listing["params"] + target_listing["excluded"]]
    used = {s for e in truth.values() if e is not None for s in _sources(e)}
    source_names = [p["name"] for p in source_listing["params"] + source_listing["excluded"]]
    document = {
        "format": "automap.realport",
        "version": 1,
        "pair": pair.name,
        "family": pair.family,
        "direction": pair.direction,
        "packages": package_versions(pair),
        "source": _side(proof.source_file, source_listing),
        "target": _side(proof.target_file, target_listing),
        "truth": {t: truth[t] for t in target_order if truth.get(t) is not None},
        "no_source": [t for t in target_order if t in truth and truth[t] is None],
        "fill": dict(pair.fill or {}),
        "unused_source": [s for s in source_names if s not in used],
        "proof": {
            "scope": pair.proof,
            "outputs": proof.comparison.outputs,
            "max_abs_diff": _figure(proof.comparison.max_abs_diff),
            "max_rel_diff": _figure(proof.comparison.max_rel_diff),
            "rtol": pair.rtol,
            "atol": pair.atol,
            "swap": {
                "targets": list(proof.swap),
                "max_abs_diff": _figure(proof.swapped.max_abs_diff),
                "max_rel_diff": _figure(proof.swapped.max_rel_diff),
                "broke_agreement": not proof.swapped.passed,
            },
        },
        "notes": pair.notes,
        "generator": {"version": GENERATOR_VERSION, "cache_key": cache_key(pair)},
    }
    folder = out / pair.name
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, content in (
        ("source.json", source_listing),
        ("target.json", target_listing),
        ("truth.json", document),
    ):
        _write_json(folder / file_name, content)
    return {
        "pair": pair.name,
        "seconds": round(seconds, 1),
        "source_params": len(source_listing["params"]),
        "target_params": len(target_listing["params"]),
        "max_rel_diff": document["proof"]["max_rel_diff"],  # type: ignore[index]
        "swap_broke": not proof.swapped.passed,
    }


def markdown_table(out: Path) -> str:
    """The corpus as the README lists it: one row per generated pair, from its truth.json and split.json."""
    split = json.loads((Path(__file__).parent / "split.json").read_text())["families"]
    rows = [
        "| pair | family | split | direction | packages (versions) | params source -> target | proof max rel diff "
        "| swap broke it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for truth_file in sorted(out.glob("*/truth.json")):
        doc = json.loads(truth_file.read_text())
        packages = ", ".join(
            f"{name} {version}" for name, version in doc["packages"].items() if name not in _CORE_PACKAGES
        )
        proof = doc["proof"]
        rows.append(
            f"| {doc['pair']} | {doc['family']} | {split.get(doc['family'], '?')} | {doc['direction']} | {packages} "
            f"| {doc['source']['params']} -> {doc['target']['params']} | {proof['max_rel_diff']:.1e} "
            f"| {'yes' if proof['swap']['broke_agreement'] else 'NO'} |"
        )
    return "\n".join(rows)


def _sources(entry: Any) -> list[str]:
    source = entry["source"] if isinstance(entry, dict) else entry
    return [source] if isinstance(source, str) else list(source)


def _figure(value: float) -> float:
    return float(f"{value:.3g}")


def _side(path: Path, listing: dict[str, Any]) -> dict[str, Any]:
    return {
        "file": path.name,
        "framework": listing["framework"],
        "file_format": listing["file_format"],
        "params": len(listing["params"]),
    }


def _listing(path: Path, framework: str) -> dict[str, Any]:
    """`automap inspect FILE --json`, with the file's bare name in place of the scratch path.

    A safetensors file does not say which framework wrote it (mindone's carry diffusers' names and file name), so
    the side it comes from is given, as a user would.
    """
    command = [sys.executable, "-m", "automap", "inspect", str(path), "--json"]
    if path.suffix == ".safetensors":
        command += ["--framework", framework]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        msg = f"automap inspect {path.name} failed: {done.stderr.strip()}"
        raise RuntimeError(msg)
    listing: dict[str, Any] = json.loads(done.stdout)
    listing["source"] = path.name
    return listing


def _write_json(path: Path, content: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(compact_json(content) + "\n")
    partial.replace(path)


def compact_json(value: Any, indent: str = "") -> str:
    """JSON with one line for anything short (a parameter's entry, a truth entry): small, readable diffs."""
    flat = json.dumps(value)
    if len(flat) <= 110 or not isinstance(value, dict | list) or not value:
        return flat
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {compact_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    items = [inner + compact_json(v, inner) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + indent + "]"


def _run_pair_process(pair: RealPair, out: Path, keep: Path | None) -> dict[str, Any] | None:
    """Generate one pair in a fresh interpreter; None (with the error printed) when its proof fails."""
    env = dict(os.environ)
    paths = [str(_ROOT)]
    if pair.site is not None:
        paths.insert(0, str(Path(sys.prefix) / pair.site))
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("GLOG_v", "3")
    command = [sys.executable, "-m", "benchmarks.realports.generate", "--one", pair.name, "--out", str(out)]
    if keep is not None:
        command += ["--keep-files", str(keep)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=_ROOT, env=env)
    result_lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not result_lines:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        print(f"{pair.name}: FAILED\n{tail}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(result_lines[-1][len("RESULT ") :])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realports.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", help="comma-separated pair names (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="data folder (default: tests/data/realports)")
    parser.add_argument("--force", action="store_true", help="regenerate pairs whose data is up to date")
    parser.add_argument("--keep-files", type=Path, help="keep the written checkpoints here, one folder per pair")
    parser.add_argument("--list", action="store_true", help="list the pairs and exit")
    parser.add_argument("--table", action="store_true", help="print the README's table of the generated data and exit")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the per-pair worker
    args = parser.parse_args(argv)
    out = args.out.resolve()
    keep = args.keep_files.resolve() if args.keep_files else None
    if args.one:
        result = generate_one(args.one, out, keep)
        print("RESULT " + json.dumps(result), flush=True)
        sys.stderr.flush()
        os._exit(0)  # MindSpore cells complain on interpreter shutdown; the work is done and flushed
    if args.table:
        print(markdown_table(out))
        return 0
    pairs = all_pairs()
    if args.list:
        for pair in pairs:
            print(f"{pair.name:32} {pair.family:20} {pair.direction}  {', '.join(pair.packages)}")
        return 0
    if args.pairs:
        wanted = args.pairs.split(",")
        unknown = [n for n in wanted if n not in {p.name for p in pairs}]
        if unknown:
            print(f"unknown pairs: {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        pairs = [p for p in pairs if p.name in wanted]
    failed = []
    started = time.perf_counter()
    for pair in pairs:
        if not args.force and up_to_date(pair, out):
            print(f"{pair.name}: up to date")
            continue
        result = _run_pair_process(pair, out, keep)
        if result is None:
            failed.append(pair.name)
            continue
        print(
            f"{pair.name}: proven in {result['seconds']} s; params {result['source_params']} -> "
            f"{result['target_params']}; max rel diff {result['max_rel_diff']:.2g}; "
            f"swap broke it: {'yes' if result['swap_broke'] else 'NO'}"
        )
    print(f"{len(pairs) - len(failed)} of {len(pairs)} pairs ready in {time.perf_counter() - started:.0f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
