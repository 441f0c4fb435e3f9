from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from neuromosaic_visualizer_matplotlib import MatplotlibSettings, factory
from neuromosaic_visualizer_matplotlib.plots import FILES, LEARNING_CURVES_FILE, is_maximized, metric_value, pareto_front

from neuromosaic_core.interfaces import Visualizer
from neuromosaic_core.model import ArchitectureVector, ErrorClass, Trial, TrialResult, TrialStatus
from neuromosaic_core.plugins import PluginSystem

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def completed(i: int, acc: float, params: float, **extra) -> Trial:
    return Trial(
        experiment="e",
        number=i,
        vector=ArchitectureVector({"depth": i % 4 + 1, "family": "mlp"}),
        status=TrialStatus.COMPLETED,
        result=TrialResult(metrics={"val_accuracy": acc, "params": params, **extra}),
    )


def failed(i: int, status: TrialStatus = TrialStatus.FAILED) -> Trial:
    return Trial(
        experiment="e",
        number=i,
        vector=ArchitectureVector({"depth": 1, "family": "mlp"}),
        status=status,
        result=TrialResult.failure(ErrorClass.RUNTIME, "boom"),
    )


def mixed_trials() -> list[Trial]:
    trials = []
    for i in range(20):
        if i % 5 == 3:
            trials.append(failed(i))
        elif i % 7 == 6:
            trials.append(failed(i, TrialStatus.INVALID))
        else:
            trials.append(completed(i, 0.5 + 0.02 * i - 0.01 * (i % 3), 1000 * (1 + i % 6) ** 2))
    trials.append(Trial(experiment="e", number=20, vector=ArchitectureVector({"depth": 1}), status=TrialStatus.INTERRUPTED))
    trials.append(Trial(
        experiment="e", number=21, vector=ArchitectureVector({"depth": 2}), status=TrialStatus.COMPLETED,
        result=TrialResult(metrics={"test_accuracy": 0.9}),  # completed without the metric
    ))
    return trials


def assert_png(path, min_bytes: int = 5000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert len(data) > min_bytes, f"{path.name} is suspiciously small ({len(data)} bytes)"


def brute_force_front(points):
    def dominates(a, b):
        return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])

    ok = [i for i, p in enumerate(points) if all(map(math.isfinite, p))]
    return {i for i in ok if not any(dominates(points[j], points[i]) for j in ok if j != i)}


# -- pareto_front ------------------------------------------------------------------------------


def test_pareto_front_simple():
    #        params  metric
    pts = [(100.0, 0.50), (200.0, 0.70), (150.0, 0.40), (400.0, 0.90), (300.0, 0.60), (500.0, 0.90)]
    assert pareto_front(pts) == [0, 1, 3]


def test_pareto_front_empty_and_single():
    assert pareto_front([]) == []
    assert pareto_front([(10.0, 0.1)]) == [0]


def test_pareto_front_ties():
    pts = [
        (100.0, 0.8),  # 0: on the front
        (100.0, 0.7),  # 1: same size, worse metric: dominated
        (200.0, 0.8),  # 2: same metric, bigger: dominated
        (100.0, 0.8),  # 3: identical to 0: kept with it
        (50.0, 0.6),   # 4: smallest: on the front
        (300.0, 0.95), # 5: best: on the front
    ]
    assert pareto_front(pts) == [4, 0, 3, 5]


def test_pareto_front_order_follows_params():
    pts = [(1000.0, 0.9), (10.0, 0.1), (100.0, 0.5)]
    assert pareto_front(pts) == [1, 2, 0]


def test_pareto_front_skips_non_finite():
    pts = [(100.0, float("nan")), (float("inf"), 0.99), (200.0, 0.5), (50.0, float("-inf"))]
    assert pareto_front(pts) == [2]


def test_pareto_front_all_dominated_by_one():
    pts = [(10.0, 0.99)] + [(10.0 + i, 0.5 - 0.01 * i) for i in range(1, 20)]
    assert pareto_front(pts) == [0]


@given(
    st.lists(
        st.tuples(st.integers(1, 20).map(float), st.integers(0, 10).map(lambda v: v / 10)),
        max_size=40,
    )
)
def test_pareto_front_matches_brute_force(points):
    front = pareto_front(points)
    assert set(front) == brute_force_front(points)
    assert len(front) == len(set(front))
    params = [points[i][0] for i in front]
    metrics = [points[i][1] for i in front]
    assert params == sorted(params) and metrics == sorted(metrics)


# -- helpers -----------------------------------------------------------------------------------


