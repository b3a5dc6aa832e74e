"""The format protocol and the registry that dispatches on it: sniff by content, read lazily, write streaming.

A `Format` says how to recognise a checkpoint (`sniff`), how to read it into a `ParamTable` whose tensors stay on
disk until read (`read`), and, when automap writes it, how to stream records into an open file (`write_to`). A
`Registry` holds formats in the order their sniffers are tried: the first that claims a path reads it. A path may
be a file or, for formats marked `directory`, a folder.

Sniffers never import a framework. A reader or writer that needs one imports its adapter module through
`load_adapter` when a matching file arrives, so a missing framework becomes a `MissingDependencyError` naming the
extra to install, and listing a safetensors file or a `.ckpt` never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from automap._collector import collector_paused
from automap._errors import CheckpointFormatError, MissingDependencyError
from automap._types import Framework
from automap.records import ParamRecord, ParamTable

from ._sniff import open_regular

__all__ = ["Format", "Reader", "Registry", "Sniffer", "WriteTo", "load_adapter"]

Sniffer = Callable[[Path], bool]
"""`sniff(path) -> bool`: whether the content at `path` is this format. May raise `CheckpointFormatError` for a
file it recognises but cannot read (an encrypted checkpoint)."""

Reader = Callable[..., ParamTable]
"""`read(path, **options) -> ParamTable`. The registry passes every load option by keyword (`key`, `framework`,
`unsafe_pickle`, `verify_crc`); a reader takes those it uses and ignores the rest (`**_: object`)."""

WriteTo = Callable[..., None]
"""`write_to(handle, records, **options)`: stream records, one tensor at a time, into an open binary file. The
options are `framework` (the naming flavour) and `crc` (MindSpore's CRC trailer); a writer ignores the rest."""

# The framework module an adapter imports -> the extra that installs it.
_EXTRAS = {"torch": "torch"}


@dataclass(frozen=True)
class Format:
    """One checkpoint format as the registry sees it.

    Attributes:
        name: the registry's key (`"torch"`, `"safetensors"`, `"mindspore"`, `"index"`, `"listing"`).
        sniff: recognises the format by content (see `Sniffer`).
        read: reads a path of this format (see `Reader`).
        suffixes: file name endings that suggest this format (lower case); the registry's suffix lookup.
        label: how notes and messages name what the content is; formats that share an encoding share it (an
            index and a listing are both `"json"`). Defaults to `name`.
        description: how the "no known format" message lists it (`"MindSpore .ckpt"`); empty to leave it out.
        directory: a folder layout (sniffed for folders only) rather than a file.
        claims_by_suffix: a file no sniffer recognises goes to this reader when its suffix is this format's; the
            reader validates the whole file and says precisely what is wrong.
        framework: the framework whose naming every file of this format follows; None when both use it.
        holds_data: False for formats of names and shapes only (listings).
        write_to: streams records into an open file (see `WriteTo`); None when automap does not write it.
        check: refuses, before anything is written, records this format cannot store.
    """

    name: str
    sniff: Sniffer
    read: Reader
    suffixes: tuple[str, ...] = ()
    label: str = ""
    description: str = ""
    directory: bool = False
    claims_by_suffix: bool = False
    framework: Framework | None = None
    holds_data: bool = True
    write_to: WriteTo | None = None
    check: Callable[[Sequence[ParamRecord]], None] | None = None

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


class Registry:
    """Formats in the order their sniffers are tried; the first that claims a path reads it."""

    def __init__(self, formats: Iterable[Format] = ()) -> None:
        self._formats: list[Format] = []
        for fmt in formats:
            self.register(fmt)

    def register(self, fmt: Format, *, before: str | None = None) -> None:
        """Add a format, last or ahead of the format named `before` (whose sniffer is then tried after it).

        Raises:
            ValueError: the name or one of the suffixes is taken already, or `before` names no format.
        """
        for known in self._formats:
            if known.name == fmt.name:
                msg = f"a format named {fmt.name!r} is registered already"
                raise ValueError(msg)
            taken = set(known.suffixes) & set(fmt.suffixes)
            if taken:
                msg = f"suffix {sorted(taken)[0]!r} of format {fmt.name!r} belongs to format {known.name!r} already"
                raise ValueError(msg)
        if before is None:
            self._formats.append(fmt)
            return
        names = [known.name for known in self._formats]
        if before not in names:
            msg = f"no format named {before!r} to register {fmt.name!r} before; known: {names}"
            raise ValueError(msg)
        self._formats.insert(names.index(before), fmt)

    def __iter__(self) -> Iterator[Format]:
        return iter(tuple(self._formats))

    def __len__(self) -> int:
        return len(self._formats)

    def get(self, name: str) -> Format:
        """The format registered under `name`.

        Raises:
            CheckpointFormatError: no format has that name.
        """
        for fmt in self._formats:
            if fmt.name == name:
                return fmt
        msg = f"no checkpoint format named {name!r}; known: {[f.name for f in self._formats]}"
        raise CheckpointFormatError(msg)

    def for_suffix(self, path: Path) -> Format | None:
        """The format a file name suggests, or None when its suffix is not one automap knows."""
        suffix = path.suffix.lower()
        return next((fmt for fmt in self._formats if suffix in fmt.suffixes), None)

    def suffixes(self, *, writable: bool = False) -> list[str]:
        """File name suffixes the registry recognises (only those it can write, with `writable`), sorted."""
        return sorted(s for fmt in self._formats if fmt.write_to is not None or not writable for s in fmt.suffixes)

    def detect(self, path: Path) -> Format:
        """The format of `path`, judged by its content.

        Raises:
            CheckpointFormatError: the path is missing, unreadable, empty, a folder of no known layout, encrypted,
                or of no format in this registry.
        """
        if path.is_dir():
            for fmt in self._formats:
                if fmt.directory and fmt.sniff(path):
                    return fmt
            raise CheckpointFormatError(self._unknown_folder(path))
        open_regular(path)
        for fmt in self._formats:
            if not fmt.directory and fmt.sniff(path):
                return fmt
        named = self.for_suffix(path)
        if named is not None and named.claims_by_suffix:
            return named  # nothing else matched either; this reader validates fully and says what is wrong
        hint = f" although its name says {named.label}" if named is not None else ""
        known = ", ".join(fmt.description for fmt in self._formats if fmt.description and not fmt.directory)
        msg = (
            f"{str(path)!r} is not a checkpoint automap can read{hint}: its first bytes match no known format "
            f"({known}); the file may be corrupt"
        )
        raise CheckpointFormatError(msg)

    def load(
        self,
        path: Path,
        *,
        key: str | None = None,
        framework: Framework | None = None,
        unsafe_pickle: bool = False,
        verify_crc: bool = False,
    ) -> ParamTable:
        """Detect the format of `path` and read it (see `automap.io.load_checkpoint` for the options).

        A file whose name suggests another format than its content is read by its content, with a note saying so.
        """
        fmt = self.detect(path)
        try:
            with collector_paused():  # a table of many records: see automap/_collector.py
                table = fmt.read(path, key=key, framework=framework, unsafe_pickle=unsafe_pickle, verify_crc=verify_crc)
        except MemoryError:
            # What the file declares is checked against its size first, so this is a real shortage (or an
            # address-space limit) while building the table of a very large file.
            what = "folder" if fmt.directory else f"{path.stat().st_size}-byte file"
            msg = f"{str(path)!r}: ran out of memory while reading this {what}; free memory or raise the limit"
            raise CheckpointFormatError(msg) from None
        notes = table.notes
        named = None if fmt.directory else self.for_suffix(path)
        if named is not None and named.label != fmt.label:
            notes = (*notes, f"the name says {named.label} but the content is {fmt.label}; read as {fmt.label}")
        if (framework is not None and table.framework != framework) or notes != table.notes:
            chosen = framework or table.framework
            table = ParamTable(chosen, table.source, table.params, table.excluded, notes, table.format)
        return table

    def _unknown_folder(self, path: Path) -> str:
        layouts = [fmt.description or fmt.name for fmt in self._formats if fmt.directory]
        if not layouts:
            return f"{str(path)!r} is a directory; give the checkpoint file (for sharded safetensors, the *.index.json)"
        return (
            f"{str(path)!r} is a directory but no checkpoint folder automap reads ({'; '.join(layouts)}); give the "
            "checkpoint file (for sharded safetensors, the *.index.json)"
        )


def load_adapter(module: str, purpose: str) -> ModuleType:
    """Import the adapter module `module`, turning a missing framework into an error that says what to install.

    Args:
        module: the adapter's full name (`"automap.io.torch"`).
        purpose: what needs it, for the message (`"reading 'model.pth'"`).

    Raises:
        MissingDependencyError: the framework the adapter imports is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = (error.name or "").partition(".")[0]
        extra = _EXTRAS.get(top)
        if extra is None:  # a bug inside the adapter, not a missing framework
            raise
        msg = f"{purpose} needs {top}, which is not installed; run: pip install 'automap[{extra}]'"
        raise MissingDependencyError(msg) from error
