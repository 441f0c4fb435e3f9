"""Neuromosaic plugin: the ``local`` runner (one process per trial)."""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.settings import RunnerSettings

__version__ = "0.1.0"


@attrs.frozen
class LocalRunnerSettings(RunnerSettings):
    """``workers``: trials at once (an integer or ``auto`` = the CPUs this process may use);
    ``timeout``: seconds per trial before its process group is killed; ``python``: the interpreter
    running the harness (empty = the current one)."""

    python: str = ""


def _factory(settings: LocalRunnerSettings) -> Any:
    from neuromosaic_runner_local.runner import LocalRunner

    return LocalRunner(settings)


@hookimpl
def register_runners(register: Any) -> None:
    register("local", _factory, settings=LocalRunnerSettings,
             description="each trial in a separate Python process, killed with its process group on timeout")
