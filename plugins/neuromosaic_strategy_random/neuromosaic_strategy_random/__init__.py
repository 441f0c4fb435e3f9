"""Neuromosaic plugin: the ``random`` search strategy (uniform random sampling, the baseline).

Cheap to import: the strategy itself lives in :mod:`neuromosaic_strategy_random.search`.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.2.0"


@attrs.frozen
class RandomSettings:
    """``max_retries``: draws per suggestion before a vector already evaluated (or, once the space
    is exhausted, already pending) is accepted."""

    max_retries: int = attrs.field(default=100)

    @max_retries.validator
    def _check_retries(self, _attribute: Any, value: int) -> None:
        if value < 1:
            raise ValueError(f"expected max_retries >= 1, got {value}")


def factory(space: Any, seed: int, settings: RandomSettings | None, metric: str, maximize: bool) -> Any:
    from neuromosaic_strategy_random.search import RandomSearch

    settings = settings if settings is not None else RandomSettings()
    return RandomSearch(space, seed=seed, metric=metric, maximize=maximize, max_retries=settings.max_retries)


@hookimpl
def register_search_strategies(register: Any) -> None:
    register("random", factory, settings=RandomSettings, description="uniform random sampling (baseline)")
