"""How a message names an option: as a Python keyword argument, or as a command-line flag.

A message that says how to proceed ("pass overwrite=True to replace it") must speak the language of the surface
the caller used: a Python caller sets keyword arguments, a shell user passes flags. Library code spells an option
with `option("overwrite")` and never writes a flag itself. The text is `overwrite=True` by default and `--force`
while the command line runs a command (`automap.cli.main` runs each one inside `command_line()`). The table
below pairs each keyword argument with the flag that sets it, once, so that neither surface's text is produced
by rewriting the other's.

The surface is a context variable: a message built in a worker thread that the command line did not start
speaks Python, which is the safe default for a library.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["OPTIONS", "Option", "command_line", "on_command_line", "option", "option_name"]


@dataclass(frozen=True, slots=True)
class Option:
    """One setting as both surfaces spell it.

    Attributes:
        keyword: the keyword argument of the Python API (`overwrite`).
        flag: the command-line flag that sets it (`--force`).
        switch: the value the flag alone gives the keyword (True for `--force`, False for `--no-verify`); None for
            a flag that takes a value (`--key NAME`).
        repeated: the flag is given once per item of a list keyword (`--input A --input B` for `inputs=[A, B]`).
    """

    keyword: str
    flag: str
    switch: bool | None = True
    repeated: bool = False


OPTIONS: Mapping[str, Option] = MappingProxyType(
    {
        o.keyword: o
        for o in (
            Option("overwrite", "--force"),
            Option("allow_missing", "--allow-missing"),
            Option("accept_low_confidence", "--accept-low-confidence"),
            Option("ignore_fingerprint", "--ignore-fingerprint"),
            Option("verify", "--no-verify", switch=False),
            Option("max_shard_size", "--max-shard-size", switch=None),
            Option("unsafe_pickle", "--unsafe-pickle"),
            Option("verify_crc", "--verify"),
            Option("key", "--key", switch=None),
            Option("strategy", "--strategy", switch=None),
            Option("workers", "--workers", switch=None),
            Option("inputs", "--input", switch=None, repeated=True),
            Option("torch_method", "--torch-method", switch=None),
            Option("mindspore_method", "--mindspore-method", switch=None),
        )
    }
)
"""Every option a library message may advise, by keyword argument."""

_ON_COMMAND_LINE: ContextVar[bool] = ContextVar("automap_on_command_line", default=False)


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Within this block, messages name options by their command-line flags."""
    token = _ON_COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _ON_COMMAND_LINE.reset(token)


def on_command_line() -> bool:
    """True while the command line runs a command."""
    return _ON_COMMAND_LINE.get()


def option(keyword: str, value: object = None) -> str:
    """How the caller sets `keyword`: `overwrite=True` from Python, `--force` on the command line.

    Args:
        keyword: a key of `OPTIONS`.
        value: the value to advise; a switch's own value when omitted. For a repeated flag, a list.

    Returns:
        The keyword argument with its value, or the flag (with the value after it).

    Raises:
        KeyError: `keyword` is not in `OPTIONS` (a programming error).
        ValueError: a switch is advised with a value its flag cannot set, or a valued option with no value.

    Example:
        >>> option("overwrite")
        'overwrite=True'
        >>> with command_line():
        ...     option("key", "ema")
        '--key ema'
    """
    spec = OPTIONS[keyword]
    if spec.switch is not None:
        if value is not None and value != spec.switch:
            msg = f"{spec.flag} sets {keyword}={spec.switch!r}, not {value!r}"
            raise ValueError(msg)
        return spec.flag if on_command_line() else f"{keyword}={spec.switch!r}"
    if value is None:
        msg = f"advising {keyword} needs a value"
        raise ValueError(msg)
    if not on_command_line():
        return f"{keyword}={value!r}"
    items = value if spec.repeated and isinstance(value, list | tuple) else [value]
    return " ".join(f"{spec.flag} {item}" for item in items)


def option_name(keyword: str) -> str:
    """The option's name alone: `max_shard_size` from Python, `--max-shard-size` on the command line."""
    spec = OPTIONS[keyword]
    return spec.flag if on_command_line() else keyword
