"""Typed settings: the core's own sections and the base classes of component settings.

The composed Hydra config is structured into these attrs classes with a strict cattrs converter,
so a wrong key or type fails before any work starts, with one line naming the key, the bad
value and what is valid.
"""

from __future__ import annotations

import math
import os
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError

from neuromosaic_core.constraints import Constraints
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.model import TrainingSettings, converter

Workers = Union[int, Literal["auto"]]
KeepWeights = Union[int, Literal["all"]]


def _check_device(_instance: Any, _attribute: Any, value: str) -> None:
    if value in ("auto", "cpu") or re.fullmatch(r"cuda:\d+", value):
        return
    raise ValueError(f"device must be auto, cpu or cuda:N (cuda:0 is the first GPU), got {value!r}")


class SettingValueError(ValueError):
    """A value out of range, naming its key, so the one-line error reads ``runner.workers: ...``
    rather than ``runner: workers ...``."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key} {reason}")
        self.key, self.reason = key, reason


def _check_workers(_instance: Any, _attribute: Any, value: Workers) -> None:
    if value != "auto" and int(value) < 1:
        raise SettingValueError("workers", f"must be at least 1 or 'auto', got {value}")


def _check_timeout(_instance: Any, _attribute: Any, value: float) -> None:
    if not math.isfinite(value):
        raise SettingValueError("timeout", f"must be a finite number of seconds, got {value}")
    if value <= 0:
        raise SettingValueError("timeout", f"must be above 0 seconds, got {value}")


def check_runner_settings(settings: RunnerSettings) -> None:
    """Raise :class:`SettingValueError` for a ``workers`` or ``timeout`` no runner can honour.

    The fields' validators do this for :class:`RunnerSettings` itself, but a plugin that
    redeclares a field (the tabular runner's ``workers = 1``) replaces its validator too, so
    :func:`structure_settings` runs this on every runner's settings as well."""
    _check_workers(settings, None, settings.workers)
    _check_timeout(settings, None, settings.timeout)


@attrs.frozen
class RunnerSettings:
    """Base of every runner's settings: how many trials at once (at least 1, or ``auto``), the
    per-trial time limit in seconds (above 0), and the device trials train on: ``auto`` (a GPU
    when the trial's machine has one, else the CPU), ``cpu`` or ``cuda:N``."""

    workers: Workers = attrs.field(default="auto", validator=_check_workers)
    timeout: float = attrs.field(default=600.0, validator=_check_timeout)
    device: str = attrs.field(default="auto", validator=_check_device)

    def resolved_workers(self) -> int:
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return int(self.workers)


@attrs.frozen
class StorageSettings:
    """Base of every storage backend's settings: where the database is, as a URL."""

    url: str = "sqlite:///neuromosaic.db"


@attrs.frozen
class MetaSettings:
    """Base of every meta-learner's settings: what the orchestrator does with it besides
    pre-screening (``search.prescreen``).

    ``warm_start``: fit the surrogate on the earlier experiments of the database run on the same
    task and propose their best ``warm_start_top`` architectures first; ``warm_start_experiments``
    restricts that to the experiments named (and turns warm start on). ``recommendations``: how
    many untried architectures the end-of-run recommendations list (0: none)."""

    warm_start: bool = False
    warm_start_experiments: list[str] = attrs.field(factory=list)
    warm_start_top: int = 5
    recommendations: int = 5

    def __attrs_post_init__(self) -> None:
        if self.warm_start_top < 1:
            raise ValueError(f"warm_start_top must be at least 1, got {self.warm_start_top}")
        if self.recommendations < 0:
            raise ValueError(f"recommendations must be at least 0, got {self.recommendations}")

    @property
    def warm_starts(self) -> bool:
        return self.warm_start or bool(self.warm_start_experiments)


@attrs.frozen
class ExperimentSettings:
    name: str
    seed: int = 0


@attrs.frozen
class SearchSettings:
    """``trials`` counts completed trials; the search stops early after ``max_failures``
    consecutive failed or invalid trials."""

    trials: int = 40
    max_failures: int = 10
    #: None (``null`` in conf/config.yaml): the task's metric; :func:`neuromosaic_core.config.resolve`
    #: fills both in, so a resolved config always names them.
    metric: str | None = "val_accuracy"
    #: None: the task's direction for the task's metric, else guessed from the metric's name
    #: (loss, error, rmse, latency, ... are minimised).
    direction: Literal["maximize", "minimize"] | None = "maximize"
    top_k: int = 5
    codegen_attempts: int = 3
    #: Reuse a finished twin's result (same architecture, task and training settings) found in
    #: this experiment (``experiment``), in any experiment of the database (``all``), or never.
    reuse: Literal["experiment", "all", "none"] = "experiment"
    #: Pre-screening factor k: with a meta-learner selected (``meta=surrogate``) and k > 1, the
    #: strategy is asked for k candidates per free slot and only the ones the surrogate ranks best
    #: are trained. 1 (the default) trains every suggestion.
    prescreen: int = 1
    #: Store the strategy's state every this many finished trials (and at the end), so a resume
    #: restores it and replays only the trials after it; 0 never does (a resume replays all).
    #: Only strategies that implement ``state_dict`` take snapshots.
    snapshot_every: int = 100
    #: Wall-clock seconds for the search (None: no limit): after it no trial starts (nor is
    #: promoted); trials running finish their current segment, paused ones stay paused.
    time_budget: float | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("trials", "max_failures", "top_k", "codegen_attempts", "prescreen"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.snapshot_every < 0:
            raise ValueError(f"snapshot_every must be 0 (never) or more, got {self.snapshot_every}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be a positive number of seconds (or null), got {self.time_budget}")


@attrs.frozen
class HarnessSettings:
    """``keep_weights``: ``all`` keeps every completed trial's weights, an integer k only the best k."""

    keep_weights: KeepWeights = "all"

    def __attrs_post_init__(self) -> None:
        if self.keep_weights != "all" and int(self.keep_weights) < 1:
            raise ValueError(f"keep_weights must be 'all' or at least 1, got {self.keep_weights}")


@attrs.frozen
class LogSettings:
    json: bool = False
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"


@attrs.frozen
class EncryptionSettings:
    """Encryption at rest (docs/security.md). ``enabled``: encrypt trial code, code-generation
    prompts and responses, and the run directory's code, weights and code history. ``key_file``: a
    file holding the key (``neuromosaic-results keygen`` writes one); ``$NEUROMOSAIC_ENCRYPTION_KEY``
    (the key itself) or ``$NEUROMOSAIC_ENCRYPTION_KEY_FILE`` take precedence. The key is never
    part of the config and never stored beside the data."""

    enabled: bool = False
    key_file: str = ""


@attrs.frozen
class CoreSettings:
    """Everything in the composed config that is not a component node."""

    experiment: ExperimentSettings
    search: SearchSettings = attrs.field(factory=SearchSettings)
    training: TrainingSettings = attrs.field(factory=TrainingSettings)
    constraints: Constraints = attrs.field(factory=Constraints)
    harness: HarnessSettings = attrs.field(factory=HarnessSettings)
    log: LogSettings = attrs.field(factory=LogSettings)
    encryption: EncryptionSettings = attrs.field(factory=EncryptionSettings)
    visualizers: list[str] = attrs.field(factory=list)
    debug: bool = False


# -- strict converter ----------------------------------------------------------------------


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None


def _strict_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"expected true or false, got {value!r}")


def _strict_str(value: Any, _: type) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value)


