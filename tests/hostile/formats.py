"""Byte-level writers for crafted files, independent of automap's own writers.

Pickles with chosen globals and persistent ids (torch's zip and legacy layouts), zips (including a deflate
bomb built from a repeated stored-flush block, so a 1 GiB entry costs 1 MB and a fraction of a second),
protobuf records of MindSpore's `.ckpt`, and safetensors files with any header.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

# ---------------------------------------------------------------------------------------------- pickles


class Call:
    """Pickles as `func(*args)`: unpickling it calls `func` (a payload, or one of torch's rebuild functions)."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.func, self.args)

    def __call__(self, *args: Any) -> Any:
        """Never called here; being callable lets a `Call` be the function of another (a call chain)."""
        msg = "a Call only describes a pickle"
        raise TypeError(msg)


class Storage:
    """A storage reference, written as torch's persistent id ('storage', type, key, location, numel)."""

    def __init__(self, key: str, numel: int, kind: str = "FloatStorage") -> None:
        self.key, self.numel, self.kind = key, numel, kind


def tensor(storage: Storage, offset: int, size: Iterable[int], stride: Iterable[int]) -> Call:
    """A tensor as torch.save pickles it: `_rebuild_tensor_v2(storage, offset, size, stride, ...)`."""
    return Call(
        torch._utils._rebuild_tensor_v2,  # type: ignore[attr-defined]  # private but what torch.save writes
        storage,
        offset,
        tuple(size),
        tuple(stride),
        False,
        collections.OrderedDict(),
    )


class _Pickler(pickle.Pickler):
    legacy = False

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Storage):
            ident = ("storage", getattr(torch, obj.kind), obj.key, "cpu", obj.numel)
            return (*ident, None) if self.legacy else ident
        return None


def dumps(obj: Any, *, protocol: int = 2, legacy: bool = False) -> bytes:
    """Pickle `obj`, writing `Storage` objects as torch's persistent ids."""
    buffer = io.BytesIO()
    pickler = _Pickler(buffer, protocol=protocol)
    pickler.legacy = legacy
    pickler.dump(obj)
    return buffer.getvalue()


def torch_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes], *, archive: str = "archive") -> Path:
    """A checkpoint in torch's zip layout with the given pickle and storage records (all stored)."""
    entries = {
        f"{archive}/data.pkl": data_pkl,
        f"{archive}/byteorder": b"little",
        **{f"{archive}/data/{key}": raw for key, raw in storages.items()},
        f"{archive}/version": b"3\n",
    }
    write_zip(path, [(name, raw, False) for name, raw in entries.items()])
    return path


def replace_zip_entry(source: Path, target: Path, suffix: str, data: bytes) -> Path:
    """Copy a real torch.save zip, replacing the entry whose name ends with `suffix`."""
    import zipfile

    with zipfile.ZipFile(source) as archive:
        entries = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    write_zip(target, [(name, data if name.endswith(suffix) else raw, False) for name, raw in entries])
    return target


def legacy(obj: Any, storages: dict[str, bytes], *, itemsize: int = 4, numel: int | None = None) -> bytes:
    """torch's legacy (pre-1.6) format: magic, protocol, sys info, the pickle, storage keys, raw storages."""
    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4}}, out, 2)
    out.write(dumps(obj, legacy=True))
    pickle.dump(list(storages), out, protocol=2)
    for raw in storages.values():
        out.write(struct.pack("<q", len(raw) // itemsize if numel is None else numel))
        out.write(raw)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- zips


def write_zip(path: Path, entries: list[tuple[str, bytes, bool]]) -> Path:
    """A plain zip (no zip64): each entry (name, data, deflate?) stored or deflated."""
    out = io.BytesIO()
    central = []
    for name, raw, deflate in entries:
        if deflate:
            squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
            body = squeeze.compress(raw) + squeeze.flush()
        else:
            body = raw
        central.append(_entry(out, name.encode(), body, zlib.crc32(raw), len(raw), 8 if deflate else 0))
    _finish(out, central)
    path.write_bytes(out.getvalue())
    return path


def zip_bomb(path: Path, entries: list[tuple[str, bytes]], bomb_name: str, inflated_mib: int) -> Path:
    """A zip whose entry `bomb_name` inflates to `inflated_mib` MiB of zeros from about 1 KB per MiB."""
    out = io.BytesIO()
    central = []
    for name, raw in entries:
        central.append(_entry(out, name.encode(), raw, zlib.crc32(raw), len(raw), 0))
    mib = bytes(1 << 20)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = squeeze.compress(mib) + squeeze.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, repeatable
    body = block * inflated_mib + squeeze.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(mib, crc)
    central.append(_entry(out, bomb_name.encode(), body, crc, inflated_mib << 20, 8))
    _finish(out, central)
    path.write_bytes(out.getvalue())
    return path


def _entry(out: io.BytesIO, name: bytes, body: bytes, crc: int, size: int, method: int) -> bytes:
    """Write a local header and the body; return the central directory record of the entry."""
    offset = out.tell()
    out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(body), size, len(name), 0))
    out.write(name)
    out.write(body)
    return (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,  # signature
            20,  # made by
            20,  # needed
            0,  # flags
            method,
            0,  # time
            0x21,  # date: 1980-01-01
            crc,
            len(body),
            size,
            len(name),
            0,  # extra
            0,  # comment
            0,  # disk
            0,  # internal attributes
            0,  # external attributes
            offset,
        )
        + name
    )


def _finish(out: io.BytesIO, central: list[bytes]) -> None:
    start = out.tell()
    for record in central:
        out.write(record)
    size = out.tell() - start
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), size, start, 0))


# ---------------------------------------------------------------------------------------------- protobuf


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint (negative values as their 64-bit two's complement)."""
    value &= (1 << 64) - 1 if value < 0 else (1 << 80) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def ckpt_record(name: bytes, dims: Iterable[int], type_name: bytes, content: bytes) -> bytes:
    """One `Checkpoint.value` record of MindSpore's `.ckpt`: Value{tag, TensorProto{dims, type, content}}."""
    tensor = b"".join(varint(1 << 3) + varint(d) for d in dims) + field(2, type_name) + field(3, content)
    return field(1, field(1, name) + field(2, tensor))


def crc_trailer(body: bytes) -> bytes:
    """MindSpore's CRC trailer for `body`: b"crc_num" and the CRC32 as ten big-endian bytes."""
    return b"crc_num" + zlib.crc32(body).to_bytes(10, "big")


# ---------------------------------------------------------------------------------------------- safetensors


def safetensors_bytes(header: dict[str, Any] | bytes, data: bytes = b"", *, declared: int | None = None) -> bytes:
    """A safetensors file: 8-byte header length (or `declared`), the JSON header, then `data`."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if declared is None else declared) + raw + data
