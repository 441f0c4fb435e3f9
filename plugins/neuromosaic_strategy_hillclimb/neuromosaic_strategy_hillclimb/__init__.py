"""Neuromosaic plugin: the ``hillclimb`` search strategy (random warm-up, then local mutations).

Cheap to import: the strategy itself lives in :mod:`neuromosaic_strategy_hillclimb.search`.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.3.0"


def _at_least(minimum: int) -> Any:
    def check(_instance: Any, attribute: Any, value: int) -> None:
        if value < minimum:
            raise ValueError(f"expected {attribute.name} >= {minimum}, got {value}")

    return check


@attrs.frozen
class HillClimbSettings:
    """``warmup``: random suggestions before hill climbing starts; ``top_k``: how many of the best
    evaluated vectors are candidate parents; ``max_retries``: attempts per suggestion before a
    vector already evaluated (or, once the space is exhausted, already pending) is accepted."""

    warmup: int = attrs.field(default=8, validator=_at_least(0))
    top_k: int = attrs.field(default=3, validator=_at_least(1))
    max_retries: int = attrs.field(default=100, validator=_at_least(1))


def factory(space: Any, seed: int, settings: HillClimbSettings | None, metric: str, maximize: bool) -> Any:
    from neuromosaic_strategy_hillclimb.search import HillClimbSearch

    settings = settings if settings is not None else HillClimbSettings()
    return HillClimbSearch(
        space,
        seed=seed,
        metric=metric,
        maximize=maximize,
        warmup=settings.warmup,
        top_k=settings.top_k,
        max_retries=settings.max_retries,
    )


@hookimpl
def register_search_strategies(register: Any) -> None:
    register("hillclimb", factory, settings=HillClimbSettings, description="hill climbing: mutate one dimension of the best so far")
