"""The public surface: names in `automap.__all__`, their docstrings, light imports, and `python -m automap`."""

from __future__ import annotations
import __future__

import ast
import inspect
import os
import pydoc
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import automap

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "automap"


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
        "print(sorted(m for m in ('torch', 'mindspore', 'safetensors', 'scipy', 'networkx') if m in sys.modules))\n"
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


# ------------------------------------------------------------------------------------ one name per thing, typed


def test_dir_is_exactly_all() -> None:
    import automap.engine.inference  # a loaded sub-package must not show in dir() either

    assert set(dir(automap)) == set(automap.__all__)
    assert len(automap.__all__) == len(set(automap.__all__))


def test_one_name_for_inference() -> None:
    from automap.engine.inference import infer_mapping
    from automap.netaware import infer_with_networks

    assert automap.infer_mapping is infer_mapping
    assert automap.infer_with_networks is infer_with_networks
    with pytest.raises(AttributeError, match="has no attribute 'infer'"):
        automap.infer  # type: ignore[attr-defined]  # noqa: B018  # the alias is gone
    values = [getattr(automap, name) for name in automap.__all__ if name != "__version__"]
    assert len({id(v) for v in values}) == len(values), "two public names for one thing"


def test_inference_is_imported_on_first_use_only() -> None:
    heavy = "('torch', 'mindspore', 'safetensors', 'scipy', 'networkx')"
    code = (
        "import sys, automap\n"
        f"print(sorted(m for m in {heavy} if m in sys.modules))\n"
        "automap.infer_mapping\n"
        f"print(sorted(m for m in {heavy} if m in sys.modules))\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "['networkx', 'scipy']"]


def test_a_type_checker_sees_the_real_signatures(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("mypy")
    uses = tmp_path / "uses_automap.py"
    uses.write_text(
        "import automap\n"
        "reveal_type(automap.infer_mapping)\n"
        "reveal_type(automap.infer_with_networks)\n"
        "mapping: automap.NameMapping = automap.infer_mapping('a.pth', 'b.ckpt')\n"
        "wrong: int = automap.infer_mapping('a.pth', 'b.ckpt')\n",
        encoding="utf-8",
    )
    pytest_cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache = pytest_cache.mkdir("mypy") if pytest_cache is not None else tmp_path / "mypy-cache"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            str(uses),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    out = result.stdout
    assert 'Revealed type is "def (source: automap.records.ParamTable |' in out, out
    assert '-> automap.records.NameMapping"' in out, out
    assert '-> automap.netaware._api.NetworkInference"' in out, out
    assert ':5: error: Incompatible types in assignment (expression has type "NameMapping"' in out, out
    assert out.count(": error:") == 1, out


def test_help_lists_the_main_functions_with_a_guide() -> None:
    text = pydoc.render_doc(automap, renderer=pydoc.plaintext)
    guide, _, functions = text.partition("\nFUNCTIONS\n")
    main = ("load_checkpoint", "infer_mapping", "save_mapping", "load_mapping", "audit", "convert")
    for name in (*main, "save_checkpoint", "verify", "infer_with_networks"):
        assert f"    {name}(" in guide, f"the guide in automap's docstring does not name {name}"
        assert re.search(rf"^    {name}\(\w", functions, re.MULTILINE), f"help(automap) does not list {name}"


# ------------------------------------------------------------------------ every __all__ and every room's docstring


def _module_files() -> dict[str, Path]:
    found = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = list(file.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = file
    return found


def _bound_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level, also inside `if`/`try` blocks (`if TYPE_CHECKING:` imports)."""
    names: set[str] = set()
    body = list(tree.body)
    while body:
        node = body.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.If | ast.Try):
            body.extend([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
            body.extend(n for h in getattr(node, "handlers", []) for n in h.body)
    return names


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list), "__all__ must be a literal list"
            return value
    return None


def all_problems(files: dict[str, Path]) -> list[str]:
    """Names in an `__all__` that the module does not bind; public names other modules import but it leaves out."""
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in files.items()}
    wanted: dict[str, set[str]] = {}
    for importer, tree in trees.items():
        package = importer if files[importer].name == "__init__.py" else importer.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                source = ".".join([*base, node.module] if node.module else base)
                for alias in node.names:
                    if source in files and source != importer and not alias.name.startswith("_"):
                        wanted.setdefault(source, set()).add(alias.name)
    problems = []
    for name, tree in trees.items():
        declared = _declared_all(tree)
        if declared is None:
            continue
        bound = _bound_names(tree)
        problems += [f"{name}.__all__ lists {n!r}, which {name} does not define" for n in declared if n not in bound]
        for used in sorted(wanted.get(name, set()) - set(declared)):
            if f"{name}.{used}" not in files:  # a submodule is not a name of its package
                problems.append(f"{name}: other modules import {used!r}, which its __all__ leaves out")
    return problems


def test_every_all_in_the_package_is_accurate() -> None:
    assert all_problems(_module_files()) == []


def test_the_all_checker_sees_a_missing_and_a_forgotten_name(tmp_path: Path) -> None:
    package = tmp_path / "automap"
    package.mkdir()
    (package / "__init__.py").write_text('"""Top."""\n')
    (package / "a.py").write_text('__all__ = ["gone", "kept"]\ndef kept(): ...\ndef helper(): ...\n')
    (package / "b.py").write_text("from automap.a import helper, kept\nfrom .a import _private\n")
    files = {"automap": package / "__init__.py", "automap.a": package / "a.py", "automap.b": package / "b.py"}
    assert all_problems(files) == [
        "automap.a.__all__ lists 'gone', which automap.a does not define",
        "automap.a: other modules import 'helper', which its __all__ leaves out",
    ]


@pytest.mark.parametrize("room", ["io", "engine", "conversion", "netaware", "report", "cli"])
def test_every_room_states_its_job(room: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / room / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 12, f"automap/{room}/__init__.py should say what the room does"


# ---------------------------------------------------------------------------------------------- short reprs

_MANY = 90_000


def _big_mapping() -> automap.NameMapping:
    pairs = tuple(
        automap.Match(f"layers.{i}.weight", f"blocks.{i}.w" if i % 3 else None, 0.3 if i % 7 == 0 else 0.9, (), (4,))
        for i in range(_MANY)
    )
    source = automap.Endpoint("model.pth", "pytorch", _MANY)
    return automap.NameMapping(source, automap.Endpoint("template.ckpt", "mindspore", _MANY), pairs)


def _one_line(value: object) -> str:
    text = repr(value)
    assert "\n" not in text and len(text) < 250, text
    return text


def test_the_repr_of_a_large_mapping_and_table_is_one_short_line() -> None:
    mapping = _big_mapping()
    unmatched = sum(1 for p in mapping.pairs if p.source is None)
    below = sum(1 for p in mapping.pairs if p.source is not None and p.confidence < mapping.threshold)
    text = _one_line(mapping)
    assert text.startswith("<NameMapping pytorch 'model.pth' -> mindspore 'template.ckpt': 90000 pairs, ")
    assert f"{below + unmatched} to review ({below} below the threshold 0.9, {unmatched} without a source)" in text
    records = tuple(automap.ParamRecord(f"p{i}", (2, 2), "float32", i) for i in range(_MANY))
    assert _one_line(automap.ParamTable("pytorch", "model.pth", records)) == (
        "<ParamTable pytorch 'model.pth': 90000 parameters>"
    )


def test_the_reports_of_a_large_mapping_print_counts(tmp_path: Path) -> None:
    from automap.conversion import ConversionPlan, PlannedTensor
    from automap.netaware import NetworkInference
    from automap.netaware.networks import OutputComparison

    mapping = _big_mapping()
    review = automap.audit(mapping)
    assert _one_line(review).startswith(f"<AuditReport 'mapping': 90000 pairs, {len(review.doubtful)} doubtful, ")
    tensors = tuple(PlannedTensor(f"t{i}", (f"s{i}",), (), (4,), "float32", "float32") for i in range(_MANY))
    plan = ConversionPlan(tensors, "mindspore", left_out=tuple(f"x{i}" for i in range(_MANY)))
    assert _one_line(plan) == "<ConversionPlan to mindspore: 90000 tensors, 0 problems>"
    report = automap.ConversionReport(
        "model.pth", "model.ckpt", "pytorch", "mindspore", _MANY, 16 * _MANY, _MANY, "MindSpore", None, 0, plan
    )
    assert _one_line(report) == (
        "<ConversionReport pytorch 'model.pth' -> mindspore 'model.ckpt': 90000 tensors (1.4 MiB), 90000 verified>"
    )
    comparison = OutputComparison(0.5, 0.25, False, tuple(f"output {i}: ..." for i in range(1000)))
    verified = automap.VerifyReport(comparison, ("1x3:float32",), 1e-4, 1e-5)
    assert _one_line(verified) == (
        "<VerifyReport FAIL: max abs diff 0.5, max rel diff 0.25 (rtol 0.0001, atol 1e-05), 1 inputs>"
    )
    network = NetworkInference(mapping, False, comparison, None, (), 3, 0, ("1x3:float32",))
    assert _one_line(network).startswith("<NetworkInference NOT proven: 90000 pairs, 0 changed by the probes")


def test_the_reprs_of_a_real_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    safetensors_numpy.save_file(
        {"fc.weight": rng.standard_normal((4, 3)).astype(np.float32), "fc.bias": np.ones(4, np.float32)},
        "model.safetensors",
    )
    source = automap.load_checkpoint("model.safetensors")
    mapping = automap.infer_mapping(source, source)
    report = automap.convert(source, mapping, "copy.safetensors")
    assert _one_line(source) == "<ParamTable pytorch 'model.safetensors': 2 parameters>"
    assert _one_line(mapping) == (
        "<NameMapping pytorch 'model.safetensors' -> pytorch 'model.safetensors': 2 pairs, 0 to review "
        "(0 below the threshold 0.9, 0 without a source)>"
    )
    assert _one_line(report) == (
        "<ConversionReport pytorch 'model.safetensors' -> pytorch 'copy.safetensors': 2 tensors (64 B), 2 verified>"
    )
    assert _one_line(automap.audit(mapping)) == (
        "<AuditReport 'mapping': 2 pairs, 0 doubtful, 0 targets without a source, 0 sources unused, 0 problems>"
    )


# ------------------------------------------------------------------------------------------- the right errors


def test_a_name_with_an_empty_component_is_a_checkpoint_problem(tmp_path: Path) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {"layer..weight": np.ones((2, 2), np.float32), "layer.bias": np.ones(2, np.float32)}
    safetensors_numpy.save_file(tensors, str(tmp_path / "odd.safetensors"))
    safetensors_numpy.save_file({"w": np.ones((2, 2), np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(automap.CheckpointFormatError, match=r"odd\.safetensors: parameter name 'layer\.\.weight'"):
        automap.infer_mapping(tmp_path / "odd.safetensors", tmp_path / "plain.safetensors")


def test_an_unknown_cast_is_a_conversion_problem(tmp_path: Path) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    safetensors_numpy.save_file({"w": np.ones((2, 2), np.float32)}, str(tmp_path / "model.safetensors"))
    mapping = automap.infer_mapping(tmp_path / "model.safetensors", tmp_path / "model.safetensors")
    for dtype in ("float7", "int8"):
        with pytest.raises(automap.ConversionError, match=rf"cannot cast to '{dtype}': give a floating-point dtype"):
            automap.convert(tmp_path / "model.safetensors", mapping, tmp_path / "out.safetensors", dtype=dtype)
    assert not (tmp_path / "out.safetensors").exists()
