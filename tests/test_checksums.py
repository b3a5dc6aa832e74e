"""Piece checksums of tensors: the values, and the pool that spreads pieces over threads and keeps their order."""

from __future__ import annotations

import threading
import weakref
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from automap.conversion._checksums import _INLINE_BYTES, Checksum, ChecksumPool, piece_crcs

PIECE = 4096
BIG = _INLINE_BYTES  # the smallest tensor the pool hands to its threads (64 pieces)
CHECK_VALUE = 0xCBF43926  # the CRC-32 of b"123456789", as every CRC-32 specification lists it


def _expected(raw: bytes, piece: int = PIECE) -> Checksum:
    """The CRC-32 of each slice of the bytes, straight from zlib."""
    if not raw:
        return (zlib.crc32(b""),)
    return tuple(zlib.crc32(raw[start : start + piece]) for start in range(0, len(raw), piece))


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("automap-crc")]


def test_the_crc_of_the_standard_check_string() -> None:
    data = np.frombuffer(b"123456789", dtype=np.uint8)
    assert piece_crcs(data) == (CHECK_VALUE,)
    assert piece_crcs(data, piece=4) == (zlib.crc32(b"1234"), zlib.crc32(b"5678"), zlib.crc32(b"9"))


@pytest.mark.parametrize("nbytes", [1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE, 3 * PIECE + 7])
def test_pieces_below_at_and_above_the_piece_size(nbytes: int) -> None:
    array = np.random.default_rng(nbytes).integers(0, 256, nbytes, dtype=np.uint8)
    crcs = piece_crcs(array, piece=PIECE)
    assert crcs == _expected(array.tobytes())
    assert len(crcs) == -(-nbytes // PIECE)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 5, 2)])
def test_an_empty_tensor_has_the_one_crc_of_nothing(shape: tuple[int, ...]) -> None:
    assert piece_crcs(np.zeros(shape, dtype=np.float32), piece=PIECE) == (0,)


def test_a_0d_tensor_is_its_bytes() -> None:
    scalar = np.array(1.5, dtype=np.float64)
    assert scalar.ndim == 0
    assert piece_crcs(scalar, piece=4) == _expected(scalar.tobytes(), 4)
    assert piece_crcs(scalar) == (zlib.crc32(np.float64(1.5).tobytes()),)


def test_a_non_contiguous_tensor_is_checked_in_c_order() -> None:
    base = np.arange(3 * PIECE, dtype=np.int32).reshape(48, PIECE // 16)
    for view in (base.T, base[::2, 1::3], base[:, ::-1]):
        assert not view.flags.c_contiguous
        assert piece_crcs(view, piece=PIECE) == _expected(np.ascontiguousarray(view).tobytes())
    assert piece_crcs(base.T, piece=PIECE) != piece_crcs(base, piece=PIECE)  # the order of the bytes counts


def test_storage_views_keep_their_bits() -> None:
    floats = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    bfloat16 = (floats.view(np.uint32) >> 16).astype("<u2")  # the bits of bfloat16, as automap stores it
    assert piece_crcs(bfloat16, piece=PIECE) == _expected(bfloat16.tobytes())
    flags = np.array([0, 1, 2, 255, 1, 0], dtype=np.uint8).view(np.bool_)  # a bool view of non-canonical bytes
    assert piece_crcs(flags) == (zlib.crc32(bytes([0, 1, 2, 255, 1, 0])),)
    assert piece_crcs(flags) != piece_crcs(flags.view(np.uint8) != 0)  # the same truth values, other bytes


@pytest.mark.parametrize("where", [0, PIECE - 1, PIECE, 2 * PIECE + 100, 4 * PIECE + 2])
def test_a_flipped_byte_in_any_piece_changes_that_piece_only(where: int) -> None:
    array = np.random.default_rng(3).integers(0, 256, 4 * PIECE + 3, dtype=np.uint8)
    flipped = array.copy()
    flipped[where] ^= 0x01
    before, after = piece_crcs(array, piece=PIECE), piece_crcs(flipped, piece=PIECE)
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [where // PIECE]
    assert _run_pool([array], workers=2) != _run_pool([flipped], workers=2)


def _run_pool(
    arrays: list[np.ndarray | None],
    *,
    workers: int,
    window: int = 4 * PIECE,
    checksum: Callable[[memoryview], int] = zlib.crc32,
) -> list[tuple[int, Checksum]]:
    results: list[tuple[int, Checksum]] = []
    with ChecksumPool[int](
        lambda tag, crcs: results.append((tag, crcs)), workers=workers, piece=PIECE, window=window, checksum=checksum
    ) as pool:
        for tag, array in enumerate(arrays):
            pool.submit(tag, array)
        pool.drain()
    return results


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_pool_gives_every_checksum_in_submission_order(workers: int) -> None:
    rng = np.random.default_rng(workers)
    sizes = [BIG * 3 + 5, 10, 0, BIG, _INLINE_BYTES - 1, BIG + PIECE // 2, 1]
    arrays: list[np.ndarray | None] = [rng.integers(0, 256, n, dtype=np.uint8) for n in sizes]
    arrays.insert(3, None)  # a tensor not checksummed still comes back in its turn
    results = _run_pool(arrays, workers=workers)
    assert [tag for tag, _ in results] == list(range(len(arrays)))
    for (_, crcs), array in zip(results, arrays, strict=True):
        assert crcs == (() if array is None else _expected(array.tobytes()))
    assert _pool_threads() == []


def test_later_tensors_that_finish_first_still_come_back_in_order() -> None:
    """A big tensor whose first piece is held back, then small ones: they finish first and wait their turn."""
    big = np.full(BIG, 255, dtype=np.uint8)
    smalls = [np.full(BIG, k, dtype=np.uint8) for k in range(1, 5)]
    release, smalls_done = threading.Event(), threading.Event()
    lock = threading.Lock()
    finished: list[int] = []  # the first byte of each piece, as pieces finish
    held = [False]

    def checksum(data: memoryview) -> int:
        with lock:
            hold = data[0] == 255 and not held[0]
            held[0] = held[0] or hold
        if hold and not release.wait(timeout=60):
            msg = "the held piece was never released"
            raise TimeoutError(msg)
        value = zlib.crc32(data)
        with lock:
            finished.append(data[0])
            if sum(1 for first in finished if first != 255) == 4 * (BIG // PIECE):
                smalls_done.set()
        return value

    results: list[tuple[int, Checksum]] = []
    with ChecksumPool[int](
        lambda tag, crcs: results.append((tag, crcs)), workers=2, piece=PIECE, window=1 << 30, checksum=checksum
    ) as pool:
        for tag, array in enumerate([big, *smalls]):
            pool.submit(tag, array)
        assert smalls_done.wait(timeout=60)
        assert results == []  # every small tensor is done, but the first one is not
        release.set()
        pool.drain()
    assert finished[-1] == 255  # the held piece of the big tensor finished last
    assert [tag for tag, _ in results] == [0, 1, 2, 3, 4]
    assert [crcs for _, crcs in results] == [_expected(a.tobytes()) for a in [big, *smalls]]


def test_reading_ahead_stays_within_the_window() -> None:
    """Bytes read of tensors after the oldest one not handed over, and bytes submitted, stay within the window."""
    window = 3 * PIECE
    sizes = [BIG + 10 * PIECE, BIG, BIG, BIG + 1, BIG, 3 * BIG, BIG, BIG]
    arrays = [np.full(n, tag + 1, dtype=np.uint8) for tag, n in enumerate(sizes)]
    lock = threading.Lock()
    started = [0] * len(arrays)
    handed: list[int] = []
    worst = {"ahead": 0, "out": 0}

    def checksum(data: memoryview) -> int:
        tag = data[0] - 1
        with lock:
            started[tag] += len(data)
            oldest = len(handed)  # tensors are handed over in order
            worst["ahead"] = max(worst["ahead"], sum(started[oldest + 1 :]))
        return zlib.crc32(data)

    def on_result(tag: int, crcs: Checksum) -> None:
        with lock:
            handed.append(tag)

    with ChecksumPool[int](on_result, workers=3, piece=PIECE, window=window, checksum=checksum) as pool:
        for tag, array in enumerate(arrays):
            pool.submit(tag, array)
            with lock:
                worst["out"] = max(worst["out"], sum(sizes[len(handed) : tag]))  # out beyond the newest one
        pool.drain()
    assert handed == list(range(len(arrays)))
    assert worst["ahead"] <= window
    assert worst["out"] <= window


def test_no_reference_to_an_array_outlives_its_checksum() -> None:
    refs: list[weakref.ref[np.ndarray]] = []
    alive_when_handed: list[bool] = []

    def on_result(tag: int, crcs: Checksum) -> None:
        alive_when_handed.append(refs[tag]() is not None)

    with ChecksumPool[int](on_result, workers=2, piece=PIECE, window=BIG) as pool:
        for tag in range(4):
            array = np.full(BIG * (tag + 1), tag, dtype=np.uint8)
            refs.append(weakref.ref(array))
            pool.submit(tag, array)
            del array
        pool.drain()
    assert alive_when_handed == [False] * 4


def test_a_failing_piece_is_raised_in_order_and_no_thread_is_left() -> None:
    def checksum(data: memoryview) -> int:
        if data[0] == 2:
            msg = "cannot read piece"
            raise OSError(msg)
        return zlib.crc32(data)

    arrays = [np.full(BIG, k, dtype=np.uint8) for k in range(5)]
    results: list[int] = []
    with (
        pytest.raises(OSError, match="cannot read piece"),
        ChecksumPool[int](lambda tag, _: results.append(tag), workers=2, piece=PIECE, checksum=checksum) as pool,
    ):
        for tag, array in enumerate(arrays):
            pool.submit(tag, array)
        pool.drain()
    assert results == [0, 1]  # those before the failing tensor, and nothing after it
    assert _pool_threads() == []


def test_a_failure_in_the_caller_stops_the_threads() -> None:
    with pytest.raises(KeyError), ChecksumPool[int](lambda tag, _: None, workers=3, piece=PIECE) as pool:
        pool.submit(0, np.zeros(BIG * 8, dtype=np.uint8))
        raise KeyError(0)
    assert _pool_threads() == []
    with pytest.raises(ValueError, match="closed"):
        pool.submit(1, np.zeros(1))


@pytest.mark.parametrize(("workers", "piece"), [(0, PIECE), (1, 0)])
def test_a_pool_without_workers_or_pieces_is_refused(workers: int, piece: int) -> None:
    with pytest.raises(ValueError, match="at least"):
        ChecksumPool[int](lambda tag, _: None, workers=workers, piece=piece)
