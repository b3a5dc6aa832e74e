"""Fuzz targets: every reader and the mapping parser, each a function of raw bytes with one contract.

A target writes the bytes where the reader expects a file and runs the command a user would run on it. The
contract: the command either succeeds or fails with exactly one `automap: error:` line; no other exception
may escape, and output must be encodable as UTF-8. Anything else raises and is a finding. Seeds are the
valid files of `catalogue.make_seeds`; `mutate` is the byte-level mutator shared by the short hypothesis run
in the tests and the long run (`python -m benchmarks.fuzz`).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automap.io.listing import listing_document

from . import catalogue


class FindingError(AssertionError):
    """The command broke its contract on this input."""


@dataclass(frozen=True)
class Target:
    """One thing to fuzz: where the bytes go, which seeds start it, and what runs on them."""

    name: str
    file_name: str  # the bytes are written to this name in a folder prepared by `setup`
    seeds: Callable[[catalogue.Seeds], list[bytes]]
    run: Callable[[Path, catalogue.Seeds], None]
    setup: Callable[[Path, catalogue.Seeds], None] | None = None


@contextlib.contextmanager
def strict_output() -> Iterator[tuple[io.BytesIO, io.BytesIO]]:
    """Send stdout and stderr to byte buffers through strict UTF-8, as a real terminal would encode them."""
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="strict", write_through=True)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out_bytes, err_bytes
    finally:
        out.detach()  # keep the buffers open when the wrappers go away
        err.detach()


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`automap.cli.main(argv)` with its output captured through `strict_output`."""
    from automap import cli

    with strict_output() as (out, err):
        status = cli.main(argv)
    return status, out.getvalue().decode(), err.getvalue().decode()


def _expect_clean(argv: list[str]) -> int:
    status, _, err = run_cli(argv)
    if status not in (0, 1, 3):
        msg = f"exit status {status} for {argv}: {err[:500]}"
        raise FindingError(msg)
    if status == 1 and (not err.startswith("automap: error: ") or err.count("\n") != 1):
        msg = f"the error is not one 'automap: error:' line: {err[:500]!r}"
        raise FindingError(msg)
    return status


def _inspect(path: Path, seeds: catalogue.Seeds) -> None:
    """Read the file, every tensor and the CRC, and print it; then its JSON listing must round-trip."""
    from automap.io import load_checkpoint

    if _expect_clean(["inspect", "--verify", str(path)]) != 0:
        return
    table = load_checkpoint(path)
    document = json.loads(json.dumps(listing_document(table), ensure_ascii=False))
    if [p["name"] for p in document["params"]] != list(table.names):
        msg = "the JSON listing does not keep the names"
        raise FindingError(msg)


def _mapping(path: Path, seeds: catalogue.Seeds) -> None:
    """Parse and review the mapping; a parsed mapping must save and parse back to the same document."""
    from automap.mapping import load_mapping, mapping_to_json, save_mapping

    if _expect_clean(["audit", str(path)]) != 0:
        return
    mapping = load_mapping(path)
    again = path.with_name("again.json")
    save_mapping(mapping, again, overwrite=True)
    if mapping_to_json(load_mapping(again)) != mapping_to_json(mapping):
        msg = "a mapping does not survive save_mapping and load_mapping"
        raise FindingError(msg)


def _convert_with_mapping(path: Path, seeds: catalogue.Seeds) -> None:
    """Convert the seed checkpoint with the mapping; a refusal is fine, a crash or a stray file is not."""
    out = path.with_name("out.ckpt")
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    status = _expect_clean(["convert", str(seeds.pth), "--mapping", str(path), "-o", str(out), "--quiet"])
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    if leftovers or (status != 0 and out.exists()):
        msg = f"files left behind by a failed conversion: {leftovers or [out.name]}"
        raise FindingError(msg)


def _infer_target(path: Path, seeds: catalogue.Seeds) -> None:
    """The file as the target template of `infer` (exercises the inference engine on hostile names)."""
    _expect_clean(["infer", str(seeds.pth), str(path)])


def _shards(folder: Path, seeds: catalogue.Seeds) -> None:
    for shard in seeds.index.parent.glob("*.safetensors"):
        shutil.copy(shard, folder / shard.name)


def _transforms(path: Path, seeds: catalogue.Seeds) -> None:
    """`{"shapes": [...], "steps": [...]}`: whatever `output_shape` accepts, `apply_steps` must produce."""
    check_transform(path.read_bytes())


def check_transform(data: bytes) -> None:
    """The transform contract on one JSON document (see `_transforms`)."""
    from automap._errors import AutomapError
    from automap.transforms import apply_steps, inverse_steps, output_shape, parse_steps

    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return
    if not isinstance(document, dict):
        return
    shapes = document.get("shapes")
    if not (
        isinstance(shapes, list)
        and 0 < len(shapes) <= 4
        and all(isinstance(s, list) and len(s) <= 6 and all(type(d) is int and 0 <= d <= 6 for d in s) for s in shapes)
    ):
        return
    try:
        steps = parse_steps(document.get("steps"))
        shape = output_shape([tuple(s) for s in shapes], steps)
    except AutomapError:
        return
    arrays = [np.arange(int(np.prod(s)), dtype=np.float32).reshape(s) + 1000 * i for i, s in enumerate(shapes)]
    result = apply_steps(arrays, steps)
    if result.shape != shape:
        msg = f"output_shape said {shape}, apply_steps gave {result.shape} for {steps}"
        raise FindingError(msg)
    inverse = inverse_steps([tuple(s) for s in shapes], steps)
    if inverse is not None and not np.array_equal(apply_steps([result], inverse), arrays[0]):
        msg = f"inverse_steps does not undo {steps}"
        raise FindingError(msg)


