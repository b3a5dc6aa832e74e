"""Tell a checkpoint's format from its content, never from its name alone; and check that a path can be read.

Each `is_*` test is one format's sniffer for the registry (`automap.io.formats`): it looks at a regular file that
`open_regular` has already accepted and answers from the first bytes (a JSON index is parsed). None imports a
framework. A sniffer may refuse a file it recognises but cannot read (an encrypted checkpoint) with a
`CheckpointFormatError` that says what to do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from automap._errors import CheckpointFormatError
from automap._json import loads

__all__ = [
    "MAX_JSON",
    "head",
    "is_index",
    "is_json",
    "is_mindspore",
    "is_pytorch",
    "is_safetensors",
    "open_regular",
    "read_json",
]

MAX_JSON = 512 * 1024 * 1024  # bytes of a listing or index; far more than any real one
_ENCRYPTED_MAGIC = b"\x5e\x3a\x7f"  # bytes 1..3 of a MindSpore checkpoint saved with enc_key
# Byte 0 of an encrypted checkpoint names the cipher: 0xd8 AES-GCM, 0xd9 AES-CBC, 0xda SM4-CBC (room left for more).
_ENCRYPTED_FIRST = range(0xD8, 0xE0)
_HEAD = 4096  # enough to tell a JSON text from a protobuf record whose first name is long
_TEXT_BYTES = frozenset(b"\t\n\r") | frozenset(range(0x20, 0x100))
_WEIGHT_MAP = b'"weight_map"'


def open_regular(path: Path) -> int:
    """Check that `path` is a readable regular file and return its size, or raise a readable error."""
    try:
        info = path.stat()
    except FileNotFoundError:
        msg = f"{str(path)!r}: no such file"
        raise CheckpointFormatError(msg) from None
    except OSError as error:  # a symlink loop, a name too long, a permission problem on a folder
        msg = f"{str(path)!r}: cannot open: {error.strerror or error}"
        raise CheckpointFormatError(msg) from None
    if stat.S_ISDIR(info.st_mode):
        msg = f"{str(path)!r} is a directory; give the checkpoint file (for sharded safetensors, the *.index.json)"
        raise CheckpointFormatError(msg)
    if not stat.S_ISREG(info.st_mode):
        msg = f"{str(path)!r} is not a regular file"
        raise CheckpointFormatError(msg)
    if not os.access(path, os.R_OK):
        msg = f"{str(path)!r}: permission denied; make the file readable"
        raise CheckpointFormatError(msg)
    if info.st_size == 0:
        msg = f"{str(path)!r} is empty (0 bytes); the download or save did not finish"
        raise CheckpointFormatError(msg)
    return info.st_size


def head(path: Path) -> bytes:
    """The first bytes of a file, enough for every sniffer."""
    try:
        with path.open("rb") as handle:
            return handle.read(_HEAD)
    except OSError as error:
        msg = f"{str(path)!r}: cannot read: {error.strerror or error}"
        raise CheckpointFormatError(msg) from None


def is_pytorch(path: Path) -> bool:
    """torch.save's zip container, or a bare pickle (torch's legacy, pre-1.6, format)."""
    first = head(path)
    return first.startswith(b"PK\x03\x04") or (len(first) >= 2 and first[0] == 0x80 and 2 <= first[1] <= 5)


def is_safetensors(path: Path) -> bool:
    """An 8-byte little-endian header length that fits the file, then a JSON object."""
    first = head(path)
    if len(first) < 9 or first[8:9] != b"{":
        return False
    header_len = int.from_bytes(first[:8], "little")
    return 0 < header_len <= min(_size(path) - 8, 2**32)


def is_mindspore(path: Path) -> bool:
    """A protobuf `Checkpoint` message (field 1, length-delimited), which no JSON text can be taken for.

    Raises:
        CheckpointFormatError: the checkpoint is encrypted; the message says how to decrypt it.
    """
    first = head(path)
    if len(first) >= 4 and first[0] in _ENCRYPTED_FIRST and first[1:4] == _ENCRYPTED_MAGIC:
        msg = (
            f"{str(path)!r} is an encrypted MindSpore checkpoint; decrypt it first: "
            "mindspore.load_checkpoint(path, dec_key=KEY, dec_mode=MODE), then save_checkpoint without enc_key"
        )
        raise CheckpointFormatError(msg)
    return first[:1] == b"\x0a" and not _json_text(first)


def is_json(path: Path) -> bool:
    """A JSON text: a listing, or (tested first, by `is_index`) a sharded checkpoint's index."""
    return _json_text(head(path))


def is_index(path: Path) -> bool:
    """A HuggingFace-style index: a JSON object with a `weight_map` (what it holds is checked when it is read).

    Only a file that spells the key out is parsed here, so a listing is not parsed twice; a document that fails
    to parse is left to the listing reader, which says what is wrong with it.
    """
    first = head(path)
    if not _json_text(first) or first.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1] != b"{":
        return False
    if _size(path) > MAX_JSON:
        return False
    try:
        raw = path.read_bytes()
        if _WEIGHT_MAP not in raw:
            return False
        document = loads(raw.decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(document, dict) and "weight_map" in document


def read_json(path: Path) -> Any:
    """The parsed JSON text of a listing or index, of bounded size.

    Raises:
        CheckpointFormatError: the file is too large or not valid JSON (a repeated key included).
    """
    size = _size(path)
    if size > MAX_JSON:
        msg = f"{str(path)!r}: a {size}-byte JSON file is too large for a listing or index"
        raise CheckpointFormatError(msg)
    try:
        return loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        detail = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:120]
        msg = f"{str(path)!r}: not valid JSON ({detail})"
        raise CheckpointFormatError(msg) from None
    except OSError as error:
        msg = f"{str(path)!r}: cannot read: {error.strerror or error}"
        raise CheckpointFormatError(msg) from None


def _json_text(first: bytes) -> bool:
    # A JSON text may start with a newline (0x0a), which is also how a .ckpt starts. JSON never holds raw control
    # bytes, while a .ckpt's first record holds some (field keys 0x12, 0x08) right after its first name.
    text = first.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark some editors write
    return text.lstrip(b" \t\r\n")[:1] in (b"{", b"[") and (text[:1] != b"\n" or _TEXT_BYTES.issuperset(text))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as error:
        msg = f"{str(path)!r}: cannot open: {error.strerror or error}"
        raise CheckpointFormatError(msg) from None
