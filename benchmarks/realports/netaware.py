"""Network-aware inference on the real-port corpus: both packages' models at hand, as a user would run it.

For each pair, the two networks are built by their packages (the corpus builders, with their run-time
workarounds), the two checkpoint files are the ones the generator wrote (`generate --keep-files`), and
`automap.netaware.infer_with_networks` runs with what a user would give on the command line: probe input specs,
how the inputs become each model's arguments where the signatures differ (`CALLS` below, in the CLI's words),
and nothing else: outputs are paired automatically. The mapping is scored against the proven truth like the
checkpoint-only benchmark (`accuracy.score_real`), and the verdict (proven, confirmed per parameter, not
proven) and the time are recorded.

Each pair runs in its own process (MindSpore keeps global state; mindone's pairs need their own package folder
first on the path). Run from the repository root inside the third-party environment:

    python -m benchmarks.realports.netaware                  # every pair; files cached, generated when missing
    python -m benchmarks.realports.netaware --pairs resnet18_tv_mindcv --files ../realports-files
    automap bench --real --network-aware                     # the same, from the command line
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Call:
    """What a user gives for one pair besides the two models: inputs, and each model's arguments where needed.

    Attributes:
        inputs: `--input` specs; "pair" to take the pair's own probe arrays (inputs with structure a spec cannot
            say, such as CLIP's unique end-of-text token).
        torch_args, mindspore_args: `--torch-args` / `--mindspore-args` (None: the inputs in order).
        torch_outputs, mindspore_outputs: `--torch-output` / `--mindspore-output` (None: paired by shape).
        torch_method, mindspore_method: `--torch-method` / `--mindspore-method` (None: `forward` / `construct`).
    """

    inputs: tuple[str, ...] | str
    torch_args: str | None = None
    mindspore_args: str | None = None
    torch_outputs: str | None = None
    mindspore_outputs: str | None = None
    torch_method: str | None = None
    mindspore_method: str | None = None


_IMAGES_64 = Call(("2x3x64x64:float32",))
_IMAGES_32 = Call(("2x3x32x32:float32",))
_TOKENS = Call(("2x16:int64",))
_BERT = ("2x16:int64", "2x16:int64:0-2", "2x16:int64:1-1")

CALLS: dict[str, Call] = {
    "bert_hf_mindformers": Call(_BERT, torch_args="input_ids=0,token_type_ids=1,attention_mask=2"),
    "bert_qa_mindformers_hf": Call(
        _BERT, torch_args="input_ids=0,token_type_ids=1,attention_mask=2", mindspore_args="0,2,1"
    ),
    "bloom_hf_mindformers": _TOKENS,
    "clip_hf_mindformers": Call("pair", torch_args="input_ids=1,pixel_values=0"),
    "clip_mindformers_openclip": Call("pair", torch_method="get_logits"),  # open_clip's forward returns features
    "convnext_mindcv_timm": _IMAGES_64,
    "densenet_mindcv_tv": _IMAGES_64,
    "dit_mindone_diffusers": Call(
        ("2x4x8x8:float32", "2:int64:0-1000", "2:int64:0-10"),
        torch_args="0,timestep=1,class_labels=2",
        mindspore_args="0,timestep=1,class_labels=2",
    ),
    "efficientnet_b0_mindcv_tv": _IMAGES_64,
    "gpt2_mindformers_hf": _TOKENS,
    "llama_gqa_mindformers_hf": _TOKENS,
    "mixtral_moe_mindformers_hf": _TOKENS,
    "mlp_mixer_mindcv_timm": _IMAGES_32,
    "mobilenet_v2_tv_mindcv": _IMAGES_64,
    "mobilenet_v3_small_tv_mindcv": _IMAGES_64,
    "pvt_v2_mindcv_timm": _IMAGES_64,
    "resnet18_tv_mindcv": _IMAGES_64,
    "squeezenet_mindcv_tv": _IMAGES_64,
    "swin_hf_mindformers": _IMAGES_32,
    "swin_mindcv_timm": _IMAGES_32,
    "t5_hf_mindformers": Call(
        ("2x8:int64", "2x8:int64", "2x8:float32:1-1"),
        torch_args="input_ids=0,decoder_input_ids=1",
        mindspore_args="0,2,decoder_input_ids=1,decoder_attention_mask=2",
    ),
    "unet2d_diffusers_mindone": Call(
        ("2x4x8x8:float32", "2:int64:0-1000", "2x4x32:float32"),
        torch_args="0,1,encoder_hidden_states=2",
        mindspore_args="0,1,encoder_hidden_states=2",
    ),
    "vit_timm_mindformers": _IMAGES_32,
    "vit_tv_mindcv": _IMAGES_32,
    "whisper_mindformers_hf": Call(
        ("2x16x32:float32", "2x16:int64"),
        torch_args="input_features=0,decoder_input_ids=1",
        mindspore_args="0,decoder_input_ids=1",
    ),
    "yolov8n_mindyolo_ultralytics": _IMAGES_64,
    "albert_hf_mindone": Call(("2x8:int64",), mindspore_args="0,return_dict=false"),
    "mobilebert_mindone_hf": Call(("2x8:int64",), mindspore_args="0,return_dict=false"),
    "qformer_mindformers_hf": Call(
        ("2x4x32:float32", "2x6x24:float32", "2x6:float32:1-1"),
        torch_args="query_embeds=0,encoder_hidden_states=1",
        mindspore_args="query_embeds=0,encoder_hidden_states=1,encoder_attention_mask=2",
    ),
    "wav2vec2_hf_mindone": Call(("2x256:float32",), mindspore_args="0,return_dict=false"),
    "encodec_mindone_hf": Call(  # the padding mask given: mindone's default for it needs a kernel CPUs lack
        ("2x1x64:float32", "2x1x64:bool:1-1"), torch_args="0,1", mindspore_args="0,1,return_dict=false"
    ),
    "vae_kl_mindone_diffusers": Call(("2x3x16x16:float32",), mindspore_args="0,return_dict=false"),
    "controlnet_diffusers_mindone": Call(
        ("2x4x8x8:float32", "2:int64:0-1000", "2x4x32:float32", "2x3x16x16:float32"),
        torch_args="0,1,encoder_hidden_states=2,controlnet_cond=3,return_dict=false",
        mindspore_args="0,1,encoder_hidden_states=2,controlnet_cond=3,return_dict=false",
    ),
    "sd3_mmdit_mindone_diffusers": Call(
        ("2x4x8x8:float32", "2x5x16:float32", "2x12:float32", "2:int64:0-1000"),
        torch_args="0,encoder_hidden_states=1,pooled_projections=2,timestep=3,return_dict=false",
        mindspore_args="0,encoder_hidden_states=1,pooled_projections=2,timestep=3,return_dict=false",
    ),
    "pixart_diffusers_mindone": Call(
        ("2x4x8x8:float32", "2x5x12:float32", "2:int64:0-1000"),
        torch_args="0,encoder_hidden_states=1,timestep=2,return_dict=false",
        mindspore_args="0,encoder_hidden_states=1,timestep=2,return_dict=false",
    ),
    "sam_hf_mindformers": Call(  # one image, one prompt of two points: mindformers takes that image's prompts
        ("1x3x64x64:float32", "1x1x2x2:float32:0-64", "1x1x2:int32:0-1"),
        torch_args="pixel_values=0,input_points=1,input_labels=2",
        mindspore_args="image=0,input_size=(64,64),original_size=(64,64),point_coords=1[0],point_labels=2[0],"
        "return_logits=true",
    ),
    "edgenext_mindcv_timm": _IMAGES_64,
    "convit_timm_mindcv": Call(("2x3x56x56:float32",)),
    "poolformer_mindcv_timm": _IMAGES_64,
    "crossvit_timm_mindcv": Call(("2x3x48x48:float32",)),
    "pit_mindcv_timm": _IMAGES_64,
    "visformer_timm_mindcv": _IMAGES_64,
    "ghostnet_mindcv_timm": _IMAGES_64,
    "mnasnet_timm_mindcv": _IMAGES_64,
    "mixnet_s_mindcv_timm": _IMAGES_64,
    "mobilenet_v1_timm_mindcv": _IMAGES_64,
}


@dataclass
class NetworkResult:
    """One pair's figures under network-aware inference, with checkpoint-only accuracy beside them."""

    pair: str
    split: str = ""
    direction: str = ""
    total: int = 0
    right: int = 0
    wrong_above: int = 0
    checkpoint_only: float = 0.0
    status: str = "failed"
    seconds: float = 0.0
    groups: int = 0
    confirmed_groups: int = 0
    untestable: int = 0
    untestable_targets: int = 0
    tolerance: str = ""
    detail: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def accuracy(self) -> float:
        """Share of targets mapped right."""
        return self.right / self.total if self.total else 0.0


