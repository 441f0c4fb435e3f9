"""Neuromosaic plugin: the ``median`` and ``curve`` trial schedulers (early stopping at
milestones: the median rule, learning-curve extrapolation).

Cheap to import: the schedulers live in :mod:`neuromosaic_scheduler_median.median` and
:mod:`neuromosaic_scheduler_median.curve`, imported by the factories; numpy and scipy only when
a curve is fitted.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.settings import SettingValueError

__version__ = "0.1.0"


def _at_least(settings: Any, names: tuple[str, ...], low: int) -> None:
    for name in names:
        if getattr(settings, name) < low:
            raise SettingValueError(name, f"must be at least {low}, got {getattr(settings, name)}")


@attrs.frozen
class MedianSettings:
    """``grace_epochs``: the first milestone (nothing is stopped before); ``interval``: epochs
    between milestones; ``min_trials``: other trials with a value at a milestone before the
    median rule stops anything there."""

    grace_epochs: int = 5
    interval: int = 5
    min_trials: int = 5

    def __attrs_post_init__(self) -> None:
        _at_least(self, ("grace_epochs", "interval", "min_trials"), 1)


@attrs.frozen
class CurveSettings:
    """``grace_epochs``: the first milestone (a fit needs 4 epochs of curve); ``interval``: epochs
    between milestones; ``margin``: optimism in score units added to each prediction before it is
    compared with the best; ``min_full``: full-fidelity results needed before anything is
    stopped."""

    grace_epochs: int = 5
    interval: int = 5
    margin: float = 0.0
    min_full: int = 1

    def __attrs_post_init__(self) -> None:
        _at_least(self, ("grace_epochs", "interval", "min_full"), 1)
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise SettingValueError("margin", f"must be a finite number of at least 0 (score units), got {self.margin}")


def median_factory(settings: MedianSettings | None, max_epochs: int, metric: str, maximize: bool) -> Any:
    from neuromosaic_scheduler_median.median import MedianScheduler

    settings = settings if settings is not None else MedianSettings()
    return MedianScheduler(max_epochs, metric, maximize, grace_epochs=settings.grace_epochs, interval=settings.interval,
                           min_trials=settings.min_trials)


def curve_factory(settings: CurveSettings | None, max_epochs: int, metric: str, maximize: bool) -> Any:
    from neuromosaic_scheduler_median.curve import CurveScheduler

    settings = settings if settings is not None else CurveSettings()
    return CurveScheduler(max_epochs, metric, maximize, grace_epochs=settings.grace_epochs, interval=settings.interval,
                          margin=settings.margin, min_full=settings.min_full)


@hookimpl
def register_schedulers(register: Any) -> None:
    register("median", median_factory, settings=MedianSettings,
             description="median stopping rule: stop a trial worse than the median of the others at a milestone")
    register("curve", curve_factory, settings=CurveSettings,
             description="learning-curve extrapolation: stop a trial whose fitted curve cannot beat the best")
