"""Contract test suites for plugin authors: subclass them in your own tests, as with optuna.testing.

    from neuromosaic_core.testing import StrategyContract

    class TestMyStrategy(StrategyContract):
        def make_strategy(self, space, seed):
            return MyStrategy(space, seed=seed)

The suites import pytest (and hypothesis, for encoders) only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUITES = {
    "StrategyContract": "neuromosaic_core.testing.strategy",
    "EncoderContract": "neuromosaic_core.testing.encoder",
    "CodeGenContract": "neuromosaic_core.testing.codegen",
    "StorageContract": "neuromosaic_core.testing.storage",
    "InMemoryResultsDB": "neuromosaic_core.testing.memory",
    "SchedulerContract": "neuromosaic_core.testing.scheduler",
    "TrackerContract": "neuromosaic_core.testing.tracker",
}
__all__ = list(_SUITES)


def __getattr__(name: str) -> Any:
    if name in _SUITES:
        return getattr(importlib.import_module(_SUITES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
