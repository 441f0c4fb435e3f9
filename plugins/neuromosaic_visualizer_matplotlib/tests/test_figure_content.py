"""What the figures show, read from the matplotlib artists before they are saved: how many points,
which axes, which trials are on the front, which dimension ranks first."""

from __future__ import annotations

import random

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.image import AxesImage
from neuromosaic_visualizer_matplotlib import MatplotlibSettings, factory
from neuromosaic_visualizer_matplotlib.plots import parameter_importance

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
    IntDimension("depth", low=1, high=8),
    IntDimension("width", low=8, high=512, log=True),
    RealDimension("dropout", low=0.0, high=0.5),
    CategoricalDimension("activation", choices=("relu", "gelu", "tanh")),
])


def depth_driven_trials(n: int = 40, seed: int = 0) -> list[Trial]:
    """Random vectors whose accuracy is set by ``depth`` alone, plus a little noise."""
    rng = random.Random(seed)
    trials = []
    for i in range(n):
        vector = SPACE.sample(rng)
        acc = 0.5 + 0.05 * int(vector["depth"]) + rng.uniform(-0.005, 0.005)
        params = 1000.0 * int(vector["width"]) * int(vector["depth"])
        trials.append(Trial("e", i, vector, status=TrialStatus.COMPLETED,
                            result=TrialResult(metrics={"val_accuracy": acc, "params": params, "test_loss": 1 - acc})))
    return trials


def failed(i: int) -> Trial:
    return Trial("e", i, SPACE.sample(random.Random(i)), status=TrialStatus.FAILED,
                 result=TrialResult.failure(ErrorClass.RUNTIME, "boom"))


def scatter_points(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


def labelled(ax, prefix: str) -> PathCollection:
    found = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_label().startswith(prefix)]
    assert len(found) == 1, [c.get_label() for c in ax.collections]
    return found[0]


VIS = factory(MatplotlibSettings(dpi=40))


def test_history_draws_each_completed_trial_and_marks_failures():
    trials = depth_driven_trials(12) + [failed(12), failed(13)]
    ax = VIS.draw_history(trials, "val_accuracy", True).axes[0]
    assert len(labelled(ax, "val_accuracy").get_offsets()) == 12
    assert len(labelled(ax, "failed").get_offsets()) == 2
    best = ax.get_lines()[0].get_ydata()
    assert list(best) == sorted(best), "the best so far of a maximised metric never goes down"
    assert best[-1] == max(t.result.metrics["val_accuracy"] for t in trials[:12])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("trial", "val_accuracy")


def brute_front(points, minimize_x, maximize_y):
    def better_eq(a, b):
        return (a[0] <= b[0] if minimize_x else a[0] >= b[0]) and (a[1] >= b[1] if maximize_y else a[1] <= b[1])

    return {i for i, p in enumerate(points) if not any(better_eq(q, p) and q != p for q in points)}


@pytest.mark.parametrize(("y", "maximize"), [("val_accuracy", True), ("test_loss", False)])
def test_pareto_marks_exactly_the_non_dominated_trials(y, maximize):
    trials = depth_driven_trials(30)
    vis = factory(MatplotlibSettings(dpi=40, pareto_y=y))
    ax = vis.draw_pareto(trials, "val_accuracy", True).axes[0]
    points = [(t.result.metrics["params"], t.result.metrics[y]) for t in trials]
    expected = {trials[i].number for i in brute_front(points, True, maximize)}
    assert {int(text.get_text()[1:]) for text in ax.texts} == expected
    assert len(labelled(ax, "Pareto front").get_offsets()) == len(expected)
    assert scatter_points(ax) == 30
    assert ax.get_ylabel() == y and ax.get_xlabel() == "params (log scale)" and ax.get_xscale() == "log"


