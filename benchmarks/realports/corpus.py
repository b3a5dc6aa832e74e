"""Read the committed real-port corpus with automap alone: no model package, no framework needed.

Each pair's folder under tests/data/realports holds the two checkpoints' listings (`source.json`,
`target.json`, written by `automap inspect --json` from the real files, in file order) and `truth.json` (the
proven truth and how it was proven). `split.json` beside this module assigns each family to the development
half ("dev") or the held-out half ("test"): tune on dev only; a test pair whose error was looked at moves to dev.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import automap
from automap import ParamTable
from automap.transforms import parse_steps

ROOT = Path(__file__).resolve().parents[2] / "tests" / "data" / "realports"
SPLIT_FILE = Path(__file__).resolve().parent / "split.json"

TruthEntry = str | list[str] | dict[str, Any]


@dataclass(frozen=True)
class CorpusPair:
    """One proven pair: the listings of both real checkpoints and the truth from target names to sources.

    Attributes:
        name, family, direction: as the generator recorded them ("pt2ms": source PyTorch, target MindSpore).
        split: "dev" or "test", from split.json by family.
        source, target: data-less tables read from the listings (names, shapes, dtypes in file order).
        truth: {target name: source name | [names] | {"source", "transform"}} for every target with a source.
        no_source: target names with no counterpart in the source (expected unmatched).
        document: the whole truth.json (packages and versions, proof figures, notes).
    """

    name: str
    family: str
    direction: str
    split: str
    source: ParamTable
    target: ParamTable
    truth: dict[str, TruthEntry]
    no_source: tuple[str, ...]
    folder: Path
    document: dict[str, Any] = field(repr=False)

    def sources_of(self, target: str) -> tuple[str, ...]:
        """The source names the truth builds `target` from (empty for a target with no source)."""
        entry = self.truth.get(target)
        if entry is None:
            return ()
        source = entry["source"] if isinstance(entry, dict) else entry
        return (source,) if isinstance(source, str) else tuple(source)

    def steps_of(self, target: str) -> tuple[Any, ...]:
        """The parsed transform steps of `target`'s truth entry (empty: copied as it is)."""
        entry = self.truth.get(target)
        if not isinstance(entry, dict):
            return ()
        return parse_steps(entry.get("transform"), where=f"{self.name}: {target}")

    @property
    def flat_truth(self) -> dict[str, str | list[str]]:
        """{target: source name(s)}, transforms left out."""
        return {t: e["source"] if isinstance(e, dict) else e for t, e in self.truth.items()}


def load_split(path: Path = SPLIT_FILE) -> dict[str, str]:
    """{family: "dev" | "test"}."""
    document = json.loads(path.read_text())
    families: dict[str, str] = document["families"]
    return families


def load_corpus(root: Path | str = ROOT, *, split: str | None = None) -> list[CorpusPair]:
    """Every pair under `root`, sorted by name; only one half with `split="dev"` or `split="test"`.

    Raises:
        ValueError: a pair's family has no place in split.json, or `split` is neither "dev" nor "test".
    """
    if split not in (None, "dev", "test"):
        msg = f"split must be 'dev', 'test' or None, not {split!r}"
        raise ValueError(msg)
    halves = load_split()
    pairs = []
    for folder in sorted(p for p in Path(root).iterdir() if (p / "truth.json").is_file()):
        pair = _load_pair(folder, halves)
        if split is None or pair.split == split:
            pairs.append(pair)
    return pairs


def _load_pair(folder: Path, halves: dict[str, str]) -> CorpusPair:
    document = json.loads((folder / "truth.json").read_text())
    family = document["family"]
    if family not in halves:
        msg = f"{folder.name}: family {family!r} is not in {SPLIT_FILE.name}; assign it to 'dev' or 'test'"
        raise ValueError(msg)
    return CorpusPair(
        name=document["pair"],
        family=family,
        direction=document["direction"],
        split=halves[family],
        source=automap.load_checkpoint(folder / "source.json"),
        target=automap.load_checkpoint(folder / "target.json"),
        truth=dict(document["truth"]),
        no_source=tuple(document["no_source"]),
        folder=folder,
        document=document,
    )
