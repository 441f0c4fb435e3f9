"""The data model: what a search talks about, as attrs classes that cattrs (de)serialises.

Everything here is plain data, cheap to import (no torch), and JSON-friendly through
:data:`converter`. The names follow the user's design document (ArchitectureSpec,
ArchitectureVector, SearchSpace, Trial, TrialResult, Experiment, ExperimentError).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import random
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Union

import attrs
import cattrs

Scalar = Union[int, float, str]

#: The one converter every part of Neuromosaic uses, so a spec stored by one plugin reads back
#: identically in another.
converter = cattrs.Converter(forbid_extra_keys=True)
converter.register_structure_hook(Scalar, lambda v, _: v)  # a vector value is taken as stored


def to_json(obj: Any) -> str:
    """Serialise an attrs object to canonical JSON (sorted keys, no whitespace)."""
    return json.dumps(converter.unstructure(obj), sort_keys=True, separators=(",", ":"))


def stable_hash(payload: Any) -> str:
    """A short, stable hash of any JSON-serialisable value (sorted keys, so dict order never matters)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Layer:
    """One typed layer of an architecture, e.g. ``Layer("linear", {"out_features": 128})``.

    The layer vocabulary (types and their parameters) is defined in :mod:`neuromosaic_core.layers`.
    """

    type: str
    params: Mapping[str, Scalar] = attrs.field(factory=dict, converter=lambda p: dict(sorted(p.items())))


@attrs.frozen
class ArchitectureSpec:
    """The architecture only: a family and an ordered list of layers (the body of the network).

    The classification head (a linear layer to ``task.num_classes``) is implied and added by the
    code generator, so the same spec means the same thing for every task.
    """

    family: str
    layers: tuple[Layer, ...] = attrs.field(converter=tuple)

    def canonical_hash(self) -> str:
        """A stable hash of the architecture alone (not of training settings or the task)."""
        return stable_hash(converter.unstructure(self))

    def describe(self) -> str:
        """A compact one-line summary, e.g. ``conv1d: conv32k5s1 bn gelu max2 flat fc64 gelu``."""
        return f"{self.family}: " + " ".join(_short(layer) for layer in self.layers)


_SHORT_NAMES = {"batchnorm": "bn", "layernorm": "ln", "flatten": "flat"}


def _short(layer: Layer) -> str:
    p = layer.params
    if layer.type == "linear":
        return f"fc{p.get('out_features')}"
    if layer.type == "conv1d":
        return f"conv{p.get('out_channels')}k{p.get('kernel_size')}s{p.get('stride')}"
    if layer.type == "activation":
        return str(p.get("fn"))
    if layer.type == "dropout":
        return f"drop{p.get('p')}"
    if layer.type in ("maxpool1d", "avgpool1d"):
        return f"{layer.type[:3]}{p.get('kernel_size')}"
    if layer.type in _SHORT_NAMES and not p:
        return _SHORT_NAMES[layer.type]
    args = ",".join(f"{k}={v}" for k, v in p.items())
    return f"{layer.type}({args})" if args else layer.type


@attrs.frozen
class ArchitectureVector:
    """A point of a :class:`SearchSpace`: one value per dimension name.

    Inactive conditional dimensions hold their canonical default (see :meth:`SearchSpace.canonicalize`).
    """

    values: Mapping[str, Scalar] = attrs.field(converter=lambda v: dict(sorted(v.items())))

    @classmethod
    def from_sorted(cls, values: dict[str, Scalar]) -> ArchitectureVector:
        """A vector from a dict already in name order (as stored), skipping the sorting
        converter: a resume builds one per stored trial, 100,000 of them for a large study."""
        vector = object.__new__(cls)
        object.__setattr__(vector, "values", values)
        return vector

    def __getitem__(self, name: str) -> Scalar:
        return self.values[name]

    def key(self) -> str:
        """A stable identity for de-duplication."""
        return stable_hash(dict(self.values))


# --------------------------------------------------------------------------------------------
# Search spaces
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Dimension:
    """Base of all dimensions. ``active_if`` maps another dimension's name to the values for which
    this one is active (all entries must hold, and the parent must itself be active)."""

    name: str
    active_if: Mapping[str, tuple[Scalar, ...]] = attrs.field(
        factory=dict, kw_only=True, converter=lambda d: {k: tuple(v) for k, v in d.items()}
    )

    def default(self) -> Scalar:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, rng: random.Random) -> Scalar:  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, value: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


@attrs.frozen
class IntDimension(Dimension):
    """Integers in ``[low, high]`` (both inclusive); ``log`` samples log-uniformly."""

    low: int = attrs.field(kw_only=True)
    high: int = attrs.field(kw_only=True)
    log: bool = attrs.field(default=False, kw_only=True)

    def default(self) -> int:
        return self.low

    def sample(self, rng: random.Random) -> int:
        if self.log:
            return int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
        return rng.randint(self.low, self.high)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


