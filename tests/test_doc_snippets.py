"""The Python snippets of the README and the docs/ pages run as written, in order, page by page.

Each page's ```python blocks run one after the other in one namespace, in a fresh folder holding the files they
name: `model.pth` written by torch.save from a small real network, `template.ckpt` by
mindspore.save_checkpoint from its MindSpore port, and (where a page reads one) `mapping.json` inferred and
saved by automap. A block that needs the reader's own code (their model factories) starts with a visible
`# not run: why` comment; it is still compiled, so its syntax cannot rot either. A snippet that no longer
matches the API fails here.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
NOT_RUN = "# not run:"

# The files each page's runnable snippets start from; a page with runnable snippets must be listed here.
FILES = {
    "README.md": ("model.pth", "template.ckpt"),
    "docs/converting.md": ("model.pth", "template.ckpt", "mapping.json"),
    "docs/report.md": ("model.pth", "template.ckpt", "mapping.json"),
}
# What the snippets of each page write: proof that they did their job, not only that nothing raised.
WRITES = {
    "README.md": ("mapping.json", "model.ckpt"),
    "docs/converting.md": ("model.ckpt",),
    "docs/report.md": ("report.html",),
}

_OPEN = re.compile(r"^```python\s*$")


def python_blocks(text: str) -> list[str]:
    """The bodies of the page's ```python fenced blocks, in order."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if current is None:
            if _OPEN.match(line):
                current = []
        elif line.strip() == "```":
            blocks.append("\n".join(current) + "\n")
            current = None
        else:
            current.append(line)
    return blocks


def runnable(blocks: list[str]) -> list[str]:
    return [b for b in blocks if not b.lstrip().startswith(NOT_RUN)]


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.pth, template.ckpt and mapping.json, written by the real tools."""
    torch = pytest.importorskip("torch")
    mindspore = pytest.importorskip("mindspore")
    import _convert_nets as nets

    import automap

    mindspore.set_context(mode=mindspore.PYNATIVE_MODE, device_target="CPU")
    folder = tmp_path_factory.mktemp("doc-files")
    torch.save(nets.torch_net().state_dict(), folder / "model.pth")
    mindspore.save_checkpoint(nets.mindspore_net(), str(folder / "template.ckpt"))
    mapping = automap.infer_mapping(folder / "model.pth", folder / "template.ckpt")
    automap.save_mapping(mapping, folder / "mapping.json")
    return folder


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_snippet_compiles_and_every_runnable_one_is_run(page: Path) -> None:
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    for number, block in enumerate(blocks, 1):
        compile(block, f"{_rel(page)} block {number}", "exec")
    if runnable(blocks):
        assert _rel(page) in FILES, f"{_rel(page)} has snippets that run: list the files they need in FILES"


@pytest.mark.parametrize("page", sorted(FILES))
def test_the_snippets_of_a_page_run_in_sequence(
    page: str, originals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = runnable(python_blocks((ROOT / page).read_text(encoding="utf-8")))
    assert blocks, f"{page} has no runnable snippet any more: drop it from FILES"
    for name in FILES[page]:
        shutil.copy(originals / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{page} block {number}", "exec"), namespace)  # the repository's own docs
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*FILES[page], *WRITES[page]})


def test_the_readme_snippet_converts_and_verifies(
    originals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = runnable(python_blocks((ROOT / "README.md").read_text(encoding="utf-8")))
    for name in FILES["README.md"]:
        shutil.copy(originals / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(blocks[0], "README.md", "exec"), namespace)  # the repository's own docs
    import automap

    written = automap.load_checkpoint(tmp_path / "model.ckpt")
    assert written.framework == "mindspore"
    assert written.names == automap.load_checkpoint(tmp_path / "template.ckpt").names
    assert f"{len(written)} tensors verified" in printed.getvalue()


def test_the_extractor_sees_blocks_and_markers() -> None:
    text = (
        "# Page\n\n```python\nx = 1\n```\n\n```bash\nnot python\n```\n\n"
        "```python\n# not run: needs your model\nmodel.fit()\n```\n"
    )
    blocks = python_blocks(text)
    assert blocks == ["x = 1\n", "# not run: needs your model\nmodel.fit()\n"]
    assert runnable(blocks) == ["x = 1\n"]
