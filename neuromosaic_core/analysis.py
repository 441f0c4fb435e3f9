"""The numbers behind the plots and the report: projections, fronts, importance, failure counts.

Numpy only (no matplotlib, no scikit-learn), so the report, the REST API and every visualizer
plugin can share one definition of "the Pareto front" or "the landscape" and stay cheap to
import. Architecture vectors become numbers through :mod:`neuromosaic_core.features` (min-max
scaled numbers, one-hot choices); nothing here invents a second encoding.

Conventions: a *metric value* is finite or absent (``None``); a trial that failed, has no result or
lacks the metric has no value. Functions that take ``trials`` never mutate them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from neuromosaic_core.features import feature_dimensions, vectors_to_matrix
from neuromosaic_core.model import (
    AnyDimension,
    ArchitectureVector,
    CategoricalDimension,
    IntDimension,
    RealDimension,
    SearchSpace,
    Trial,
    TrialStatus,
)

__all__ = [
    "MIN_TRIALS_FOR_IMPORTANCE",
    "DesignMatrix",
    "FailureReason",
    "active_mask",
    "best_so_far",
    "design_matrix",
    "dimension_importance",
    "dimension_positions",
    "failure_reasons",
    "importance_shortfall",
    "infer_space",
    "is_maximized",
    "metric_value",
    "pareto_indices",
    "pca_2d",
    "plotted_dimensions",
    "project_2d",
    "random_projection_2d",
    "smooth_grid",
    "status_counts",
]

#: The projections :func:`project_2d` knows without extra libraries.
PROJECTIONS = ("pca", "random")


# -- metric values ------------------------------------------------------------------------------


def metric_value(trial: Trial, metric: str) -> float | None:
    """The trial's finite ``metric``, or None when it has no result, failed, or lacks the metric."""
    result = trial.result
    if result is None or not result.ok:
        return None
    value = result.metrics.get(metric)
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def is_maximized(metric: str, direction: str = "auto") -> bool:
    """``max``/``maximize`` and ``min``/``minimize`` say it; ``auto`` minimises a metric whose name
    contains ``loss``, ``error`` or ``rmse``/``mae``/``mse`` (and, for the Pareto axes, size and
    cost metrics) and maximises the rest."""
    if direction in ("max", "maximize"):
        return True
    if direction in ("min", "minimize"):
        return False
    lowered = metric.lower()
    return not any(word in lowered for word in ("loss", "error", "rmse", "mae", "mse", "params", "flops", "latency", "seconds", "memory"))


