"""`automap convert --like` on every corpus pair: a correct checkpoint, or a refusal that lists the doubtful pairs.

For each pair a real source checkpoint is written from its listing with seeded random values (a `.ckpt` for a
MindSpore source, a `.safetensors` for a PyTorch source: both need no framework), and `automap convert SOURCE
--like TARGET_LISTING -o OUT` runs as a user would run it. Then either the command refused (non-zero exit, the
mapping written beside the output, no output file) or every tensor of the output must equal the source tensors
moved through the proven truth. A written tensor that differs is the worst outcome there is: a wrong pair that
nobody was told about.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import automap
from automap.cli import main as cli_main
from automap.dtypes import get_dtype
from automap.records import ParamRecord, ParamTable
from automap.transforms import apply_steps
from benchmarks.realports.corpus import CorpusPair

__all__ = ["ConvertOutcome", "check_pair"]


@dataclass(frozen=True)
class ConvertOutcome:
    """What `convert --like` did with one pair."""

    pair: str
    converted: bool
    refused: bool
    wrong_written: tuple[str, ...]  # targets written with values the truth does not give
    doubtful: int  # pairs the written mapping flags for review
    detail: str

    @property
    def ok(self) -> bool:
        """Converted with every tensor right, or refused: never a wrong tensor written unflagged."""
        return not self.wrong_written and (self.converted or self.refused)


def _random_table(table: ParamTable, seed: int) -> ParamTable:
    """The listing's parameters with seeded random values of their dtypes (every tensor distinct)."""
    rng = np.random.default_rng(seed)
    records = []
    for record in table.params:
        storage = np.dtype(get_dtype(record.dtype).storage)
        if storage.kind == "f":
            data = rng.standard_normal(record.shape).astype(storage)
        elif storage.kind == "b":
            data = rng.integers(0, 2, record.shape).astype(storage)
        else:
            data = rng.integers(0, 100, record.shape).astype(storage)
        records.append(ParamRecord(record.name, record.shape, record.dtype, record.index, lambda d=data: d))
    return ParamTable(table.framework, table.source, tuple(records))


def check_pair(pair: CorpusPair, folder: Path | None = None, *, seed: int = 0) -> ConvertOutcome:
    """Write the pair's source with random values, run `automap convert --like`, and judge the outcome."""
    with contextlib.ExitStack() as stack:
        work = folder or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        suffix = ".ckpt" if pair.source.framework == "mindspore" else ".safetensors"
        source_path = work / f"{pair.name}-source{suffix}"
        table = _random_table(pair.source, seed)
        automap.save_checkpoint(table, source_path, framework=pair.source.framework, overwrite=True)
        out_suffix = ".ckpt" if pair.target.framework == "mindspore" else ".safetensors"
        output = work / f"{pair.name}-converted{out_suffix}"
        argv = ["convert", str(source_path), "--like", str(pair.folder / "target.json"), "-o", str(output), "--quiet"]
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = cli_main(argv)
        mapping_file = Path(f"{output}.mapping.json")
        doubtful = len(automap.load_mapping(mapping_file).doubtful) if mapping_file.exists() else 0
        if status != 0:
            last = (stderr.getvalue().strip().splitlines() or ["refused"])[-1]
            return ConvertOutcome(pair.name, False, not output.exists(), (), doubtful, last[:200])
        converted = automap.load_checkpoint(output)
        arrays = {record.name: record.read() for record in table.params}
        wrong = []
        for record in converted.params:
            sources = pair.sources_of(record.name)
            expected = apply_steps([arrays[s] for s in sources], pair.steps_of(record.name)) if sources else None
            if expected is None or not np.array_equal(record.read(), expected):
                wrong.append(record.name)
        missing = [t for t in pair.truth if t not in converted]
        detail = f"{len(converted)} tensors written" + (f", {len(missing)} left out" if missing else "")
        return ConvertOutcome(pair.name, True, False, tuple(wrong), doubtful, detail)
