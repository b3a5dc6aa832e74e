"""Network-aware inference on real third-party model code: the real-port corpus's networks, built by their packages.

Each case of the mode's work on real ports is checked on a pair that has it: an HF decoder whose single layers
are re-run with a cache (GPT-2), MindFormers layers that flatten batch and sequence next to HF's (BERT, GPT-2),
an activation folded into MindFormers' `w1` (LLaMA), concatenated targets (CLIP's fused `in_proj`), outputs of
different structure paired by shape (HF's dict-like outputs against MindFormers' tuples) or not comparable at
all (open_clip's features against MindFormers' logits: what acts after them stays untestable, unless open_clip is
called through its `get_logits`), probe token ids
that avoid the models' special ids (Whisper), float16 compute (MindFormers' ViT), a per-parameter proof where
the networks differ in parameter-free code (PoolFormer), same-shaped blocks of different places that numeric
resolution cannot tell apart, placed by the inputs they get (CrossViT: a mapping with two of them swapped,
converted with both models), an HF checkpoint saved with older key
names than the model's, through the command line with its argument options, an HF model that fuses its experts
into stacked tensors loading a checkpoint that keeps them apart (Mixtral), and a model called with sizes as
tuples and one image's prompts from an argument spec (MindFormers' SAM, which also keeps a float16 weight).

These tests need the third-party model packages (transformers, mindformers, mindcv, timm, torchvision), which
do not belong in automap's own environment: they are skipped, saying so, unless run inside the environment that
`benchmarks/realports/env.sh` builds:

    bash benchmarks/realports/env.sh              # once: .venv-realports
    bash benchmarks/realports/test.sh             # these tests, in that environment

Each pair runs as the corpus benchmark runs it (`benchmarks.realports.netaware`): its checkpoint files written by
the corpus generator, network-aware inference in a process of its own, scored against the pair's proven truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.realports.netaware import NetworkResult, checkpoint_files, run_pairs, unavailable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(unavailable()), reason=f"needs the third-party environment: {unavailable()}"),
]

_ROOT = Path(__file__).resolve().parents[2]
_PAIRS = (
    "bert_hf_mindformers",
    "clip_hf_mindformers",
    "clip_mindformers_openclip",
    "crossvit_timm_mindcv",
    "gpt2_mindformers_hf",
    "llama_gqa_mindformers_hf",
    "mixtral_moe_mindformers_hf",
    "poolformer_mindcv_timm",
    "sam_hf_mindformers",
    "vit_timm_mindformers",
    "whisper_mindformers_hf",
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pairs' checkpoint files, written by the corpus generator."""
    return tmp_path_factory.mktemp("realports-files")


@pytest.fixture(scope="module")
def results(files: Path) -> dict[str, NetworkResult]:
    """Network-aware inference on each pair, scored against its truth."""
    return {r.pair: r for r in run_pairs(list(_PAIRS), files)}


def _report(result: NetworkResult) -> str:
    return "\n".join(result.detail) or result.error


def _sound(result: NetworkResult) -> None:
    """Every target right, none wrong at or above the threshold, and the mapping proven or confirmed per parameter."""
    assert not result.error, result.error
    assert result.total > 0
    assert (result.right, result.wrong_above) == (result.total, 0), _report(result)
    assert result.status in ("proven", "confirmed per parameter"), _report(result)


def test_hf_decoder_layers_rerun_with_their_cache_switched_off(results: dict[str, NetworkResult]) -> None:
    gpt2 = results["gpt2_mindformers_hf"]
    _sound(gpt2)
    assert gpt2.status == "proven", _report(gpt2)
    assert any("caching switched off" in line for line in gpt2.detail), _report(gpt2)


def test_flattened_batch_and_sequence_layouts_settle_square_weights(results: dict[str, NetworkResult]) -> None:
    # MindFormers' BERT layers work on (batch*seq, hidden): its square dense weights must still be oriented right
    bert = results["bert_hf_mindformers"]
    _sound(bert)
    assert bert.status == "proven", _report(bert)
    assert bert.confirmed_groups > 0, _report(bert)


def test_activation_folded_into_a_layer_is_no_divergence(results: dict[str, NetworkResult]) -> None:
    llama = results["llama_gqa_mindformers_hf"]
    _sound(llama)
    assert llama.status == "proven", _report(llama)
    assert not any("diverge" in line for line in llama.detail), _report(llama)


