"""The catalogue of hostile and broken inputs, written at test time from valid seed files.

Seeds come from the real writers (torch.save, safetensors, automap's `.ckpt` writer, which is byte-identical to
MindSpore's). Each `Case` writes one hostile file into its own folder and says what must happen: the error
line's content (a regex), or success. `build` expands every case into the commands that read such a file
(`inspect`, `infer` with the file on either side, `convert` from it or with it as the template, `audit`), so
one bad file is proven against every entry point. Payloads that would run code create `MARKER` in their case
folder; nothing may ever create it.

`python -m tests.hostile.catalogue DIR` writes the catalogue to DIR and prints the commands.
"""

from __future__ import annotations

import builtins
import collections
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import safetensors.numpy
import torch

from . import formats as fmt

MARKER = "PWNED"

VERIFY = (
    "verify",
    "--torch-model",
    "tests.hostile.models:torch_linear",
    "--mindspore-model",
    "tests.hostile.models:mindspore_dense",
    "--input",
    "1x4:float32",
)
# Roles: how a hostile checkpoint is handed to each command. {F} is the hostile file, {out} the case's output.
_ROLES: dict[str, tuple[str, ...]] = {
    "inspect": ("inspect", "{F}"),
    "inspect-verify": ("inspect", "--verify", "{F}"),
    "infer-source": ("infer", "{F}", "{ckpt}"),
    "infer-target": ("infer", "{pth}", "{F}"),
    "convert-source": ("convert", "{F}", "--mapping", "{flat}", "-o", "{out}"),
    "convert-like": ("convert", "{pth}", "--like", "{F}", "-o", "{out}"),
    "audit-source": ("audit", "{flat}", "{F}"),
    "verify-torch-weights": (*VERIFY, "--torch-weights", "{F}"),
    "verify-mindspore-weights": (*VERIFY, "--mindspore-weights", "{F}"),
    # mapping files
    "convert-mapping": ("convert", "{pth}", "--mapping", "{F}", "-o", "{out}"),
    "audit": ("audit", "{F}"),
    "infer-pin": ("infer", "{pth}", "{ckpt}", "--pin", "{F}"),
    # outputs
    "convert-onto": ("convert", "{pth}", "--mapping", "{flat}", "-o", "{F}"),
    "convert-onto-itself": ("convert", "{F}", "--mapping", "{flat}", "-o", "{F}", "--force"),
    "infer-to-file": ("infer", "{pth}", "{F}", "-o", "{folder}/mapping.json"),
}
READERS = (
    "inspect",
    "infer-source",
    "infer-target",
    "convert-source",
    "convert-like",
    "audit-source",
    "verify-torch-weights",
    "verify-mindspore-weights",
)
SOME_READERS = ("inspect", "infer-target", "convert-source")
MAPPING_READERS = ("convert-mapping", "audit", "infer-pin")

_TORCH_STATE = {
    "conv.weight": (4, 3, 3, 3),
    "conv.bias": (4,),
    "bn.weight": (4,),
    "bn.bias": (4,),
    "bn.running_mean": (4,),
    "bn.running_var": (4,),
    "fc.weight": (2, 4),
    "fc.bias": (2,),
}
_MS_NAMES = {
    "conv.weight": "conv.weight",
    "conv.bias": "conv.bias",
    "bn.gamma": "bn.weight",
    "bn.beta": "bn.bias",
    "bn.moving_mean": "bn.running_mean",
    "bn.moving_variance": "bn.running_var",
    "fc.weight": "fc.weight",
    "fc.bias": "fc.bias",
}


@dataclass(frozen=True)
class Seeds:
    """Valid files every hostile case starts from."""

    folder: Path
    pth: Path
    legacy: Path
    safetensors: Path
    ckpt: Path
    crc_ckpt: Path
    listing: Path
    index: Path
    flat: Path
    mapping: Path

    def state(self) -> dict[str, torch.Tensor]:
        """The seed state dict (fresh tensors)."""
        generator = torch.Generator().manual_seed(0)
        return {name: torch.randn(shape, generator=generator) for name, shape in _TORCH_STATE.items()}


@dataclass(frozen=True)
class Case:
    """One hostile input and what must happen when each command reads it."""

    id: str
    make: Callable[[Path, Seeds], Path]  # writes the input into a fresh folder and returns it
    expect: str | None  # regex the one error line must match; None: the commands must succeed
    roles: tuple[str, ...] = SOME_READERS
    stdout: str | None = None  # for a success, a regex the output must match
    skip: str | None = None  # why this case cannot run here
    culprit: str | None = None  # the name the error must mention, when not the made file's
    payload: bool = False  # unpickling the file without restrictions would create MARKER
    writes: tuple[str, ...] = ()  # files a successful run may create in the case's folder


@dataclass(frozen=True)
class Run:
    """One command over one case, as the driver executes it."""

    id: str
    argv: tuple[str, ...]
    folder: str
    culprit: str
    expect: str | None
    stdout: str | None
    writes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------- seeds


def make_seeds(folder: Path) -> Seeds:
    """Write the valid seed files (every format) into `folder`."""
    from automap.io import load_checkpoint, save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    seeds = Seeds(
        folder=folder,
        pth=folder / "model.pth",
        legacy=folder / "legacy.pth",
        safetensors=folder / "model.safetensors",
        ckpt=folder / "model.ckpt",
        crc_ckpt=folder / "crc.ckpt",
        listing=folder / "listing.json",
        index=folder / "sharded" / "model.safetensors.index.json",
        flat=folder / "flat.json",
        mapping=folder / "mapping.json",
    )
    state = seeds.state()
    torch.save(state, seeds.pth)
    torch.save(state, seeds.legacy, _use_new_zipfile_serialization=False)
    safetensors.numpy.save_file({k: v.numpy() for k, v in state.items()}, str(seeds.safetensors))
    source = load_checkpoint(seeds.pth)
    from automap.records import ParamRecord

    ms_records = [
        ParamRecord(ms, source[pt].shape, source[pt].dtype, i, source[pt].loader)
        for i, (ms, pt) in enumerate(_MS_NAMES.items())
    ]
    save_checkpoint(ms_records, seeds.ckpt)
    save_checkpoint(ms_records, seeds.crc_ckpt, crc=True)
    save_checkpoint(ms_records, seeds.listing, framework="mindspore")
    seeds.index.parent.mkdir()
    names = list(state)
    half = len(names) // 2
    for number, part in enumerate((names[:half], names[half:]), 1):
        shard = {k: state[k].numpy() for k in part}
        safetensors.numpy.save_file(shard, str(seeds.index.parent / f"model-{number}.safetensors"))
    weight_map = {k: f"model-{1 if i < half else 2}.safetensors" for i, k in enumerate(names)}
    seeds.index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    seeds.flat.write_text(json.dumps(_MS_NAMES))
    from automap.mapping import load_mapping, save_mapping

    save_mapping(load_mapping(seeds.flat), seeds.mapping)
    return seeds


