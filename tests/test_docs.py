"""The README and the docs/ pages: links and anchors resolve, named paths exist, and setting up is two commands.

Documentation rots quietly when code moves: a page keeps naming `automap/lexicon.json` after the file went to
`automap/engine/`. These checks read the Markdown as text (no renderer needed): relative links must reach a file
in the repository, `#anchors` a heading of the linked page under GitHub's slug rules, backticked repository paths
must exist, and `automap.x.y` names in prose and Python examples must import.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
SETUP_COMMANDS = ['python3 -m pip install -e ".[dev]"', "python3 -m pytest"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)  # a span may wrap lines within a paragraph
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_REPO_PREFIXES = ("automap/", "benchmarks/", "tests/", "docs/")
_PLACEHOLDER = re.compile(r"[<>*{}\[\]?]|\.\.\.")
_DOTTED = re.compile(r"\bautomap(?:\.[A-Za-z_]\w*)+")
_RUN_MODULE = re.compile(r"\bpython3? -m ((?:automap|benchmarks|tests)(?:\.\w+)*)")


# --------------------------------------------------------------------------------------------- reading Markdown


def _blocks(text: str) -> Iterator[tuple[str | None, str]]:
    """(fence info or None for prose, line) for every line; fence lines themselves are dropped."""
    fence: str | None = None
    info = ""
    for line in text.splitlines():
        found = _FENCE.match(line)
        if fence is None and found:
            fence, info = found.group(1), found.group(2)
            continue
        if fence is not None and line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            fence = None
            continue
        yield (info if fence is not None else None), line


def _prose_lines(text: str) -> list[str]:
    return [line for info, line in _blocks(text) if info is None]


def _paragraphs(text: str) -> list[str]:
    """Prose split at blank lines and code blocks: code spans and links never cross these."""
    paragraphs: list[str] = []
    current: list[str] = []
    for info, line in _blocks(text):
        if info is None and line.strip() and not _HEADING.match(line):
            current.append(line)
            continue
        if current:
            paragraphs.append("\n".join(current))
            current = []
        if info is None and line.strip():
            paragraphs.append(line)  # a heading is a block of its own
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text, lowercased, punctuation dropped, spaces to hyphens."""
    rendered = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images keep their text
    rendered = rendered.replace("`", "").replace("*", "")
    kept = "".join(c for c in rendered.lower() if c.isalnum() or c in "_- ")
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a page; repeated headings get `-1`, `-2`, ... as on GitHub."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in _prose_lines(text):
        found = _HEADING.match(line)
        if not found:
            continue
        slug = github_slug(found.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def link_targets(text: str) -> list[str]:
    """Link and image targets of a page's prose (code blocks and code spans are not links)."""
    targets: list[str] = []
    for paragraph in _paragraphs(text):
        paragraph = _CODE_SPAN.sub("", paragraph)
        targets.extend(_INLINE_LINK.findall(paragraph))
        targets.extend(_HTML_LINK.findall(paragraph))
        targets.extend(_REFERENCE.findall(paragraph))
    return targets


def link_problems(page: Path, root: Path) -> list[str]:
    """Relative links of `page` that reach no file inside `root`, or no heading of the page they name."""
    problems: list[str] = []
    text = page.read_text(encoding="utf-8")
    for target in link_targets(text):
        if _SCHEME.match(target):
            continue  # http(s), mailto: not this test's business
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page.resolve()
        where = f"{page.name}: link {target!r}"
        if not linked.is_relative_to(root.resolve()):
            problems.append(f"{where} leaves the repository")
            continue
        if not linked.exists():
            problems.append(f"{where}: {linked.relative_to(root.resolve())} does not exist")
            continue
        if anchor:
            if linked.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(linked.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading with the anchor #{anchor} in {linked.name}")
    return problems


def _resolves(dotted: str) -> bool:
    """Whether `automap.a.b` names a module, or an attribute of the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(value, name):
                return False
            value = getattr(value, name)
        return True
    return False


def path_problems(page: Path, root: Path) -> list[str]:
    """Repository paths in code spans that do not exist under `root`; `automap.x` names that do not import."""
    problems: list[str] = []
    text = page.read_text(encoding="utf-8")
    dotted: set[str] = set()
    modules: set[str] = set()
    for paragraph in _paragraphs(text):
        for _, span in _CODE_SPAN.findall(paragraph):
            span = " ".join(span.split())
            modules.update(_RUN_MODULE.findall(span))
            if span.startswith(_REPO_PREFIXES):
                path = span.split()[0].rstrip(",.;:)")
                if not _PLACEHOLDER.search(path) and not (root / path).exists():
                    problems.append(f"{page.name}: `{span}` names {path}, which does not exist")
            if span.startswith("automap."):
                found = _DOTTED.match(span)
                if found:
                    dotted.add(found.group(0))
    for info, line in _blocks(text):
        if info is not None:
            modules.update(_RUN_MODULE.findall(line))
        if info in ("python", "py"):
            dotted.update(_DOTTED.findall(line))
            imported = re.match(r"\s*from\s+(automap(?:\.\w+)*)\s+import\s+([\w\s,]+)$", line)
            if imported:
                dotted.update(f"{imported.group(1)}.{name.strip()}" for name in imported.group(2).split(","))
    for name in sorted(dotted):
        if not _resolves(name):
            problems.append(f"{page.name}: `{name}` does not exist in the package")
    for module in sorted(modules):
        base = root.joinpath(*module.split("."))
        if not (base.with_suffix(".py").exists() or (base / "__main__.py").exists()):
            problems.append(f"{page.name}: `python -m {module}` names no module in the repository")
    return problems


def setup_commands(readme: str) -> list[str]:
    """The commands in the code blocks of the README's "Install" section, one per line, comments dropped."""
    commands: list[str] = []
    inside = False
    for info, line in _blocks(readme):
        heading = _HEADING.match(line) if info is None else None
        if heading:
            inside = heading.group(2).lower().startswith("install")
            continue
        if inside and info is not None:
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------------------------ the real pages


def test_the_docs_pages_exist() -> None:
    names = {page.name for page in DOCS}
    expected = {
        "architecture.md",
        "benchmarks.md",
        "converting.md",
        "extending.md",
        "formats.md",
        "inference.md",
        "mapping-format.md",
        "network-aware.md",
        "performance.md",
        "report.md",
        "security.md",
    }
    assert expected <= names, f"missing: {sorted(expected - names)}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert link_problems(page, ROOT) == []


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_paths_and_names_a_page_mentions_exist(page: Path) -> None:
    assert path_problems(page, ROOT) == []


def test_the_readme_links_every_docs_page() -> None:
    linked = {target.partition("#")[0] for target in link_targets((ROOT / "README.md").read_text(encoding="utf-8"))}
    assert {f"docs/{page.name}" for page in DOCS} <= linked


def test_the_readme_install_section_is_exactly_the_two_setup_commands() -> None:
    assert setup_commands((ROOT / "README.md").read_text(encoding="utf-8")) == SETUP_COMMANDS


# ------------------------------------------------------------------------------ the checkers can say no


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Install and test", "install-and-test"),
        (
            "Network-aware inference: with both model definitions at hand",
            "network-aware-inference-with-both-model-definitions-at-hand",
        ),
        ("Why `conversion/` and not `convert/`", "why-conversion-and-not-convert"),
        ("The main job: PyTorch -> MindSpore", "the-main-job-pytorch---mindspore"),
        ("Features: how **candidates** are scored", "features-how-candidates-are-scored"),
        ("local_order and [links](x.md)", "local_order-and-links"),
    ],
)
def test_github_slugs(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_repeated_headings_get_numbered_anchors() -> None:
    assert anchors("# Usage\n\n## Usage\n\n## Usage\n") == {"usage", "usage-1", "usage-2"}


def test_headings_inside_code_blocks_are_not_anchors() -> None:
    assert anchors("# Real\n\n```bash\n# a shell comment\n```\n") == {"real"}


def test_the_link_checker_reports_a_made_up_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## A heading with `code`\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "# Top\n\n## Install\n\n"
        "[fine](docs/page.md#a-heading-with-code) [also fine](#install) [web](https://example.com/x.md)\n"
        "[gone](docs/missing.md) and [bad anchor](docs/page.md#no-such-heading) and [out](../elsewhere.md)\n"
        "`[not a link](docs/nothing.md)` nor `[a wrapped\nspan](docs/nothing.md)`\n\n"
        "```markdown\n[in a code block](docs/nothing-either.md)\n```\n",
        encoding="utf-8",
    )
    problems = link_problems(tmp_path / "README.md", tmp_path)
    assert len(problems) == 3, problems
    assert "docs/missing.md does not exist" in problems[0]
    assert "no heading with the anchor #no-such-heading" in problems[1]
    assert "leaves the repository" in problems[2]