def test_concatenated_targets_and_outputs_paired_by_shape(results: dict[str, NetworkResult]) -> None:
    # HF's separate q/k/v become MindFormers' fused in_proj; HF returns a dict-like output, MindFormers a tuple
    clip = results["clip_hf_mindformers"]
    _sound(clip)
    assert clip.status == "proven", _report(clip)
    assert any("paired by shape" in line for line in clip.detail), _report(clip)
    assert any("not compared" in line for line in clip.detail), _report(clip)


def test_a_model_called_through_a_method_that_computes_the_other_models_outputs(
    results: dict[str, NetworkResult],
) -> None:
    # open_clip's forward returns features and the scale, MindFormers' CLIP logits: open_clip's get_logits
    # computes the logits, and the text projection and logit scale applied after the features are proven too
    clip = results["clip_mindformers_openclip"]
    _sound(clip)
    assert clip.status == "proven", _report(clip)
    assert "PyTorch model called through its method get_logits (instead of forward)" in clip.detail, _report(clip)


def test_outputs_that_nothing_compares_leave_the_end_parameters_untestable(
    results: dict[str, NetworkResult], files: Path, tmp_path: Path
) -> None:
    # open_clip as it comes (features and the scale) against MindFormers' logits: no output compares, and the
    # text projection and the logit scale act after every value both compute; they stay untestable, never
    # confirmed; from the command line with --torch-method get_logits (and one output of each chosen), the whole
    # mapping is proven
    assert "clip_mindformers_openclip" in results  # its files are written
    source, target = checkpoint_files("clip_mindformers_openclip", files, "ms2pt")
    inputs = ["--input", "2x3x32x32:float32", "--input", "2x16:int64:1-127"]
    done, _ = _infer_cli("clip_mindformers_openclip", source, target, tmp_path, inputs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not compared" in done.stdout and "[2, 2]" in done.stdout, done.stdout
    verdict = next(line for line in done.stdout.splitlines() if "per parameter:" in line)
    assert "60 parameters confirmed" in verdict and "2 untestable: text_projection, logit_scale" in verdict, verdict
    done, mapping = _infer_cli(
        "clip_mindformers_openclip",
        source,
        target,
        tmp_path,
        [*inputs, "--torch-method", "get_logits", "--torch-output", "0", "--mindspore-output", "0", "--force"],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    compared = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("output ")]
    assert len(compared) == 1 and compared[0].startswith("output 0 0 [2, 2]"), done.stdout  # the logits per image
    assert "PROVEN" in done.stdout and "NOT PROVEN" not in done.stdout, done.stdout
    written: dict[str, Any] = json.loads(mapping.read_text())
    scale = next(p for p in written["pairs"] if p["target"] == "logit_scale")
    assert scale["source"] == "logit_scale" and scale["confidence"] >= 0.99, scale


def test_probe_token_ids_avoid_the_models_special_ids(results: dict[str, NetworkResult]) -> None:
    whisper = results["whisper_mindformers_hf"]
    _sound(whisper)
    assert any("avoiding" in line and "config" in line for line in whisper.detail), _report(whisper)


def test_networks_differing_in_parameter_free_code_are_confirmed_per_parameter(
    results: dict[str, NetworkResult],
) -> None:
    # timm's PoolFormer pools before its head's norm, mindcv's after: every weight right, the outputs differ; the
    # head's norm cannot be compared in place, so it is checked on its function, the only norm of its kind left
    poolformer = results["poolformer_mindcv_timm"]
    _sound(poolformer)
    assert poolformer.status == "confirmed per parameter", _report(poolformer)
    verdict = next(line for line in poolformer.detail if line.startswith("CONFIRMED PER PARAMETER"))
    assert f"all {poolformer.total} parameters confirmed" in verdict, verdict
    assert "parameter-free module PyTorch 'head.global_pool.pool'" in verdict, verdict
    assert "function alone" in verdict and "head.norm.weight, head.norm.bias" in verdict, verdict


def test_same_shaped_blocks_of_different_places_are_placed_by_their_inputs(
    results: dict[str, NetworkResult], files: Path, tmp_path: Path
) -> None:
    # CrossViT's same-shaped LayerNorms of different places agree when fed each other's values. A mapping that
    # swaps two of them (edited by hand, say) is converted with both models at hand: the input each got in place
    # shows which source norm it is, they are put back, the whole-model proof holds and the right tensors are written
    crossvit = results["crossvit_timm_mindcv"]
    _sound(crossvit)
    assert crossvit.status == "proven", _report(crossvit)
    source, target = checkpoint_files("crossvit_timm_mindcv", files, "pt2ms")
    mapping = tmp_path / "mapping.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")])}
    automap = [sys.executable, "-m", "automap"]
    made = subprocess.run(
        [*automap, "infer", str(source), str(target), "-o", str(mapping)], capture_output=True, text=True, env=env
    )
    assert made.returncode == 0, made.stdout + made.stderr
    written: dict[str, Any] = json.loads(mapping.read_text())
    truth = json.loads((_ROOT / "tests/data/realports/crossvit_timm_mindcv/truth.json").read_text())["truth"]
    swapped = {"0.projs.1.0": "0.blocks.0.1.projs.1.0", "0.blocks.0.1.projs.1.0": "0.projs.1.0"}
    for pair in written["pairs"]:
        module, _, leaf = pair["target"].rpartition(".")
        if module in swapped:
            pair["source"] = truth[f"{swapped[module]}.{leaf}"]
    mapping.write_text(json.dumps(written))
    (tmp_path / "crossvit_factories.py").write_text(_FACTORIES.format(name="crossvit_timm_mindcv", float16=False))
    output = tmp_path / "converted.ckpt"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    done = subprocess.run(
        [
            *(*automap, "convert", str(source), "--mapping", str(mapping), "--target", str(target), "-o", str(output)),
            *(
                "--torch-model",
                "crossvit_factories:torch_model",
                "--mindspore-model",
                "crossvit_factories:mindspore_model",
            ),
            *("--input", "2x3x48x48:float32"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "placed by the input each got" in done.stdout, done.stdout
    assert "PROVEN" in done.stdout and "NOT PROVEN" not in done.stdout, done.stdout
    import mindspore
    from safetensors.numpy import load_file

    converted = mindspore.load_checkpoint(str(output))
    sources = load_file(str(source)) if source.suffix == ".safetensors" else None
    if sources is None:
        import torch

        sources = {k: v.numpy() for k, v in torch.load(source, weights_only=True).items()}
    for module in swapped:
        for leaf in ("gamma", "beta"):
            name = f"{module}.{leaf}"
            assert (converted[name].asnumpy() == sources[truth[name]]).all(), name


def test_tolerance_relative_to_each_output(results: dict[str, NetworkResult]) -> None:
    gpt2 = results["gpt2_mindformers_hf"]
    assert "x its largest value" in gpt2.tolerance, gpt2.tolerance
    assert "float32 compute" in gpt2.tolerance, gpt2.tolerance


_FACTORIES = """
import benchmarks.realports._setup as setup
from benchmarks.realports.pairs import get_pair

PAIR = get_pair({name!r})


def _ready():
    setup.prepare()
    if PAIR.setup is not None:
        PAIR.setup()


def torch_model():
    _ready()
    return PAIR.torch_model()


def mindspore_model():
    _ready()
    if {float16!r}:
        setup.mindformers_float32 = lambda net: net  # MindFormers' own float16 compute, as users get it
    return PAIR.mindspore_model()
"""


def _infer_cli(
    name: str, source: Path, target: Path, folder: Path, options: list[str], *, float16: bool = False
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`automap infer SOURCE TARGET` with the pair's models from a factory module, as a user runs it."""
    module = f"{name}_factories"
    (folder / f"{module}.py").write_text(_FACTORIES.format(name=name, float16=float16))
    mapping = folder / "mapping.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(_ROOT), env.get("PYTHONPATH", "")])
    command = [
        *(sys.executable, "-m", "automap", "infer", str(source), str(target), "-o", str(mapping)),
        *("--torch-model", f"{module}:torch_model", "--mindspore-model", f"{module}:mindspore_model", *options),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=_ROOT, env=env)
    return done, mapping


def test_float16_compute_gets_its_own_bound_and_is_proven(
    results: dict[str, NetworkResult], files: Path, tmp_path: Path
) -> None:
    # MindFormers' ViT as it comes (float16 matmuls): float32's bound would call its rounding a divergence
    assert "vit_timm_mindformers" in results  # its files are written
    pair_files = files / "vit_timm_mindformers"
    done, _ = _infer_cli(
        "vit_timm_mindformers",
        pair_files / "torch_model.pth",
        pair_files / "mindspore_model.ckpt",
        tmp_path,
        ["--input", "2x3x32x32:float32"],
        float16=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tolerance (for float16 compute)" in done.stdout, done.stdout
    assert "PROVEN" in done.stdout, done.stdout


def _old_bert_name(name: str) -> str:
    """BERT checkpoints saved by older code: LayerNorm's `gamma`/`beta`, which HF still loads."""
    return name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")


def test_cli_maps_checkpoint_names_older_than_the_model_and_proves(
    results: dict[str, NetworkResult], files: Path, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    assert "bert_hf_mindformers" in results  # its files are written
    pair_files = files / "bert_hf_mindformers"
    (original,) = sorted((pair_files / "torch").glob("*.safetensors"))
    tensors = load_file(str(original))
    old = tmp_path / "bert-old-names.safetensors"
    save_file({_old_bert_name(k): v for k, v in tensors.items()}, str(old), metadata={"format": "pt"})  # as HF saves
    assert any(k.endswith("LayerNorm.gamma") for k in load_file(str(old)))
    done, mapping = _infer_cli(
        "bert_hf_mindformers",
        old,
        pair_files / "mindspore_model.ckpt",
        tmp_path,
        [
            *("--input", "2x16:int64", "--input", "2x16:int64:0-2", "--input", "2x16:int64:1-1"),
            *("--torch-args", "input_ids=0,token_type_ids=1,attention_mask=2"),
        ],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LayerNorm.gamma ->" in done.stdout, done.stdout  # the names mapped onto the model's are shown
    assert "PROVEN" in done.stdout, done.stdout
    written: dict[str, Any] = json.loads(mapping.read_text())
    truth = json.loads((_ROOT / "tests/data/realports/bert_hf_mindformers/truth.json").read_text())["truth"]
    chosen = {p["target"]: p for p in written["pairs"]}
    for target, entry in truth.items():
        source = entry if isinstance(entry, str) else entry["source"]
        expected = [_old_bert_name(s) for s in ([source] if isinstance(source, str) else source)]
        got = chosen[target]["source"]
        assert ([got] if isinstance(got, str) else got) == expected, (target, chosen[target])


def test_experts_fused_into_stacked_tensors_load_from_a_checkpoint_that_keeps_them_apart(
    results: dict[str, NetworkResult],
) -> None:
    # the installed transformers stacks Mixtral's experts (`experts.gate_up_proj` [experts, 2*ffn, hidden]); the
    # checkpoint keeps `experts.N.w1/w2/w3`: each is put in its place of the stacked tensor, and the pair is proven
    mixtral = results["mixtral_moe_mindformers_hf"]
    _sound(mixtral)
    assert mixtral.status == "proven", _report(mixtral)
    shown = next(line for line in mixtral.detail if "names differ from the model's" in line)
    assert "experts.0.w1.weight -> model.layers.0.mlp.experts.gate_up_proj[0, 0:96]" in shown, shown


def test_sizes_as_tuples_and_an_item_of_an_input_from_the_command_line(
    results: dict[str, NetworkResult], files: Path, tmp_path: Path
) -> None:
    # MindFormers' SAM wants its image sizes as tuples and one image's prompts ([prompts, points, 2]) where HF
    # takes a batch of them ([images, prompts, points, 2]); it keeps its Gaussian matrix in float16
    assert "sam_hf_mindformers" in results  # its files are written
    pair_files = files / "sam_hf_mindformers"
    (torch_file,) = sorted((pair_files / "torch").glob("*.safetensors"))
    done, mapping = _infer_cli(
        "sam_hf_mindformers",
        torch_file,
        pair_files / "mindspore_model.ckpt",
        tmp_path,
        [
            *("--input", "1x3x64x64:float32", "--input", "1x1x2x2:float32:0-64", "--input", "1x1x2:int32:0-1"),
            *("--torch-args", "pixel_values=0,input_points=1,input_labels=2"),
            "--mindspore-args",
            "image=0,input_size=(64,64),original_size=(64,64),point_coords=1[0],point_labels=2[0],return_logits=true",
        ],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tolerance (for float16 compute)" in done.stdout, done.stdout  # the float16 weight counts
    assert "PROVEN" in done.stdout, done.stdout
    written: dict[str, Any] = json.loads(mapping.read_text())
    point_weight = "prompt_encoder.point_embeddings.0.embedding_table"  # used only when points are given
    chosen = {p["target"]: p for p in written["pairs"]}
    assert chosen[point_weight]["source"] == "prompt_encoder.point_embed.0.weight", chosen[point_weight]
    assert chosen[point_weight]["confidence"] >= 0.99, chosen[point_weight]
    sam = results["sam_hf_mindformers"]
    _sound(sam)
    assert sam.status == "proven", _report(sam)
