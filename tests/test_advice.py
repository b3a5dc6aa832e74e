"""Messages advise options in the caller's language: keyword arguments from Python, flags on the command line.

The same refusal is provoked twice, once through the Python API and once through `automap.cli.main`, and each
side must name the option its way. A scan of the package keeps flags out of library messages for good.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import automap
from automap import cli
from automap._advice import OPTIONS, command_line, on_command_line, option, option_name

save_file = pytest.importorskip("safetensors.numpy").save_file

PACKAGE = Path(__file__).resolve().parent.parent / "automap"
FLAGS = sorted(o.flag for o in OPTIONS.values())
# Modules whose job is the command line itself: they may spell flags.
_CLI_MODULES = ("cli/", "_advice.py", "netaware/_options.py")


# --------------------------------------------------------------------------------------------- the spelling


def test_an_option_is_a_keyword_argument_unless_the_command_line_runs() -> None:
    assert not on_command_line()
    spelled = [
        option("overwrite"),
        option("verify", False),
        option("key", "ema/model"),
        option("inputs", ["1x3:float32", "1x4:int64"]),
        option_name("max_shard_size"),
    ]
    expected = ["overwrite=True", "verify=False", "key='ema/model'", "inputs=['1x3:float32', '1x4:int64']"]
    assert spelled == [*expected, "max_shard_size"]
    with command_line():
        assert on_command_line()
        assert option("overwrite") == "--force"
        assert option("verify", False) == "--no-verify"
        assert option("key", "ema/model") == "--key ema/model"
        assert option("inputs", ["1x3:float32", "1x4:int64"]) == "--input 1x3:float32 --input 1x4:int64"
        assert option_name("max_shard_size") == "--max-shard-size"
    assert not on_command_line()


def test_advice_a_flag_cannot_give_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="--no-verify sets verify=False, not True"):
        option("verify", True)
    with pytest.raises(ValueError, match="advising key needs a value"):
        option("key")
    with pytest.raises(KeyError):
        option("no_such_option")


def _cli_options() -> set[str]:
    found: set[str] = set()
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.update(s for a in sub._actions for s in a.option_strings)
    return found


def _keywords() -> set[str]:
    from automap.netaware import check_with_networks, infer_with_networks
    from automap.report.html import write_html

    functions = [getattr(automap, n) for n in automap.__all__ if inspect.isfunction(getattr(automap, n))]
    functions += [infer_with_networks, check_with_networks, write_html]
    return {name for f in functions for name in inspect.signature(f).parameters}


@pytest.mark.parametrize("keyword", sorted(OPTIONS))
def test_each_option_exists_on_both_surfaces(keyword: str) -> None:
    assert keyword in _keywords(), f"no public function takes {keyword}="
    assert OPTIONS[keyword].flag in _cli_options(), f"no subcommand has {OPTIONS[keyword].flag}"


# --------------------------------------------------------------------------------- the same refusal, two ways


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A source with two tensors, a target that wants three, and a mapping between them (real files)."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    save_file(
        {"a.weight": rng.standard_normal((3, 2)).astype(np.float32), "a.bias": np.ones(3, np.float32)},
        "src.safetensors",
    )
    target = {
        "a.weight": np.zeros((3, 2), np.float32),
        "a.bias": np.zeros(3, np.float32),
        "b.scale": np.zeros(5, np.float32),
    }
    save_file(target, "tgt.safetensors")
    mapping = automap.infer_mapping("src.safetensors", "tgt.safetensors")
    automap.save_mapping(mapping, "mapping.json")
    doubtful = replace(mapping, pairs=tuple(replace(p, confidence=0.2) for p in mapping.pairs))
    automap.save_mapping(doubtful, "doubtful.json")
    return tmp_path


def _python_says(call: object, error: type[Exception] = automap.AutomapError) -> str:
    assert callable(call)
    with pytest.raises(error) as caught:
        call()
    return str(caught.value)


def _command_line_says(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main([*argv]) == 1
    return capsys.readouterr().err


def _speaks_python(text: str) -> None:
    flags = [f for f in FLAGS if re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert flags == [], text


def test_an_existing_output(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("out.safetensors").write_bytes(b"precious")
    text = _python_says(
        lambda: automap.convert("src.safetensors", "mapping.json", "out.safetensors", allow_missing=True)
    )
    assert "'out.safetensors' already exists; pass overwrite=True to overwrite it" in text
    _speaks_python(text)
    err = _command_line_says(capsys, "convert", "src.safetensors", "-m", "mapping.json", "-o", "out.safetensors")
    assert "'out.safetensors' already exists; pass --force to overwrite it" in err
    assert Path("out.safetensors").read_bytes() == b"precious"


def test_a_target_without_a_source(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _python_says(lambda: automap.convert("src.safetensors", "mapping.json", "out.safetensors"))
    assert "or pass allow_missing=True to leave it out of the output" in text
    _speaks_python(text)
    err = _command_line_says(capsys, "convert", "src.safetensors", "-m", "mapping.json", "-o", "out.safetensors")
    assert "or pass --allow-missing to leave it out of the output" in err
    report = automap.convert("src.safetensors", "mapping.json", "out.safetensors", allow_missing=True, verify=False)
    lines = report.lines()
    assert any("LEFT OUT (allow_missing=True): b.scale" in line for line in lines), lines
    assert "not verified: the output was not re-read (verify=False)" in lines
    _speaks_python("\n".join(lines))
    argv = ["convert", "src.safetensors", "-m", "mapping.json", "-o", "cli.safetensors", "--allow-missing"]
    assert cli.main([*argv, "--no-verify", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "LEFT OUT (--allow-missing): b.scale" in out
    assert "not verified: the output was not re-read (--no-verify)" in out


def test_pairs_below_the_threshold(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def convert() -> None:
        automap.convert("src.safetensors", "doubtful.json", "out.safetensors", allow_missing=True)

    text = _python_says(convert)
    assert "below the confidence threshold" in text and "or pass accept_low_confidence=True" in text
    _speaks_python(text)
    argv = ["convert", "src.safetensors", "-m", "doubtful.json", "-o", "out.safetensors", "--allow-missing"]
    assert "or pass --accept-low-confidence" in _command_line_says(capsys, *argv)


def test_another_checkpoint_than_the_mappings(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_file({"a.weight": np.ones((3, 2), np.float16), "a.bias": np.ones(3, np.float16)}, "half.safetensors")
    text = _python_says(lambda: automap.convert("half.safetensors", "mapping.json", "out.safetensors"))
    assert "pass ignore_fingerprint=True if its names and shapes still fit" in text
    _speaks_python(text)
    err = _command_line_says(capsys, "convert", "half.safetensors", "-m", "mapping.json", "-o", "out.safetensors")
    assert "pass --ignore-fingerprint if its names and shapes still fit" in err


def test_a_bad_shard_size(folder: Path) -> None:
    def convert() -> None:
        automap.convert("src.safetensors", "mapping.json", "out.safetensors", allow_missing=True, max_shard_size="lots")

    text = _python_says(convert, automap.ConversionError)
    assert text.startswith("max_shard_size: ")
    _speaks_python(text)


def test_several_state_dicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"model": {"w": torch.zeros(2)}, "ema": {"w": torch.ones(2)}}, tmp_path / "two.pth")
    text = _python_says(lambda: automap.load_checkpoint(tmp_path / "two.pth"), automap.CheckpointFormatError)
    assert text.endswith("choose one with key='model'")
    _speaks_python(text)
    assert _command_line_says(capsys, "inspect", str(tmp_path / "two.pth")).endswith("choose one with --key model\n")


# ------------------------------------------------------------------------------- no flag in library messages


def flags_in_messages(source: str, flags: list[str]) -> list[tuple[int, str]]:
    """(line, flag) for every flag written in a string of `source` that is not a docstring."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            for flag in flags:
                if re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", node.value):
                    found.append((node.lineno, flag))
    return found


def test_library_messages_spell_no_flag() -> None:
    problems = []
    for file in sorted(PACKAGE.rglob("*.py")):
        relative = file.relative_to(PACKAGE).as_posix()
        if relative.startswith(_CLI_MODULES):
            continue
        for line, flag in flags_in_messages(file.read_text(encoding="utf-8"), FLAGS):
            problems.append(f"automap/{relative}:{line}: {flag} (use automap._advice.option)")
    assert problems == []


def test_the_flag_scan_sees_a_flag_in_a_message_but_not_in_a_docstring() -> None:
    source = (
        '"""Pass --force to replace."""\n'
        "def f(path):\n"
        '    """Like `--force`."""\n'
        '    msg = f"{path} exists; pass --force to overwrite it, or --force-all"\n'
        '    return "--verify-crc is not --verify", msg\n'
    )
    assert flags_in_messages(source, ["--force", "--verify"]) == [(4, "--force"), (5, "--verify")]
