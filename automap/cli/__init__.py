"""The `automap` command line: one subcommand per module in this package.

`main(argv)` returns the exit status: 0 success, 1 an automap error or a missing framework (one line on
stderr that names the extra to install, no traceback), 2 a usage error, 3 an audit or verification that
found problems, 130 an interruption. Anything else that escapes is a bug and keeps its traceback.
Each command runs inside `automap._advice.command_line()`, so that the library's messages advise flags
(`--force`) where a Python caller reads keyword arguments (`overwrite=True`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from automap._advice import command_line
from automap._errors import AutomapError
from automap._version import __version__

__all__ = ["build_parser", "entrypoint", "main"]

# Subcommand modules, in the order `automap --help` lists them. Each exposes HELP, add_arguments(), run().
_COMMANDS = ("inspect", "infer", "convert", "audit", "verify", "bench")
_EXTRAS = {"torch": "automap[torch]", "mindspore": "automap[mindspore]"}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, subcommands included."""
    parser = argparse.ArgumentParser(
        prog="automap",
        description="Convert model weights between PyTorch and MindSpore without hand-written rename rules.",
    )
    parser.add_argument("--version", action="version", version=f"automap {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        module = importlib.import_module(f"automap.cli.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run automap with `argv` (default: the process arguments) and return the exit status.

    Args:
        argv: command-line arguments without the program name.

    Returns:
        0 on success, 1 on an automap error, 2 on a usage error, 3 when an audit or check found problems.

    Example:
        >>> main(["inspect", "model.ckpt"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        with command_line():  # messages name options by their flags, not keyword arguments
            return int(args._run(args))
    except AutomapError as error:
        print(f"automap: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        framework = (error.name or "").partition(".")[0]
        if framework not in _EXTRAS:  # anything else missing is a broken installation: keep the traceback
            raise
        # a last resort: each place that needs a framework says so itself, with what it was doing
        print(
            f"automap: error: this command needs {framework}, which is not installed; "
            f"run: pip install '{_EXTRAS[framework]}'",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("automap: interrupted; no output was written", file=sys.stderr)
        return 130


def entrypoint() -> None:
    """Console-script entry point."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `automap inspect big.ckpt | head`
        sys.stderr.close()
        status = 0
    raise SystemExit(status)
