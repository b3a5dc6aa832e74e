"""Check an installed automap (the built wheel in a clean virtual environment) for what its set-up can do.

    python check_install.py none|torch|mindspore [--inputs DIR]
    python check_install.py make-inputs DIR        (in an environment with torch: the .pth files for the others)

Run it with the virtual environment's python from a folder outside the checkout, so that only the installed
package can be imported. It builds small real checkpoints (safetensors.numpy; a .ckpt by automap's writer or,
with MindSpore, by mindspore.save_checkpoint; a .pth by torch.save), then runs the installed `automap` command:
`--help`, `inspect`, `infer` (which needs the lexicon shipped as package data) and `convert` between the formats
that need no framework, comparing every converted tensor with its source. Commands that need a framework the
set-up lacks must fail with one line naming the extra to install, exit status 1 and no traceback. Exit status:
0 when every check passed, 1 otherwise (each failure listed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SETUPS = ("none", "torch", "mindspore")
CHECKOUT = Path(__file__).resolve().parents[2]

# A small convolutional network as PyTorch names it, and its MindSpore port's names: BatchNorm's weight/bias/
# running statistics are gamma/beta/moving_mean/moving_variance there, which only the lexicon connects.
_SHAPES = {
    "features.0.weight": (8, 3, 3, 3),
    "features.0.bias": (8,),
    "features.1.weight": (8,),
    "features.1.bias": (8,),
    "features.1.running_mean": (8,),
    "features.1.running_var": (8,),
    "features.3.weight": (16, 8, 3, 3),
    "features.3.bias": (16,),
    "features.4.weight": (16,),
    "features.4.bias": (16,),
    "features.4.running_mean": (16,),
    "features.4.running_var": (16,),
    "classifier.weight": (10, 16),
    "classifier.bias": (10,),
}
_COUNTERS = ("features.1.num_batches_tracked", "features.4.num_batches_tracked")
_MINDSPORE_LEAF = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_BATCHNORMS = ("features.1.", "features.4.")


def mindspore_name(torch_name: str) -> str:
    """The ground truth: the MindSpore name of each PyTorch parameter."""
    if torch_name.startswith(_BATCHNORMS):
        module, leaf = torch_name.rsplit(".", 1)
        return f"{module}.{_MINDSPORE_LEAF[leaf]}"
    return torch_name


def source_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights in the PyTorch layout (values differ per tensor, so a swapped pair shows)."""
    rng = np.random.default_rng(seed)
    arrays = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in _SHAPES.items()}
    for name in _BATCHNORMS:
        arrays[name + "running_var"] = np.abs(arrays[name + "running_var"]) + 0.5
    return arrays


def _counters() -> dict[str, np.ndarray]:
    """BatchNorm's num_batches_tracked, which only PyTorch files have."""
    return {name: np.array(3, dtype=np.int64) for name in _COUNTERS}


# --- running the installed command --------------------------------------------------------------------------


