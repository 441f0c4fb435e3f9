"""Neuromosaic plugin: the ``local`` runner (each trial sandboxed on this machine)."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.settings import RunnerSettings

__version__ = "0.2.0"


def _positive_or_none(_instance: Any, attribute: Any, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer or null (no limit), got {value}")


@attrs.frozen
class LocalRunnerSettings(RunnerSettings):
    """``workers``: trials at once (an integer or ``auto`` = the CPUs this process may use);
    ``timeout``: seconds per trial before everything it started is killed; ``device``: ``auto``,
    ``cpu`` or ``cuda:N``; ``python``: the interpreter running the harness (empty = the current one);
    ``mode``: ``fresh`` (a new sandboxed process per trial, the stricter choice) or ``pool`` (warm
    sandboxed workers that import torch once and fork a fresh child per trial); ``isolation``:
    ``auto`` (bubblewrap where installed), ``bubblewrap`` (required) or ``process-group``;
    ``memory_mb``, ``cpu_seconds``, ``processes``, ``file_size_mb``, ``output_mb``: per-trial limits
    (``null`` = none)."""

    python: str = ""
    mode: Literal["fresh", "pool"] = "fresh"
    isolation: Literal["auto", "bubblewrap", "process-group"] = "auto"
    memory_mb: int | None = attrs.field(default=4096, validator=_positive_or_none)
    cpu_seconds: int | None = attrs.field(default=None, validator=_positive_or_none)
    processes: int | None = attrs.field(default=256, validator=_positive_or_none)
    file_size_mb: int | None = attrs.field(default=512, validator=_positive_or_none)
    output_mb: int | None = attrs.field(default=16, validator=_positive_or_none)


def _factory(settings: LocalRunnerSettings) -> Any:
    from neuromosaic_runner_local.runner import LocalRunner

    return LocalRunner(settings)


@hookimpl
def register_runners(register: Any) -> None:
    register("local", _factory, settings=LocalRunnerSettings,
             description="each trial sandboxed (bubblewrap: read-only root, no network, unprivileged uid, rlimits), "
                         "a fresh process per trial or warm fork-server workers")
