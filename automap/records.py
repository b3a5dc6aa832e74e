"""In-memory views of checkpoints: an ordered table of parameter records with lazily read tensor data.

A `ParamTable` looks the same whatever framework or format wrote the file, so everything downstream
(inference, conversion, audit) is written once. Tensor data is read only when `ParamRecord.read()` is called,
so listing a 10 GB checkpoint reads its headers, not its weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from ._decisions import DECIDED_BY, DecidedBy
from ._errors import CheckpointFormatError
from ._types import Array, Framework
from .dtypes import get_dtype
from .transforms import Step

__all__ = [
    "DEFAULT_THRESHOLD",
    "Alternative",
    "Endpoint",
    "Match",
    "NameMapping",
    "ParamRecord",
    "ParamTable",
    "Source",
]

ArrayLoader = Callable[[], Array]

# Confidences are probabilities fitted on real ports (automap/engine/calibration.py): below 0.9, a person looks.
DEFAULT_THRESHOLD = 0.9


@dataclass(frozen=True, slots=True)
class ParamRecord:
    """One named tensor of a checkpoint: its name, shape, dtype and position in file order.

    `read()` returns the data as a numpy array of the dtype's storage type (raw bits for bfloat16/float8).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    index: int
    loader: ArrayLoader | None = field(default=None, compare=False, repr=False)

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes."""
        return self.numel * get_dtype(self.dtype).itemsize

    @property
    def has_data(self) -> bool:
        """False for records of a listing, which carries names and shapes only."""
        return self.loader is not None

    def read(self) -> Array:
        """Read the tensor data.

        Returns:
            A numpy array of shape `shape` in the dtype's storage type.

        Raises:
            CheckpointFormatError: the record has no data (a listing) or the file disagrees with its header.
        """
        if self.loader is None:
            msg = f"{self.name!r} has no tensor data: it comes from a listing of names and shapes"
            raise CheckpointFormatError(msg)
        array = self.loader()
        storage = np.dtype(get_dtype(self.dtype).storage)
        if array.dtype != storage or tuple(array.shape) != self.shape:
            msg = (
                f"{self.name!r}: data read as {array.dtype}{list(array.shape)}, "
                f"header says {self.dtype}{list(self.shape)}; the file is corrupt"
            )
            raise CheckpointFormatError(msg)
        return array

    def with_index(self, index: int) -> ParamRecord:
        """The same record at another position."""
        return ParamRecord(self.name, self.shape, self.dtype, index, self.loader)


@dataclass(frozen=True)
class ParamTable:
    """The parameters of one checkpoint in file order, plus what the reader set aside.

    Attributes:
        framework: which framework's conventions the names follow.
        source: where the table came from (a path, or a short description).
        params: model parameters in file order; `index` is the position in this tuple.
        excluded: training state (optimizer moments, step counters) kept out of `params`.
        notes: facts the reader found worth telling a person (a container key, a shared prefix).
        format: the file format read ("pytorch", "safetensors", "mindspore-ckpt", "listing", ...).
    """

    framework: Framework
    source: str
    params: tuple[ParamRecord, ...]
    excluded: tuple[ParamRecord, ...] = ()
    notes: tuple[str, ...] = ()
    format: str = ""
    _by_name: Mapping[str, ParamRecord] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, ParamRecord] = {}
        for position, record in enumerate(self.params):
            if record.index != position:
                msg = f"record {record.name!r} has index {record.index}, expected {position}"
                raise ValueError(msg)
            if record.name in by_name:
                msg = f"{self.source}: parameter name {record.name!r} occurs twice; the file is corrupt"
                raise CheckpointFormatError(msg)
            by_name[record.name] = record
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))
        object.__setattr__(self, "_names", tuple(by_name))

    def __repr__(self) -> str:
        excluded = f", {len(self.excluded)} excluded as training state" if self.excluded else ""
        return f"<ParamTable {self.framework} {self.source!r}: {_count(len(self.params), 'parameter')}{excluded}>"

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self) -> Iterator[ParamRecord]:
        return iter(self.params)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> ParamRecord:
        try:
            return self._by_name[name]
        except KeyError:
            msg = f"{self.source}: no parameter named {name!r}"
            raise KeyError(msg) from None

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in file order."""
        return self._names

    @property
    def has_data(self) -> bool:
        """True when every parameter carries tensor data (a checkpoint, not a listing)."""
        return all(r.has_data for r in self.params)

    @property
    def total_numel(self) -> int:
        """Elements over all model parameters."""
        return sum(r.numel for r in self.params)

    @property
    def total_nbytes(self) -> int:
        """Bytes over all model parameters."""
        return sum(r.nbytes for r in self.params)

    def get(self, name: str) -> ParamRecord | None:
        """The record called `name`, or None."""
        return self._by_name.get(name)