# ---------------------------------------------------------------------------------------------- makers


def _write(name: str, content: bytes | Callable[[Seeds], bytes]) -> Callable[[Path, Seeds], Path]:
    def make(folder: Path, seeds: Seeds) -> Path:
        (folder / name).write_bytes(content(seeds) if callable(content) else content)
        return folder / name

    return make


def _from_seed(seed: str, name: str, change: Callable[[bytes], bytes]) -> Callable[[Path, Seeds], Path]:
    def make(folder: Path, seeds: Seeds) -> Path:
        raw = getattr(seeds, seed).read_bytes()
        (folder / name).write_bytes(change(raw))
        return folder / name

    return make


def _misnamed(seed: str, suffix: str, claimed: str, content: str) -> Case:
    """A seed file under another format's suffix: it is read by its content, with a note about its name."""
    return Case(
        f"{seed}-named-{suffix}",
        _from_seed(seed, f"model.{suffix}", lambda raw: raw),
        None,
        ("inspect",),
        stdout=f"the name says {claimed} but the content is {content}",
    )


def _flip(offset: int, mask: int = 0x01) -> Callable[[bytes], bytes]:
    def change(raw: bytes) -> bytes:
        at = offset % len(raw)
        return raw[:at] + bytes([raw[at] ^ mask]) + raw[at + 1 :]

    return change


def _cut(keep: float | int) -> Callable[[bytes], bytes]:
    def change(raw: bytes) -> bytes:
        return raw[: int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)]

    return change


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def change(raw: bytes) -> bytes:
        assert old in raw, old
        return raw.replace(old, new, 1)

    return change


def _marker_command(folder: Path) -> str:
    return f"touch {folder / MARKER}"


def _payloads(folder: Path) -> dict[str, object]:
    """Objects whose unpickling would create the marker file, each by another route."""
    marker = str(folder / MARKER)
    command = _marker_command(folder)
    return {
        "os-system": fmt.Call(os.system, command),
        "eval": fmt.Call(builtins.eval, f"__import__('os').system({command!r})"),
        "exec": fmt.Call(builtins.exec, f"import os; os.system({command!r})"),
        "getattr": fmt.Call(fmt.Call(builtins.getattr, fmt.Call(builtins.__import__, "os"), "system"), command),
        "popen": fmt.Call(subprocess.Popen, ["touch", marker]),
        "open": fmt.Call(builtins.open, marker, "w"),
        "rebuild-from-type": fmt.Call(
            torch._tensor._rebuild_from_type_v2,  # type: ignore[attr-defined]  # allowed by weights_only
            os.system,
            torch.Tensor,
            (command,),
            None,
        ),
        "rebuild-tensor-hooks": fmt.Call(
            torch._utils._rebuild_tensor_v2,  # type: ignore[attr-defined]
            fmt.Storage("0", 4),
            0,
            (4,),
            (1,),
            False,
            collections.OrderedDict([(0, fmt.Call(os.system, command))]),
        ),
    }


def _bare_pickle(payload: str, protocol: int = 2) -> Callable[[Path, Seeds], Path]:
    def make(folder: Path, seeds: Seeds) -> Path:
        obj = {"w": _payloads(folder)[payload]}
        (folder / "evil.pth").write_bytes(fmt.dumps(obj, protocol=protocol))
        return folder / "evil.pth"

    return make


def _zip_pickle(payload: str) -> Callable[[Path, Seeds], Path]:
    """A real torch.save zip whose data.pkl is replaced by a payload beside a real tensor."""

    def make(folder: Path, seeds: Seeds) -> Path:
        numel = seeds.state()["conv.weight"].numel()  # the seed's first storage, data/0
        obj = {"w": fmt.tensor(fmt.Storage("0", numel), 0, [numel], [1]), "b": _payloads(folder)[payload]}
        return fmt.replace_zip_entry(seeds.pth, folder / "evil.pth", "data.pkl", fmt.dumps(obj))

    return make


def _torch_save(build: Callable[[Path, Seeds], object], name: str = "model.pth") -> Callable[[Path, Seeds], Path]:
    def make(folder: Path, seeds: Seeds) -> Path:
        torch.save(build(folder, seeds), folder / name)
        return folder / name

    return make


def _inst_opcode(folder: Path, seeds: Seeds) -> Path:
    # Protocol 0's INST opcode: import os.system and call it with the arguments after MARK.
    raw = b"\x80\x02(S'" + _marker_command(folder).encode() + b"'\nios\nsystem\n."
    (folder / "inst.pth").write_bytes(raw)
    return folder / "inst.pth"


def _legacy_payload(folder: Path, seeds: Seeds) -> Path:
    obj = {"w": fmt.tensor(fmt.Storage("0", 4), 0, [4], [1]), "b": _payloads(folder)["os-system"]}
    (folder / "legacy-evil.pth").write_bytes(fmt.legacy(obj, {"0": bytes(16)}))
    return folder / "legacy-evil.pth"


def _optimizer_payload(folder: Path, seeds: Seeds) -> object:
    return {
        "model": seeds.state(),
        "optimizer": {"state": {0: {"exp_avg": _payloads(folder)["os-system"]}}, "param_groups": []},
    }


def _crafted_zip(obj: Callable[[Path], object], storages: dict[str, bytes]) -> Callable[[Path, Seeds], Path]:
    def make(folder: Path, seeds: Seeds) -> Path:
        return fmt.torch_zip(folder / "crafted.pth", fmt.dumps(obj(folder)), storages)

    return make


def _legacy_crafted(obj: object, storages: dict[str, bytes], numel: int | None = None) -> Callable[[Path, Seeds], Path]:
    return _write("legacy-crafted.pth", fmt.legacy(obj, storages, numel=numel))


