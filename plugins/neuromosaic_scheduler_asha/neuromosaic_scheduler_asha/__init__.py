"""Neuromosaic plugin: the ``asha`` and ``hyperband`` trial schedulers (successive halving).

Cheap to import: the schedulers live in :mod:`neuromosaic_scheduler_asha.halving`, imported by
the factories; DEAP (multi-objective ranking) only when a rung is ranked on several objectives.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.settings import SettingValueError

__version__ = "0.1.0"

_DIRECTIONS = {"min": False, "minimize": False, "max": True, "maximize": True}


def parse_objective(spec: str) -> tuple[str, bool | None]:
    """``"params:min"`` -> ``("params", False)``; ``"params"`` -> ``("params", None)`` (the
    direction follows from the name: see :func:`neuromosaic_core.analysis.is_maximized`). Raises
    a ValueError naming the setting for anything else."""
    name, sep, direction = str(spec).partition(":")
    name = name.strip()
    if not name:
        raise SettingValueError("objectives", f"entry {spec!r} names no metric (write name, name:min or name:max)")
    if not sep:
        return name, None
    if direction.strip() not in _DIRECTIONS:
        raise SettingValueError("objectives", f"entry {spec!r} has direction {direction!r}; use min or max (e.g. params:min)")
    return name, _DIRECTIONS[direction.strip()]


@attrs.frozen
class AshaSettings:
    """``min_epochs``: the lowest rung is the smallest ``max_epochs / reduction_factor**k`` of at
    least this many epochs; ``reduction_factor`` (eta): a rung promotes its top 1/eta;
    ``max_epochs``: the top rung (null: ``training.epochs``; fewer caps every trial there);
    ``objectives``: extra metrics a rung ranks on besides the learning curve (``name``,
    ``name:min`` or ``name:max``), by non-dominated sorting."""

    #: 1 (rungs 1, 3, 10, 30 with 30 epochs): on MNIST-1D it assessed 4.6x the architectures of
    #: full training in 5 minutes with a higher best test accuracy, where 3 gave 2.5x
    #: (docs/benchmarks.md, "Multi-fidelity"); Ray Tune's ASHA starts at 1 too.
    min_epochs: int = 1
    reduction_factor: int = 3
    max_epochs: int | None = None
    objectives: list[str] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.min_epochs < 1:
            raise SettingValueError("min_epochs", f"must be at least 1, got {self.min_epochs}")
        if self.reduction_factor < 2:
            raise SettingValueError("reduction_factor", f"must be at least 2, got {self.reduction_factor}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise SettingValueError("max_epochs", f"must be at least 1 (or null: training.epochs), got {self.max_epochs}")
        names = [parse_objective(spec)[0] for spec in self.objectives]
        if len(set(names)) < len(names):
            raise SettingValueError("objectives", f"a metric is listed twice in {list(self.objectives)}")


@attrs.frozen
class HyperbandSettings(AshaSettings):
    """The same settings as ``asha``; each bracket starts ``min_epochs`` one rung higher. Its
    ``min_epochs`` is 3: the brackets hedge against early scores that mislead, and from 1 epoch
    they would spread trials over four brackets instead of three."""

    min_epochs: int = 3


def _top(settings: AshaSettings, max_epochs: int) -> int:
    if settings.max_epochs is not None and settings.max_epochs > max_epochs:
        raise ConfigError(f"scheduler.max_epochs: {settings.max_epochs} is above training.epochs={max_epochs}; "
                          "lower it or raise training.epochs")
    return settings.max_epochs or max_epochs


def asha_factory(settings: AshaSettings | None, max_epochs: int, metric: str, maximize: bool) -> Any:
    from neuromosaic_scheduler_asha.halving import AshaScheduler

    settings = settings if settings is not None else AshaSettings()
    return AshaScheduler(max_epochs, metric, maximize, min_epochs=settings.min_epochs,
                         reduction_factor=settings.reduction_factor, top=_top(settings, max_epochs),
                         objectives=[parse_objective(s) for s in settings.objectives])


def hyperband_factory(settings: HyperbandSettings | None, max_epochs: int, metric: str, maximize: bool) -> Any:
    from neuromosaic_scheduler_asha.halving import HyperbandScheduler

    settings = settings if settings is not None else HyperbandSettings()
    return HyperbandScheduler(max_epochs, metric, maximize, min_epochs=settings.min_epochs,
                              reduction_factor=settings.reduction_factor, top=_top(settings, max_epochs),
                              objectives=[parse_objective(s) for s in settings.objectives])


@hookimpl
def register_schedulers(register: Any) -> None:
    register("asha", asha_factory, settings=AshaSettings,
             description="asynchronous successive halving: rungs at max/eta^k epochs promote their top 1/eta")
    register("hyperband", hyperband_factory, settings=HyperbandSettings,
             description="asynchronous Hyperband: trials spread over ASHA brackets with later first rungs")
