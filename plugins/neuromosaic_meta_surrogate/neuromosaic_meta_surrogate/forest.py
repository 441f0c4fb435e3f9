"""A random-forest surrogate: the metric predicted from the vector's features, the spread of the
trees' predictions as the uncertainty.

Why a forest: architecture spaces are mostly categorical (one-hot columns,
:func:`neuromosaic_core.features.vectors_to_matrix`) with interactions between dimensions, and the
data are few (tens to hundreds of trials). A forest handles both without tuning, fits in
milliseconds, and its trees, each grown on a bootstrap sample, disagree most where the data are
thin, which is the uncertainty pre-screening needs (as in SMAC, Hutter et al. 2011).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from neuromosaic_core.features import vectors_to_matrix
from neuromosaic_core.interfaces import MetaLearner
from neuromosaic_core.model import ArchitectureVector, ErrorClass, SearchSpace, TrialResult


class ForestSurrogate(MetaLearner):
    """Random forest of ``trees`` regression trees (scikit-learn), refitted every ``refit_every``
    results.

    - Training rows: every completed result reporting the metric as a finite number. A result of
      the constraint check (``constraint_violation``: too many parameters, too deep) is a property
      of the vector, so it is kept with a pessimistic value, the worst metric observed, and the
      forest learns to avoid such regions. Every other failure (a crash, a timeout, broken
      generated code) is dropped: it says more about the machine or the code generator than about
      the architecture, and a made-up value would poison the fit.
    - ``ready`` once ``min_results`` training rows exist (0: twice the number of dimensions).
    - ``acquisition``: ``mean`` the prediction alone (the default: pre-screening ranks candidates
      the strategy already chose to explore, and the forest's spread is wide where a space holds
      catastrophic cells, so optimism picks them), ``ei`` expected improvement over the best value
      so far (Jones et al. 1998), ``ucb`` mean + ``kappa`` std; higher is better either way.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, metric: str = "val_accuracy", maximize: bool = True,
                 trees: int = 100, min_results: int = 0, refit_every: int = 1, acquisition: str = "mean",
                 kappa: float = 1.0) -> None:
        super().__init__(space, seed=seed, metric=metric, maximize=maximize)
        if acquisition not in ("ei", "ucb", "mean"):
            raise ValueError(f"acquisition must be ei, ucb or mean, got {acquisition!r}")
        self.trees = trees
        self.min_results = min_results or 2 * len(space)
        self.refit_every = refit_every
        self.acquisition_name = acquisition
        self.kappa = kappa
        self._vectors: list[ArchitectureVector] = []
        self._values: list[float] = []
        self._infeasible: list[ArchitectureVector] = []  # constraint violations: worst value
        self._forest: RandomForestRegressor | None = None
        self._fitted_on = 0  # training rows at the last fit

    @property
    def n_results(self) -> int:
        """Training rows: results with a value, plus constraint violations once a value exists."""
        return len(self._values) + (len(self._infeasible) if self._values else 0)

    @property
    def ready(self) -> bool:
        return self.n_results >= self.min_results

    @property
    def best(self) -> float | None:
        """The best metric observed, or None."""
        if not self._values:
            return None
        return max(self._values) if self.maximize else min(self._values)

    def observe(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        for vector, result in results:
            if result.ok:
                value = result.metrics.get(self.metric)
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    self._vectors.append(vector)
                    self._values.append(float(value))
            elif result.error is not None and result.error.error_class == ErrorClass.CONSTRAINT:
                self._infeasible.append(vector)
        if self._values and (self._forest is None or self.n_results - self._fitted_on >= self.refit_every):
            self._fit()

    def _fit(self) -> None:
        worst = min(self._values) if self.maximize else max(self._values)
        x, _ = vectors_to_matrix(self.space, self._vectors + self._infeasible)
        y = np.array(self._values + [worst] * len(self._infeasible))
        keep = ~np.isnan(x).any(axis=1)  # vectors of an older space (replayed history)
        if not keep.any():
            return
        forest = RandomForestRegressor(n_estimators=self.trees, random_state=self.seed, n_jobs=1)
        forest.fit(x[keep], y[keep])
        self._forest, self._fitted_on = forest, self.n_results

    def predict(self, vectors: Sequence[ArchitectureVector]) -> tuple[list[float], list[float]]:
        if self._forest is None:
            raise RuntimeError("the surrogate has no results yet; call observe() first")
        x, _ = vectors_to_matrix(self.space, vectors)
        per_tree = np.stack([tree.predict(np.nan_to_num(x, nan=0.0)) for tree in self._forest.estimators_])
        return per_tree.mean(axis=0).tolist(), per_tree.std(axis=0).tolist()

    def acquisition(self, vectors: Sequence[ArchitectureVector]) -> list[float]:
        means, stds = self.predict(vectors)
        sign = 1.0 if self.maximize else -1.0
        if self.acquisition_name == "mean":
            return [sign * m for m in means]
        if self.acquisition_name == "ucb":
            return [sign * m + self.kappa * s for m, s in zip(means, stds, strict=True)]
        best = sign * self.best  # type: ignore[operator]  # a fitted forest implies a value
        return [_expected_improvement(sign * m, s, best) for m, s in zip(means, stds, strict=True)]


def _expected_improvement(mean: float, std: float, best: float) -> float:
    """E[max(Y - best, 0)] for Y ~ N(mean, std^2) (maximising)."""
    if std <= 0.0:
        return max(mean - best, 0.0)
    z = (mean - best) / std
    cdf = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return (mean - best) * cdf + std * pdf