def test_metric_value():
    assert metric_value(completed(0, 0.8, 10), "val_accuracy") == 0.8
    assert metric_value(completed(0, float("nan"), 10), "val_accuracy") is None
    assert metric_value(failed(0), "val_accuracy") is None
    assert metric_value(completed(0, 0.8, 10), "test_loss") is None
    assert metric_value(Trial(experiment="e", number=0, vector=ArchitectureVector({})), "val_accuracy") is None


def test_direction():
    assert is_maximized("val_accuracy") and not is_maximized("test_loss") and not is_maximized("val_error")
    assert is_maximized("test_loss", "max") and not is_maximized("val_accuracy", "min")
    with pytest.raises(ValueError, match="direction"):
        MatplotlibSettings(direction="up")


# -- the visualizer ----------------------------------------------------------------------------


def test_registered_through_the_plugin_system():
    import neuromosaic_visualizer_matplotlib

    system = PluginSystem.load([("matplotlib", neuromosaic_visualizer_matplotlib)], entry_points=False)
    component = system.get("visualizer", "matplotlib")
    assert component.settings is MatplotlibSettings
    assert isinstance(component.factory(component.default_settings()), Visualizer)


def test_writes_the_five_pngs(tmp_path):
    out = tmp_path / "plots" / "nested"
    paths = factory(MatplotlibSettings(dpi=80)).plot_performance_landscape(mixed_trials(), out)
    assert [p.name for p in paths] == list(FILES)
    for p in paths:
        assert p.parent == out
        assert_png(p)


def test_only_failures(tmp_path):
    trials = [failed(i) for i in range(4)] + [failed(4, TrialStatus.INVALID)]
    paths = factory(None).plot_performance_landscape(trials, tmp_path)
    assert [p.name for p in paths] == list(FILES)
    for p in paths:
        assert_png(p)


def test_no_trials_at_all(tmp_path):
    paths = factory(None).plot_performance_landscape([], tmp_path)
    for p in paths:
        assert_png(p, min_bytes=2000)


def test_minimised_metric_and_missing_params(tmp_path):
    trials = [completed(i, 0.9, 1000 * (i + 1), test_loss=1.0 / (i + 1)) for i in range(6)]
    trials.append(Trial(experiment="e", number=6, vector=ArchitectureVector({}), status=TrialStatus.COMPLETED,
                        result=TrialResult(metrics={"test_loss": 0.01})))  # no params: skipped in pareto
    trials.append(completed(7, 0.9, 0.0, test_loss=0.02))  # zero params: skipped on the log axis
    paths = factory(None).plot_performance_landscape(trials, tmp_path, metric="test_loss")
    for p in paths:
        assert_png(p)


def test_single_completed_trial(tmp_path):
    for p in factory(None).plot_performance_landscape([completed(0, 0.5, 1234)], tmp_path):
        assert_png(p)


def test_importing_the_plugin_is_cheap():
    code = (
        "import sys, neuromosaic_visualizer_matplotlib\n"
        "print(','.join(m for m in ('numpy', 'matplotlib', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_does_not_use_pyplot(tmp_path):
    """Drawing on the Agg canvas directly leaves a caller's pyplot and backend alone."""
    code = (
        "import sys\n"
        "from neuromosaic_visualizer_matplotlib import factory\n"
        f"factory(None).plot_performance_landscape([], {str(tmp_path)!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


# -- learning curves ---------------------------------------------------------------------------


def trained(i: int, curve: tuple[float, ...], *, pruned: bool = False, metric: str = "val_accuracy") -> Trial:
    return Trial(experiment="e", number=i, vector=ArchitectureVector({"depth": i % 4 + 1, "family": "mlp"}),
                 status=TrialStatus.COMPLETED,
                 result=TrialResult(metrics={metric: max(curve) if metric == "val_accuracy" else min(curve), "params": 1e3 * (i + 1)},
                                    curve=curve, fidelity=len(curve) if pruned else 6, pruned=pruned))


def test_learning_curves_png_is_written_only_when_trials_have_curves(tmp_path):
    vis = factory(MatplotlibSettings(dpi=60))
    with_curves = [trained(0, (0.3, 0.5, 0.6, 0.65, 0.7, 0.71)), trained(1, (0.2, 0.3), pruned=True), failed(2)]
    paths = vis.render(with_curves, tmp_path / "with")
    assert [p.name for p in paths] == [*FILES, LEARNING_CURVES_FILE]
    assert_png(tmp_path / "with" / LEARNING_CURVES_FILE)
    paths = vis.render(mixed_trials(), tmp_path / "without")  # results without curves (a lookup table, older runs)
    assert [p.name for p in paths] == list(FILES)
    assert not (tmp_path / "without" / LEARNING_CURVES_FILE).exists()