class Checks:
    """Runs the installed `automap` in a scratch folder and collects what failed."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.failures: list[str] = []
        self.passed = 0
        self.command = Path(sys.executable).parent / "automap"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.env["GLOG_v"] = "3"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.command), *args], cwd=self.work, env=self.env, capture_output=True, text=True, check=False
        )

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok    {what}")
        else:
            self.failures.append(what)  # the detail is printed here, the summary lists names
            print(f"FAIL  {what}: {detail}")
        return ok

    def succeeds(self, what: str, *args: str, says: str = "") -> str:
        """Run a command that must succeed (and print `says`); its standard output."""
        result = self.run(*args)
        detail = f"exit {result.returncode}; stderr: {result.stderr.strip()[-1500:]}"
        if self.check(what, result.returncode == 0, detail) and says:
            self.check(f"{what} says {says!r}", says in result.stdout, result.stdout.strip()[-600:])
        return result.stdout

    def refuses(self, what: str, *args: str, hint: str | tuple[str, ...]) -> None:
        """Run a command that needs a missing framework: exit 1, one line naming what to install, no traceback."""
        result = self.run(*args)
        lines = result.stderr.strip().splitlines()
        hints = (hint,) if isinstance(hint, str) else hint
        ok = (
            result.returncode == 1
            and len(lines) == 1
            and lines[0].startswith("automap: error:")
            and any(f"pip install {h}" in lines[0] for h in hints)
            and "Traceback" not in result.stderr
        )
        self.check(f"{what} refuses: {' or '.join(hints)}", ok, f"exit {result.returncode}; stderr: {result.stderr}")

    def same_values(self, what: str, got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
        wrong = [n for n in expected if n not in got or not np.array_equal(got[n], expected[n])]
        extra = sorted(set(got) - set(expected))
        self.check(f"{what}: every tensor equals its source", not wrong and not extra, f"differ {wrong}; extra {extra}")


# --- the checks ----------------------------------------------------------------------------------------------


def check_environment(c: Checks, setup: str) -> None:
    """The installed package is the one imported, and only this set-up's frameworks are present."""
    import automap

    where = Path(automap.__file__).resolve()
    c.check("automap comes from the installed wheel", not where.is_relative_to(CHECKOUT), str(where))
    present = {name for name in ("torch", "mindspore") if importlib.util.find_spec(name) is not None}
    expected = set() if setup == "none" else {setup}
    c.check(f"frameworks installed: {sorted(expected) or 'none'}", present == expected, f"found {sorted(present)}")
    code = (
        "import sys, automap, automap.cli; automap.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'mindspore') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=c.env, capture_output=True, text=True, check=False)
    c.check("import automap imports no framework", result.stdout.strip() == "[]", result.stdout + result.stderr)
    from importlib import resources

    lexicon = resources.files("automap.engine").joinpath("lexicon.json")
    c.check("the lexicon is installed", lexicon.is_file())
    c.check("py.typed is installed", resources.files("automap").joinpath("py.typed").is_file())


def write_inputs(setup: str, work: Path) -> dict[str, np.ndarray]:
    """The source as .safetensors (and .pth with torch), the target template as .ckpt."""
    from safetensors.numpy import save_file

    arrays = source_arrays()
    save_file({**arrays, **_counters()}, str(work / "model.safetensors"))
    template = {mindspore_name(n): np.zeros(a.shape, a.dtype) for n, a in arrays.items()}
    if setup == "mindspore":
        import mindspore

        records = [{"name": name, "data": mindspore.Tensor(value)} for name, value in template.items()]
        mindspore.save_checkpoint(records, str(work / "template.ckpt"))
    else:
        import automap
        from automap.records import ParamRecord

        automap.save_checkpoint(
            [
                ParamRecord(name, value.shape, str(value.dtype), i, (lambda v=value: v))
                for i, (name, value) in enumerate(template.items())
            ],
            work / "template.ckpt",
            framework="mindspore",
        )
    if setup == "torch":
        import torch

        state = {n: torch.from_numpy(a) for n, a in arrays.items()}
        state.update({n: torch.tensor(3) for n in _COUNTERS})
        torch.save(state, work / "model.pth")
    return arrays


def read_ckpt(path: Path, setup: str) -> dict[str, np.ndarray]:
    """A .ckpt's tensors, by MindSpore's own loader where it is installed."""
    if setup == "mindspore":
        import mindspore

        return {name: p.asnumpy() for name, p in mindspore.load_checkpoint(str(path)).items()}
    import automap

    return {p.name: p.read() for p in automap.load_checkpoint(path)}


def check_file_conversions(c: Checks, setup: str, arrays: dict[str, np.ndarray], inputs: Path | None) -> None:
    """inspect, infer and convert between formats automap reads and writes itself."""
    from safetensors.numpy import load_file

    c.succeeds("automap --help", "--help", says="usage: automap")
    c.succeeds("automap inspect model.safetensors", "inspect", "model.safetensors", says="features.1.running_var")
    c.succeeds("automap inspect template.ckpt", "inspect", "template.ckpt", says="features.1.moving_variance")
    c.succeeds("automap infer", "infer", "model.safetensors", "template.ckpt", "-o", "mapping.json")
    if (c.work / "mapping.json").is_file():
        pairs = json.loads((c.work / "mapping.json").read_text())["pairs"]
        found = {p["target"]: p["source"] for p in pairs}
        expected = {mindspore_name(n): n for n in arrays}
        wrong = {t: s for t, s in found.items() if expected.get(t) != s}
        c.check(
            "automap infer pairs every parameter with its counterpart",
            not wrong and found.keys() == expected.keys(),
            str(wrong),
        )
    expected_ckpt = {mindspore_name(n): a for n, a in arrays.items()}
    ckpt_loader = (
        "mindspore.load_checkpoint" if setup == "mindspore" else "automap's reader (MindSpore is not installed)"
    )
    c.succeeds(
        "automap convert .safetensors -> .ckpt",
        *("convert", "model.safetensors", "--like", "template.ckpt", "-o", "model.ckpt", "-q"),
        says=f"bit-exact (dtype, shape, CRC-32) with {ckpt_loader}",
    )
    if (c.work / "model.ckpt").is_file():
        c.same_values(".safetensors -> .ckpt", read_ckpt(c.work / "model.ckpt", setup), expected_ckpt)
    safetensors_loader = (
        "safetensors.safe_open" if setup == "torch" else "automap's reader (data: torch is not installed)"
    )
    c.succeeds(
        "automap convert .ckpt -> .safetensors",
        *("convert", "model.ckpt", "--like", "model.safetensors", "-o", "back.safetensors", "-q"),
        says=safetensors_loader,
    )
    if (c.work / "back.safetensors").is_file():
        c.same_values(".ckpt -> .safetensors", load_file(str(c.work / "back.safetensors")), arrays)
    if setup == "mindspore":  # a MindSpore-flavoured safetensors output is checked by MindSpore's loader
        c.succeeds(
            "automap convert .safetensors -> MindSpore .safetensors",
            *("convert", "model.safetensors", "--like", "template.ckpt", "-o", "ms.safetensors", "-q"),
            says="mindspore.load_checkpoint(format='safetensors')",
        )
    plain = c.work / "model.pth" if setup == "torch" else inputs / "model.pth" if inputs else None
    if plain is None:
        print("skip  plain .pth checks: no --inputs folder with a .pth written by torch.save")
        return
    c.succeeds("automap inspect model.pth", "inspect", str(plain), says="features.1.running_var")
    c.succeeds(
        "automap convert .pth -> .ckpt",
        *("convert", str(plain), "--like", "template.ckpt", "-o", "from-pth.ckpt", "-q"),
        says=f"with {ckpt_loader}",
    )
    if (c.work / "from-pth.ckpt").is_file():
        c.same_values(".pth -> .ckpt", read_ckpt(c.work / "from-pth.ckpt", setup), expected_ckpt)
    c.succeeds(
        "automap convert .pth -> .safetensors",
        *("convert", str(plain), "--like", "model.safetensors", "-o", "from-pth.safetensors", "-q"),
        says=safetensors_loader,
    )
    if (c.work / "from-pth.safetensors").is_file():  # a PyTorch template keeps BatchNorm's counters
        c.same_values(
            ".pth -> .safetensors", load_file(str(c.work / "from-pth.safetensors")), {**arrays, **_counters()}
        )


def check_torch_only(c: Checks, arrays: dict[str, np.ndarray]) -> None:
    """What torch adds: .pth outputs verified by torch.load, and bfloat16 casts."""
    import torch

    c.succeeds(
        "automap convert .ckpt -> .pth",
        *("convert", "model.ckpt", "--like", "model.pth", "-o", "back.pth", "-q"),
        says="with torch.load(weights_only=True)",
    )
    if (c.work / "back.pth").is_file():
        state = torch.load(c.work / "back.pth", weights_only=True)
        c.same_values(".ckpt -> .pth", {n: t.numpy() for n, t in state.items()}, arrays)
    c.succeeds(
        "automap convert --dtype bfloat16",
        *("convert", "model.safetensors", "--like", "template.ckpt", "-o", "bf16.ckpt", "--dtype", "bfloat16", "-q"),
        says="cast 14 floating-point tensors to bfloat16",
    )


def check_refusals(c: Checks, setup: str, inputs: Path | None) -> None:
    """Commands that need a framework this set-up lacks: one line naming the extra."""
    models = ("--torch-model", "models:torch_net", "--mindspore-model", "models:mindspore_net")
    both = {"none": "'automap[all]'", "torch": "'automap[mindspore]'", "mindspore": "'automap[torch]'"}[setup]
    c.refuses("network-aware infer", "infer", "model.safetensors", "template.ckpt", *models, hint=both)
    c.refuses(
        "network-aware convert",
        *("convert", "model.safetensors", "--like", "template.ckpt", "-o", "na.ckpt", *models),
        hint=both,
    )
    c.refuses("automap verify", "verify", *models, hint=both)
    if setup == "torch":
        return
    c.refuses(
        "a bfloat16 cast without torch",
        *("convert", "model.safetensors", "--like", "template.ckpt", "-o", "bf16.ckpt", "--dtype", "bfloat16"),
        hint="'automap[torch]'",
    )
    c.refuses(
        "writing a .pth without torch",
        *("convert", "model.ckpt", "--like", "model.safetensors", "-o", "out.pth"),
        hint="'automap[torch]'",
    )
    for left in ("bf16.ckpt", "out.pth", "out.pth.mapping.json"):
        c.check(f"a refused command leaves no {left}", not (c.work / left).exists())
    if inputs is not None:
        # A .pth that only torch.load reads (the legacy, non-zip format). The message comes from the reading
        # side (automap.io), which names the package or, with the io registry's missing-adapter errors, the extra.
        c.refuses(
            "reading a legacy .pth without torch",
            "inspect",
            str(inputs / "legacy.pth"),
            hint=("'automap[torch]'", "torch"),
        )


def make_inputs(folder: Path) -> None:
    """The .pth files the set-ups without torch read: a plain state dict, and one in torch's legacy format."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    state = {n: torch.from_numpy(a) for n, a in source_arrays().items()}
    state.update({n: torch.tensor(3) for n in _COUNTERS})
    torch.save(state, folder / "model.pth")
    torch.save(state, folder / "legacy.pth", _use_new_zipfile_serialization=False)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "make-inputs":
        make_inputs(Path(argv[1]))
        return 0
    if not argv or argv[0] not in SETUPS or len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--inputs"):
        print(__doc__, file=sys.stderr)
        return 2
    setup = argv[0]
    inputs = Path(argv[2]).resolve() if len(argv) == 3 else None
    with tempfile.TemporaryDirectory(prefix=f"automap-{setup}-") as scratch:
        c = Checks(Path(scratch))
        check_environment(c, setup)
        arrays = write_inputs(setup, c.work)
        check_file_conversions(c, setup, arrays, inputs)
        if setup == "torch":
            check_torch_only(c, arrays)
        check_refusals(c, setup, inputs)
    print(f"\n{setup}: {c.passed} checks passed, {len(c.failures)} failed")
    for failure in c.failures:
        print(f"  FAILED {failure}")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
