"""Neuromosaic plugin: the ``surrogate`` meta-learner (a random forest over architecture vectors).

Cheap to import: scikit-learn is imported by the factory, through
:mod:`neuromosaic_meta_surrogate.forest`.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.settings import MetaSettings

__version__ = "0.3.0"


@attrs.frozen
class SurrogateSettings(MetaSettings):
    """The forest and how it ranks; the warm-start and recommendation settings come from
    :class:`~neuromosaic_core.settings.MetaSettings`.

    ``trees``: trees in the forest; ``min_results``: results needed before its ranking is used
    (0: twice the number of dimensions of the space); ``refit_every``: refit after this many new
    results; ``acquisition``: ``mean`` (the prediction alone: the strategy's candidates already
    explore, and on NAS-Bench-201 it beat the other two, ``docs/benchmarks.md``), ``ei`` (expected
    improvement over the best result so far) or ``ucb`` (mean plus ``kappa`` standard deviations)."""

    trees: int = 100
    min_results: int = 0
    refit_every: int = 1
    acquisition: Literal["ei", "ucb", "mean"] = "mean"
    kappa: float = 1.0

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for name, low in (("trees", 1), ("min_results", 0), ("refit_every", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.kappa < 0:
            raise ValueError(f"kappa must be at least 0, got {self.kappa}")


def factory(space: Any, seed: int, settings: SurrogateSettings | None, metric: str, maximize: bool) -> Any:
    from neuromosaic_meta_surrogate.forest import ForestSurrogate

    settings = settings if settings is not None else SurrogateSettings()
    return ForestSurrogate(space, seed=seed, metric=metric, maximize=maximize, trees=settings.trees,
                           min_results=settings.min_results, refit_every=settings.refit_every,
                           acquisition=settings.acquisition, kappa=settings.kappa)


@hookimpl
def register_meta_learners(register: Any) -> None:
    register("surrogate", factory, settings=SurrogateSettings,
             description="random-forest surrogate: pre-screening, warm start, recommendations")