def checkpoint_files(pair: str, folder: Path, direction: str) -> tuple[Path, Path]:
    """(source file, target file) of a pair in a `generate --keep-files` folder."""
    base = folder / pair

    def find(kind: str) -> Path:
        single = base / ("torch_model.pth" if kind == "torch" else "mindspore_model.ckpt")
        if single.is_file():
            return single
        found = sorted((base / kind).glob("*.safetensors")) if (base / kind).is_dir() else []
        if len(found) != 1:
            msg = f"{pair}: no {kind} checkpoint under {base}; run benchmarks.realports.generate --keep-files"
            raise FileNotFoundError(msg)
        return found[0]

    torch_file, mindspore_file = find("torch"), find("mindspore")
    return (torch_file, mindspore_file) if direction == "pt2ms" else (mindspore_file, torch_file)


def run_one(name: str, files: Path) -> NetworkResult:
    """Build both networks, run network-aware inference on the pair's files, score it (in this process)."""
    import numpy as np

    import automap
    from automap.engine.inference import infer_mapping
    from automap.netaware import infer_with_networks
    from benchmarks.realports._setup import prepare
    from benchmarks.realports.accuracy import score_real
    from benchmarks.realports.corpus import load_corpus
    from benchmarks.realports.pairs import get_pair

    pair = get_pair(name)
    corpus = next(p for p in load_corpus() if p.name == name)
    result = NetworkResult(name, corpus.split, pair.direction)
    prepare()
    if pair.setup is not None:
        pair.setup()
    source_file, target_file = checkpoint_files(name, files, pair.direction)
    frameworks = ("pytorch", "mindspore") if pair.direction == "pt2ms" else ("mindspore", "pytorch")
    source = automap.load_checkpoint(source_file, framework=frameworks[0])  # type: ignore[arg-type]
    target = automap.load_checkpoint(target_file, framework=frameworks[1])  # type: ignore[arg-type]
    call = CALLS[name]
    inputs: list[Any] = list(pair.inputs(np.random.default_rng(0))) if call.inputs == "pair" else list(call.inputs)
    started = time.perf_counter()
    network = infer_with_networks(
        source,
        target,
        torch_model=pair.torch_model(),
        mindspore_model=pair.mindspore_model(),
        inputs=inputs,
        torch_arguments=call.torch_args,
        mindspore_arguments=call.mindspore_args,
        torch_outputs=call.torch_outputs,
        mindspore_outputs=call.mindspore_outputs,
        torch_method=call.torch_method,
        mindspore_method=call.mindspore_method,
    )
    result.seconds = time.perf_counter() - started
    scored = score_real(corpus, network.mapping, result.seconds)
    plain = score_real(corpus, infer_mapping(corpus.source, corpus.target))
    result.total, result.right, result.wrong_above = scored.total, scored.right, scored.wrong_above
    result.checkpoint_only = plain.accuracy
    result.status = network.status
    result.groups = len(network.outcomes)
    result.confirmed_groups = sum(1 for o in network.outcomes if o.status == "confirmed")
    result.untestable = sum(1 for o in network.outcomes if o.status == "untestable")
    result.untestable_targets = len(network.untestable)
    result.tolerance = network.tolerance.describe() if network.tolerance is not None else ""
    result.detail = [*network.lines(), *scored.wrong_pairs[:10]]
    return result


