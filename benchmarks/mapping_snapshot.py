"""Write every mapping the benchmarks infer, as files, so two versions of automap can be compared byte for byte.

A change meant to make inference or writing faster must not change any mapping. Run this once with the old
code and once with the new, then compare the two folders (`diff -r OLD NEW`, or `--compare OLD`): for every
zoo pair (both directions) and every scale size it writes the versioned mapping, the flat mapping and the HTML
report, from the same inputs the command line reads (checkpoint files for the zoo, JSON listings at scale).
Run from the repository root:

    python -m benchmarks.mapping_snapshot OUT                     # write every snapshot into OUT
    python -m benchmarks.mapping_snapshot NEW --compare OLD       # write, then compare with OLD
    python -m benchmarks.mapping_snapshot OUT --sizes deepseek-v3-6l --no-zoo
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import sys
from pathlib import Path

from automap import load_checkpoint
from automap.engine.inference import infer_mapping
from automap.io.listing import write_to
from automap.mapping import save_mapping
from automap.records import ParamTable
from automap.report.html import write_html
from benchmarks.scale import CONFIGS, listings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mapping_snapshot", description=__doc__)
    parser.add_argument("out", type=Path, help="folder to write the snapshot into")
    parser.add_argument("--compare", type=Path, metavar="OLD", help="a snapshot folder to compare with")
    parser.add_argument("--sizes", default=",".join(CONFIGS), help="scale sizes (comma-separated)")
    parser.add_argument("--no-zoo", action="store_true", help="leave the zoo out (it needs torch and MindSpore)")
    parser.add_argument("--cache", type=Path, default=Path("bench-results/checkpoints"), help="zoo checkpoints")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_zoo:
        _zoo(args.out, args.cache)
    for name in [s for s in args.sizes.split(",") if s]:
        _scale(name, args.out)
    if args.compare is None:
        return 0
    return _compare(args.compare, args.out)


def _write(name: str, source: ParamTable, target: ParamTable, out: Path) -> None:
    mapping = infer_mapping(source, target)
    save_mapping(mapping, out / f"{name}.mapping.json")
    save_mapping(mapping, out / f"{name}.flat.json", flat=True)
    write_html(mapping, out / f"{name}.html", source_table=source, target_table=target)
    print(f"{name}: {len(mapping.pairs)} pairs", file=sys.stderr)


def _zoo(out: Path, cache: Path) -> None:
    from benchmarks.zoo import all_pairs, write_checkpoints

    for pair in all_pairs():
        torch_path, ms_path = cache / f"{pair.name}-ci.pth", cache / f"{pair.name}-ci.ckpt"
        if not (torch_path.exists() and ms_path.exists()):
            write_checkpoints(pair, "ci", cache)
        torch_table, ms_table = load_checkpoint(torch_path), load_checkpoint(ms_path)
        _write(f"zoo-{pair.name}", torch_table, ms_table, out)
        _write(f"zoo-{pair.name}-reverse", ms_table, torch_table, out)


def _scale(name: str, out: Path) -> None:
    source, target, _ = listings(CONFIGS[name])
    tables = []
    with contextlib.chdir(out):  # the mapping records the listings' paths: the same in every snapshot
        for side, table in (("source", source), ("target", target)):
            path = Path(f"scale-{name}.{side}.json")
            with path.open("wb") as handle:
                write_to(handle, table.params, framework=table.framework, path=path.name)
            tables.append(load_checkpoint(path))
    _write(f"scale-{name}", tables[0], tables[1], out)


def _compare(old: Path, new: Path) -> int:
    names = sorted(p.name for p in new.iterdir() if p.is_file())
    missing = sorted({p.name for p in old.iterdir() if p.is_file()} - set(names))
    differ = [n for n in names if not (old / n).is_file() or not filecmp.cmp(old / n, new / n, shallow=False)]
    for name in differ:
        print(f"DIFFERS: {name}")
    for name in missing:
        print(f"MISSING: {name}")
    print(f"{len(names) - len(differ)} of {len(names)} files identical to {old}")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
