from __future__ import annotations

import pytest
from neuromosaic_scheduler_median import CurveSettings, MedianSettings, curve_factory, median_factory
from neuromosaic_scheduler_median.curve import CurveScheduler, extrapolate
from neuromosaic_scheduler_median.median import MedianScheduler

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import Decision
from neuromosaic_core.model import TrialResult
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings
from neuromosaic_core.testing.scheduler import SchedulerContract


class TestMedianContract(SchedulerContract):
    def make_scheduler(self, max_epochs, metric, maximize):
        return median_factory(MedianSettings(), max_epochs, metric, maximize)


class TestCurveContract(SchedulerContract):
    def make_scheduler(self, max_epochs, metric, maximize):
        return curve_factory(CurveSettings(), max_epochs, metric, maximize)


def segment(curve, full=30, metric="val_accuracy"):
    curve = tuple(curve)
    return TrialResult(metrics={metric: max(curve)}, curve=curve, fidelity=len(curve), pruned=len(curve) < full)


def rising(final, gap, rate, epochs):
    return [final - gap * e**-rate for e in range(1, epochs + 1)]


# -- median --------------------------------------------------------------------------------------


def test_milestones_start_at_the_grace_period_and_end_at_full_fidelity():
    scheduler = MedianScheduler(30)
    assert scheduler.first_budget(1) == 5
    assert scheduler.milestones() == [5, 10, 15, 20, 25, 30]
    assert MedianScheduler(12, grace_epochs=3, interval=4).milestones() == [3, 7, 11, 12]
    assert MedianScheduler(3).first_budget(1) == 3  # short training: straight to the end
    assert scheduler.describe() == "median: stops a trial worse than the median at 5, 10, 15, 20, 25 of 30 epochs (once 5 others reached the milestone)"


def test_median_stops_a_below_median_curve_and_not_an_above_median_one():
    scheduler = MedianScheduler(30)
    for number, final in enumerate([0.60, 0.65, 0.70, 0.75, 0.80], start=1):  # medians at 10: about 0.7
        scheduler.observe(number, segment(rising(final, 0.3, 1.0, 10)))
    low, high = segment(rising(0.62, 0.3, 1.0, 10)), segment(rising(0.78, 0.3, 1.0, 10))
    assert scheduler.decide(6, low) == Decision("stop")
    assert scheduler.decide(7, high) == Decision("continue", 15)


def test_median_waits_for_min_trials_at_that_milestone():
    scheduler = MedianScheduler(30, min_trials=3)
    scheduler.observe(1, segment([0.9] * 10))
    scheduler.observe(2, segment([0.9] * 10))
    scheduler.observe(3, segment([0.9] * 5))  # its curve does not reach 10 epochs: no value there
    assert scheduler.decide(4, segment([0.1] * 10)) == Decision("continue", 15)
    scheduler.observe(5, segment([0.9] * 12))
    assert scheduler.decide(4, segment([0.1] * 10)) == Decision("stop")


def test_median_judges_nothing_before_the_grace_period():
    scheduler = MedianScheduler(30, grace_epochs=5, min_trials=1)
    scheduler.observe(1, segment([0.9] * 30))
    assert scheduler.decide(2, segment([0.1] * 3)) == Decision("continue", 5)
    assert scheduler.decide(2, segment([0.1] * 5)) == Decision("stop")


def test_median_ranks_the_best_so_far_and_minimises_when_told():
    scheduler = MedianScheduler(30, "val_rmse", maximize=False, min_trials=3)
    for number in (1, 2, 3):
        scheduler.observe(number, TrialResult(metrics={}, curve=(0.5,) * 10, fidelity=10, pruned=True))
    # an error that dipped to 0.2 at epoch 3 and rose again: early stopping keeps 0.2 (below the median 0.5)
    dipped = TrialResult(metrics={}, curve=(0.6, 0.4, 0.2, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7), fidelity=10, pruned=True)
    assert scheduler.decide(4, dipped) == Decision("continue", 15)
    worse = TrialResult(metrics={}, curve=(0.9,) * 10, fidelity=10, pruned=True)
    assert scheduler.decide(5, worse) == Decision("stop")


# -- curve ---------------------------------------------------------------------------------------


def test_extrapolation_recovers_a_power_law():
    curve = rising(0.95, 0.5, 0.8, 8)
    assert extrapolate(curve, 30) == pytest.approx(0.95 - 0.5 * 30**-0.8, abs=1e-3)
    mirrored = [1 - v for v in curve]  # an error falling the same way
    assert extrapolate(mirrored, 30, maximize=False) == pytest.approx(1 - (0.95 - 0.5 * 30**-0.8), abs=1e-3)
    assert extrapolate(curve[:3], 30) is None  # too few points for three parameters
    assert extrapolate([float("nan")] * 10, 30) is None