def _laughs_lists(folder: Path, seeds: Seeds) -> object:
    level: object = [torch.zeros(1)] * 100
    for _ in range(6):
        level = [level] * 100  # 100**7 paths to one tensor in a few kilobytes
    return {"model": seeds.state(), "optimizer": level}


def _laughs_dicts(folder: Path, seeds: Seeds) -> object:
    level: object = {"a": torch.zeros(1), "b": torch.zeros(1)}
    for _ in range(4):
        level = {f"k{i}": level for i in range(200)}  # 200**4 paths to one state dict
    return level


def _zip_bomb(entry: str) -> Callable[[Path, Seeds], Path]:
    def make(folder: Path, seeds: Seeds) -> Path:
        import zipfile

        with zipfile.ZipFile(seeds.pth) as archive:
            entries = [(i.filename, archive.read(i.filename)) for i in archive.infolist()]
        bomb = next(name for name, _ in entries if name.endswith(entry))
        kept = [(name, raw) for name, raw in entries if name != bomb]
        return fmt.zip_bomb(folder / "bomb.pth", kept, bomb, inflated_mib=1024)

    return make


def _safetensors(header: dict[str, object] | bytes, data: bytes = b"", **kw: int) -> Callable[[Path, Seeds], Path]:
    return _write("crafted.safetensors", fmt.safetensors_bytes(header, data, **kw))


