"""The accuracy benchmark: infer every zoo pair's mapping and score it against the proven ground truth.

Run from the repository root: `automap bench` (or `python -m benchmarks.run`). `--size full` uses the real
models' depths; `--reverse` also maps MindSpore -> PyTorch. Checkpoints are written once into a cache folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from automap import load_checkpoint
from automap.cli.bench import add_bench_options, default_cache
from automap.engine.inference import infer_mapping
from automap.records import NameMapping
from automap.transforms import Concat, Split, inverse_steps
from benchmarks.scoring import (
    WIDTH,
    PairResult,
    baseline_exact_name,
    baseline_order,
    calibration_line,
    headline,
    render_legend,
    render_results,
    score_mapping,
    timed,
)
from benchmarks.zoo import all_pairs, normalise_ground_truth, prove, write_checkpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    add_bench_options(parser)
    args = parser.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed options."""
    if getattr(args, "real", False):
        if getattr(args, "network_aware", False):
            from benchmarks.realports.netaware import run as run_real_network_aware

            return run_real_network_aware(args)
        from benchmarks.realports.run import run as run_real_ports

        return run_real_ports(args)
    wanted = set(args.pairs.split(",")) if args.pairs else None
    pairs = [p for p in all_pairs() if wanted is None or p.name in wanted]
    if wanted and len(pairs) != len(wanted):
        known = ", ".join(p.name for p in all_pairs())
        print(f"automap: error: unknown pair in {sorted(wanted)}; known: {known}", file=sys.stderr)
        return 2
    cache = Path(args.cache) if args.cache else default_cache()
    forward: list[PairResult] = []
    backward: list[PairResult] = []
    for pair in pairs:
        torch_path, ms_path = cache / f"{pair.name}-{args.size}.pth", cache / f"{pair.name}-{args.size}.ckpt"
        if not (torch_path.exists() and ms_path.exists()):
            write_checkpoints(pair, args.size, cache)
        source, target = load_checkpoint(torch_path), load_checkpoint(ms_path)
        truth = normalise_ground_truth(pair.ground_truth(args.size))
        if getattr(args, "network_aware", False):
            forward.append(_network_aware(pair, args.size, source, target, truth))
            continue
        mapping, seconds = timed(infer_mapping, source, target)
        result = score_mapping(pair.name, mapping, truth, source, target, seconds)
        result.baselines = {
            "exact_name": baseline_exact_name(source, target, truth),
            "order": baseline_order(source, target, truth),
        }
        plain = score_mapping(pair.name, infer_mapping(source, target, lexicon=False), truth, source, target)
        result.ablations = {"no_lexicon": plain.accuracy}
        if not args.no_numeric:
            result.numeric = _numeric(pair, args.size, mapping)
        forward.append(result)
        print(f"{pair.name}: {result.accuracy:.1%} in {seconds:.2f}s", file=sys.stderr)
        if args.reverse:
            backward.append(_reverse(pair.name, target, source, truth))
    # Pairs built so that names and file order mislead are reported apart: checkpoint-only inference cannot
    # get them right, only the network-aware mode can, and mixing them in would hide both facts.
    adversarial = {p.name for p in pairs if p.network_aware_only}
    for title, results in (
        (f"PyTorch -> MindSpore, size {args.size}{_mode(args)}", forward),
        (f"MindSpore -> PyTorch, size {args.size} (one-to-one pairs of the ground truth)", backward),
    ):
        if not results:
            continue
        regular = [r for r in results if r.name not in adversarial]
        misleading = [r for r in results if r.name in adversarial]
        print(f"{title}\n{headline(regular)}\n{calibration_line(regular)}\n{render_results(regular, legend=False)}")
        wrong = [(r.name, line) for r in regular for line in r.wrong_pairs[:10]]
        if wrong:
            print("\nWrong or unmatched pairs (the first 10 of each model pair):")
            for name, line in wrong:
                print(textwrap.fill(f"{name}: {line}", WIDTH, initial_indent="  ", subsequent_indent="      "))
        if misleading:
            print(f"\n{title}: pairs whose names and order mislead (for the network-aware mode)")
            print(f"{headline(misleading)}\n{calibration_line(misleading)}\n{render_results(misleading, legend=False)}")
        print()
    print(render_legend(network_aware=any("checkpoint_only" in r.ablations for r in forward)))
    if args.json:
        document: dict[str, Any] = {"size": args.size, "forward": [r.as_json() for r in forward]}
        if backward:
            document["reverse"] = [r.as_json() for r in backward]
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    if getattr(args, "network_aware", False) and not args.pairs:
        from benchmarks.realports.netaware import run as run_real_network_aware

        print()
        run_real_network_aware(args, beside_zoo=True)  # the real corpus beside the zoo, or why it cannot run
    return 0


