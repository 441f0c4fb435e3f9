"""Neuromosaic plugin: the ``optuna`` search strategy (TPE, GP, NSGA-II or random through Optuna).

Cheap to import: Optuna and the strategy itself are imported by :func:`factory`, from
:mod:`neuromosaic_strategy_optuna.search`.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.3.0"

#: The samplers ``OptunaSettings.sampler`` may name.
SAMPLERS = ("tpe", "gp", "random", "nsga2")
#: Accepted spellings of an objective's direction, and whether each maximises.
DIRECTIONS = {"max": True, "maximize": True, "min": False, "minimize": False}


def parse_objectives(text: str) -> list[tuple[str, bool]]:
    """``"val_accuracy:max,params:min"`` to ``[("val_accuracy", True), ("params", False)]``.

    An empty string gives an empty list (a single objective: the search metric). Raises
    ``ValueError`` naming the bad entry.
    """
    objectives: list[tuple[str, bool]] = []
    if not text.strip():
        return objectives
    for entry in text.split(","):
        name, sep, direction = entry.strip().rpartition(":")
        name = name.strip()
        direction = direction.strip().lower()
        if not sep or not name or direction not in DIRECTIONS:
            raise ValueError(f"objectives: expected 'metric:max' or 'metric:min' entries separated by commas, got {entry.strip()!r}")
        if any(name == seen for seen, _ in objectives):
            raise ValueError(f"objectives: metric {name!r} is named twice")
        objectives.append((name, DIRECTIONS[direction]))
    return objectives


@attrs.frozen
class OptunaSettings:
    """``sampler``: ``tpe``, ``gp``, ``random`` or ``nsga2``; ``objectives``: empty for one objective
    (the search metric and direction) or ``"metric:max,other:min"`` for a multi-objective search;
    ``n_startup_trials``: random trials before TPE/GP model anything (for ``nsga2`` the population
    size, at least 2); ``multivariate``: multivariate TPE; ``max_retries``: proposals per suggestion
    before a repeat is accepted."""

    sampler: str = "tpe"
    objectives: str = ""
    n_startup_trials: int = 10
    multivariate: bool = True
    max_retries: int = 50

    def __attrs_post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {self.sampler!r}")
        parse_objectives(self.objectives)
        if self.n_startup_trials < 0:
            raise ValueError(f"expected n_startup_trials >= 0, got {self.n_startup_trials}")
        if self.max_retries < 1:
            raise ValueError(f"expected max_retries >= 1, got {self.max_retries}")


def factory(space: Any, seed: int, settings: OptunaSettings | None, metric: str, maximize: bool) -> Any:
    from neuromosaic_strategy_optuna.search import OptunaSearch  # imports optuna

    settings = settings if settings is not None else OptunaSettings()
    return OptunaSearch(
        space,
        seed=seed,
        metric=metric,
        maximize=maximize,
        sampler=settings.sampler,
        objectives=settings.objectives,
        n_startup_trials=settings.n_startup_trials,
        multivariate=settings.multivariate,
        max_retries=settings.max_retries,
    )


@hookimpl
def register_search_strategies(register: Any) -> None:
    register(
        "optuna",
        factory,
        settings=OptunaSettings,
        description="Bayesian optimisation through Optuna (TPE, GP, NSGA-II, random; multi-objective)",
    )