def test_pareto_of_two_other_metrics_with_a_maximised_x():
    trials = [Trial("e", i, ArchitectureVector({"depth": i}), status=TrialStatus.COMPLETED,
                    result=TrialResult(metrics={"a": float(a), "b": float(b)}))
              for i, (a, b) in enumerate([(1, 1), (2, 3), (3, 2), (3, 1), (0, 5)])]
    vis = factory(MatplotlibSettings(dpi=40, pareto_x="a", pareto_x_direction="max", pareto_y="b"))
    ax = vis.draw_pareto(trials, "b", True).axes[0]
    # larger a and larger b: (3, 2) dominates (3, 1); (2, 3) and (0, 5) trade off
    assert {text.get_text() for text in ax.texts} == {"#1", "#2", "#4"}
    assert ax.get_xlabel() == "a" and ax.get_xscale() == "linear"


@pytest.mark.parametrize("projection", ["pca", "random"])
def test_landscape_scatter_and_heatmap(projection):
    trials = depth_driven_trials(20) + [failed(20), failed(21), failed(22)]
    vis = factory(MatplotlibSettings(dpi=40, projection=projection))
    fig = vis.draw_landscape(trials, SPACE, "val_accuracy", True)
    scatter_ax, heat_ax = fig.axes[:2]
    assert len(labelled(scatter_ax, "val_accuracy").get_offsets()) == 20
    assert len(labelled(scatter_ax, "no value").get_offsets()) == 3
    expected = ("PC 1", "PC 2") if projection == "pca" else ("projection 1", "projection 2")
    assert (scatter_ax.get_xlabel(), scatter_ax.get_ylabel()) == expected
    images = [a for a in heat_ax.get_children() if isinstance(a, AxesImage)]
    assert len(images) == 1
    grid = images[0].get_array()
    values = [t.result.metrics["val_accuracy"] for t in trials[:20]]
    assert grid.shape == (60, 60)
    assert min(values) - 1e-9 <= grid.min() and grid.max() <= max(values) + 1e-9
    assert grid.max() - grid.min() > 0.1, "the interpolated surface shows the metric's spread"


def test_importance_ranks_the_dimension_that_drives_the_metric_first():
    trials = depth_driven_trials(40)
    ranking = parameter_importance(SPACE, trials, "val_accuracy", trees=100)
    assert [name for name, _ in ranking][0] == "depth"
    assert ranking[0][1] > 0.8
    assert sorted(name for name, _ in ranking) == sorted(SPACE.names)
    assert sum(v for _, v in ranking) == pytest.approx(1.0)
    ax = VIS.draw_importance(trials, SPACE, "val_accuracy").axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "depth", "the most important dimension is the top bar"
    assert len(ax.patches) == 4


def test_importance_says_why_when_there_is_too_little_data():
    ax = VIS.draw_importance(depth_driven_trials(3), SPACE, "val_accuracy").axes[0]
    assert not ax.patches
    assert "not ranked" in ax.get_title()
    text = " ".join(t.get_text().replace("\n", " ") for t in ax.texts)
    assert "too few trials" in text and "3 completed over 4 active dimensions" in text


# A space of two families, as the default encoder's: each family's settings are inactive for the other.
FAMILIES = SearchSpace([
    CategoricalDimension("family", choices=("mlp", "conv")),
    CategoricalDimension("activation", choices=("relu", "gelu")),
    IntDimension("mlp_depth", low=1, high=4, active_if={"family": ("mlp",)}),
    *[CategoricalDimension(f"mlp_width_{i}", choices=(32, 64, 128), active_if={"family": ("mlp",), "mlp_depth": tuple(range(i + 1, 5))})
      for i in range(4)],
    IntDimension("conv_blocks", low=1, high=3, active_if={"family": ("conv",)}),
    *[CategoricalDimension(f"conv_{what}_{i}", choices=(3, 5, 7), active_if={"family": ("conv",), "conv_blocks": tuple(range(i + 1, 4))})
      for i in range(3) for what in ("kernel", "channels", "stride")],
    CategoricalDimension("unused", choices=(1, 2), active_if={"family": ("rnn",)}),  # no family switches it on
])


