"""Neuromosaic plugin: the ``ray`` runner (each trial a Ray task on a cluster).

Cheap to import: Ray itself is imported by :mod:`neuromosaic_runner_ray.runner`, when a runner is
built.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.settings import RunnerSettings

__version__ = "0.1.3"


def _at_least(minimum: float) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: float) -> None:
        if value < minimum:
            raise ValueError(f"{attribute.name} must be at least {minimum:g}, got {value:g}")

    return check


@attrs.frozen
class RayRunnerSettings(RunnerSettings):
    """``address``: the cluster to join (``host:port`` of a head started with ``ray start --head``,
    or ``auto``); empty starts a private local cluster for the search. ``num_cpus``/``num_gpus``:
    Ray resources each trial requests. ``max_retries``: how often a trial is re-run when its Ray
    worker or node dies. ``workers``: trials submitted at once (``auto``: what the cluster's CPUs
    and GPUs hold at ``num_cpus``/``num_gpus`` each). ``timeout``: seconds per trial.
    ``memory_mb``: address-space limit of each trial process. ``processes``: processes and threads a
    trial may hold at once (more stops it at once: a fork bomb); the kernel's backstop, RLIMIT_NPROC
    of the sandbox user, which every trial on a node shares, is twice that. ``temp_dir``: Ray's session
    directory for a local cluster (empty: Ray's default, ``/tmp/ray``)."""

    address: str = ""
    num_cpus: float = attrs.field(default=1.0, validator=_at_least(0))
    num_gpus: float = attrs.field(default=0.0, validator=_at_least(0))
    max_retries: int = attrs.field(default=1, validator=_at_least(0))
    memory_mb: int = attrs.field(default=4096, validator=_at_least(256))
    processes: int = attrs.field(default=1024, validator=_at_least(16))
    temp_dir: str = ""


def _factory(settings: RayRunnerSettings) -> Any:
    from neuromosaic_runner_ray.runner import RayRunner

    return RayRunner(settings)


@hookimpl
def register_runners(register: Any) -> None:
    register("ray", _factory, settings=RayRunnerSettings,
             description="each trial a Ray task on a cluster (runner.address) or a local one; lost workers are retried")