def run_pairs(names: list[str], files: Path) -> list[NetworkResult]:
    """Each pair in its own process; files generated into `files` first where missing."""
    from benchmarks.realports.pairs import get_pair

    missing = [n for n in names if not (files / n).is_dir()]
    if missing:
        _generate(missing, files)
    results = []
    for name in names:
        pair = get_pair(name)
        env = dict(os.environ)
        paths = [str(_ROOT)]
        if pair.site is not None:
            paths.insert(0, str(Path(sys.prefix) / pair.site))
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.setdefault("GLOG_v", "3")
        command = [sys.executable, "-m", "benchmarks.realports.netaware", "--one", name, "--files", str(files)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=_ROOT, env=env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
            results.append(NetworkResult(name, error=tail, seconds=time.perf_counter() - started))
        else:
            results.append(NetworkResult(**json.loads(lines[-1][len("RESULT ") :])))
        last = results[-1]
        print(
            f"{name}: {last.right}/{last.total} right, {last.status} in {last.seconds:.1f}s"
            + (f" ({last.error.splitlines()[-1]})" if last.error else ""),
            file=sys.stderr,
            flush=True,
        )
    return results


def _generate(names: list[str], files: Path) -> None:
    """Write the pairs' checkpoint files with the corpus generator (the committed data is left alone)."""
    with tempfile.TemporaryDirectory(prefix="realports-listings-") as scratch:
        command = [
            sys.executable,
            "-m",
            "benchmarks.realports.generate",
            "--force",
            "--pairs",
            ",".join(names),
            "--keep-files",
            str(files),
            "--out",
            scratch,
        ]
        subprocess.run(command, check=True, cwd=_ROOT)


def render(results: list[NetworkResult]) -> str:
    """The table of the pairs, the totals and the legend."""
    from automap._text import render_table

    header = ["pair", "half", "dir", "right", "checkpoint only", "WRONG >= thr", "groups c/u", "verdict", "s"]
    rows = [
        [
            r.pair,
            r.split,
            r.direction,
            f"{r.right}/{r.total}" if not r.error else "-",
            f"{r.checkpoint_only:.1%}" if not r.error else "-",
            str(r.wrong_above),
            f"{r.confirmed_groups}/{r.untestable}" if not r.error else "-",
            r.status if not r.error else "FAILED",
            f"{r.seconds:.1f}",
        ]
        for r in results
    ]
    total = sum(r.total for r in results)
    right = sum(r.right for r in results)
    proven = sum(r.status == "proven" for r in results)
    per_parameter = sum(r.status == "confirmed per parameter" for r in results)
    rows.append(
        [
            "total",
            "",
            "",
            f"{right}/{total} ({right / total:.1%})" if total else "-",
            "",
            str(sum(r.wrong_above for r in results)),
            "",
            f"{proven} proven, {per_parameter} per parameter, {len(results) - proven - per_parameter} not",
            f"{sum(r.seconds for r in results):.0f}",
        ]
    )
    legend = (
        "right: same source(s) and a transform that moves the data the same way (the truth's measure); checkpoint\n"
        "only: the same pairs inferred from the two files alone; WRONG >= thr: wrong pairs at or above the threshold\n"
        "(must be 0); groups c/u: groups of interchangeable choices confirmed numerically / untestable; verdict:\n"
        "proven (the converted model reproduces the source model), confirmed per parameter (every parameter agrees\n"
        "in its own module; the networks differ elsewhere or their outputs cannot be compared), or not proven;\n"
        "s: seconds of network-aware inference (models built, files read and the process started not counted)."
    )
    return f"{render_table(header, rows, right=(3, 4, 5, 6, 8))}\n\n{legend}\n"


THIRD_PARTY = ("torchvision", "timm", "transformers", "mindcv", "mindformers")
"""Model packages whose absence means the third-party environment is not the one running."""


def unavailable() -> str:
    """Why the corpus cannot run here ("" when it can): the model packages it builds its networks with."""
    import importlib.util

    missing = [name for name in THIRD_PARTY if importlib.util.find_spec(name) is None]
    if not missing:
        return ""
    return (
        f"{', '.join(missing)} not installed here; build the third-party environment with "
        "`bash benchmarks/realports/env.sh` and run `automap bench --real --network-aware` with its python"
    )


def run(args: argparse.Namespace, *, beside_zoo: bool = False) -> int:
    """`automap bench --network-aware` on the real-port corpus (`--real`, or after the zoo when `beside_zoo`).

    Pairs follow `--pairs` (real pair names; ignored beside the zoo, whose names they are) and `--split`; the
    pairs' checkpoint files are kept under `--cache`/realports (default: the user's cache folder).
    """
    from benchmarks.realports.corpus import load_corpus

    title = "Real ports, network-aware (both packages' models at hand)"
    why = unavailable()
    if why:
        print(f"{title}: NOT MEASURED: {why}")
        return 0 if beside_zoo else 2
    split = getattr(args, "split", "all")
    names = sorted(p.name for p in load_corpus(split=None if split == "all" else split))
    wanted = args.pairs.split(",") if args.pairs and not beside_zoo else None
    if wanted is not None:
        unknown = [n for n in wanted if n not in names]
        if unknown:
            print(f"automap: error: unknown real-port pairs for --split {split}: {', '.join(unknown)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted]
    files = Path(args.cache) / "realports" if getattr(args, "cache", None) else default_files()
    results = run_pairs(names, files.resolve())
    print(f"{title}, {split} half{'s' if split == 'all' else ''}:\n{render(results)}")
    if args.json and not beside_zoo:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1) + "\n", encoding="utf-8")
    bad = any(r.error or r.wrong_above for r in results)
    return 3 if bad and not beside_zoo else 0


def default_files() -> Path:
    """Where the pairs' checkpoint files are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "automap" / "realports"


def main(argv: list[str] | None = None) -> int:
    """Run network-aware inference on the corpus (or one pair, `--one`, in this process)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realports.netaware", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", help="comma-separated pair names (default: all)")
    parser.add_argument("--files", type=Path, help="the generator's --keep-files folder (default: a cache folder)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--verbose", action="store_true", help="print each pair's report")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    files = (args.files or default_files()).resolve()
    if args.one:
        result = run_one(args.one, files)
        print("RESULT " + json.dumps(result.__dict__), flush=True)
        sys.stderr.flush()
        os._exit(0)  # MindSpore cells complain on interpreter shutdown; the work is done and flushed
    from benchmarks.realports.pairs import all_pairs

    names = [p.name for p in all_pairs()]
    if args.pairs:
        wanted = args.pairs.split(",")
        unknown = [n for n in wanted if n not in names]
        if unknown:
            print(f"unknown pairs: {', '.join(unknown)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted]
    results = run_pairs(sorted(names), files)
    if args.verbose:
        for r in results:
            print(f"--- {r.pair}\n" + "\n".join(r.detail or [r.error]))
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1) + "\n", encoding="utf-8")
    return 0 if all(not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
