"""The ``Sweeper`` Hydra discovers; the work is in :mod:`._impl`, imported when a sweep starts."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class NeuromosaicSweeper(Sweeper):
    """Runs a Neuromosaic search over the sweep's overrides: the strategy proposes each job's
    values, the app's return value is the objective, and every trial is stored in the results
    database (``neuromosaic-results`` reads it; a rerun resumes)."""

    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.neuromosaic_sweeper._impl import NeuromosaicSweeperImpl

        self.sweeper = NeuromosaicSweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