def family_trials(n: int, families: tuple[str, ...] = ("mlp", "conv"), seed: int = 0) -> list[Trial]:
    rng = random.Random(seed)
    trials = []
    for i in range(n):
        vector = FAMILIES.sample(rng)
        vector = FAMILIES.canonicalize({**vector.values, "family": families[i % len(families)]})
        acc = 0.5 + 0.1 * (vector["family"] == "conv") + 0.02 * int(vector["mlp_depth"]) + rng.uniform(0, 0.01)
        trials.append(Trial("e", i, vector, status=TrialStatus.COMPLETED, result=TrialResult(metrics={"val_accuracy": acc})))
    return trials


def parallel_axes(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def test_parallel_coordinates_draw_only_active_dimensions_at_most_the_cap():
    trials = family_trials(8)
    active = {d.name for t in trials for d in FAMILIES.active_dimensions(t.vector.values)}
    assert len(active) > 10 and "unused" not in active
    ax = VIS.draw_parallel(trials, FAMILIES, "val_accuracy", True).axes[0]
    axes = parallel_axes(ax)
    assert len(axes) == 8, "at most `dimensions` axes, so the figure reads at page width"
    assert set(axes) <= active
    # 8 trials cannot rank the active dimensions: the axes are those active in the most trials, in the space's order
    assert axes[:2] == ["family", "activation"]
    assert axes == [n for n in FAMILIES.names if n in axes]
    left_out = len(FAMILIES) - len(active)
    assert f"8 of {len(active)} active dimensions" in ax.get_title()
    assert f"{left_out} inactive in every trial left out" in ax.get_title()
    # an MLP's line crosses a conv axis at the "inactive" mark, below the dimension's range
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    conv_axis = next(j for j, n in enumerate(axes) if n.startswith("conv_"))
    mlps = [k for k, t in enumerate(trials) if t.vector["family"] == "mlp"]
    assert all(lines.get_segments()[k][conv_axis][1] < 0 for k in mlps)
    assert any(t.get_text() == "inactive" for t in ax.texts)


def test_parallel_coordinates_of_one_family_leave_the_other_out():
    ax = VIS.draw_parallel(family_trials(6, families=("mlp",)), FAMILIES, "val_accuracy", True).axes[0]
    axes = parallel_axes(ax)
    assert not any(n.startswith("conv_") for n in axes) and "family" in axes and "mlp_depth" in axes
    wide = factory(MatplotlibSettings(dpi=40, dimensions=3)).draw_parallel(family_trials(6), FAMILIES, "val_accuracy", True)
    assert len(parallel_axes(wide.axes[0])) == 3


def test_with_trials_enough_the_parallel_axes_are_the_most_important():
    trials = family_trials(40)
    vis = factory(MatplotlibSettings(dpi=40, dimensions=2, trees=50))
    ax = vis.draw_parallel(trials, FAMILIES, "val_accuracy", True).axes[0]
    assert parallel_axes(ax) == ["family", "mlp_depth"], "the two dimensions the metric depends on"
    assert "the most important" in ax.get_title()
    ax = vis.draw_importance(trials, FAMILIES, "val_accuracy").axes[0]
    active = {d.name for t in trials for d in FAMILIES.active_dimensions(t.vector.values)}
    assert len(ax.patches) == 2 and f"top 2 of {len(active)} active dimensions" in ax.get_title()
    assert f"the other {len(active) - 2} together" in ax.get_xlabel()


def test_parallel_coordinates_one_line_per_completed_trial():
    trials = depth_driven_trials(15) + [failed(15)]
    ax = VIS.draw_parallel(trials, SPACE, "val_accuracy", True).axes[0]
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segments = lines.get_segments()
    assert len(segments) == 15
    assert all(len(seg) == 4 for seg in segments)
    assert all(0.0 <= y <= 1.0 for seg in segments for _, y in seg)
    assert [t.get_text() for t in ax.get_xticklabels()] == SPACE.names
    best = max(trials[:15], key=lambda t: t.result.metrics["val_accuracy"])
    assert ax.get_legend().get_texts()[0].get_text() == f"best (#{best.number})"
    # the best line's depth coordinate is its scaled depth
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata()[0], (int(best.vector["depth"]) - 1) / 7)