def best_so_far(values: Sequence[float], maximize: bool = True) -> list[float]:
    """The running best of ``values`` (the line of an optimisation history)."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else (max(out[-1], v) if maximize else min(out[-1], v)))
    return out


# -- Pareto front -------------------------------------------------------------------------------


def pareto_indices(points: Sequence[tuple[float, float]], *, minimize_x: bool = True, maximize_y: bool = True) -> list[int]:
    """Indices of the non-dominated ``(x, y)`` points, for any two metrics and directions.

    A point is dominated when another is at least as good on both coordinates and strictly better on
    one. Identical points do not dominate each other, so all copies of a front point are returned.
    Points with a non-finite coordinate are never on the front. The indices come sorted from the best
    ``x`` to the worst (ascending ``x`` when it is minimised), which is also the order along the
    front, ready to be connected by a line; ties keep the input order.

    The stored-trial counterpart, answered by the database, is
    :func:`neuromosaic_core.results.pareto_front`; both follow this definition.
    """
    sx = 1.0 if minimize_x else -1.0
    sy = 1.0 if maximize_y else -1.0
    valid = [i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y)]
    # In the transformed coordinates smaller x and larger y are better.
    order = sorted(valid, key=lambda i: (sx * points[i][0], -sy * points[i][1], i))
    front: list[int] = []
    best = -math.inf
    last: tuple[float, float] | None = None
    for i in order:
        x, y = sx * points[i][0], sy * points[i][1]
        if y > best:
            front.append(i)
            best = y
            last = (x, y)
        elif (x, y) == last:  # an exact copy of the previous front point
            front.append(i)
    return front


# -- failures -----------------------------------------------------------------------------------


@attrs.frozen
class FailureReason:
    """One row of "failure reasons by count": the status, the error class (``reason``), how many
    trials, their numbers and one message as an example."""

    status: str
    reason: str
    count: int
    trials: tuple[int, ...]
    example: str


def failure_reasons(trials: Iterable[Trial], max_message: int = 200) -> list[FailureReason]:
    """Trials that did not complete, grouped by status and error class, most frequent first.

    Messages usually carry trial-specific numbers ("nan at epoch 3"), so they are not a grouping
    key; the first message of each group is kept as its example (first line, at most
    ``max_message`` characters). A failed trial with no stored result counts as ``no result``; an
    interrupted one as ``interrupted``.
    """
    groups: dict[tuple[str, str], list[Trial]] = {}
    for t in trials:
        status = TrialStatus(t.status)
        if status in (TrialStatus.COMPLETED, TrialStatus.PENDING, TrialStatus.RUNNING):
            continue
        error = t.result.error if t.result is not None else None
        reason = error.error_class.value if error is not None else ("interrupted" if status == TrialStatus.INTERRUPTED else "no result")
        groups.setdefault((status.value, reason), []).append(t)
    rows = []
    for (status_name, reason), members in groups.items():
        example = ""
        for t in members:
            if t.result is not None and t.result.error is not None and t.result.error.message:
                example = t.result.error.message.strip().splitlines()[0][:max_message]
                break
        rows.append(FailureReason(status_name, reason, len(members), tuple(sorted(t.number for t in members)), example))
    return sorted(rows, key=lambda r: (-r.count, r.status, r.reason))


# -- vectors as numbers -------------------------------------------------------------------------


def infer_space(vectors: Iterable[ArchitectureVector]) -> SearchSpace:
    """A search space that holds every vector given, for data whose encoder is not at hand (a report
    rebuilt from a database on another machine).

    A dimension whose values are all numbers becomes an int/real range from the smallest to the
    largest value seen (linear: the encoder's own space, with its log scales, is better when
    available); any other becomes a categorical with the values seen, sorted by their text.
    """
    seen: dict[str, list[Any]] = {}
    for vector in vectors:
        for name, value in vector.values.items():
            seen.setdefault(name, []).append(value)
    dims: list[AnyDimension] = []
    for name, values in seen.items():
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(values) and all(math.isfinite(v) for v in numbers):
            if all(isinstance(v, int) for v in numbers):
                dims.append(IntDimension(name, low=min(numbers), high=max(numbers)))
            else:
                dims.append(RealDimension(name, low=float(min(numbers)), high=float(max(numbers))))
        else:
            unique: dict[tuple[str, str], Any] = {}
            for v in values:
                unique.setdefault((type(v).__name__, repr(v)), v)
            dims.append(CategoricalDimension(name, choices=sorted(unique.values(), key=lambda v: (str(v), type(v).__name__))))
    return SearchSpace(dims)


@attrs.frozen
class DesignMatrix:
    """The completed trials with a value as a regression data set: ``x`` (one row per trial, the
    columns of :func:`~neuromosaic_core.features.vectors_to_matrix`), ``y`` (the metric),
    ``columns`` (column names), ``owners`` (the dimension of each column) and ``trials``."""

    x: np.ndarray
    y: np.ndarray
    columns: list[str]
    owners: list[str]
    trials: list[Trial]

    def __len__(self) -> int:
        return len(self.trials)


def design_matrix(space: SearchSpace, trials: Sequence[Trial], metric: str) -> DesignMatrix:
    """Completed trials with a finite ``metric`` whose vector lies in ``space``, in trial-number
    order. Columns no trial's vector fits (``nan`` throughout) are dropped first; then rows with a
    ``nan`` left (a vector of another space) are dropped."""
    kept = sorted((t for t in trials if metric_value(t, metric) is not None), key=lambda t: t.number)
    x, columns = vectors_to_matrix(space, [t.vector for t in kept])
    owners = feature_dimensions(space)
    missing = np.isnan(x)
    useful = ~missing.all(axis=0) if len(kept) else np.ones(len(columns), dtype=bool)
    x, missing = x[:, useful], missing[:, useful]
    columns = [c for c, ok in zip(columns, useful, strict=True) if ok]
    owners = [o for o, ok in zip(owners, useful, strict=True) if ok]
    ok_rows = ~missing.any(axis=1)
    rows = [t for t, keep in zip(kept, ok_rows, strict=True) if keep]
    y = np.array([metric_value(t, metric) for t in rows], dtype=np.float64)
    return DesignMatrix(x[ok_rows], y, columns, owners, rows)


def dimension_importance(owners: Sequence[str], column_importance: Sequence[float]) -> list[tuple[str, float]]:
    """Per-column importances (a random forest's, say) summed per dimension (one-hot columns of a
    categorical add up) and normalised to sum to 1, most important first (ties by name)."""
    if len(owners) != len(column_importance):
        raise ValueError(f"{len(owners)} column owners but {len(column_importance)} importances")
    totals: dict[str, float] = {}
    for owner, value in zip(owners, column_importance, strict=True):
        totals[owner] = totals.get(owner, 0.0) + max(float(value), 0.0)
    total = sum(totals.values())
    scale = 1.0 / total if total > 0 else 0.0
    return sorted(((name, v * scale) for name, v in totals.items()), key=lambda kv: (-kv[1], kv[0]))


def dimension_positions(space: SearchSpace, vectors: Sequence[ArchitectureVector]) -> tuple[np.ndarray, list[list[tuple[float, str]]]]:
    """One coordinate in ``[0, 1]`` per dimension and vector, for parallel coordinates; and for each
    dimension its tick marks ``(position, label)``.

    Numbers keep their scaled column from :func:`~neuromosaic_core.features.vectors_to_matrix`
    (log dimensions on a log scale); a categorical's one-hot block becomes the choice's index spread
    evenly over ``[0, 1]`` (an axis needs an order, even an arbitrary one). Values outside the space
    are ``nan``.
    """
    x, _ = vectors_to_matrix(space, vectors)
    out = np.full((len(vectors), len(space)), np.nan)
    ticks: list[list[tuple[float, str]]] = []
    column = 0
    for j, dim in enumerate(space):
        if isinstance(dim, CategoricalDimension):
            width = len(dim.choices)
            block = x[:, column:column + width]
            step = 1.0 / (width - 1) if width > 1 else 0.0
            valid = ~np.isnan(block).any(axis=1)
            out[valid, j] = block[valid].argmax(axis=1) * step
            ticks.append([(i * step, str(c)) for i, c in enumerate(dim.choices)])
            column += width
        else:
            out[:, j] = x[:, column]
            ticks.append([(0.0, _short(dim.low)), (1.0, _short(dim.high))])
            column += 1
    return out, ticks


def _short(value: float) -> str:
    return f"{value:g}"


# -- which dimensions are worth showing ---------------------------------------------------------

#: Fewer completed trials than this (or than active dimensions, whichever is more) and a ranking of
#: dimensions by importance is noise: a forest fitted on 8 trials over 30 dimensions will still rank
#: all 30, confidently and differently for every seed.
MIN_TRIALS_FOR_IMPORTANCE = 20


def active_mask(space: SearchSpace, vectors: Sequence[ArchitectureVector]) -> np.ndarray:
    """``mask[i, j]``: whether dimension ``j`` of ``space`` is active for ``vectors[i]`` (its
    ``active_if`` conditions hold), i.e. whether it shapes the architecture the vector decodes to.
    An inactive dimension only holds its default (a conv kernel of an MLP, the width of a layer
    below the depth)."""
    index = {name: j for j, name in enumerate(space.names)}
    mask = np.zeros((len(vectors), len(space)), dtype=bool)
    for i, vector in enumerate(vectors):
        for dim in space.active_dimensions(vector.values):
            mask[i, index[dim.name]] = True
    return mask


def importance_shortfall(completed: int, dimensions: int) -> str | None:
    """None when ``completed`` trials are enough to rank ``dimensions`` active dimensions by
    importance; otherwise the reason, in one line a plot or a report can show as it is.

    Enough means at least :data:`MIN_TRIALS_FOR_IMPORTANCE` and at least one trial per dimension
    (fewer rows than columns and any ranking fits the data)."""
    needed = max(MIN_TRIALS_FOR_IMPORTANCE, dimensions)
    if completed >= needed:
        return None
    return (f"too few trials to rank dimensions by importance: {completed} completed over {dimensions} active "
            f"dimension{'s' if dimensions != 1 else ''}; a ranking means little below {needed}")


def plotted_dimensions(space: SearchSpace, vectors: Sequence[ArchitectureVector],
                       importance: Sequence[tuple[str, float]] | None = None, limit: int = 8) -> list[str]:
    """The dimensions worth an axis for ``vectors``, at most ``limit``, in the space's order
    (parents before the dimensions they switch on).

    Only dimensions active for at least one vector qualify. With more than ``limit`` of them, the
    most important are kept when an ``importance`` ranking is given; otherwise the dimensions active
    for the most vectors, then those taking the most distinct values among them (a dimension every
    trial set alike tells nothing), then the space's order."""
    if not vectors or limit < 1:
        return []
    mask = active_mask(space, vectors)
    names = space.names
    candidates = [j for j in range(len(names)) if mask[:, j].any()]
    if len(candidates) > limit:
        if importance:
            rank = {name: k for k, (name, _) in enumerate(importance)}
            order = sorted(candidates, key=lambda j: (rank.get(names[j], len(rank)), j))
        else:
            def spread(j: int) -> int:
                return len({repr(v.values.get(names[j])) for v, on in zip(vectors, mask[:, j], strict=True) if on})

            order = sorted(candidates, key=lambda j: (-int(mask[:, j].sum()), -spread(j), j))
        candidates = sorted(order[:limit])
    return [names[j] for j in candidates]


