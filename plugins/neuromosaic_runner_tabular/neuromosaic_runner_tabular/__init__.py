"""Neuromosaic plugin: the ``tabular`` runner (a trial is a lookup in a NAS-Bench-201 table) and
the ``nasbench201`` task it goes with.

Only hook implementations and settings live here, so discovering the plugin stays cheap; the
runner and the task are imported when the components are built.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.settings import RunnerSettings, Workers

__version__ = "0.1.0"


@attrs.frozen
class TabularSettings(RunnerSettings):
    """``table``: the benchmark's JSON file (a relative path is relative to the current
    directory); ``workers``: lookups at once (default 1: a lookup is instant, and a sequential
    strategy learns most from one result at a time); ``timeout`` is unused."""

    workers: Workers = 1
    table: str = ""


@attrs.frozen
class NasBench201TaskSettings:
    """Nothing to set: the data set (CIFAR-10) is fixed by the table. The empty class makes
    ``task.<anything>=...`` fail as an unknown key."""


def _runner_factory(settings: TabularSettings | None) -> Any:
    from neuromosaic_runner_tabular.runner import TabularRunner

    return TabularRunner(settings if settings is not None else TabularSettings())


def _task_factory(settings: NasBench201TaskSettings | None) -> Any:
    from neuromosaic_runner_tabular.task import NasBench201Task

    return NasBench201Task(settings)


@hookimpl
def register_runners(register: Any) -> None:
    register("tabular", _runner_factory, settings=TabularSettings,
             description="looks each NAS-Bench-201 cell up in a table (runner.table) instead of training it")


@hookimpl
def register_tasks(register: Any) -> None:
    register("nasbench201", _task_factory, settings=NasBench201TaskSettings,
             description="CIFAR-10 as NAS-Bench-201 measured it (3x32x32, 10 classes); use with runner=tabular")
