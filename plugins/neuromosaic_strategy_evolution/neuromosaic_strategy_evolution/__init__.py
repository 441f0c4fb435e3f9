"""Neuromosaic plugin: the ``evolution`` search strategy (aging evolution, or NSGA-II).

Cheap to import: the strategy itself lives in :mod:`neuromosaic_strategy_evolution.search` (which
imports DEAP); the settings are checked by :mod:`neuromosaic_strategy_evolution.objectives`.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_strategy_evolution.objectives import check_settings

__version__ = "0.3.0"


@attrs.frozen
class EvolutionSettings:
    """``mode``: ``aging`` (regularized evolution, one objective) or ``nsga2`` (several objectives);
    ``population``: individuals kept (P); ``sample_size``: tournament size in aging mode (S);
    ``objectives``: ``"metric:max,metric:min"`` (required, two or more, for nsga2; in aging mode at
    most one, default the search metric); ``max_retries``: attempts per suggestion before a
    vector already evaluated (or, once the space is exhausted, already pending) is accepted."""

    mode: str = "aging"
    population: int = 20
    sample_size: int = 5
    objectives: str = ""
    max_retries: int = 100

    def __attrs_post_init__(self) -> None:
        check_settings(self.mode, self.population, self.sample_size, self.objectives, self.max_retries)


def factory(space: Any, seed: int, settings: EvolutionSettings | None, metric: str, maximize: bool) -> Any:
    from neuromosaic_strategy_evolution.search import EvolutionSearch

    settings = settings if settings is not None else EvolutionSettings()
    return EvolutionSearch(
        space,
        seed=seed,
        metric=metric,
        maximize=maximize,
        mode=settings.mode,
        population=settings.population,
        sample_size=settings.sample_size,
        objectives=settings.objectives,
        max_retries=settings.max_retries,
    )


@hookimpl
def register_search_strategies(register: Any) -> None:
    register("evolution", factory, settings=EvolutionSettings, description="evolution: aging (regularized) evolution or NSGA-II")
