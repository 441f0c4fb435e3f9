"""Neuromosaic plugin: the ``local`` runner (each trial sandboxed on this machine)."""

from __future__ import annotations

from typing import Any, Literal, Union

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.settings import RunnerSettings, _int_or_literal, config_converter

__version__ = "0.3.2"


def _positive_or_none(_instance: Any, attribute: Any, value: int | str | None) -> None:
    if value is not None and value != "auto" and value < 1:  # type: ignore[operator]
        raise ValueError(f"{attribute.name} must be a positive integer or null (no limit), got {value}")


#: ``runner.cpu_seconds``: seconds, ``auto`` (derived from the timeout) or null (no limit).
CpuSeconds = Union[int, Literal["auto"], None]
config_converter.register_structure_hook(
    CpuSeconds, lambda value, _: None if value is None else _int_or_literal(value, Union[int, Literal["auto"]]))


@attrs.frozen
class LocalRunnerSettings(RunnerSettings):
    """``workers``: trials at once (an integer or ``auto`` = the CPUs this process may use);
    ``timeout``: seconds per trial before everything it started is killed; ``device``: ``auto``,
    ``cpu`` or ``cuda:N``; ``python``: the interpreter running the harness (empty = the current one);
    ``mode``: ``pool`` (the default: warm sandboxed workers that import torch once and fork a fresh
    child per trial, each with an empty private /tmp and HOME) or ``fresh`` (a new sandboxed process
    per trial; ``python`` may then be any program that takes ``-m MODULE ARGS``); ``isolation``:
    ``auto`` (bubblewrap where installed), ``bubblewrap`` (required) or ``process-group``;
    ``memory_mb``, ``cpu_seconds``, ``processes``, ``file_size_mb``, ``output_mb``: per-trial limits
    (``null`` = none). ``cpu_seconds``: all the trial's processes together; ``auto`` = 1.25 x the
    timeout + 5 s (:func:`neuromosaic_core.sandbox.default_cpu_seconds`). ``processes``: processes
    and threads a trial may hold at once (torch with one intra-op thread needs one; a pool trial
    shares nothing with the count of its worker); more stops the trial at once (a fork bomb)."""

    python: str = ""
    mode: Literal["fresh", "pool"] = "pool"
    isolation: Literal["auto", "bubblewrap", "process-group"] = "auto"
    memory_mb: int | None = attrs.field(default=4096, validator=_positive_or_none)
    cpu_seconds: CpuSeconds = attrs.field(default="auto", validator=_positive_or_none)
    processes: int | None = attrs.field(default=32, validator=_positive_or_none)
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