Source = str | tuple[str, ...] | None
"""A pair's source: one name, several names concatenated in order (a fused target), or None (unmatched)."""


@dataclass(frozen=True, slots=True)
class Alternative:
    """A runner-up source for a target, with the confidence it would have had."""

    source: Source
    confidence: float
    transform: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    """One target parameter and where its value comes from.

    Attributes:
        target: the target parameter's name.
        source: the source name, a tuple of names to concatenate, or None when nothing was found.
        confidence: probability in [0, 1] that this pair is right.
        transform: layout steps turning the source tensor(s) into the target's (see `automap.transforms`).
        target_shape: the target's shape.
        source_shape: the source's shape (a tuple of shapes for several sources), None when unmatched.
        evidence: per-signal scores in [0, 1] behind the choice.
        alternatives: the best other sources, most likely first.
        pinned: reviewed: a person checked the pair (`automap audit --accept`), or it repeats the pattern of a
            reviewed pair. Conversion takes it whatever its confidence, and solving again keeps it (`pins`).
        labels: short notes explaining the choice, in the order they were added; `"decided_by"` holds a
            `DecidedBy` value (read it as `decided_by`). A mapping file writes the scores, then the labels, in
            one `"evidence"` object.
    """

    target: str
    source: Source
    confidence: float
    transform: tuple[Step, ...] = ()
    target_shape: tuple[int, ...] = ()
    source_shape: tuple[int, ...] | tuple[tuple[int, ...], ...] | None = None
    evidence: Mapping[str, float] = field(default_factory=dict)
    alternatives: tuple[Alternative, ...] = ()
    pinned: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        both = set(self.evidence) & set(self.labels)
        if both:
            msg = f"target {self.target!r}: {sorted(both)} are both scores and labels; a mapping file keeps one"
            raise ValueError(msg)

    @property
    def decided_by(self) -> DecidedBy | None:
        """What settled this pair, or None (a pin, a flat file, a label that names no decision)."""
        text = self.labels.get(DECIDED_BY)
        return None if text is None else DecidedBy.of(text)

    @property
    def source_names(self) -> tuple[str, ...]:
        """The source names this pair reads (empty when unmatched)."""
        if self.source is None:
            return ()
        return (self.source,) if isinstance(self.source, str) else self.source


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a mapping knows of one side: where it came from and a fingerprint of its names and shapes."""

    path: str
    framework: Framework
    params: int
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class NameMapping:
    """A complete mapping from a source checkpoint to a target's parameters, in the target's order.

    Attributes:
        source: the source side.
        target: the target side.
        pairs: one `Match` per target parameter, in target order.
        threshold: confidence below which a pair needs review.
        unmatched_source: source parameters no target uses.
        excluded_source: source entries set aside as training state.
        excluded_target: target entries set aside as training state.
        notes: model-level observations (e.g. a transpose convention applied to a layer family).
        digest: for a mapping read from a versioned file, the digest of the decisions automap wrote into it
            (see `automap.mapping.pairs_digest`), carried when it is saved again so that an edit by hand stays
            recognisable; empty for a mapping automap has just inferred.
    """

    source: Endpoint
    target: Endpoint
    pairs: tuple[Match, ...]
    threshold: float = DEFAULT_THRESHOLD
    unmatched_source: tuple[str, ...] = ()
    excluded_source: tuple[str, ...] = ()
    excluded_target: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    digest: str = ""

    def __repr__(self) -> str:
        unmatched = sum(1 for p in self.pairs if p.source is None)
        doubtful = len(self.doubtful) - unmatched
        return (
            f"<NameMapping {self.source.framework} {self.source.path!r} -> {self.target.framework} "
            f"{self.target.path!r}: {_count(len(self.pairs), 'pair')}, {doubtful + unmatched} to review "
            f"({doubtful} below the threshold {self.threshold:g}, {unmatched} without a source)>"
        )

    @property
    def doubtful(self) -> tuple[Match, ...]:
        """Pairs below the threshold, and targets with no source: what a person should review."""
        return tuple(p for p in self.pairs if p.source is None or (p.confidence < self.threshold and not p.pinned))

    def pair_for(self, target: str) -> Match | None:
        """The pair of one target parameter, or None."""
        return next((p for p in self.pairs if p.target == target), None)

    def flat(self) -> dict[str, str | list[str]]:
        """The plain `{target: source}` dict hand-made workflows use (unmatched targets left out)."""
        return {
            p.target: (p.source if isinstance(p.source, str) else list(p.source))
            for p in self.pairs
            if p.source is not None
        }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