@attrs.frozen
class RealDimension(Dimension):
    """Reals in ``[low, high]``; ``log`` samples log-uniformly."""

    low: float = attrs.field(kw_only=True)
    high: float = attrs.field(kw_only=True)
    log: bool = attrs.field(default=False, kw_only=True)

    def default(self) -> float:
        return float(self.low)

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high


@attrs.frozen
class CategoricalDimension(Dimension):
    """One of ``choices`` (ints, floats or strings); the first choice is the canonical default."""

    choices: tuple[Scalar, ...] = attrs.field(kw_only=True, converter=tuple)

    def default(self) -> Scalar:
        return self.choices[0]

    def sample(self, rng: random.Random) -> Scalar:
        return rng.choice(self.choices)

    def contains(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)


AnyDimension = Union[IntDimension, RealDimension, CategoricalDimension]


@attrs.frozen
class SearchSpace:
    """An ordered set of dimensions, some conditional on others.

    Order matters: a conditional dimension must come after the dimensions it depends on, so
    sampling and activity checks run in one pass.
    """

    dimensions: tuple[AnyDimension, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        seen: set[str] = set()
        for dim in self.dimensions:
            if dim.name in seen:
                raise ValueError(f"dimension {dim.name!r} is defined twice")
            for parent in dim.active_if:
                if parent not in seen:
                    raise ValueError(f"dimension {dim.name!r} depends on {parent!r}, which must come before it")
            seen.add(dim.name)

    def __iter__(self) -> Iterator[AnyDimension]:
        return iter(self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    def __getitem__(self, name: str) -> AnyDimension:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def active_dimensions(self, values: Mapping[str, Scalar]) -> list[AnyDimension]:
        """The dimensions that matter for ``values`` (conditions evaluated in order)."""
        active: dict[str, Scalar] = {}
        result = []
        for dim in self.dimensions:
            if all(p in active and active[p] in allowed for p, allowed in dim.active_if.items()):
                result.append(dim)
                if dim.name in values:
                    active[dim.name] = values[dim.name]
        return result

    def canonicalize(self, vector: ArchitectureVector | Mapping[str, Scalar]) -> ArchitectureVector:
        """Set every inactive dimension to its default, so equal architectures have equal vectors."""
        values = dict(vector.values if isinstance(vector, ArchitectureVector) else vector)
        active = {d.name for d in self.active_dimensions(values)}
        return ArchitectureVector({d.name: values[d.name] if d.name in active else d.default() for d in self.dimensions})

    def sample(self, rng: random.Random) -> ArchitectureVector:
        """Draw one vector uniformly per active dimension."""
        values: dict[str, Scalar] = {}
        active: set[str] = set()
        for dim in self.dimensions:
            if all(p in active and values[p] in allowed for p, allowed in dim.active_if.items()):
                values[dim.name] = dim.sample(rng)
                active.add(dim.name)
            else:
                values[dim.name] = dim.default()
        return ArchitectureVector(values)

    def violations(self, vector: ArchitectureVector) -> list[str]:
        """Why ``vector`` is not a point of this space (empty when it is)."""
        problems = [f"unknown dimension {k!r}" for k in vector.values if k not in self.names]
        for dim in self.active_dimensions(vector.values):
            if dim.name not in vector.values:
                problems.append(f"missing dimension {dim.name!r}")
            elif not dim.contains(vector.values[dim.name]):
                problems.append(f"{dim.name}={vector.values[dim.name]!r} is outside {describe_dimension(dim)}")
        return problems

    def contains(self, vector: ArchitectureVector) -> bool:
        return not self.violations(vector)

    def member(self, vector: ArchitectureVector | Mapping[str, Scalar]) -> ArchitectureVector | None:
        """``vector`` in canonical form, or None when it is not a point of this space (a vector of
        another space, say, replayed into a strategy)."""
        try:
            canonical = self.canonicalize(vector)
        except (KeyError, TypeError, ValueError):
            return None
        return canonical if self.contains(canonical) else None


def describe_dimension(dim: AnyDimension) -> str:
    """A short human description of a dimension's domain."""
    if isinstance(dim, CategoricalDimension):
        return "{" + ", ".join(map(str, dim.choices)) + "}"
    return f"[{dim.low}, {dim.high}]"


# --------------------------------------------------------------------------------------------
# Training, trials and experiments
# --------------------------------------------------------------------------------------------


@attrs.frozen
class TrainingSettings:
    """How every trial is trained. Part of the reuse key: a result trained differently is not reused."""

    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 1e-2
    epochs: int = 30
    batch_size: int = 64
    patience: int = 5
    val_fraction: float = 0.15
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        checks = [("learning_rate", self.learning_rate > 0, "must be positive"), ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
                  ("epochs", self.epochs >= 1, "must be at least 1"), ("batch_size", self.batch_size >= 2, "must be at least 2"),
                  ("patience", self.patience >= 1, "must be at least 1"), ("val_fraction", 0 < self.val_fraction < 1, "must be in (0, 1)")]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, got {getattr(self, name)}")

    def settings_hash(self) -> str:
        return stable_hash(converter.unstructure(self))


class TrialStatus(str, enum.Enum):
    """Life cycle of a trial. ``running`` rows left by a crash become ``interrupted`` on resume."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INVALID = "invalid"
    INTERRUPTED = "interrupted"


class ErrorClass(str, enum.Enum):
    """Why a trial did not complete; stored with the trial so failures can be counted by cause."""

    CONSTRAINT = "constraint_violation"
    INVALID_CODE = "invalid_code"
    IMPORT = "import_error"
    SHAPE = "shape_mismatch"
    NAN_LOSS = "nan_loss"
    RUNTIME = "runtime_error"
    TIMEOUT = "timeout"
    CRASH = "crash"


@attrs.frozen
class ExperimentError:
    """A failure with a class (for counting) and a message (for people)."""

    error_class: ErrorClass
    message: str


@attrs.frozen
class TrialResult:
    """What a runner reports for one trial. ``error`` is set exactly when the trial failed."""

    metrics: Mapping[str, float] = attrs.field(factory=dict)
    error: ExperimentError | None = None
    weights_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, error_class: ErrorClass, message: str) -> TrialResult:
        return cls(error=ExperimentError(error_class, message))


@attrs.frozen
class CodeGenAttempt:
    """One call to a code generator, kept with the trial for audit.

    ``stage`` is where the attempt ended: ``accepted``, ``provider`` (the call itself failed:
    connection, timeout, circuit open), ``extract`` (no code in the answer), ``validate`` (the
    static allow-list), ``probe`` (instantiate/forward in a sandboxed subprocess) or ``fidelity``
    (the module does not match the spec). ``prompt`` is the chat sent, one ``role: content`` block
    per message.
    """

    provider: str
    stage: str
    prompt: str = ""
    response: str = ""
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@attrs.frozen
class CodeGenRecord:
    """How a trial's code was written: by whom, with which model and prompt template version,
    whether it came from the cache, and every attempt on the way. ``cache_key`` identifies
    (spec, input shape, classes, provider, model, template version)."""

    provider: str
    model: str = ""
    template_version: str = ""
    cache_key: str | None = None
    cached: bool = False
    fallback: bool = False
    attempts: tuple[CodeGenAttempt, ...] = ()


@attrs.define
class Trial:
    """One architecture evaluated within an experiment (mutable: it moves through its life cycle)."""

    experiment: str
    number: int
    vector: ArchitectureVector
    spec: ArchitectureSpec | None = None
    status: TrialStatus = TrialStatus.PENDING
    code: str | None = None
    result: TrialResult | None = None
    reused_from: int | None = None
    reuse_key: str | None = None
    codegen: CodeGenRecord | None = None
    id: int | None = None

    @property
    def spec_hash(self) -> str | None:
        return self.spec.canonical_hash() if self.spec is not None else None


@attrs.define
class Experiment:
    """A named search. ``config`` is the composed configuration it was started with."""

    name: str
    task: str
    config: Mapping[str, Any] = attrs.field(factory=dict)
    id: int | None = None


def reuse_key(spec: ArchitectureSpec, task: str, training: TrainingSettings) -> str:
    """The identity under which a finished result may be reused: architecture, task, training."""
    return stable_hash([spec.canonical_hash(), task, training.settings_hash()])



@attrs.frozen
class StrategySnapshot:
    """A search strategy's learnt state at one moment of an experiment, so a resume restores it
    and tells the strategy only the trials finished after it instead of replaying the whole
    history (at 100,000 trials the replay, not the search, was the resume's start-up time).

    ``strategy`` identifies the strategy and everything that shapes it (class, settings, seed,
    metric, direction): a resume with other ones ignores the snapshot and replays. Every trial
    of the experiment with an id up to ``told_through`` had been told to the strategy; ``told``
    holds the ids above it that had been told too (trials that finished while an older one was
    still running), as sorted inclusive ``(first, last)`` ranges. ``state`` is the strategy's own
    :meth:`~neuromosaic_core.interfaces.SearchStrategy.state_dict`, JSON-able.
    """

    strategy: str
    told_through: int
    told: tuple[tuple[int, int], ...]
    state: Mapping[str, Any]


def id_ranges(ids: Iterator[int] | set[int] | list[int]) -> tuple[tuple[int, int], ...]:
    """Sorted inclusive ``(first, last)`` ranges covering exactly ``ids``: 100,000 ids of one
    experiment are a handful of ranges, since trials are told roughly in id order."""
    ranges: list[list[int]] = []
    for i in sorted(ids):
        if ranges and i <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], i)
        else:
            ranges.append([i, i])
    return tuple((a, b) for a, b in ranges)


def expand_ranges(ranges: tuple[tuple[int, int], ...] | list[list[int]]) -> set[int]:
    """The ids :func:`id_ranges` compressed."""
    return {i for first, last in ranges for i in range(first, last + 1)}
