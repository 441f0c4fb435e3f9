"""A random-forest surrogate: the metric predicted from the vector's features, the spread of the
trees' predictions as the uncertainty.

Why a forest: architecture spaces are mostly categorical (one-hot columns,
:func:`neuromosaic_core.features.vectors_to_matrix`) with interactions between dimensions, and the
data are few (tens to hundreds of trials). A forest handles both without tuning, fits in
milliseconds, and its trees, each grown on a bootstrap sample, disagree most where the data are
thin, which is the uncertainty pre-screening needs (as in SMAC, Hutter et al. 2011).

Multi-fidelity (a trial scheduler stops poor trials early): the fraction of the full training a
result reached is one more input, and every prediction is made at 1.0, so a value after a few
epochs informs the forest (how architectures compare early) without being taken for a full one
(as in multi-fidelity surrogates such as BOHB's, Falkner et al. 2018, and FABOLAS).
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
    - Results at reduced fidelity (``result.pruned``: a trial scheduler stopped or paused the trial
      after ``result.fidelity`` epochs) are training rows too, with the fraction of the full epochs
      they reached as an extra input (1.0 for every other row); :meth:`predict` answers at 1.0.
      The full epochs are ``full_epochs`` when given, else the fidelity of full results (training
      ends there), else one more than the highest pruned fidelity. When the same vector is
      observed again after a pruned result (the trial was promoted and trained on), the new row
      replaces the pruned one. Without pruned rows the column is left out (the same forest as
      without a scheduler). ``best`` (expected improvement's reference) is the best full value.
    - ``acquisition``: ``mean`` the prediction alone (the default: pre-screening ranks candidates
      the strategy already chose to explore, and the forest's spread is wide where a space holds
      catastrophic cells, so optimism picks them), ``ei`` expected improvement over the best value
      so far (Jones et al. 1998), ``ucb`` mean + ``kappa`` std; higher is better either way.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, metric: str = "val_accuracy", maximize: bool = True,
                 trees: int = 100, min_results: int = 0, refit_every: int = 1, acquisition: str = "mean",
                 kappa: float = 1.0, full_epochs: int | None = None) -> None:
        super().__init__(space, seed=seed, metric=metric, maximize=maximize)
        if acquisition not in ("ei", "ucb", "mean"):
            raise ValueError(f"acquisition must be ei, ucb or mean, got {acquisition!r}")
        self.trees = trees
        self.min_results = min_results or 2 * len(space)
        self.refit_every = refit_every
        self.acquisition_name = acquisition
        self.kappa = kappa
        if full_epochs is not None and full_epochs < 1:
            raise ValueError(f"full_epochs must be at least 1, got {full_epochs}")
        #: The epochs of a full training (``training.epochs``); None: inferred from the results.
        self.full_epochs = full_epochs
        self._vectors: list[ArchitectureVector] = []
        self._values: list[float] = []
        self._epochs: list[int | None] = []  # per row: the fidelity of a pruned result, None for a full one
        self._pruned_rows: dict[str, int] = {}  # vector key -> its row while that row is a pruned result
        self._full_fidelity: int | None = None  # the highest fidelity a full result reported
        self._infeasible: list[ArchitectureVector] = []  # constraint violations: worst value
        self._forest: RandomForestRegressor | None = None
        self._with_fidelity = False  # whether the forest was fitted with the fidelity column
        self._changes = 0  # training rows added or replaced so far
        self._fitted_at = 0  # _changes at the last fit

    @property
    def n_results(self) -> int:
        """Training rows: results with a value, plus constraint violations once a value exists."""
        return len(self._values) + (len(self._infeasible) if self._values else 0)

    @property
    def ready(self) -> bool:
        return self.n_results >= self.min_results

    @property
    def best(self) -> float | None:
        """The best metric observed at full fidelity (of any fidelity while no full result exists), or None."""
        values = self._full_values() or self._values
        if not values:
            return None
        return max(values) if self.maximize else min(values)

    def _full_values(self) -> list[float]:
        return [value for value, epochs in zip(self._values, self._epochs, strict=True) if epochs is None]

    def observe(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        for vector, result in results:
            if result.ok:
                value = result.metrics.get(self.metric)
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    self._add_row(vector, float(value), result)
            elif result.error is not None and result.error.error_class == ErrorClass.CONSTRAINT:
                self._infeasible.append(vector)
                self._changes += 1
        if self._values and (self._forest is None or self._changes - self._fitted_at >= self.refit_every):
            self._fit()

    def _add_row(self, vector: ArchitectureVector, value: float, result: TrialResult) -> None:
        """One training row; a result for a vector whose latest row is pruned replaces that row."""
        canonical = self.space.member(vector)
        key = canonical.key() if canonical is not None else vector.key()
        epochs = max(1, result.fidelity or 1) if result.pruned else None
        if not result.pruned and result.fidelity is not None:
            self._full_fidelity = max(self._full_fidelity or 0, result.fidelity)
        row = self._pruned_rows.pop(key, None)
        if row is None:
            row = len(self._values)
            self._vectors.append(vector)
            self._values.append(value)
            self._epochs.append(epochs)
        else:  # the same trial told again at a higher fidelity (promoted): the later result counts
            self._vectors[row], self._values[row], self._epochs[row] = vector, value, epochs
        if epochs is not None:
            self._pruned_rows[key] = row
        self._changes += 1

    def _fractions(self) -> list[float]:
        """Per row, the fraction of the full epochs its result reached (1.0: full)."""
        pruned = [e for e in self._epochs if e is not None]
        if not pruned:
            return [1.0] * len(self._epochs)
        full = self.full_epochs
        if full is None:  # a full result's fidelity is the training's epochs; a pruned one stopped before them
            full = max(self._full_fidelity or 0, max(pruned) + 1)
        return [1.0 if e is None else min(e / full, 1.0) for e in self._epochs]

    def _fit(self) -> None:
        values = self._full_values() or self._values
        worst = min(values) if self.maximize else max(values)  # a violation sits at full fidelity
        x, _ = vectors_to_matrix(self.space, self._vectors + self._infeasible)
        fractions = self._fractions() + [1.0] * len(self._infeasible)
        with_fidelity = min(fractions) < 1.0
        if with_fidelity:
            x = np.column_stack([x, fractions])
        y = np.array(self._values + [worst] * len(self._infeasible))
        keep = ~np.isnan(x).any(axis=1)  # vectors of an older space (replayed history)
        if not keep.any():
            return
        forest = RandomForestRegressor(n_estimators=self.trees, random_state=self.seed, n_jobs=1)
        forest.fit(x[keep], y[keep])
        self._forest, self._with_fidelity, self._fitted_at = forest, with_fidelity, self._changes

    def predict(self, vectors: Sequence[ArchitectureVector]) -> tuple[list[float], list[float]]:
        """The predicted metric at full fidelity, and its uncertainty."""
        if self._forest is None:
            raise RuntimeError("the surrogate has no results yet; call observe() first")
        x, _ = vectors_to_matrix(self.space, vectors)
        if self._with_fidelity:
            x = np.column_stack([x, np.ones(len(vectors))])
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
