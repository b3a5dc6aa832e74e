"""Identify a checkpoint's format from its first bytes, never from its name alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from automap._errors import CheckpointFormatError

# Formats automap reads, by the name of the adapter module that reads them.
TORCH = "torch"
SAFETENSORS = "safetensors"
MINDSPORE = "mindspore"
JSON = "json"

_SUFFIXES = {
    ".pth": TORCH,
    ".pt": TORCH,
    ".bin": TORCH,
    ".ckpt": MINDSPORE,
    ".safetensors": SAFETENSORS,
    ".json": JSON,
}

_ENCRYPTED_MAGIC = b"\x5e\x3a\x7f"  # bytes 1..3 of a MindSpore checkpoint saved with enc_key
# Byte 0 of an encrypted checkpoint names the cipher: 0xd8 AES-GCM, 0xd9 AES-CBC, 0xda SM4-CBC (room left for more).
_ENCRYPTED_FIRST = range(0xD8, 0xE0)
_HEAD = 4096  # enough to tell a JSON text from a protobuf record whose first name is long
_TEXT_BYTES = frozenset(b"\t\n\r") | frozenset(range(0x20, 0x100))


def format_for_suffix(path: Path) -> str | None:
    """The format a file name suggests, or None when the suffix is not one automap knows."""
    return _SUFFIXES.get(path.suffix.lower())


def known_suffixes() -> list[str]:
    """File name suffixes automap recognises."""
    return sorted(_SUFFIXES)


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


def sniff(path: Path) -> str:
    """Return the format of `path` judged by its content.

    Raises:
        CheckpointFormatError: the file is missing, empty, encrypted or of no format automap reads.
    """
    size = open_regular(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD)
    except OSError as error:
        msg = f"{str(path)!r}: cannot read: {error.strerror or error}"
        raise CheckpointFormatError(msg) from None
    if head.startswith(b"PK\x03\x04"):
        return TORCH  # torch.save's zip container
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return TORCH  # a bare pickle: torch's legacy (pre-1.6) format
    if len(head) >= 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 0 < header_len <= min(size - 8, 2**32):
            return SAFETENSORS
    if len(head) >= 4 and head[0] in _ENCRYPTED_FIRST and head[1:4] == _ENCRYPTED_MAGIC:
        msg = (
            f"{str(path)!r} is an encrypted MindSpore checkpoint; decrypt it first: "
            "mindspore.load_checkpoint(path, dec_key=KEY, dec_mode=MODE), then save_checkpoint without enc_key"
        )
        raise CheckpointFormatError(msg)
    # JSON before protobuf: a JSON text may start with a newline (0x0a), which is also how a .ckpt starts. JSON
    # never holds raw control bytes, while a .ckpt's first record holds some (field keys 0x12, 0x08) right after
    # its first name.
    text = head.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark some editors write
    if text.lstrip(b" \t\r\n")[:1] in (b"{", b"[") and (text[:1] != b"\n" or _TEXT_BYTES.issuperset(text)):
        return JSON
    if head[:1] == b"\x0a":
        return MINDSPORE  # protobuf field 1, length-delimited: Checkpoint.value
    expected = format_for_suffix(path)
    if expected in (SAFETENSORS, JSON):
        return expected  # nothing else matched either; these readers validate fully and say what is wrong
    hint = f" although its name says {expected}" if expected else ""
    msg = (
        f"{str(path)!r} is not a checkpoint automap can read{hint}: its first bytes match no known format "
        "(PyTorch .pth/.pt/.bin, .safetensors, MindSpore .ckpt, JSON listing); the file may be corrupt"
    )
    raise CheckpointFormatError(msg)