def _bytes_of(attribute: str) -> Callable[[catalogue.Seeds], list[bytes]]:
    return lambda seeds: [getattr(seeds, attribute).read_bytes()]


def _transform_seeds(seeds: catalogue.Seeds) -> list[bytes]:
    examples = [
        {"shapes": [[2, 3]], "steps": [{"op": "transpose"}]},
        {"shapes": [[6, 4]], "steps": [{"op": "split", "axis": 0, "parts": 3, "index": 1}]},
        {"shapes": [[2, 4], [3, 4]], "steps": [{"op": "concat", "axis": 0}, {"op": "transpose", "axes": [1, 0]}]},
        {"shapes": [[4, 3, 5]], "steps": [{"op": "unsqueeze", "axis": 2}, {"op": "reshape", "shape": [12, 5]}]},
        {"shapes": [[8, 2]], "steps": [{"op": "reorder", "axis": 0, "parts": 4, "order": [0, 1, 3, 2]}]},
        {"shapes": [[1, 3, 1]], "steps": [{"op": "squeeze", "axis": -1}, {"op": "transpose", "axes": [-1, 0]}]},
    ]
    return [json.dumps(e).encode() for e in examples]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("torch-zip", "model.pth", _bytes_of("pth"), _inspect),
        Target("torch-legacy", "model.pth", _bytes_of("legacy"), _inspect),
        Target("safetensors", "model.safetensors", _bytes_of("safetensors"), _inspect),
        Target("ckpt", "model.ckpt", lambda s: [s.ckpt.read_bytes(), s.crc_ckpt.read_bytes()], _inspect),
        Target("listing", "listing.json", _bytes_of("listing"), _inspect),
        Target("index", "model.safetensors.index.json", _bytes_of("index"), _inspect, _shards),
        Target("mapping", "mapping.json", lambda s: [s.mapping.read_bytes(), s.flat.read_bytes()], _mapping),
        Target(
            "convert", "mapping.json", lambda s: [s.mapping.read_bytes(), s.flat.read_bytes()], _convert_with_mapping
        ),
        Target("transforms", "transform.json", _transform_seeds, _transforms),
        Target("infer", "listing.json", _bytes_of("listing"), _infer_target),
    )
}
# The short run in the test suite leaves out the inference engine, which the contract does not cover yet
# everywhere; the long run includes it and reports what it finds.
CI_TARGETS = tuple(name for name in TARGETS if name != "infer")


class Workspace:
    """A scratch folder per target, holding the seeds once and the input under test."""

    def __init__(self, root: Path | None = None) -> None:
        self._owned = root is None
        self.root = Path(tempfile.mkdtemp(prefix="automap-fuzz-")) if root is None else root
        self.seeds = catalogue.make_seeds(self.root / "seeds")

    def folder(self, target: Target) -> Path:
        """The folder the target's input is written into (prepared once)."""
        folder = self.root / target.name
        if not folder.exists():
            folder.mkdir()
            if target.setup is not None:
                target.setup(folder, self.seeds)
        return folder

    def check(self, target: Target, data: bytes) -> None:
        """Run `target` on `data`; raises on a finding, returns otherwise."""
        folder = self.folder(target)
        path = folder / target.file_name
        path.write_bytes(data)
        target.run(path, self.seeds)

    def close(self) -> None:
        """Remove the scratch folder when this workspace made it."""
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)


# Values that make good replacements for length fields, counts and dimensions.
_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1]


def mutate(data: bytes, rng: random.Random, rounds: int = 0) -> bytes:
    """One to a few random edits of `data`: bit flips, byte sets, interesting integers, cuts, splices."""
    buffer = bytearray(data)
    for _ in range(rounds or rng.choice((1, 1, 1, 2, 3, 5))):
        size = len(buffer)
        kind = rng.randrange(9)
        at = rng.randrange(size) if size else 0
        if kind == 0 and size:
            buffer[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and size:
            buffer[at] = rng.randrange(256)
        elif kind == 2:
            value = rng.choice(_INTERESTING)
            width = rng.choice((1, 2, 4, 8))
            raw = (value & ((1 << (8 * width)) - 1)).to_bytes(width, rng.choice(("little", "big")))
            buffer[at : at + width] = raw
        elif kind == 3:
            text = str(rng.choice([*_INTERESTING, -1, 10**30])).encode()
            buffer[at : at + rng.randrange(1, 4)] = text  # a number inside JSON text
        elif kind == 4 and size:
            del buffer[at : at + rng.randrange(1, 64)]
        elif kind == 5:
            del buffer[rng.randrange(size + 1) :]  # truncate
        elif kind == 6 and size:
            start = rng.randrange(size)
            piece = buffer[start : start + rng.randrange(1, 256)]
            buffer[at:at] = piece * rng.choice((1, 1, 2, 16))
        elif kind == 7:
            buffer[at:at] = bytes(rng.choice((b"\x00", b"\xff", b"[", b"{", b'"', b"\\", b"\x1b"))) * rng.randrange(
                1, 8
            )
        else:
            token = rng.choice(
                (b'"dtype"', b'"shape"', b'"data_offsets"', b'"op"', b'"transform"', b"null", b"-1", b"1e999")
            )
            buffer[at:at] = token
    return bytes(buffer)
