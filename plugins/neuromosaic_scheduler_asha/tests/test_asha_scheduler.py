from __future__ import annotations

from collections import Counter

import pytest
from neuromosaic_scheduler_asha import AshaSettings, HyperbandSettings, asha_factory, hyperband_factory, parse_objective
from neuromosaic_scheduler_asha.halving import AshaScheduler, HyperbandScheduler, rungs

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import Decision
from neuromosaic_core.model import TrialResult
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings
from neuromosaic_core.testing.scheduler import SchedulerContract, SearchSimulation, synthetic_trials


class TestAshaContract(SchedulerContract):
    def make_scheduler(self, max_epochs, metric, maximize):
        return asha_factory(AshaSettings(), max_epochs, metric, maximize)


class TestAshaWithObjectivesContract(SchedulerContract):
    keeps_the_best = False  # with params as an objective a smaller, weaker net may take the best one's place

    def make_scheduler(self, max_epochs, metric, maximize):
        return asha_factory(AshaSettings(objectives=["params"]), max_epochs, metric, maximize)


class TestHyperbandContract(SchedulerContract):
    def make_scheduler(self, max_epochs, metric, maximize):
        return hyperband_factory(HyperbandSettings(), max_epochs, metric, maximize)


def result(curve, params=1e5, full=30):
    return TrialResult(metrics={"val_accuracy": max(curve), "params": params}, curve=tuple(curve),
                       fidelity=len(curve), pruned=len(curve) < full)


def flat(value, epochs=3):
    return result([value] * epochs)


# -- rungs ---------------------------------------------------------------------------------------


def test_the_default_rungs_for_30_epochs_are_1_3_10_30():
    assert asha_factory(AshaSettings(), 30, "val_accuracy", True).rungs == [1, 3, 10, 30]
    assert hyperband_factory(HyperbandSettings(), 30, "val_accuracy", True).brackets[0] == [3, 10, 30]


def test_rungs_for_30_epochs_from_3_are_3_10_30():
    assert rungs(30, 3, 3) == [3, 10, 30]
    assert AshaScheduler(30, min_epochs=3).rungs == [3, 10, 30]
    assert AshaScheduler(30, min_epochs=3).first_budget(1) == 3


def test_rungs_keep_min_epochs_and_collapse_when_training_is_short():
    assert rungs(100, 1, 3) == [1, 4, 11, 33, 100]
    assert rungs(27, 3, 3) == [3, 9, 27]
    assert rungs(20, 3, 2) == [3, 5, 10, 20]
    assert rungs(2, 3, 3) == [2]  # training.epochs below min_epochs: every trial trains in full
    scheduler = AshaScheduler(2, min_epochs=3)
    assert scheduler.first_budget(1) == 2


def test_describe_names_the_rungs():
    assert AshaScheduler(30, min_epochs=3).describe() == "asha: rungs at 3, 10, 30 epochs, top 1/3 promoted"
    line = hyperband_factory(HyperbandSettings(), 30, "val_accuracy", True).describe()
    assert "3,10,30 | 10,30 | 30" in line


# -- promotions ----------------------------------------------------------------------------------


def test_a_trial_in_the_top_third_goes_on_at_once_others_pause():
    scheduler = AshaScheduler(30, min_epochs=3)
    decisions = []
    for number, value in enumerate([0.5, 0.4, 0.9, 0.3, 0.2, 0.1], start=1):
        scheduler.observe(number, flat(value))
        decisions.append(scheduler.decide(number, flat(value)))
    # 1: 1 recorded, floor(1/3) = 0 go on; 3 is best of 3 (floor 1); 4..6 are not in the top
    assert decisions == [Decision("pause"), Decision("pause"), Decision("continue", 10),
                         Decision("pause"), Decision("pause"), Decision("pause")]


def test_promote_hands_out_exactly_the_top_third_once_each():
    scheduler = AshaScheduler(30, min_epochs=3)
    values = [0.5, 0.8, 0.3, 0.9, 0.1, 0.7, 0.2, 0.6, 0.4]
    for number, value in enumerate(values, start=1):
        scheduler.observe(number, flat(value))  # all paused at rung 3, none decided
    promoted = []
    while (answer := scheduler.promote()) is not None:
        promoted.append(answer)
    assert promoted == [(4, 10), (2, 10), (6, 10)]  # the top 9 // 3 = 3, best first
    # once they come back at rung 10, 3 recorded there: the best of them goes to 30
    for number, value in ((4, 0.95), (2, 0.85), (6, 0.75)):
        scheduler.observe(number, flat(value, 10))
    assert scheduler.promote() == (4, 30)
    assert scheduler.promote() is None