def _mode(args: argparse.Namespace) -> str:
    return ", network-aware (both models at hand)" if getattr(args, "network_aware", False) else ""


def _network_aware(pair: Any, size: str, source: Any, target: Any, truth: Any) -> PairResult:
    """Infer with both zoo models at hand; score it, and checkpoint-only inference beside it."""
    import numpy as np

    from automap.netaware import infer_with_networks
    from benchmarks.zoo._base import _quiet_mindspore

    with _quiet_mindspore():
        import mindspore

        mindspore.set_device("CPU")  # `set_context(device_target=...)` is deprecated and says so on every call
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
        network, seconds = timed(
            infer_with_networks,
            source,
            target,
            torch_model=pair.torch_model(size),
            mindspore_model=pair.mindspore_model(size),
            inputs=list(pair.inputs(size, np.random.default_rng(0))),
            mindspore_inputs=pair.mindspore_inputs,
            rtol=pair.rtol,
            atol=pair.atol,
        )
    result = score_mapping(pair.name, network.mapping, truth, source, target, seconds)
    result.baselines = {
        "exact_name": baseline_exact_name(source, target, truth),
        "order": baseline_order(source, target, truth),
    }
    plain = score_mapping(pair.name, infer_mapping(source, target), truth, source, target)
    result.ablations = {"checkpoint_only": plain.accuracy}
    proof = network.proof
    if network.proven and proof is not None:
        result.numeric = f"yes, proven (max rel {proof.max_rel:.1e})"
    else:
        where = f"; {network.divergence.module or 'model'} diverges" if network.divergence else ""
        result.numeric = f"NOT proven{where}"
    confirmed = sum(1 for o in network.outcomes if o.status == "confirmed")
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in network.seconds.items())
    print(
        f"{pair.name}: network-aware {result.accuracy:.1%} (checkpoint only {plain.accuracy:.1%}) in {seconds:.2f}s "
        f"({phases}); {confirmed}/{len(network.outcomes)} groups confirmed, {network.trials} trials, "
        f"{network.runs} forward passes; {'proven' if network.proven else 'NOT proven'}",
        file=sys.stderr,
    )
    return result


def _numeric(pair: Any, size: str, mapping: NameMapping) -> str:
    """Do the two nets agree when the weights move through the *inferred* mapping?"""
    missing = [p.target for p in mapping.pairs if p.source is None]
    if missing:
        return f"no ({len(missing)} unmatched)"
    inferred = {
        p.target: {"source": list(p.source_names), "transform": [s.to_json() for s in p.transform]}
        for p in mapping.pairs
    }
    try:
        proof = prove(pair, size, inferred)
    except Exception as error:
        return f"no ({type(error).__name__})"
    detail = f"max rel {proof.comparison.max_rel:.1e}"
    return f"yes ({detail})" if proof.passed else f"no ({detail})"


def _reverse(name: str, source: Any, target: Any, truth: Any) -> PairResult:
    """Score MindSpore -> PyTorch on the ground truth's one-to-one pairs (split/concat pairs have no inverse)."""
    inverse = {}
    for t, (sources, steps) in truth.items():
        if len(sources) == 1 and not any(isinstance(s, Split | Concat) for s in steps):
            back = inverse_steps([target[sources[0]].shape], steps)
            if back is not None:
                inverse[sources[0]] = ((t,), back)
    mapping, seconds = timed(infer_mapping, source, target)
    result = score_mapping(name, mapping, inverse, source, target, seconds)
    result.baselines = {
        "exact_name": baseline_exact_name(source, target, inverse),
        "order": baseline_order(source, target, inverse),
    }
    result.ablations = {
        "no_lexicon": score_mapping(
            name, infer_mapping(source, target, lexicon=False), inverse, source, target
        ).accuracy
    }
    result.numeric = "-"
    return result


if __name__ == "__main__":
    raise SystemExit(main())