def _tensor_header(name: str = "w", dtype: str = "F32", shape: object = (4,), offsets: object = (0, 16)) -> dict:
    return {name: {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}  # type: ignore[call-overload]


def _ckpt(*records: bytes, name: str = "crafted.ckpt") -> Callable[[Path, Seeds], Path]:
    return _write(name, b"".join(records))


def _many_tiny_records(count: int) -> bytes:
    return b"".join(fmt.ckpt_record(b"p%d" % i, [1], b"Int8", b"\x01") for i in range(count))


def _deep_unknown(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = fmt.field(7, inner)
    return inner


def _json_file(name: str, text: str | bytes) -> Callable[[Path, Seeds], Path]:
    return _write(name, text.encode() if isinstance(text, str) else text)


def _sparse(name: str, size: int, start: bytes) -> Callable[[Path, Seeds], Path]:
    """A file whose size is `size` but which occupies almost no disk (a hole after `start`)."""

    def make(folder: Path, seeds: Seeds) -> Path:
        with (folder / name).open("wb") as handle:
            handle.write(start)
            handle.truncate(size)
        return folder / name

    return make


def _special(kind: str, name: str) -> Callable[[Path, Seeds], Path]:
    def make(folder: Path, seeds: Seeds) -> Path:
        path = folder / name
        if kind == "directory":
            path.mkdir()
        elif kind == "loop":
            path.symlink_to(path.name)
        elif kind == "dangling":
            path.symlink_to("nowhere-" + path.name)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "unreadable":
            shutil.copy(seeds.pth, path)
            path.chmod(0)
        return path

    return make


def _torchscript(folder: Path, seeds: Seeds) -> Path:
    torch.jit.script(torch.nn.Linear(4, 2)).save(str(folder / "scripted.pt"))
    return folder / "scripted.pt"


def _dev_zero(folder: Path, seeds: Seeds) -> Path:
    return Path("/dev/zero")


def _encrypted(folder: Path, seeds: Seeds) -> Path:
    import mindspore

    network = mindspore.nn.Dense(2, 2)
    mindspore.save_checkpoint(network, str(folder / "secret.ckpt"), enc_key=b"0123456789abcdef", enc_mode="AES-GCM")
    return folder / "secret.ckpt"


def _index(weight_map: object, setup: Callable[[Path, Seeds], None] | None = None) -> Callable[[Path, Seeds], Path]:
    def make(folder: Path, seeds: Seeds) -> Path:
        model = folder / "model"
        shutil.copytree(seeds.index.parent, model)
        if setup is not None:
            setup(model, seeds)
        text = weight_map if isinstance(weight_map, str) else json.dumps({"weight_map": weight_map})
        (model / "model.safetensors.index.json").write_text(text)
        return model / "model.safetensors.index.json"

    return make


def _other_index(weight_map: dict[str, str], setup: Callable[[Path, Seeds], None]) -> Callable[[Path, Seeds], Path]:
    """An index of `.ckpt`/PyTorch shards (automap's sharded format), with shards made by `setup`."""

    def make(folder: Path, seeds: Seeds) -> Path:
        model = folder / "model"
        model.mkdir()
        setup(model, seeds)
        (model / "model.ckpt.index.json").write_text(json.dumps({"weight_map": weight_map}))
        return model / "model.ckpt.index.json"

    return make


def _ckpt_shard(model: Path, seeds: Seeds) -> None:
    shutil.copy(seeds.ckpt, model / "model-1.ckpt")


def _shard_linking_to_the_index(model: Path, seeds: Seeds) -> None:
    (model / "loop.ckpt").symlink_to("model.ckpt.index.json")


def _payload_shard(model: Path, seeds: Seeds) -> None:
    obj = {"conv.weight": _payloads(model.parent)["os-system"]}
    (model / "evil.pth").write_bytes(fmt.dumps(obj))


def _seed_weight_map(seeds: Seeds) -> dict[str, str]:
    return dict(json.loads(seeds.index.read_text())["weight_map"])


def _link_shard(target: str) -> Callable[[Path, Seeds], None]:
    def setup(model: Path, seeds: Seeds) -> None:
        (model / "linked.safetensors").symlink_to(target)
        if target.startswith("../"):
            shutil.copy(seeds.safetensors, model.parent / "outside.safetensors")

    return setup


def _mkfifo_shard(model: Path, seeds: Seeds) -> None:
    os.mkfifo(model / "pipe.safetensors")


def _mkdir_shard(model: Path, seeds: Seeds) -> None:
    (model / "sub").mkdir()


def _mapping(
    text: str | bytes | Callable[[Seeds], object], name: str = "mapping.json"
) -> Callable[[Path, Seeds], Path]:
    def make(folder: Path, seeds: Seeds) -> Path:
        content = text(seeds) if callable(text) else text
        raw = content if isinstance(content, bytes) else content.encode() if isinstance(content, str) else None
        (folder / name).write_bytes(raw if raw is not None else json.dumps(content).encode())
        return folder / name

    return make


def _with_transform(target: str, steps: object) -> Callable[[Seeds], object]:
    def document(seeds: Seeds) -> object:
        data = json.loads(seeds.mapping.read_text())
        for pair in data["pairs"]:
            if pair["target"] == target:
                pair["transform"] = steps
        return data

    return document


def _fails_on_weights(case_id: str, document: str | Callable[[Seeds], object], expect: str) -> Case:
    """A mapping that reads well but does not fit the weights: `convert` fails, naming the weights file."""
    return Case(case_id, _mapping(document), expect, ("convert-mapping",), culprit="model.pth")


def _versioned(change: Callable[[dict], None]) -> Callable[[Seeds], object]:  # type: ignore[type-arg]
    def document(seeds: Seeds) -> object:
        data = json.loads(seeds.mapping.read_text())
        change(data)
        return data

    return document


def _output_exists(folder: Path, seeds: Seeds) -> Path:
    (folder / "out.ckpt").write_bytes(b"precious")
    return folder / "out.ckpt"


# ---------------------------------------------------------------------------------------------- the catalogue


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


_NOT_TORCH = r"not a readable PyTorch checkpoint"
_REFUSED = r"refused: loading it would run code from the file"
_BIG = 2**40
_BAD_JSON = r"not valid (UTF-8 )?JSON"
_UNPRINTABLE = r"unprintable character"
_IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

CASES: list[Case] = [
    # --- code execution: every payload must be refused and the marker never created
    *(
        Case(f"pickle-{p}", _bare_pickle(p), _REFUSED, READERS, payload=True)
        for p in ("os-system", "eval", "exec", "getattr")
    ),
    *(Case(f"pickle-{p}", _bare_pickle(p), _REFUSED, payload=True) for p in ("popen", "open", "rebuild-from-type")),
    # torch's restricted unpickler does not even parse protocol 4/5 framing: refused as unreadable
    Case("pickle-protocol-4", _bare_pickle("os-system", protocol=4), rf"{_REFUSED}|{_NOT_TORCH}", payload=True),
    Case("pickle-protocol-5", _bare_pickle("exec", protocol=5), rf"{_REFUSED}|{_NOT_TORCH}", payload=True),
    Case("pickle-inst-opcode", _inst_opcode, rf"{_REFUSED}|{_NOT_TORCH}", payload=True),
    *(Case(f"zip-{p}", _zip_pickle(p), _REFUSED, READERS, payload=True) for p in ("os-system", "eval")),
    *(
        Case(f"zip-{p}", _zip_pickle(p), _REFUSED, payload=True)
        for p in ("getattr", "popen", "open", "rebuild-tensor-hooks")
    ),
    Case(
        "zip-nested-in-state-dict",
        _torch_save(lambda f, s: {**s.state(), "extra": _payloads(f)["os-system"]}),
        _REFUSED,
        READERS,
        payload=True,
    ),
    Case("zip-nested-in-optimizer", _torch_save(_optimizer_payload), _REFUSED, payload=True),
    Case("legacy-payload", _legacy_payload, _REFUSED, payload=True),
    Case("whole-module-pickle", _torch_save(lambda f, s: torch.nn.Linear(4, 2)), _REFUSED),
    Case(
        "ordered-dict-is-fine",
        _torch_save(lambda f, s: collections.OrderedDict(s.state())),
        None,
        ("inspect", "infer-source"),
        stdout=r"8 parameters",
    ),
    # --- declared sizes against real sizes: nothing is allocated from a claim
    Case("st-header-length-terabyte", _safetensors(_tensor_header(), bytes(16), declared=_BIG), r"header claims"),
    Case("st-header-length-gigabytes", _safetensors(_tensor_header(), bytes(16), declared=3 << 30), r"header claims"),
    Case(
        "st-terabyte-tensor",
        _safetensors(_tensor_header(shape=[1 << 20, 1 << 20], offsets=[0, 1 << 42]), bytes(16)),
        r"need 4398046511104 bytes of data but the file holds 16",
        READERS,
    ),
    Case(
        "st-offsets-overlap",
        _safetensors({**_tensor_header("a"), **_tensor_header("b", offsets=[8, 24])}, bytes(24)),
        r"overlaps",
    ),
    Case("st-offset-outside-file", _safetensors(_tensor_header(offsets=[1000, 1016]), bytes(16)), r"gap"),
    Case("st-offsets-reversed", _safetensors(_tensor_header(offsets=[16, 0]), bytes(16)), r"declares -16 bytes"),
    Case("st-shape-overflow", _safetensors(_tensor_header(shape=[2**62, 2**62]), bytes(16)), r"declares 16 bytes"),
    Case("st-negative-dim", _safetensors(_tensor_header(shape=[-4]), bytes(16)), r"invalid shape"),
    Case("st-deep-header", _safetensors(b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), r"nested too deeply"),
    Case(
        "st-many-tiny-tensors",
        _safetensors(
            {f"p{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(20_000)}, bytes(20_000)
        ),
        None,
        ("inspect",),
        stdout=r"20000 parameters",
    ),
    Case(
        "pth-expanded-strides",
        _torch_save(lambda f, s: {"w": torch.zeros(1).expand(2**33), "b": torch.zeros(2)}),
        r"strides overlap",
        READERS,
    ),
    Case("pth-zip-bomb-pickle", _zip_bomb("data.pkl"), r"is compressed", READERS),
    Case("pth-zip-bomb-storage", _zip_bomb("data/0"), r"is compressed"),
    Case(
        "pth-storage-numel-terabyte",
        _crafted_zip(lambda f: {"w": fmt.tensor(fmt.Storage("0", _BIG), 0, [_BIG], [1])}, {"0": bytes(16)}),
        _NOT_TORCH,
        READERS,
    ),
    Case(
        "pth-storage-offset-outside",
        _crafted_zip(lambda f: {"w": fmt.tensor(fmt.Storage("0", 4), _BIG, [4], [1])}, {"0": bytes(16)}),
        _NOT_TORCH,
    ),
    Case(
        "pth-size-overflow",
        _crafted_zip(lambda f: {"w": fmt.tensor(fmt.Storage("0", 4), 0, [2**62, 4], [1, 1])}, {"0": bytes(16)}),
        _NOT_TORCH,
    ),
    Case(
        "pth-negative-stride",
        _crafted_zip(lambda f: {"w": fmt.tensor(fmt.Storage("0", 4), 0, [4], [-1])}, {"0": bytes(16)}),
        _NOT_TORCH,
    ),
    Case(
        "pth-missing-record",
        _crafted_zip(lambda f: {"w": fmt.tensor(fmt.Storage("7", 4), 0, [4], [1])}, {"0": bytes(16)}),
        _NOT_TORCH,
    ),
    Case(
        "pth-too-many-axes",
        _crafted_zip(lambda f: {"w": fmt.tensor(fmt.Storage("0", 1), 0, [1] * 40, [1] * 40)}, {"0": bytes(4)}),
        r"has 40 axes",
    ),
    Case(
        "legacy-storage-terabyte",
        _legacy_crafted({"w": fmt.tensor(fmt.Storage("0", _BIG), 0, [4], [1])}, {"0": bytes(16)}),
        _NOT_TORCH,
        READERS,
    ),
    Case(
        # zipfile.is_zipfile says yes to any file ending in a zip end record; torch, and automap, go by the start
        "legacy-ending-like-a-zip",
        _legacy_crafted(
            {"w": fmt.tensor(fmt.Storage("0", 22, "ByteStorage"), 0, [22], [1])},
            {"0": b"PK\x05\x06" + bytes(18)},  # an empty zip's end record, as the file's last bytes
            numel=22,
        ),
        None,
        ("inspect",),
        stdout=r"Total: 1 parameters",
    ),
    Case(
        "legacy-size-prefix-lies",
        _legacy_crafted({"w": fmt.tensor(fmt.Storage("0", 4), 0, [4], [1])}, {"0": bytes(16)}, numel=_BIG),
        _NOT_TORCH,
    ),
    Case(
        "pickle-huge-bytes-length",
        _write("huge.pth", b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b"x"),
        _NOT_TORCH,
    ),
    Case("pickle-laughs-lists", _torch_save(_laughs_lists), None, ("inspect",), stdout=r"Total: 8 parameters"),
    Case("pickle-laughs-dicts", _torch_save(_laughs_dicts), r"holds several state dicts: .* and \d+ more"),
    Case(
        "ckpt-terabyte-dims",
        _ckpt(fmt.ckpt_record(b"w", [1 << 20] * 3, b"Float32", bytes(16))),
        r"needs 4611686018427387904 bytes but the file holds 16",
        READERS,
    ),
    Case(
        "ckpt-dims-overflow", _ckpt(fmt.ckpt_record(b"w", [2**63 - 1] * 4, b"Float32", bytes(16))), r"needs \d+ bytes"
    ),
    Case("ckpt-negative-dim", _ckpt(fmt.ckpt_record(b"w", [-1], b"Float32", bytes(16))), r"negative dimension"),
    Case("ckpt-overlong-varint", _ckpt(b"\x0a" + b"\xff" * 11 + b"\x01"), r"overlong varint"),
    Case(
        "ckpt-content-longer-than-file",
        _ckpt(fmt.field(1, fmt.field(1, b"w") + fmt.field(2, fmt.field(2, b"Float32") + b"\x1a" + fmt.varint(_BIG)))),
        r"declares 1099511627776 bytes but only",
    ),
    Case("ckpt-record-longer-than-file", _ckpt(b"\x0a" + fmt.varint(_BIG) + b"\x0a\x01w"), r"declares 1099511627776"),
    Case("ckpt-many-tiny-records", _ckpt(_many_tiny_records(100_000)), None, ("inspect",), stdout="100000 parameters"),
    Case(
        "ckpt-unknown-fields",
        _ckpt(
            fmt.field(
                1,
                fmt.field(5, b"x")
                + fmt.field(1, b"w")
                + fmt.field(2, fmt.field(2, b"Float32") + fmt.field(3, bytes(4)) + fmt.field(8, b"?")),
            ),
            fmt.field(9, b"junk") + fmt.varint(10 << 3) + fmt.varint(2**63),
            b"\x5d" + bytes(4) + b"\x59" + bytes(8),
        ),
        None,
        ("inspect",),
        stdout=r"Total: 1 parameters",
    ),
    Case(
        "ckpt-deep-unknown-nesting",
        _ckpt(fmt.ckpt_record(b"w", [1], b"Float32", bytes(4)), _deep_unknown(5000)),
        None,
        ("inspect",),
        stdout=r"Total: 1 parameters",
    ),
    Case("ckpt-group-wire-type", _ckpt(fmt.ckpt_record(b"w", [1], b"Float32", bytes(4)), b"\x0b\x0c"), r"wire type 3"),
    Case("ckpt-field-zero", _ckpt(fmt.ckpt_record(b"w", [1], b"Float32", bytes(4)), b"\x02\x00"), r"field number 0"),
    Case("ckpt-too-many-axes", _ckpt(fmt.ckpt_record(b"w", [1] * 100_000, b"Float32", bytes(4))), r"has 100000 axes"),
    Case(
        "ckpt-slices-disagree",
        _ckpt(fmt.ckpt_record(b"w", [2], b"Float32", bytes(8)), fmt.ckpt_record(b"w", [3], b"Float32", bytes(4))),
        r"slices disagree",
    ),
    Case(
        "listing-huge-shape", _json_file("listing.json", json.dumps({"w": [2**47] * 8})), r"over 2\*\*63 bytes", READERS
    ),
    Case("listing-deep", _json_file("listing.json", "[" * 100_000 + "]" * 100_000), r"nested too deeply"),
    Case("listing-too-large", _sparse("listing.json", 600 << 20, b'{"w": [1]' + b" " * 64), r"too large"),
    # --- broken files: one clear line each
    *(Case(f"empty{s}", _write(f"empty{s}", b""), r"is empty") for s in (".pth", ".safetensors", ".ckpt", ".json")),
    *(
        Case(
            f"truncated-{seed}-{keep}",
            _from_seed(seed, f"cut-{Path(str(keep)).name}{suffix}", _cut(keep)),
            expect,
            roles,
        )
        for seed, suffix, expect, roles in (
            ("pth", ".pth", r"truncated|corrupt", READERS),
            ("legacy", ".pth", r"truncated|corrupt", SOME_READERS),
            ("safetensors", ".safetensors", r"truncated|corrupt", READERS),
            ("ckpt", ".ckpt", r"truncated or corrupt", READERS),
            ("crc_ckpt", ".ckpt", r"truncated or corrupt", SOME_READERS),
            ("listing", ".json", _BAD_JSON, SOME_READERS),
        )
        for keep in (20, 0.5, -2)
    ),
    Case(
        "bitflip-pth-pickle",
        _from_seed("pth", "flip.pth", _replace(b"\x80\x02}q", b"\x80\x02\xffq")),
        _NOT_TORCH,
        READERS,
    ),
    Case("bitflip-pth-directory", _from_seed("pth", "flip.pth", _flip(-22, 0x10)), r"truncated|corrupt"),
    Case("bitflip-legacy-magic", _from_seed("legacy", "flip.pth", _flip(5)), _NOT_TORCH),
    Case("bitflip-safetensors-brace", _from_seed("safetensors", "flip.safetensors", _flip(8, 0x20)), _BAD_JSON),
    Case("bitflip-safetensors-length", _from_seed("safetensors", "flip.safetensors", _flip(3, 0x40)), r"header claims"),
    Case("bitflip-ckpt-first-byte", _from_seed("ckpt", "flip.ckpt", _flip(0)), r"first bytes match no known format"),
    Case(
        "bitflip-ckpt-dtype",
        _from_seed("ckpt", "flip.ckpt", _replace(b"Float32", b"Float33")),
        r"tensor type 'Float33'",
        READERS,
    ),
    Case("bitflip-crc-data", _from_seed("crc_ckpt", "flip.ckpt", _flip(-40)), r"CRC check failed", ("inspect-verify",)),
    Case(
        "crc-mismatch-unverified",
        _from_seed("crc_ckpt", "flip.ckpt", _flip(-3)),
        None,
        ("inspect",),
        stdout=r"CRC trailer present \(not verified\)",
    ),
    Case(
        "crc-mismatch-verified",
        _from_seed("crc_ckpt", "flip.ckpt", _flip(-3)),
        r"CRC check failed",
        ("inspect-verify",),
    ),
    Case("crc-trailer-truncated", _from_seed("crc_ckpt", "cut.ckpt", _cut(-5)), r"truncated or corrupt"),
    Case("directory", _special("directory", "model.pth"), r"is a directory", READERS),
    Case("symlink-loop", _special("loop", "loop.pth"), r"cannot open: Too many levels of symbolic links", READERS),
    Case("dangling-symlink", _special("dangling", "gone.ckpt"), r"no such file"),
    Case("fifo", _special("fifo", "pipe.pth"), r"is not a regular file", READERS),
    Case("dev-zero", _dev_zero, r"is not a regular file", culprit="/dev/zero"),
    Case(
        "unreadable",
        _special("unreadable", "secret.pth"),
        r"permission denied",
        skip="runs as root, which reads any file" if _IS_ROOT else None,
    ),
    Case(
        "not-a-checkpoint-png",
        _write("image.pth", b"\x89PNG\r\n\x1a\n" + bytes(64)),
        r"first bytes match no known format",
    ),
    Case(
        "not-a-checkpoint-elf",
        _write("program.ckpt", b"\x7fELF\x02\x01\x01" + bytes(64)),
        r"first bytes match no known format",
    ),
    Case("torchscript", _torchscript, r"is a TorchScript archive, not a state dict"),
    Case("single-tensor", _torch_save(lambda f, s: torch.zeros(3)), r"holds a single tensor"),
    # content decides; the name only adds a note
    _misnamed("ckpt", "pth", "torch", "mindspore"),
    _misnamed("pth", "safetensors", "safetensors", "torch"),
    _misnamed("safetensors", "ckpt", "mindspore", "safetensors"),
    # a file name that is not UTF-8 (it arrives as lone surrogates): readable, printable, and savable as a label
    Case(
        "non-utf8-file-name",
        _from_seed("ckpt", os.fsdecode(b"model-\xff.ckpt"), lambda raw: raw),
        None,
        ("inspect", "infer-to-file"),
        stdout=r"8 parameters",
        writes=("mapping.json",),
    ),
    _misnamed("listing", "pth", "torch", "json"),
    # dtypes
    Case(
        "st-unknown-dtype",
        _safetensors(_tensor_header(dtype="C64", offsets=[0, 32]), bytes(32)),
        r"unsupported dtype 'C64'",
        READERS,
    ),
    Case("ckpt-unknown-dtype", _ckpt(fmt.ckpt_record(b"w", [2], b"Complex64", bytes(16))), r"tensor type 'Complex64'"),
    Case(
        "pth-complex-dtype",
        _torch_save(lambda f, s: {"w": torch.zeros(2, dtype=torch.complex64)}),
        r"dtype torch\.complex64",
    ),
    Case(
        "listing-unknown-dtype",
        _json_file("listing.json", '{"w": {"shape": [2], "dtype": "float7"}}'),
        r"unsupported dtype 'float7'",
    ),
    Case(
        "pth-sparse",
        _torch_save(lambda f, s: {"w": torch.eye(3).to_sparse(), "b": torch.zeros(1)}),
        r"sparse_coo tensor|not a readable",
    ),
    # names
    Case(
        "ckpt-non-utf8-name",
        _ckpt(fmt.ckpt_record(b"\xff\xfew", [1], b"Float32", bytes(4))),
        r"not valid UTF-8",
        READERS,
    ),
    Case(
        "st-non-utf8-header",
        _safetensors(b'{"\xff\xfe": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', bytes(4)),
        _BAD_JSON,
    ),
    Case("st-surrogate-name", _safetensors(_tensor_header("\ud800"), bytes(16)), _UNPRINTABLE, READERS),
    Case(
        "pth-surrogate-name", _torch_save(lambda f, s: {"\ud800w": torch.zeros(1), "b": torch.zeros(1)}), _UNPRINTABLE
    ),
    Case("listing-non-utf8", _json_file("listing.json", b'{"\xff": [1]}'), _BAD_JSON),
    *(
        Case(f"{kind}-{label}-name", maker(name), _UNPRINTABLE, roles)
        for label, name in (
            ("escape", "a\x1b[2Jb"),
            ("newline", "a\nautomap: ok"),
            ("bidi", "fc.\u202eweight"),
            ("nul", "a\x00b"),
        )
        for kind, maker, roles in (
            ("st", lambda n: _safetensors(_tensor_header(n), bytes(16)), SOME_READERS),
            ("ckpt", lambda n: _ckpt(fmt.ckpt_record(n.encode(), [4], b"Float32", bytes(16))), ("inspect",)),
            ("pth", lambda n: _torch_save(lambda f, s, n=n: {n: torch.zeros(1), "b": torch.zeros(1)}), ("inspect",)),
            ("listing", lambda n: _json_file("listing.json", json.dumps({n: [1]})), ("inspect",)),
        )
    ),
    Case(
        "st-long-name", _safetensors(_tensor_header("n" * 100_000), bytes(16)), r"longer than 65536 characters", READERS
    ),
    Case("ckpt-long-name", _ckpt(fmt.ckpt_record(b"n" * 100_000, [1], b"Float32", bytes(4))), r"100000 bytes long"),
    Case("pth-long-name", _torch_save(lambda f, s: {"n" * 100_000: torch.zeros(1)}), r"longer than 65536"),
    Case("listing-long-name", _json_file("listing.json", json.dumps({"n" * 100_000: [1]})), r"longer than 65536"),
    Case("st-empty-name", _safetensors(_tensor_header(""), bytes(16)), r"empty name", READERS),
    Case("pth-empty-name", _torch_save(lambda f, s: {"": torch.zeros(1), "b": torch.zeros(1)}), r"empty name"),
    Case(
        "st-duplicate-names",
        _safetensors(
            b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
            b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}',
            bytes(8),
        ),
        r"key 'a' appears twice",
        READERS,
    ),
    Case(
        "ckpt-duplicate-names",
        _ckpt(*(fmt.ckpt_record(n, [1], b"Float32", bytes(4)) for n in (b"a", b"b", b"a"))),
        r"'a' occurs twice",
    ),
    Case(
        "listing-duplicate-names",
        _json_file("listing.json", '[{"name": "a", "shape": [1]}, {"name": "a", "shape": [1]}]'),
        r"'a' is listed twice",
    ),
    Case("listing-duplicate-keys", _json_file("listing.json", '{"a": [1], "a": [2]}'), r"key 'a' appears twice"),
    Case(
        "st-bad-metadata", _safetensors({"__metadata__": {"format": 3}, **_tensor_header()}, bytes(16)), r"__metadata__"
    ),
    Case(
        "encrypted-ckpt",
        _encrypted,
        r"encrypted MindSpore checkpoint; decrypt it first",
        READERS,
        skip=None if _has("mindspore") else "needs MindSpore to write an encrypted checkpoint",
    ),
    Case(
        "encrypted-magic",
        _write("secret.ckpt", b"\xd9\x5e\x3a\x7f" + os.urandom(60)),
        r"encrypted MindSpore checkpoint",
    ),
    # --- sharded indexes are untrusted: shard paths stay inside the index's folder
    Case(
        "shard-dotdot",
        _index({"conv.weight": "../../../../../etc/passwd"}),
        r"points outside the index's folder",
        READERS,
    ),
    Case("shard-absolute", _index({"conv.weight": "/etc/passwd"}), r"points outside"),
    Case(
        "shard-symlink-escape",
        _index({"conv.weight": "linked.safetensors"}, _link_shard("../outside.safetensors")),
        r"points outside",
        READERS,
    ),
    Case(
        "shard-symlink-etc",
        _index({"conv.weight": "linked.safetensors"}, _link_shard("/etc/passwd")),
        r"points outside",
    ),
    Case(
        "shard-symlink-loop",
        _index({"conv.weight": "linked.safetensors"}, _link_shard("linked.safetensors")),
        r"cannot be opened",
    ),
    Case("shard-nul", _index({"conv.weight": "model-1\u0000.safetensors"}), r"not a usable file name"),
    Case("shard-empty", _index({"conv.weight": ""}), r"not a usable file name"),
    Case("shard-dot", _index({"conv.weight": "."}), r"names the index's folder"),
    Case("shard-too-long", _index({"conv.weight": "x" * 10_000}), r"not a usable file name"),
    Case("shard-name-too-long", _index({"conv.weight": "x" * 300}), r"cannot be opened: File name too long"),
    Case("shard-directory", _index({"conv.weight": "sub"}, _mkdir_shard), r"is a directory", culprit="sub"),
    Case(
        "shard-fifo",
        _index({"conv.weight": "pipe.safetensors"}, _mkfifo_shard),
        r"is not a regular file",
        culprit="pipe.safetensors",
    ),
    Case("shard-is-the-index", _index({"conv.weight": "model.safetensors.index.json"}), r"is JSON, not a checkpoint"),
    Case("shard-missing", _index({"conv.weight": "model-9.safetensors"}), r"is missing"),
    Case("index-weight-map-list", _index(["conv.weight"]), r"'weight_map' must map"),
    Case(
        "index-duplicate-keys",
        _index('{"weight_map": {"a": "model-1.safetensors", "a": "model-2.safetensors"}}'),
        r"key 'a' appears twice",
    ),
    Case("index-deep", _index('{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}"), r"nested too deeply"),
    Case("index-name-not-in-shard", _index({"nothing.here": "model-1.safetensors"}), r"does not contain it"),
    Case(
        "ckpt-shard-dotdot",
        _other_index({"conv.weight": "../../model-1.ckpt"}, _ckpt_shard),
        r"points outside the index's folder",
        READERS,
    ),
    Case("ckpt-shard-is-the-index", _other_index({"w": "loop.ckpt"}, _shard_linking_to_the_index), r"is JSON"),
    Case(
        "pth-shard-with-payload",
        _other_index({"conv.weight": "evil.pth"}, _payload_shard),
        _REFUSED,
        READERS,
        culprit="evil.pth",
        payload=False,  # its payload is proven live by the plain pickle cases
    ),
    # --- mapping files are untrusted
    Case("mapping-not-json", _mapping("{oops"), r"not valid JSON", MAPPING_READERS),
    Case("mapping-deep", _mapping("[" * 100_000 + "]" * 100_000), r"nested too deeply", MAPPING_READERS),
    Case(
        "mapping-too-large", _sparse("mapping.json", 300 << 20, b"{}"), r"too large for a mapping file", MAPPING_READERS
    ),
    Case("mapping-fifo", _special("fifo", "mapping.json"), r"not a regular file", MAPPING_READERS),
    Case("mapping-directory", _special("directory", "mapping.json"), r"is a directory", MAPPING_READERS),
    Case("mapping-dev-zero", _dev_zero, r"not a regular file", MAPPING_READERS, culprit="/dev/zero"),
    Case(
        "mapping-symlink-loop",
        _special("loop", "mapping.json"),
        r"cannot read the mapping file: Too many levels",
        MAPPING_READERS,
    ),
    Case(
        "mapping-duplicate-keys",
        _mapping('{"fc.weight": "fc.weight", "fc.weight": "conv.weight"}'),
        r"key 'fc\.weight' appears twice",
        MAPPING_READERS,
    ),
    Case(
        "mapping-control-chars", _mapping(json.dumps({"fc.weight": "fc.\x1b[2Kweight"})), _UNPRINTABLE, MAPPING_READERS
    ),
    Case("mapping-bidi", _mapping(json.dumps({"fc.weight": "fc.\u202eweight"})), _UNPRINTABLE, MAPPING_READERS),
    Case("mapping-surrogate", _mapping('{"fc.weight": "\\ud800"}'), _UNPRINTABLE, MAPPING_READERS),
    Case("mapping-non-utf8", _mapping(b'{"fc.weight": "\xff"}'), r"cannot read the mapping file", MAPPING_READERS),
    Case(
        "mapping-huge-string", _mapping(json.dumps({"fc.weight": "x" * 100_000})), r"longer than 65536", MAPPING_READERS
    ),
    Case(
        "mapping-version-99",
        _mapping(_versioned(lambda d: d.update(version=99))),
        r"version 99 is not supported",
        MAPPING_READERS,
    ),
    Case(
        "mapping-confidence-nan",
        _mapping(_versioned(lambda d: d["pairs"][0].update(confidence=float("nan")))),
        r"'confidence' must be",
        MAPPING_READERS,
    ),
    Case(
        "mapping-pairs-not-list",
        _mapping(_versioned(lambda d: d.update(pairs={"a": 1}))),
        r"'pairs' must be a list",
        MAPPING_READERS,
    ),
    Case(
        "mapping-unknown-op",
        _mapping(_with_transform("fc.weight", [{"op": "eval", "code": "1"}])),
        r"unknown step",
        MAPPING_READERS,
    ),
    Case(
        "mapping-too-many-steps",
        _mapping(_with_transform("fc.weight", [{"op": "transpose"}] * 1000)),
        r"at most 16 steps",
        MAPPING_READERS,
    ),
    Case(
        "mapping-huge-axis",
        _mapping(_with_transform("fc.weight", [{"op": "squeeze", "axis": 10**30}])),
        r"small integer 'axis'",
        MAPPING_READERS,
    ),
    Case(
        "mapping-deep-step",
        _mapping(_with_transform("fc.weight", [{"op": "reshape", "shape": [[[[[[1]]]]]]}])),
        r"'shape' as a list of integers",
        MAPPING_READERS,
    ),
    _fails_on_weights(
        "mapping-transpose-axes",
        _with_transform("fc.weight", [{"op": "transpose", "axes": [2, 1]}]),
        r"not a permutation",
    ),
    _fails_on_weights(
        "mapping-split-indivisible",
        _with_transform("conv.bias", [{"op": "split", "axis": 0, "parts": 3, "index": 0}]),
        r"does not split into 3",
    ),
    _fails_on_weights(
        "mapping-split-index",
        _with_transform("conv.bias", [{"op": "split", "axis": 0, "parts": 2, "index": 5}]),
        r"split index 5",
    ),
    _fails_on_weights(
        "mapping-reshape-numel",
        _with_transform("fc.weight", [{"op": "reshape", "shape": [2**40, 2**40]}]),
        r"cannot reshape",
    ),
    _fails_on_weights(
        "mapping-squeeze", _with_transform("fc.weight", [{"op": "squeeze", "axis": 0}]), r"cannot squeeze"
    ),
    _fails_on_weights(
        "mapping-axis-range", _with_transform("fc.weight", [{"op": "unsqueeze", "axis": 9}]), r"out of range"
    ),
    _fails_on_weights(
        "mapping-reorder",
        _with_transform("conv.bias", [{"op": "reorder", "axis": 0, "parts": 2, "order": [0, 0]}]),
        r"not a permutation",
    ),
    _fails_on_weights(
        "mapping-concat", json.dumps({**_MS_NAMES, "fc.weight": ["fc.weight", "conv.weight"]}), r"cannot concatenate"
    ),
    _fails_on_weights(
        "mapping-unknown-source", json.dumps({**_MS_NAMES, "fc.weight": "fc.wieght"}), r"'fc\.wieght' not in"
    ),
    # --- outputs: an existing file is never replaced without --force, nor the source at all
    Case("output-exists", _output_exists, r"already exists; pass --force", ("convert-onto",)),
    Case("output-is-a-directory", _special("directory", "out.ckpt"), r"is a directory", ("convert-onto",)),
    Case(
        "output-is-the-source",
        _from_seed("pth", "model.pth", lambda raw: raw),
        r"is the source checkpoint",
        ("convert-onto-itself",),
    ),
]


def build(root: Path, cases: list[Case] | None = None) -> tuple[Seeds, list[Run], dict[str, str]]:
    """Write seeds and every case under `root`; return the runs, and the cases skipped here with why."""
    seeds = make_seeds(root / "seeds")
    runs: list[Run] = []
    skipped: dict[str, str] = {}
    for case in CASES if cases is None else cases:
        if case.skip:
            skipped[case.id] = case.skip
            continue
        folder = root / "cases" / case.id
        folder.mkdir(parents=True)
        path = case.make(folder, seeds)
        values = {
            "F": str(path),
            "pth": str(seeds.pth),
            "ckpt": str(seeds.ckpt),
            "flat": str(seeds.flat),
            "out": str(folder / "out.ckpt"),
            "folder": str(folder),
        }
        culprit = Path(case.culprit or path).name
        for role in case.roles:
            argv = tuple(part.format(**values) for part in _ROLES[role])
            run = Run(f"{case.id}[{role}]", argv, str(folder), culprit, case.expect, case.stdout, case.writes)
            runs.append(run)
    return seeds, runs, skipped


def main(argv: list[str] | None = None) -> int:
    """Write the catalogue into a folder and print the command of every run."""
    import argparse
    import shlex

    parser = argparse.ArgumentParser(prog="python -m tests.hostile.catalogue", description=__doc__)
    parser.add_argument("folder", type=Path, help="an empty or missing folder to write the catalogue into")
    args = parser.parse_args(argv)
    if args.folder.exists() and any(args.folder.iterdir()):
        parser.error(f"{args.folder} is not empty")
    _, runs, skipped = build(args.folder)
    for run in runs:
        outcome = "must succeed" if run.expect is None else f"must fail: /{run.expect}/"
        print(f"{shlex.join(['automap', *run.argv])}    # {run.id}: {outcome}")
    for case, why in skipped.items():
        print(f"# skipped {case}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