def test_a_default_12_trial_search_pauses_trials():
    sim = SearchSimulation(asha_factory(AshaSettings(), 30, "val_accuracy", True), synthetic_trials(12, 30), 30).run()
    assert sim.log[:2] == [("start", 1, 1), ("start", 2, 1)]
    assert ("decide", 1, 1, "pause", None) in sim.log  # floor(1/3) = 0 at the first rung
    assert len(sim.cut_short()) >= 6
    assert sum(sim.trained.values()) < 12 * 30 / 2


def test_from_3_epochs_a_12_trial_search_trains_the_true_best_in_full():
    # From 1 epoch this small search can leave the true best paused: the synthetic curves cross
    # after the first epoch (the contract suite's 30-trial search trains it in full from 1 too).
    sim = SearchSimulation(AshaScheduler(30, min_epochs=3), synthetic_trials(12, 30), 30).run()
    assert ("decide", 1, 3, "pause", None) in sim.log
    assert sim.state[sim.best_in_truth()] == "full"


def test_a_lower_max_epochs_caps_every_trial_there():
    scheduler = asha_factory(AshaSettings(max_epochs=9), 30, "val_accuracy", True)
    assert scheduler.rungs == [1, 3, 9]
    scheduler.observe(1, flat(0.9, 9))
    assert scheduler.decide(1, flat(0.9, 9)) == Decision("stop")
    with pytest.raises(ConfigError, match="scheduler.max_epochs: 40 is above training.epochs=30"):
        asha_factory(AshaSettings(max_epochs=40), 30, "val_accuracy", True)


def test_minimising_ranks_the_lowest_first():
    scheduler = AshaScheduler(30, "val_rmse", maximize=False, min_epochs=3)
    for number, value in enumerate([0.5, 0.1, 0.3], start=1):
        scheduler.observe(number, TrialResult(metrics={"val_rmse": value}, curve=(value,) * 3, fidelity=3, pruned=True))
    assert scheduler.promote() == (2, 10)


def test_ranked_by_the_best_so_far_not_the_last_epoch():
    scheduler = AshaScheduler(30, min_epochs=3)
    scheduler.observe(1, result([0.2, 0.9, 0.1]))  # peaked, then fell: early stopping keeps 0.9
    scheduler.observe(2, result([0.5, 0.6, 0.7]))
    scheduler.observe(3, result([0.1, 0.2, 0.3]))
    assert scheduler.promote() == (1, 10)


def test_the_state_is_rebuilt_from_results_alone():
    original = AshaScheduler(30, min_epochs=3)
    for number, value in enumerate([0.5, 0.8, 0.3, 0.9, 0.1, 0.7], start=1):
        original.observe(number, flat(value))
    assert original.promote() == (4, 10)
    original.observe(4, flat(0.95, 10))  # came back at rung 10
    fresh = AshaScheduler(30, min_epochs=3)
    for number, value in enumerate([0.5, 0.8, 0.3], start=1):
        fresh.observe(number, flat(value))
    fresh.observe(4, flat(0.95, 10))  # stored: only its latest result
    for number, value in ((5, 0.1), (6, 0.7)):
        fresh.observe(number, flat(value))
    assert fresh.promote() == original.promote() == (2, 10)


def test_a_crashed_trial_is_not_ranked():
    scheduler = AshaScheduler(30, min_epochs=3)
    for number, value in enumerate([0.9, 0.5, 0.4], start=1):
        scheduler.observe(number, flat(value))
    scheduler.observe(1, TrialResult.failure("runtime", "diverged"))  # type: ignore[arg-type]
    assert scheduler.promote() is None  # two left at rung 3: floor(2/3) = 0


# -- several objectives --------------------------------------------------------------------------


def test_a_slightly_worse_but_ten_times_smaller_net_is_promoted_over_a_dominated_one():
    nets = {  # number: (accuracy at rung 3, params)
        1: (0.80, 1e6),  # the most accurate
        2: (0.79, 1.1e6),  # more accurate than 3, but dominated by 1 (worse and bigger)
        3: (0.78, 1e5),  # slightly worse than 2, ten times smaller: a trade-off nobody beats
        4: (0.50, 2e6), 5: (0.40, 2e6), 6: (0.30, 3e6),
    }

    def promoted(scheduler):
        for number, (value, params) in nets.items():
            scheduler.observe(number, result([value] * 3, params=params))
        return [scheduler.promote(), scheduler.promote(), scheduler.promote()]

    assert promoted(asha_factory(AshaSettings(), 30, "val_accuracy", True)) == [(1, 10), (2, 10), None]
    assert promoted(asha_factory(AshaSettings(objectives=["params"]), 30, "val_accuracy", True)) == [(1, 10), (3, 10), None]
    # an explicit direction works the same
    assert promoted(asha_factory(AshaSettings(objectives=["params:min"]), 30, "val_accuracy", True))[1] == (3, 10)


