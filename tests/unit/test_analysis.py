"""The shared numbers behind plots and reports: fronts, projections, smoothing, failure counts."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuromosaic_core import analysis
from neuromosaic_core.model import (
    ArchitectureVector,
    CategoricalDimension,
    ErrorClass,
    IntDimension,
    RealDimension,
    SearchSpace,
    Trial,
    TrialResult,
    TrialStatus,
)

SPACE = SearchSpace([
    IntDimension("depth", low=1, high=5),
    RealDimension("lr", low=1e-4, high=1e-1, log=True),
    CategoricalDimension("act", choices=("relu", "gelu", "silu")),
])


def done(i: int, values: dict, **metrics: float) -> Trial:
    return Trial("e", i, ArchitectureVector(values), status=TrialStatus.COMPLETED, result=TrialResult(metrics=metrics))


def failed(i: int, error: ErrorClass, message: str, status: TrialStatus = TrialStatus.FAILED) -> Trial:
    return Trial("e", i, ArchitectureVector({"depth": 1}), status=status, result=TrialResult.failure(error, message))


# -- Pareto front ---------------------------------------------------------------------------------


def brute_force(points, minimize_x, maximize_y):
    def at_least_as_good(a, b):
        return (a[0] <= b[0] if minimize_x else a[0] >= b[0]) and (a[1] >= b[1] if maximize_y else a[1] <= b[1])

    ok = [i for i, p in enumerate(points) if all(map(math.isfinite, p))]
    return {i for i in ok if not any(at_least_as_good(points[j], points[i]) and points[j] != points[i] for j in ok)}


@pytest.mark.parametrize("minimize_x", [True, False])
@pytest.mark.parametrize("maximize_y", [True, False])
@given(points=st.lists(st.tuples(st.integers(0, 12).map(float), st.integers(0, 12).map(float)), max_size=30))
def test_pareto_indices_match_brute_force_in_every_direction(points, minimize_x, maximize_y):
    front = analysis.pareto_indices(points, minimize_x=minimize_x, maximize_y=maximize_y)
    assert set(front) == brute_force(points, minimize_x, maximize_y)
    xs = [points[i][0] for i in front]
    assert xs == sorted(xs, reverse=not minimize_x), "the front runs from the best x to the worst"


def test_pareto_indices_example_with_ties_and_nan():
    pts = [(100.0, 0.8), (100.0, 0.7), (200.0, 0.8), (100.0, 0.8), (50.0, 0.6), (300.0, 0.95), (10.0, math.nan)]
    assert analysis.pareto_indices(pts) == [4, 0, 3, 5]
    # minimise both: a small model with a low loss
    assert analysis.pareto_indices([(1.0, 5.0), (2.0, 1.0), (3.0, 2.0)], maximize_y=False) == [0, 1]


# -- failure reasons ------------------------------------------------------------------------------


def test_failure_reasons_are_counted_by_status_and_error_class_most_frequent_first():
    trials = [
        done(0, {"depth": 1}, val_accuracy=0.5),
        failed(1, ErrorClass.NAN_LOSS, "nan at epoch 3\ntraceback ..."),
        failed(2, ErrorClass.NAN_LOSS, "nan at epoch 7"),
        failed(3, ErrorClass.TIMEOUT, "over 600 s"),
        failed(4, ErrorClass.NAN_LOSS, "nan at epoch 1"),
        failed(5, ErrorClass.CONSTRAINT, "params 2,000,000 > 1,000,000", TrialStatus.INVALID),
        Trial("e", 6, ArchitectureVector({}), status=TrialStatus.INTERRUPTED),
        Trial("e", 7, ArchitectureVector({}), status=TrialStatus.FAILED),
    ]
    rows = analysis.failure_reasons(trials)
    assert [(r.status, r.reason, r.count, r.trials) for r in rows] == [
        ("failed", "nan_loss", 3, (1, 2, 4)),
        ("failed", "no result", 1, (7,)),
        ("failed", "timeout", 1, (3,)),
        ("interrupted", "interrupted", 1, (6,)),
        ("invalid", "constraint_violation", 1, (5,)),
    ]
    assert rows[0].example == "nan at epoch 3", "first line of the first message"
    assert analysis.failure_reasons(trials[:1]) == []


# -- vectors as numbers ---------------------------------------------------------------------------


def test_design_matrix_keeps_completed_trials_in_the_space():
    trials = [
        done(2, {"depth": 5, "lr": 0.1, "act": "silu"}, val_accuracy=0.9),
        done(0, {"depth": 1, "lr": 1e-4, "act": "relu"}, val_accuracy=0.5),
        done(1, {"depth": 9, "lr": 1e-3, "act": "relu"}, val_accuracy=0.7),  # depth outside the space
        done(3, {"depth": 3, "lr": 1e-2, "act": "gelu"}, test_loss=0.1),  # lacks the metric
        failed(4, ErrorClass.RUNTIME, "boom"),
    ]
    data = analysis.design_matrix(SPACE, trials, "val_accuracy")
    assert [t.number for t in data.trials] == [0, 2]
    np.testing.assert_allclose(data.y, [0.5, 0.9])
    np.testing.assert_allclose(data.x, [[0, 0, 1, 0, 0], [1, 1, 0, 0, 1]])
    assert data.owners == ["depth", "lr", "act", "act", "act"]


def test_design_matrix_drops_a_column_no_vector_fits():
    space = SearchSpace([IntDimension("depth", low=1, high=5), IntDimension("gone", low=0, high=1)])
    trials = [done(i, {"depth": i + 1, "gone": 7}, val_accuracy=0.1 * i) for i in range(4)]
    data = analysis.design_matrix(space, trials, "val_accuracy")
    assert len(data) == 4 and data.columns == ["depth"] and data.owners == ["depth"]


def test_dimension_importance_sums_one_hot_columns_and_normalises():
    ranking = analysis.dimension_importance(["depth", "lr", "act", "act", "act"], [0.1, 0.2, 0.3, 0.2, 0.2])
    assert ranking == [("act", pytest.approx(0.7)), ("lr", pytest.approx(0.2)), ("depth", pytest.approx(0.1))]
    assert analysis.dimension_importance(["a"], [0.0]) == [("a", 0.0)]
    with pytest.raises(ValueError, match="2 column owners but 1"):
        analysis.dimension_importance(["a", "b"], [1.0])


def test_dimension_positions_one_axis_per_dimension():
    positions, ticks = analysis.dimension_positions(SPACE, [
        ArchitectureVector({"depth": 3, "lr": 1e-4, "act": "silu"}),
        ArchitectureVector({"depth": 1, "lr": 0.1, "act": "gelu"}),
        ArchitectureVector({"depth": 1, "lr": 0.1, "act": "swish"}),
    ])
    np.testing.assert_allclose(positions[:2], [[0.5, 0.0, 1.0], [0.0, 1.0, 0.5]])
    assert math.isnan(positions[2, 2]) and positions[2, 0] == 0.0
    assert ticks[2] == [(0.0, "relu"), (0.5, "gelu"), (1.0, "silu")]
    assert ticks[0] == [(0.0, "1"), (1.0, "5")]


CONDITIONAL = SearchSpace([
    CategoricalDimension("family", choices=("mlp", "conv")),
    IntDimension("depth", low=1, high=3, active_if={"family": ("mlp",)}),
    IntDimension("width_2", low=8, high=64, active_if={"family": ("mlp",), "depth": (2, 3)}),
    IntDimension("kernel", low=3, high=7, active_if={"family": ("conv",)}),
    CategoricalDimension("act", choices=("relu", "gelu")),
])


def test_active_mask_follows_the_conditions():
    vectors = [CONDITIONAL.canonicalize({"family": "mlp", "depth": 1, "act": "relu"}),
               CONDITIONAL.canonicalize({"family": "mlp", "depth": 3, "width_2": 16, "act": "relu"}),
               CONDITIONAL.canonicalize({"family": "conv", "kernel": 5, "act": "gelu"})]
    assert analysis.active_mask(CONDITIONAL, vectors).tolist() == [
        [True, True, False, False, True], [True, True, True, False, True], [True, False, False, True, True]]


def test_importance_shortfall_names_the_numbers_below_the_threshold():
    reason = analysis.importance_shortfall(8, 24)
    assert reason is not None and reason.startswith("too few trials")
    assert "8 completed over 24 active dimensions" in reason and "below 24" in reason
    assert "below 20" in analysis.importance_shortfall(19, 3)
    assert analysis.importance_shortfall(20, 3) is None and analysis.importance_shortfall(30, 30) is None


def test_plotted_dimensions_are_active_ones_at_most_the_limit_in_space_order():
    mlp = [CONDITIONAL.canonicalize({"family": "mlp", "depth": d, "width_2": 8 * d, "act": a})
           for d, a in [(1, "relu"), (2, "gelu"), (3, "relu")]]
    conv = [CONDITIONAL.canonicalize({"family": "conv", "kernel": 3, "act": "relu"})]
    assert analysis.plotted_dimensions(CONDITIONAL, mlp) == ["family", "depth", "width_2", "act"], "no kernel for MLPs"
    assert analysis.plotted_dimensions(CONDITIONAL, mlp + conv) == CONDITIONAL.names
    # over the limit without a ranking: those active in the most vectors, then the most varied
    assert analysis.plotted_dimensions(CONDITIONAL, mlp + conv, limit=3) == ["family", "depth", "act"]
    # with a ranking: the most important, still in the space's order
    ranking = [("kernel", 0.5), ("width_2", 0.3), ("family", 0.1), ("act", 0.1), ("depth", 0.0)]
    assert analysis.plotted_dimensions(CONDITIONAL, mlp + conv, ranking, limit=2) == ["width_2", "kernel"]
    assert analysis.plotted_dimensions(CONDITIONAL, []) == []


def test_infer_space_from_stored_vectors():
    space = analysis.infer_space([
        ArchitectureVector({"depth": 2, "lr": 0.01, "act": "relu", "mixed": 1}),
        ArchitectureVector({"depth": 6, "lr": 0.1, "act": "gelu", "mixed": "x"}),
    ])
    assert space["depth"] == IntDimension("depth", low=2, high=6)
    assert space["lr"] == RealDimension("lr", low=0.01, high=0.1)
    assert space["act"].choices == ("gelu", "relu")
    assert space["mixed"].choices == (1, "x")


# -- projections and smoothing --------------------------------------------------------------------


def test_pca_finds_the_direction_of_spread():
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, 50)
    # points along (1, 1, 0) with tiny noise in the third coordinate
    x = np.column_stack([t, t, 0.01 * rng.standard_normal(50)])
    coords, explained = analysis.pca_2d(x)
    assert coords.shape == (50, 2)
    assert explained[0] > 0.999 and explained[1] < 0.001
    # the first coordinate is the position along the line (distance sqrt(2) * t, sign fixed)
    np.testing.assert_allclose(coords[:, 0], math.sqrt(2) * (t - t.mean()), atol=1e-3)


def test_pca_degenerate_inputs_give_two_columns():
    for matrix in (np.zeros((0, 3)), np.ones((1, 4)), np.ones((5, 2)), np.array([[0.0], [1.0], [2.0]])):
        coords, explained = analysis.pca_2d(matrix)
        assert coords.shape == (len(matrix), 2)
        assert np.isfinite(coords).all() and explained.sum() <= 1 + 1e-9
    coords, explained = analysis.pca_2d(np.array([[0.0], [1.0], [2.0]]))
    assert explained.tolist() == [1.0, 0.0] and coords[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_pca_imputes_missing_values_with_the_column_mean():
    coords, _ = analysis.pca_2d(np.array([[0.0, 0.0], [2.0, np.nan], [4.0, 4.0]]))
    assert np.isfinite(coords).all()


def test_random_projection_is_seeded():
    x = np.random.default_rng(1).uniform(size=(10, 6))
    a, b = analysis.random_projection_2d(x, seed=3), analysis.random_projection_2d(x, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, analysis.random_projection_2d(x, seed=4))
    assert analysis.project_2d(x, "random", seed=3).shape == (10, 2)
    with pytest.raises(ValueError, match="unknown projection 'tsne'"):
        analysis.project_2d(x, "tsne")


def test_smooth_grid_stays_in_range_and_follows_the_points():
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    values = np.array([0.0, 1.0, 0.0, 1.0])  # the metric grows with x only
    gx, gy, z = analysis.smooth_grid(coords, values, resolution=21, bandwidth=0.2)
    assert z.shape == (21, 21) and len(gx) == len(gy) == 21
    assert z.min() >= 0.0 and z.max() <= 1.0
    assert z[:, 0].max() < 0.05 and z[:, -1].min() > 0.95, "left edge low, right edge high"
    np.testing.assert_allclose(z[0], z[-1], atol=1e-9)  # nothing varies with y
    _, _, flat = analysis.smooth_grid(coords, np.full(4, 0.7))
    np.testing.assert_allclose(flat, 0.7)
    _, _, far = analysis.smooth_grid(np.array([[0.0, 0.0], [1000.0, 0.0]]), np.array([1.0, 2.0]), bandwidth=1.0)
    assert np.isfinite(far).all(), "cells far from every point still get a value"


def test_best_so_far_and_directions():
    assert analysis.best_so_far([0.2, 0.1, 0.5, 0.3]) == [0.2, 0.2, 0.5, 0.5]
    assert analysis.best_so_far([3.0, 4.0, 1.0], maximize=False) == [3.0, 3.0, 1.0]
    assert analysis.is_maximized("val_accuracy") and not analysis.is_maximized("test_loss")
    assert not analysis.is_maximized("params") and not analysis.is_maximized("latency_ms")
    assert analysis.is_maximized("params", "max") and not analysis.is_maximized("val_accuracy", "minimize")


def test_metric_value_only_for_completed_finite_values():
    assert analysis.metric_value(done(0, {}, val_accuracy=0.8), "val_accuracy") == 0.8
    assert analysis.metric_value(done(0, {}, val_accuracy=math.inf), "val_accuracy") is None
    assert analysis.metric_value(failed(0, ErrorClass.RUNTIME, "x"), "val_accuracy") is None
    assert analysis.metric_value(done(0, {}, val_accuracy=0.8), "params") is None


def test_importable_without_plotting_or_learning_libraries():
    code = ("import sys, neuromosaic_core.analysis\n"
            "print(','.join(m for m in ('matplotlib', 'sklearn', 'scipy', 'torch', 'plotly') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_status_counts():
    trials = [done(0, {}, val_accuracy=1.0), failed(1, ErrorClass.RUNTIME, "x"), failed(2, ErrorClass.RUNTIME, "y")]
    assert analysis.status_counts(trials) == {"completed": 1, "failed": 2}
