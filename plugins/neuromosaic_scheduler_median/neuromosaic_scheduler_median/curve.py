"""Learning-curve extrapolation (in the spirit of Domhan, Springenberg and Hutter 2015, with one
parametric family): at each milestone, fit ``pow3`` to the curve so far, predict the score at
``max_epochs`` and stop the trial when even that (plus a margin) cannot beat the best full result."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from neuromosaic_core.model import TrialResult
from neuromosaic_scheduler_median.median import MilestoneScheduler

#: Points a fit needs: pow3 has three parameters, and three points fit any of them exactly.
MIN_POINTS = 4


def pow3(x: Any, c: float, a: float, alpha: float) -> Any:
    """``c - a * x**-alpha`` (``x`` a number or an array): rises towards ``c`` (a >= 0, alpha > 0), fast at first."""
    return c - a * x ** (-alpha)


def _pow3_jacobian(x: Any, c: float, a: float, alpha: float) -> Any:
    """d pow3 / d(c, a, alpha), one row per x: saves the fit a third of its time."""
    import numpy as np

    power = x ** (-alpha)
    return np.stack([np.ones_like(x), -power, a * power * np.log(x)], axis=1)


def extrapolate(curve: Sequence[float], at: int, maximize: bool = True) -> float | None:
    """The value of ``pow3`` fitted (least squares, ``scipy.optimize.curve_fit``) to ``curve``
    (epochs 1, 2, ...; NaN entries left out) at epoch ``at``; a curve to minimise is mirrored
    first. None when the curve is too short or the fit fails."""
    points = [(epoch, value) for epoch, value in enumerate(curve, start=1) if math.isfinite(value)]
    if len(points) < MIN_POINTS:
        return None
    import numpy as np
    from scipy.optimize import OptimizeWarning, curve_fit

    sign = 1.0 if maximize else -1.0
    x = np.array([p[0] for p in points], dtype=float)
    y = sign * np.array([p[1] for p in points], dtype=float)
    rise = max(float(y.max() - y.min()), 1e-6)
    start = (float(y.max()), rise, 0.5)  # a first guess inside the bounds: converges in a few steps
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            params, _ = curve_fit(pow3, x, y, p0=start, jac=_pow3_jacobian,
                                  bounds=([-np.inf, 0.0, 1e-3], [np.inf, np.inf, 5.0]), max_nfev=200)
    except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError):
        return None
    predicted = pow3(float(at), *map(float, params))
    return sign * predicted if math.isfinite(predicted) else None


class CurveScheduler(MilestoneScheduler):
    """At each milestone of ``e`` epochs, once ``min_full`` other trials reached full fidelity: a
    trial whose best score so far does not already beat the best of them has its curve fitted
    and extrapolated to ``max_epochs``; it stops when the better of that prediction and its best
    so far, plus ``margin``, still does not beat the best. A fit that fails (too few points, no
    convergence) lets the trial train on."""

    name = "curve"

    def __init__(self, max_epochs: int, metric: str = "val_accuracy", maximize: bool = True, *, grace_epochs: int = 5,
                 interval: int = 5, margin: float = 0.0, min_full: int = 1) -> None:
        super().__init__(max_epochs, metric, maximize, grace_epochs=grace_epochs, interval=interval)
        if min_full < 1:
            raise ValueError(f"min_full must be at least 1, got {min_full}")
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be a finite number of at least 0, got {margin}")
        self.margin, self.min_full = margin, min_full

    def final_value(self, result: TrialResult) -> float:
        """A full result's value: the best of its curve (its reported metric when it has none)."""
        value = self.best_at(result.curve, self.max_epochs) if result.curve else float(result.metrics.get(self.metric, math.nan))
        return value if math.isfinite(value) else (-math.inf if self.maximize else math.inf)

    def judge(self, number: int, result: TrialResult, epochs: int) -> bool:
        finals = [self.final_value(r) for n, (f, r) in self.results.items() if n != number and f >= self.max_epochs]
        if len(finals) < self.min_full:
            return False
        best = max(finals) if self.maximize else min(finals)
        mine = self.best_at(result.curve, epochs)
        if not math.isfinite(best) or self.better(mine, best):
            return False
        predicted = extrapolate(result.curve[:epochs], self.max_epochs, self.maximize)
        if predicted is None:
            return False
        hoped = max(predicted, mine) + self.margin if self.maximize else min(predicted, mine) - self.margin
        return not self.better(hoped, best)

    def describe(self) -> str:
        return (f"curve: stops a trial whose pow3 fit cannot beat the best at {self.describe_milestones()} epochs "
                f"(margin {self.margin:g}, after {self.min_full} full result{'s' if self.min_full != 1 else ''})")
