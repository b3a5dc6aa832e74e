"""What users install: the sdist and the wheel built from it hold every file of the package, data included.

The package is built as a release would be (sdist first, then the wheel from the unpacked sdist), from a copy
of the checkout in a temporary folder, so the checkout itself is left alone. `.ci/run` then installs the wheel
into clean virtual environments and runs it (tests/packaging/check_install.py).
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def _package_files() -> list[str]:
    """Every file of the package tree in the checkout, as a path inside the wheel."""
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "automap").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel built from it."""
    pytest.importorskip("build", reason="the dev extra installs `build`")
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    source.mkdir()
    shutil.copytree(ROOT / "automap", source / "automap", ignore=_IGNORED)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    dist = work / "dist"
    # --no-isolation: build with the setuptools installed here rather than fetching one
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (sdist,) = dist.glob("automap-*.tar.gz")
    (wheel,) = dist.glob("automap-*.whl")
    return sdist, wheel


def test_the_wheel_holds_every_file_of_the_package(built: tuple[Path, Path]) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for needed in ("automap/engine/lexicon.json", "automap/py.typed"):
        assert needed in names
    missing = [name for name in _package_files() if name not in names]
    assert not missing, f"left out of the wheel: {missing}"
    assert not [name for name in names if name.endswith((".pyc", ".pyo")) or "__pycache__" in name]


def test_the_sdist_holds_every_file_of_the_package(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = [name for name in [*_package_files(), "pyproject.toml", "README.md"] if name not in names]
    assert not missing, f"left out of the sdist: {missing}"


def test_frameworks_are_extras_not_requirements(built: tuple[Path, Path]) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    requirements = [Requirement(text) for text in metadata.get_all("Requires-Dist") or []]

    def wanted(extra: str) -> dict[str, str]:
        """What installing automap with this extra ("" for none) asks for: name -> version specifier."""
        environment = {"extra": extra, "platform_system": "Linux", "platform_machine": "x86_64"}
        chosen = [r for r in requirements if r.marker is None or r.marker.evaluate(environment)]
        return {f"{r.name}[{','.join(sorted(r.extras))}]" if r.extras else r.name: str(r.specifier) for r in chosen}

    core = wanted("")
    assert set(core) == {"numpy", "scipy", "networkx", "safetensors"}
    assert all(">=" in spec and "==" not in spec for spec in core.values()), core
    torch, mindspore = wanted("torch"), wanted("mindspore")
    assert torch["torch"].startswith(">=") and "==" not in torch["torch"]
    assert mindspore["mindspore"].startswith(">=") and "==" not in mindspore["mindspore"]
    assert mindspore["numpy"] == "<2"  # MindSpore's ops need it
    assert "automap[mindspore,torch]" in wanted("all")
    dev = wanted("dev")
    assert (dev["torch"], dev["mindspore"], dev["numpy"]) == ("==2.13.0", "==2.10.0", "<2")
    assert {"pytest", "ruff", "mypy", "hypothesis", "build", "atheris"} <= set(dev)