# -- 2-D projections ----------------------------------------------------------------------------


def _impute(matrix: np.ndarray) -> np.ndarray:
    """Replace ``nan`` by its column's mean (0 for an all-``nan`` column)."""
    x = np.array(matrix, dtype=np.float64, copy=True)
    missing = np.isnan(x)
    if missing.any():
        counts = (~missing).sum(axis=0)
        sums = np.where(missing, 0.0, x).sum(axis=0)
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        x[missing] = np.broadcast_to(means, x.shape)[missing]
    return x


def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coords, explained)``: the rows projected on their two first principal components (numpy
    SVD of the centred matrix) and the share of variance each explains.

    Always two columns: with fewer than two directions of variance (one point, identical points,
    one feature) the missing coordinates are 0 and explain 0. Component signs are fixed (largest
    loading positive) so the same data gives the same picture.
    """
    x = _impute(np.atleast_2d(np.asarray(matrix, dtype=np.float64)))
    n = x.shape[0]
    coords = np.zeros((n, 2))
    explained = np.zeros(2)
    if n == 0 or x.shape[1] == 0:
        return coords, explained
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    for i in range(k):
        if vt[i, np.argmax(np.abs(vt[i]))] < 0:
            vt[i] = -vt[i]
    coords[:, :k] = centred @ vt[:k].T
    variance = s**2
    if variance.sum() > 0:
        explained[:k] = variance[:k] / variance.sum()
    return coords, explained


def random_projection_2d(matrix: np.ndarray, seed: int = 0) -> np.ndarray:
    """The rows projected on two random Gaussian directions (seeded): distances are roughly kept
    (Johnson-Lindenstrauss) without favouring the directions of largest variance as PCA does."""
    x = _impute(np.atleast_2d(np.asarray(matrix, dtype=np.float64)))
    if x.shape[0] == 0 or x.shape[1] == 0:
        return np.zeros((x.shape[0], 2))
    directions = np.random.default_rng(seed).standard_normal((x.shape[1], 2)) / math.sqrt(2)
    return (x - x.mean(axis=0)) @ directions


def project_2d(matrix: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """:func:`pca_2d` (``pca``) or :func:`random_projection_2d` (``random``) coordinates."""
    if method == "pca":
        return pca_2d(matrix)[0]
    if method == "random":
        return random_projection_2d(matrix, seed)
    raise ValueError(f"unknown projection {method!r}; choose one of: {', '.join(PROJECTIONS)}")


def smooth_grid(coords: np.ndarray, values: np.ndarray, resolution: int = 60, bandwidth: float | None = None,
                margin: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An interpolated landscape: ``(grid_x, grid_y, z)`` with ``z[i, j]`` the Gaussian-kernel
    weighted mean of ``values`` at ``(grid_x[j], grid_y[i])`` (Nadaraya-Watson smoothing).

    Unlike a triangulation it is defined everywhere, never overshoots the observed range, and works
    for two points or collinear ones. The bandwidth defaults to a tenth of the larger extent of the
    points (at least 1e-9). The grid covers the points plus ``margin`` of their extent on each side.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(coords) != len(values):
        raise ValueError(f"{len(coords)} points but {len(values)} values")
    if len(coords) == 0:
        raise ValueError("no points to interpolate")
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9)
    span = float(max(extent))
    lo, hi = lo - margin * span, hi + margin * span
    gx = np.linspace(lo[0], hi[0], resolution)
    gy = np.linspace(lo[1], hi[1], resolution)
    h = bandwidth if bandwidth is not None else max(span / 10.0, 1e-9)
    px, py = np.meshgrid(gx, gy)
    d2 = (px[..., None] - coords[:, 0]) ** 2 + (py[..., None] - coords[:, 1]) ** 2
    # Subtracting each cell's smallest distance keeps the weights finite far from every point.
    w = np.exp(-(d2 - d2.min(axis=-1, keepdims=True)) / (2 * h * h))
    z = (w * values).sum(axis=-1) / w.sum(axis=-1)
    return gx, gy, z


def status_counts(trials: Iterable[Trial]) -> Mapping[str, int]:
    """How many trials are in each status, by the status's name."""
    return dict(Counter(TrialStatus(t.status).value for t in trials))