def test_render_uses_the_space_and_direction_it_is_given(tmp_path):
    trials = depth_driven_trials(10)
    paths = VIS.render(trials, tmp_path, "test_loss", space=SPACE, maximize=False)
    assert [p.name for p in paths] == ["history.png", "pareto.png", "landscape.png", "importance.png", "parallel.png"]
    assert "lower is better" in VIS.draw_history(trials, "test_loss", False).axes[0].get_title()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="projection"):
        MatplotlibSettings(projection="tsne")
    with pytest.raises(ValueError, match="pareto_x_direction"):
        MatplotlibSettings(pareto_x_direction="down")
    with pytest.raises(ValueError, match="trees"):
        MatplotlibSettings(trees=0)
    with pytest.raises(ValueError, match="dimensions >= 1"):
        MatplotlibSettings(dimensions=0)


def curved(i: int, curve: list[float], *, pruned: bool = False, full: int = 8, metric: str = "val_accuracy") -> Trial:
    best = max(curve) if metric == "val_accuracy" else min(curve)
    return Trial("e", i, SPACE.sample(random.Random(i)), status=TrialStatus.COMPLETED,
                 result=TrialResult(metrics={metric: best}, curve=tuple(curve), fidelity=len(curve) if pruned else full,
                                    pruned=pruned))


def test_learning_curves_grey_out_pruned_trials_where_they_stopped_and_highlight_the_best():
    full = [curved(i, [0.3 + 0.05 * e + 0.01 * i for e in range(8)]) for i in range(4)]  # trial 3 ends highest
    pruned = [curved(10, [0.99, 0.98], pruned=True), curved(11, [0.2, 0.25, 0.3, 0.31], pruned=True)]
    ax = VIS.draw_learning_curves(full + pruned, "val_accuracy", True).axes[0]
    (grey, coloured) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [len(p.vertices) for p in grey.get_paths()] == [2, 4], "each pruned line ends at its last epoch"
    assert [p.vertices[-1, 0] for p in grey.get_paths()] == [2, 4]
    assert tuple(grey.get_edgecolor()[0][:3]) == (0.6, 0.6, 0.6) and len(coloured.get_paths()) == 4
    assert coloured.get_array() is not None, "full curves are coloured by their score"
    (best,) = [line for line in ax.get_lines() if line.get_label().startswith("best")]
    assert best.get_label() == "best (#3)", "a pruned trial's high early score is not the best over a full one"
    assert list(best.get_xdata()) == list(range(1, 9)) and best.get_color() == "tab:red"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "val_accuracy (validation, higher is better)")
    assert "4 trials trained to the end, 2 pruned" in ax.get_title()
    assert {c.get_label() for c in ax.collections} >= {"pruned (2); | marks where it stopped", "trained to the end (4)"}


def test_learning_curves_of_a_regression_read_rmse_and_many_lines_turn_faint():
    trials = [curved(i, [1.0 - 0.02 * e * (i % 7 + 1) for e in range(8)], metric="val_rmse") for i in range(300)]
    ax = VIS.draw_learning_curves(trials, "val_rmse", False).axes[0]
    assert ax.get_ylabel() == "val_rmse (validation, lower is better)"
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines.get_paths()) == 300 and lines.get_alpha() <= 0.2, "hundreds of opaque lines would be one block"
    (best,) = [line for line in ax.get_lines() if line.get_label().startswith("best")]
    assert best.get_ydata()[-1] == min(t.result.metrics["val_rmse"] for t in trials)
