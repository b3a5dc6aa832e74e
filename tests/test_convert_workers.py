"""`convert --workers N`: the shards of a sharded output written by worker processes.

The output must be byte for byte what one process writes; a failure in a worker must leave no file at all (no
shard, no index, no hidden partial file); a single-file output says that workers need a sharded output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from automap import cli, convert, infer_mapping, load_checkpoint
from automap._errors import CheckpointFormatError, ConversionError

SHAPES = [(64, 48), (48,), (96, 64), (64,), (32, 32, 3), (200,), (64, 64)]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    tensors = {f"blocks.{i}.weight": rng.standard_normal(shape).astype(np.float32) for i, shape in enumerate(SHAPES)}
    tensors["blocks.0.scale"] = rng.standard_normal(8).astype(np.float16)
    path = tmp_path / "src" / "model.safetensors"
    path.parent.mkdir()
    safetensors.numpy.save_file(tensors, path)
    return path


def _convert(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = cli.main(["convert", *args, "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_workers_write_what_one_process_writes(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    outputs = {}
    for workers in ("1", "2", "3"):
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        report = _convert(
            capsys,
            *(str(source), "--like", str(source), "-o", str(folder / f"out{suffix}")),
            *("--max-shard-size", "20KB", "--workers", workers, "--save-mapping", str(tmp_path / f"m{workers}.json")),
        )
        assert f"verified {len(SHAPES) + 1} tensors bit-exact" in report
        if workers != "1":
            assert all(f"worker {n}: " in report for n in range(1, int(workers) + 1)), report
        outputs[workers] = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert len(outputs["1"]) > 3  # several shards and the index
    assert outputs["2"] == outputs["1"] and outputs["3"] == outputs["1"]


def test_a_failing_worker_leaves_no_file(source: Path, tmp_path: Path) -> None:
    table = load_checkpoint(source)
    mapping = infer_mapping(table, table)
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    with source.open("r+b") as handle:  # the source loses its last tensors after it was listed
        handle.truncate(source.stat().st_size - 40_000)
    # the worker that meets the missing bytes says which file changed, as one process would
    with pytest.raises(CheckpointFormatError, match=r"changed after it was read: it now holds"):
        convert(table, mapping, out, max_shard_size="20KB", workers=2)
    assert list(out.parent.iterdir()) == []


def test_a_source_that_shrinks_after_listing_is_named_by_one_process_too(source: Path, tmp_path: Path) -> None:
    table = load_checkpoint(source)
    mapping = infer_mapping(table, table)
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    with source.open("r+b") as handle:
        handle.truncate(source.stat().st_size - 40_000)
    with pytest.raises(CheckpointFormatError, match=r"model.safetensors' changed after it was read"):
        convert(table, mapping, out)
    assert list(out.parent.iterdir()) == []


def test_a_single_file_output_says_workers_need_shards(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _convert(
        capsys, str(source), "--like", str(source), "-o", str(tmp_path / "one.safetensors"), "--workers", "2"
    )
    assert "--workers 2 had no effect" in report and "--max-shard-size" in report
    assert (tmp_path / "one.safetensors").is_file()


def test_workers_must_be_a_positive_number(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["convert", str(source), "--like", str(source), "-o", str(tmp_path / "o.safetensors"), "--workers", "0"]
    assert cli.main(args) == 2
    assert "'0' is not a number of workers" in capsys.readouterr().err
    with pytest.raises(ConversionError, match="workers must be at least 1"):
        convert(source, infer_mapping(source, source), tmp_path / "o.safetensors", workers=0)
    assert not (tmp_path / "o.safetensors").exists()
