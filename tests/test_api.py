"""The public surface: names in `automap.__all__`, their docstrings, light imports, and `python -m automap`."""

from __future__ import annotations
import __future__

import inspect
import subprocess
import sys
import types

import automap


def test_public_names_exist_and_are_documented() -> None:
    for name in automap.__all__:
        value = getattr(automap, name)
        if name == "__version__":
            assert isinstance(value, str)
            assert value.count(".") == 2
            continue
        doc = inspect.getdoc(value)
        assert doc, f"{name} has no docstring"
    for function in (automap.load_checkpoint, automap.save_checkpoint):
        doc = inspect.getdoc(function) or ""
        for section in ("Args:", "Raises:", "Example:"):
            assert section in doc, f"{function.__name__} lacks {section}"


def test_nothing_public_is_left_out_of_all() -> None:
    public = {
        name
        for name, value in vars(automap).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType | __future__._Feature)
    }
    assert public <= set(automap.__all__)


def test_errors_form_one_hierarchy() -> None:
    for name in automap.__all__:
        value = getattr(automap, name)
        if name.endswith("Error"):
            assert issubclass(value, automap.AutomapError)
    assert issubclass(automap.UnsafeCheckpointError, automap.CheckpointFormatError)


def _run(*code_or_args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *code_or_args], capture_output=True, text=True, check=False)


def test_import_and_help_import_no_framework() -> None:
    code = (
        "import sys, automap, automap.cli\n"
        "automap.cli.build_parser()\n"
        "print(sorted(m for m in ('torch', 'mindspore', 'safetensors') if m in sys.modules))\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_python_dash_m_automap() -> None:
    result = _run("-m", "automap", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: automap")
    assert "inspect" in result.stdout
    version = _run("-m", "automap", "--version")
    assert version.stdout.strip() == f"automap {automap.__version__}"
    missing = _run("-m", "automap", "inspect", "/nonexistent/model.pth")
    assert missing.returncode == 1
    assert missing.stderr == "automap: error: '/nonexistent/model.pth': no such file\n"