def test_a_net_missing_an_objective_ranks_as_worst_on_it():
    scheduler = asha_factory(AshaSettings(objectives=["latency_ms"]), 30, "val_accuracy", True)
    scheduler.observe(1, TrialResult(metrics={"latency_ms": 5.0}, curve=(0.7,) * 3, fidelity=3, pruned=True))
    scheduler.observe(2, TrialResult(metrics={}, curve=(0.7,) * 3, fidelity=3, pruned=True))
    scheduler.observe(3, TrialResult(metrics={"latency_ms": 9.0}, curve=(0.6,) * 3, fidelity=3, pruned=True))
    assert scheduler.promote() == (1, 10)


# -- hyperband -----------------------------------------------------------------------------------


def test_hyperband_spreads_trials_over_brackets_deterministically():
    scheduler = hyperband_factory(HyperbandSettings(), 30, "val_accuracy", True)
    assert scheduler.brackets == [[3, 10, 30], [10, 30], [30]]
    assert scheduler.weights == [9, 5, 3]
    brackets = [scheduler.bracket_of(n) for n in range(1, 171)]
    assert brackets == [HyperbandScheduler(30, min_epochs=3).bracket_of(n) for n in range(1, 171)]  # a resume agrees
    counts = Counter(brackets)
    assert [round(counts[b] / 10) for b in range(3)] == [9, 5, 3]
    assert len(set(brackets[:6])) == 3  # spread from the start, not in blocks
    assert {scheduler.first_budget(n) for n in range(1, 20)} == {3, 10, 30}


def test_hyperband_ranks_each_bracket_on_its_own():
    scheduler = HyperbandScheduler(30, min_epochs=3)
    in_first = [n for n in range(1, 60) if scheduler.bracket_of(n) == 0][:3]
    in_second = [n for n in range(1, 60) if scheduler.bracket_of(n) == 1][:3]
    for number in in_first:
        scheduler.observe(number, flat(0.1 * number / 60))  # all worse than the second bracket's
    for i, number in enumerate(in_second):
        scheduler.observe(number, flat(0.9 + 0.01 * i, 10))
    promoted = {scheduler.promote(), scheduler.promote()}
    # each bracket promotes its own best: the first bracket's from 3 to 10, the second's from 10 to 30
    assert promoted == {(in_first[-1], 10), (in_second[-1], 30)}
    assert scheduler.promote() is None


# -- settings and registration -------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_epochs": 0}, "min_epochs must be at least 1, got 0"),
    ({"reduction_factor": 1}, "reduction_factor must be at least 2, got 1"),
    ({"max_epochs": 0}, "max_epochs must be at least 1"),
    ({"objectives": ["params:smallest"]}, "use min or max"),
    ({"objectives": [":min"]}, "names no metric"),
    ({"objectives": ["params", "params:min"]}, "listed twice"),
])
def test_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AshaSettings(**kwargs)


def test_a_bad_setting_is_one_line_naming_the_key():
    with pytest.raises(ConfigError, match="scheduler.min_epochs: must be at least 1, got 0"):
        structure_settings({"min_epochs": 0}, AshaSettings, "scheduler")
    with pytest.raises(ConfigError, match="scheduler.eta"):
        structure_settings({"eta": 3}, AshaSettings, "scheduler")


def test_parse_objective():
    assert parse_objective("params") == ("params", None)
    assert parse_objective("latency_ms:min") == ("latency_ms", False)
    assert parse_objective("val_accuracy:maximize") == ("val_accuracy", True)


def test_registered_through_the_plugin_system():
    import neuromosaic_scheduler_asha

    system = PluginSystem.load([("asha", neuromosaic_scheduler_asha)], entry_points=False)
    assert system.names("scheduler") == ["asha", "hyperband"]
    asha = system.get("scheduler", "asha")
    assert asha.settings is AshaSettings
    scheduler = asha.factory(settings=asha.default_settings(), max_epochs=30, metric="val_rmse", maximize=False)
    assert isinstance(scheduler, AshaScheduler) and (scheduler.max_epochs, scheduler.metric, scheduler.maximize) == (30, "val_rmse", False)
    hyperband = system.get("scheduler", "hyperband")
    assert isinstance(hyperband.factory(settings=None, max_epochs=30, metric="val_accuracy", maximize=True), HyperbandScheduler)


def test_importing_the_plugin_imports_no_numerics():
    import subprocess
    import sys

    code = "import sys, neuromosaic_scheduler_asha; print(any(m in sys.modules for m in ('deap', 'numpy', 'torch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