def test_the_path_checker_reports_paths_and_names_that_do_not_exist(tmp_path: Path) -> None:
    (tmp_path / "automap" / "engine").mkdir(parents=True)
    (tmp_path / "automap" / "engine" / "lexicon.json").write_text("{}", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "The lexicon is `automap/engine/lexicon.json`, formerly `automap/lexicon.json`; a room: `automap/engine/`.\n"
        "Placeholders pass: `automap/io/<format>.py`. Names: `automap.report.html.write_html(mapping, path)`\n"
        "and the old `automap.report_html.write_html`. A wrapped span: `python -m\nbenchmarks.nowhere`.\n\n"
        "```python\nfrom automap.netaware import infer_with_networks, no_such_function\n```\n\n"
        "```bash\npython -m benchmarks.nowhere_else\n```\n",
        encoding="utf-8",
    )
    problems = path_problems(page, tmp_path)
    assert len(problems) == 5, problems
    assert "automap/lexicon.json" in problems[0]
    assert "`automap.netaware.no_such_function` does not exist" in problems[1]
    assert "`automap.report_html.write_html` does not exist" in problems[2]
    assert "python -m benchmarks.nowhere" in problems[3]
    assert "python -m benchmarks.nowhere_else" in problems[4]


def test_the_setup_check_sees_an_extra_command() -> None:
    readme = (
        "# x\n\n## Install and test\n\n```bash\n"
        'python3 -m pip install -e ".[dev]"   # everything\npip install extra-thing\npython3 -m pytest\n'
        "```\n\n## Next\n\n```bash\nautomap inspect model.pth\n```\n"
    )
    assert setup_commands(readme) == [
        'python3 -m pip install -e ".[dev]"',
        "pip install extra-thing",
        "python3 -m pytest",
    ]
