"""Writing past the page cache (`automap._direct`): the file holds exactly what was written, whatever the mix of
writes, source copies at any alignment and flushes; errors reach the writer; a conversion without the read-back
leaves neither its output nor its source in the page cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _page_cache import cold, resident

import automap
from automap._direct import DirectOutput, bypassing_cache, output_file
from automap.io import ParamRecord

linux_only = pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="direct I/O is a Linux flag")
BLOCK = 16 * 1024  # small blocks, so that a few KB cross many block boundaries


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)


@linux_only
@pytest.mark.parametrize("seed", range(4))
def test_holds_exactly_the_bytes_written_and_copied(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    source = tmp_path / "source.bin"
    source_bytes = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    source.write_bytes(source_bytes)
    expected = bytearray()
    out = tmp_path / "out.bin"
    with os.fdopen(os.open(source, os.O_RDONLY), "rb") as src, DirectOutput(_open(out), block=BLOCK) as handle:
        for _ in range(60):
            kind = rng.integers(0, 3)
            if kind == 0:  # a header from memory, any length
                data = rng.integers(0, 256, int(rng.integers(0, 3 * BLOCK)), dtype=np.uint8).tobytes()
                assert handle.write(data) == len(data)
                expected += data
            elif kind == 1:  # a tensor from the source file, at any offset
                offset = int(rng.integers(0, len(source_bytes)))
                count = int(rng.integers(0, 4 * BLOCK))
                copied = handle.copy_from(src.fileno(), offset, count)
                assert copied == min(count, len(source_bytes) - offset)  # short only at the source's end
                expected += source_bytes[offset : offset + copied]
            else:  # a flush: the file holds exactly what was written so far, and writing goes on
                handle.flush()
                assert out.read_bytes() == bytes(expected)
            assert handle.tell() == len(expected)
    assert out.read_bytes() == bytes(expected)


@linux_only
def test_reads_a_source_that_is_still_being_written(tmp_path: Path) -> None:
    """Bytes not yet on the disk (dirty pages) are read as the file holds them, not as the disk does."""
    source = tmp_path / "source.bin"
    data = np.arange(200_000, dtype=np.uint32).tobytes()
    out = tmp_path / "out.bin"
    with source.open("wb") as writing:
        writing.write(data)
        writing.flush()  # in the page cache, not synced
        with DirectOutput(_open(out), block=BLOCK) as handle:
            assert handle.copy_from(writing.fileno(), 12_345, 500_000) == 500_000
    assert out.read_bytes() == data[12_345 : 12_345 + 500_000]


@linux_only
def test_an_error_writing_reaches_the_writer(tmp_path: Path) -> None:
    """A write the helper thread cannot make (here a file-size limit, as a full disk would) is raised, not lost."""
    script = textwrap.dedent(
        f"""
        import errno, os, resource, signal
        from automap._direct import DirectOutput
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        fd = os.open({str(tmp_path / "out.bin")!r}, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with DirectOutput(fd, block={BLOCK}) as handle:
                handle.write(b"x" * (20 * {BLOCK}))
        except OSError as error:
            assert error.errno == errno.EFBIG, error
            print("raised")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "raised"


def test_only_inside_bypassing_cache(tmp_path: Path) -> None:
    with output_file(_open(tmp_path / "plain.bin")) as plain:
        assert not isinstance(plain, DirectOutput)
    with bypassing_cache(), output_file(_open(tmp_path / "direct.bin")) as direct:
        assert isinstance(direct, DirectOutput) == hasattr(os, "O_DIRECT")
        direct.write(b"abc")
    assert (tmp_path / "direct.bin").read_bytes() == b"abc"


def test_block_must_be_whole_pages(tmp_path: Path) -> None:
    descriptor = _open(tmp_path / "out.bin")
    try:
        with pytest.raises(ValueError, match="multiple of 4096"):
            DirectOutput(descriptor, block=5000)
    finally:
        os.close(descriptor)


def _source(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file of tensors large enough to be copied from the file (>= 1 MB), at unaligned offsets."""
    rng = np.random.default_rng(0)
    arrays = {f"layer{i}.weight": rng.standard_normal((257 + i, 1031), dtype=np.float32) for i in range(5)}
    arrays["layer0.bias"] = rng.standard_normal(7, dtype=np.float32)
    records = [ParamRecord(name, a.shape, "float32", i, (lambda a=a: a)) for i, (name, a) in enumerate(arrays.items())]
    automap.save_checkpoint(records, path)
    return arrays


@linux_only
@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_conversion_without_read_back_writes_past_the_cache(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / "model.safetensors"
    arrays = _source(source)
    mapping = tmp_path / "mapping.json"
    mapping.write_text("{" + ", ".join(f'"net.{n}": "{n}"' for n in arrays) + "}")
    cold(source)
    out = tmp_path / f"out{suffix}"
    automap.convert(source, mapping, out, verify=False)
    assert not resident(out).any(), "the output went through the page cache"
    assert resident(source).mean() < 0.05, "the source was read through the page cache"
    loaded = automap.load_checkpoint(out)
    assert sorted(loaded.names) == sorted(f"net.{n}" for n in arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[f"net.{name}"].read(), array)


@linux_only
def test_verified_conversion_writes_through_the_cache(tmp_path: Path) -> None:
    """The read-back compares what was just written from memory: that output goes through the cache."""
    source = tmp_path / "model.safetensors"
    _source(source)
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"net.w": "layer1.weight"}')
    out = tmp_path / "out.ckpt"
    report = automap.convert(source, mapping, out)
    assert report.verified == report.tensors == 1
    assert resident(out).mean() > 0.5


@linux_only
@pytest.mark.parametrize("workers", [1, 2])
def test_sharded_conversion_without_read_back_writes_the_same_shards(tmp_path: Path, workers: int) -> None:
    """Each shard (also from worker processes) is written past the cache, byte for byte as through it."""
    source = tmp_path / "model.safetensors"
    arrays = _source(source)
    mapping = tmp_path / "mapping.json"
    mapping.write_text("{" + ", ".join(f'"net.{n}": "{n}"' for n in arrays) + "}")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    through_cache = automap.convert(source, mapping, tmp_path / "a" / "out.ckpt", max_shard_size="2MB")
    past_cache = automap.convert(
        source, mapping, tmp_path / "b" / "out.ckpt", max_shard_size="2MB", verify=False, workers=workers
    )
    assert len(past_cache.shards) == len(through_cache.shards) > 1
    assert not any(resident(Path(shard)).any() for shard in past_cache.shards)
    for verified, unverified in zip(through_cache.shards, past_cache.shards, strict=True):
        assert Path(unverified).read_bytes() == Path(verified).read_bytes()


def _read_calls() -> int:
    """Read system calls this process has made (`/proc/self/io`)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    msg = "no syscr in /proc/self/io"
    raise AssertionError(msg)


@linux_only
@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts read calls in /proc/self/io")
def test_small_tensors_one_after_another_come_from_few_reads(tmp_path: Path) -> None:
    """Tensors in file order share reads that reach further ahead; backwards, each read is the page they lie on."""
    rng = np.random.default_rng(1)
    source = tmp_path / "source.bin"
    data = rng.integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    source.write_bytes(data)
    pieces = [(offset, 120) for offset in range(1000, 2_900_000, 150)]  # 19,327 small tensors, 30-byte headers
    for order in (pieces, pieces[::-1]):
        out = tmp_path / "out.bin"
        with os.fdopen(os.open(source, os.O_RDONLY), "rb") as src, DirectOutput(_open(out), block=BLOCK) as handle:
            before = _read_calls()
            for offset, count in order:
                assert handle.copy_from(src.fileno(), offset, count) == count
            reads = _read_calls() - before
        assert out.read_bytes() == b"".join(data[o : o + c] for o, c in order)
        if order is pieces:
            assert reads <= 2 * len(data) // BLOCK + 20, reads  # a block at a time once the reads are doubled
        else:
            pages = len(data) // 4096  # each read is the page under a tensor, and serves its neighbours on that page
            assert pages // 2 <= reads <= pages + 10, reads