def _int_or_literal(value: Any, cls: Any) -> Any:
    literal = next(a for a in typing.get_args(cls) if typing.get_origin(a) is Literal)
    word = typing.get_args(literal)[0]
    if value == word:
        return word
    try:
        return _strict_int(value, int)
    except ValueError:
        raise ValueError(f"expected an integer or {word!r}, got {value!r}") from None


config_converter = cattrs.Converter(forbid_extra_keys=True)
config_converter.register_structure_hook(int, _strict_int)
config_converter.register_structure_hook(float, _strict_float)
config_converter.register_structure_hook(bool, _strict_bool)
config_converter.register_structure_hook(str, _strict_str)
config_converter.register_structure_hook(Union[str, None], lambda v, _: None if v is None else _strict_str(v, str))
for _union in (Workers, KeepWeights):
    config_converter.register_structure_hook(_union, _int_or_literal)


def _describe(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        valid = ", ".join(a.name for a in attrs.fields(exc.cl)) or "none"
        return f"unknown key {', '.join(sorted(exc.extra_fields))!r} (valid keys: {valid})"
    if isinstance(exc, KeyError):
        return "required key is missing"
    if typing.get_origin(_type) is Literal:
        value = str(exc).split(" not in literal")[0]
        return f"expected one of {', '.join(map(str, typing.get_args(_type)))}, got {value!r}"
    return str(exc) or type(exc).__name__


def _setting_value_error(exc: BaseException) -> SettingValueError | None:
    """The :class:`SettingValueError` raised while building the top-level class, if that is what
    failed (cattrs wraps it in a one-exception group)."""
    if isinstance(exc, SettingValueError):
        return exc
    if isinstance(exc, cattrs.ClassValidationError) and len(exc.exceptions) == 1:
        inner = exc.exceptions[0]
        return inner if isinstance(inner, SettingValueError) else None
    return None


def structure_settings(data: Mapping[str, Any] | None, cls: type, path: str) -> Any:
    """Structure ``data`` into ``cls``; raise :class:`ConfigError` naming the first bad key."""
    try:
        settings = config_converter.structure(dict(data or {}), cls)
        if isinstance(settings, RunnerSettings):
            check_runner_settings(settings)
        return settings
    except Exception as exc:  # cattrs raises exception groups; flatten them into one line
        keyed = _setting_value_error(exc)
        if keyed is not None:  # a field validator of `cls` itself: name the field
            raise ConfigError(f"{path + '.' if path else ''}{keyed.key}: {keyed.reason}") from None
        if isinstance(exc, (cattrs.BaseValidationError,)):
            messages = cattrs.transform_error(exc, path="$", format_exception=_describe)
            first = messages[0]
            msg, _, where = first.rpartition(" @ ")
            key = where.replace("$", path, 1).lstrip(".").replace("[", ".").replace("]", "")
            if msg.startswith("unknown key"):
                bad = msg.split("'")[1]
                raise ConfigError(f"{key + '.' if key else ''}{bad}: {msg}") from None
            raise ConfigError(f"{key}: {msg}") from None
        raise ConfigError(f"{path}: {exc}") from None


def settings_nodes(system: Any, kind: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The config node (settings with their defaults) of each named component of ``kind`` (from
    ``system``, a :class:`~neuromosaic_core.plugins.PluginSystem`) that has settings: what
    ``alerts.<channel>.*`` and ``tracker.<name>.*`` are composed from."""
    nodes = {}
    for name in names:
        settings = system.get(kind, name).default_settings()
        if settings is not None:
            nodes[name] = converter.unstructure(settings)
    return nodes


def redact_secret_settings(node: dict[str, Any] | None, system: Any, kind: str,
                           names: Iterable[str]) -> dict[str, Any] | None:
    """A copy of ``node`` (a dict of per-component settings nodes) with each named component's
    secret settings (registration metadata ``secret``: field names, e.g. a URL that embeds a
    token, or request headers) replaced by ``***``: the configuration stored with an experiment
    and handed to observers must not keep them."""
    if not node:
        return node
    node = dict(node)
    for name in names:
        settings = node.get(name)
        if not isinstance(settings, dict):
            continue
        settings = node[name] = dict(settings)
        for field in system.get(kind, name).metadata.get("secret", ()):
            value = settings.get(field)
            if isinstance(value, dict):
                settings[field] = {key: "***" for key in value}
            elif value:
                settings[field] = "***"
    return node


def structure_settings_nodes(system: Any, kind: str, names: Iterable[str], nodes: dict[str, Any],
                             prefix: str) -> list[tuple[Any, Any]]:
    """Each named component of ``kind`` with its settings structured from ``nodes[name]`` (its
    defaults where absent; None without a settings class). A bad key or value raises
    :class:`~neuromosaic_core.errors.ConfigError` naming ``<prefix>.<name>.<key>``."""
    structured = []
    for name in names:
        component = system.get(kind, name)
        settings = None
        if component.settings is not None:
            settings = structure_settings(nodes.get(name) or {}, component.settings, f"{prefix}.{name}")
        structured.append((component, settings))
    return structured