def test_curve_stops_a_hopeless_curve_and_continues_one_still_rising_towards_the_best():
    scheduler = CurveScheduler(30)
    scheduler.observe(1, segment(rising(0.90, 0.3, 1.0, 30)))  # the best full result: about 0.89
    hopeless = segment(rising(0.55, 0.3, 0.8, 5))  # levels off near 0.55
    climbing = segment(rising(1.00, 0.6, 0.7, 5))  # 0.81 now, heading for about 0.94
    assert max(climbing.curve) < 0.89  # not ahead yet: only the extrapolation can tell
    assert scheduler.decide(2, hopeless) == Decision("stop")
    assert scheduler.decide(3, climbing) == Decision("continue", 10)


def test_curve_margin_buys_optimism():
    behind = segment(rising(0.87, 0.3, 1.0, 10))  # heads for 0.86, the best is 0.89
    strict = CurveScheduler(30)
    lenient = CurveScheduler(30, margin=0.05)
    for scheduler in (strict, lenient):
        scheduler.observe(1, segment(rising(0.90, 0.3, 1.0, 30)))
    assert strict.decide(2, behind) == Decision("stop")
    assert lenient.decide(2, behind) == Decision("continue", 15)


def test_curve_stops_nothing_before_min_full_results():
    scheduler = CurveScheduler(30, min_full=2)
    scheduler.observe(1, segment(rising(0.90, 0.3, 1.0, 30)))
    hopeless = segment(rising(0.55, 0.3, 0.8, 5))
    assert scheduler.decide(2, hopeless) == Decision("continue", 10)
    scheduler.observe(3, segment(rising(0.80, 0.3, 1.0, 30)))
    assert scheduler.decide(2, hopeless) == Decision("stop")


def test_curve_continues_when_the_fit_fails():
    scheduler = CurveScheduler(30, grace_epochs=3)
    scheduler.observe(1, segment(rising(0.90, 0.3, 1.0, 30)))
    assert scheduler.decide(2, segment([0.1, 0.2, 0.3])) == Decision("continue", 8)  # 3 points: no fit
    nan = TrialResult(metrics={}, curve=(float("nan"),) * 5, fidelity=5, pruned=True)
    assert scheduler.decide(3, nan) == Decision("continue", 8)


def test_curve_minimising():
    scheduler = CurveScheduler(30, "val_rmse", maximize=False)
    scheduler.observe(1, TrialResult(metrics={}, curve=tuple(1 - v for v in rising(0.90, 0.3, 1.0, 30)), fidelity=30))
    hopeless = TrialResult(metrics={}, curve=tuple(1 - v for v in rising(0.55, 0.3, 0.8, 5)), fidelity=5, pruned=True)
    climbing = TrialResult(metrics={}, curve=tuple(1 - v for v in rising(1.00, 0.6, 0.7, 5)), fidelity=5, pruned=True)
    assert scheduler.decide(2, hopeless) == Decision("stop")
    assert scheduler.decide(3, climbing) == Decision("continue", 10)


# -- settings and registration -------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (MedianSettings, {"grace_epochs": 0}, "grace_epochs must be at least 1, got 0"),
    (MedianSettings, {"interval": 0}, "interval must be at least 1"),
    (MedianSettings, {"min_trials": 0}, "min_trials must be at least 1"),
    (CurveSettings, {"min_full": 0}, "min_full must be at least 1"),
    (CurveSettings, {"margin": -0.1}, "margin must be a finite number of at least 0"),
    (CurveSettings, {"margin": float("inf")}, "margin must be a finite number"),
])
def test_settings_reject_bad_values(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_a_bad_setting_is_one_line_naming_the_key():
    with pytest.raises(ConfigError, match="scheduler.min_trials: must be at least 1, got 0"):
        structure_settings({"min_trials": 0}, MedianSettings, "scheduler")
    with pytest.raises(ConfigError, match="scheduler.patience"):
        structure_settings({"patience": 3}, CurveSettings, "scheduler")


def test_registered_through_the_plugin_system():
    import neuromosaic_scheduler_median

    system = PluginSystem.load([("median", neuromosaic_scheduler_median)], entry_points=False)
    assert system.names("scheduler") == ["curve", "median"]
    median = system.get("scheduler", "median")
    scheduler = median.factory(settings=MedianSettings(min_trials=2), max_epochs=20, metric="val_rmse", maximize=False)
    assert isinstance(scheduler, MedianScheduler) and (scheduler.max_epochs, scheduler.min_trials, scheduler.maximize) == (20, 2, False)
    curve = system.get("scheduler", "curve")
    assert curve.settings is CurveSettings
    assert isinstance(curve.factory(settings=None, max_epochs=30, metric="val_accuracy", maximize=True), CurveScheduler)


def test_importing_the_plugin_imports_no_numerics():
    import subprocess
    import sys

    code = "import sys, neuromosaic_scheduler_median; print(any(m in sys.modules for m in ('scipy', 'numpy', 'torch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
