"""Test networks written as source text: imported from a temporary folder (as a user's model module would be, so
that `--torch-model module:function` finds them), and their two checkpoints written by the frameworks themselves."""

from __future__ import annotations

import contextlib
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType


@contextlib.contextmanager
def imported(folder: Path, name: str, source: str) -> Iterator[ModuleType]:
    """`source` saved as module `name` in `folder` and imported; unimported and off the path afterwards."""
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)


def save_checkpoints(nets: ModuleType, folder: Path) -> tuple[Path, Path]:
    """A torch checkpoint of `nets.torch_model()` and a MindSpore one of `nets.mindspore_model()`, in `folder`."""
    import mindspore
    import torch

    torch_path, ms_path = folder / "model.pth", folder / "template.ckpt"
    torch.save(nets.torch_model().state_dict(), torch_path)
    mindspore.save_checkpoint(nets.mindspore_model(), str(ms_path))
    return torch_path, ms_path
