from __future__ import annotations

import random
import statistics
import warnings

import optuna
import pytest
from neuromosaic_strategy_optuna import OptunaSettings, factory, parse_objectives
from neuromosaic_strategy_optuna.search import OptunaSearch
from optuna.trial import TrialState

from neuromosaic_core.model import (
    ArchitectureVector,
    CategoricalDimension,
    ErrorClass,
    IntDimension,
    RealDimension,
    SearchSpace,
    TrialResult,
)
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.strategy import StrategyContract, mixed_space, synthetic_score


def make(space, seed, **settings):
    return factory(space=space, seed=seed, settings=OptunaSettings(**settings), metric="val_accuracy", maximize=True)


class TestTPEContract(StrategyContract):
    """TPE after a short random start-up, so the contract exercises the model-based proposals."""

    def make_strategy(self, space, seed):
        return make(space, seed, sampler="tpe", n_startup_trials=4)


class TestRandomContract(StrategyContract):
    def make_strategy(self, space, seed):
        return make(space, seed, sampler="random")


class TestNSGA2Contract(StrategyContract):
    def make_strategy(self, space, seed):
        return make(space, seed, sampler="nsga2", n_startup_trials=4)


class TestMultiObjectiveTPEContract(StrategyContract):
    def make_strategy(self, space, seed):
        return make(space, seed, sampler="tpe", objectives="val_accuracy:max,params:min", n_startup_trials=4)


# No contract class for `gp`: GPSampler refits a Gaussian process on every ask (about a second
# per suggestion here), so the suite's ~150 suggestions take minutes. test_gp_sampler_smoke below
# checks that it works on a conditional space.


def ok(score: float, metric: str = "val_accuracy", **more: float) -> TrialResult:
    return TrialResult(metrics={metric: score, **more})


def conditional_space() -> SearchSpace:
    return SearchSpace(
        [
            CategoricalDimension("family", choices=("mlp", "conv1d")),
            IntDimension("depth", low=1, high=4),
            IntDimension("kernel_size", low=3, high=9, active_if={"family": ("conv1d",)}),
            CategoricalDimension("pool", choices=("max", "avg"), active_if={"family": ("conv1d",)}),
            IntDimension("pool_size", low=2, high=4, active_if={"pool": ("max",)}),  # conditional on a conditional
            RealDimension("lr", low=1e-4, high=1e-1, log=True),
        ]
    )


def toy_space() -> SearchSpace:
    return SearchSpace(
        [IntDimension("x", low=0, high=100), RealDimension("y", low=-5.0, high=5.0), CategoricalDimension("c", choices=("a", "b", "c", "d"))]
    )


def toy_score(v: ArchitectureVector) -> float:
    """Optimum 0 at x=73, y=1.3, c="d"."""
    return -((v["x"] - 73) ** 2) / 100 - (v["y"] - 1.3) ** 2 - (0.0 if v["c"] == "d" else 2.0)


def run(strategy, score, trials: int, batch: int = 1, metric: str = "val_accuracy") -> list[tuple[ArchitectureVector, TrialResult]]:
    told: list[tuple[ArchitectureVector, TrialResult]] = []
    while len(told) < trials:
        results = [(v, ok(score(v), metric)) for v in strategy.suggest_architectures(batch)]
        strategy.update_with_results(results)
        told += results
    return told


# -- registration and settings -------------------------------------------------------------


def test_registered_through_the_plugin_system():
    import neuromosaic_strategy_optuna

    system = PluginSystem.load([("optuna", neuromosaic_strategy_optuna)], entry_points=False)
    component = system.get("strategy", "optuna")
    assert component.settings is OptunaSettings
    assert component.description
    strategy = component.factory(space=mixed_space(), seed=3, settings=component.default_settings(), metric="val_accuracy", maximize=True)
    assert isinstance(strategy, OptunaSearch)
    assert (strategy.seed, strategy.metric, strategy.maximize, strategy.sampler_name) == (3, "val_accuracy", True, "tpe")
    assert (strategy.n_startup_trials, strategy.multivariate, strategy.max_retries) == (10, True, 50)
    assert isinstance(strategy.study.sampler, optuna.samplers.TPESampler)
    assert strategy.study.directions == [optuna.study.StudyDirection.MAXIMIZE]


def test_factory_without_settings_uses_defaults():
    strategy = factory(space=mixed_space(), seed=0, settings=None, metric="test_loss", maximize=False)
    assert strategy.objectives == [("test_loss", False)]
    assert strategy.study.directions == [optuna.study.StudyDirection.MINIMIZE]


@pytest.mark.parametrize(
    ("sampler", "cls"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("gp", optuna.samplers.GPSampler),
        ("random", optuna.samplers.RandomSampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
    ],
)
def test_each_sampler_is_built(sampler, cls):
    assert isinstance(make(mixed_space(), 0, sampler=sampler).study.sampler, cls)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler": "cmaes"}, "sampler must be one of tpe, gp, random, nsga2"),
        ({"objectives": "val_accuracy"}, "objectives"),
        ({"objectives": "val_accuracy:up"}, "objectives"),
        ({"objectives": "a:max,a:min"}, "named twice"),
        ({"n_startup_trials": -1}, "n_startup_trials"),
        ({"max_retries": 0}, "max_retries"),
    ],
)
def test_settings_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptunaSettings(**kwargs)


def test_constructor_rejects_bad_values():
    with pytest.raises(ValueError, match="sampler"):
        OptunaSearch(mixed_space(), sampler="grid")
    with pytest.raises(ValueError, match="max_retries"):
        OptunaSearch(mixed_space(), max_retries=0)


def test_parse_objectives():
    assert parse_objectives("") == []
    assert parse_objectives(" val_accuracy:max , params:MIN,latency_ms:minimize") == [
        ("val_accuracy", True),
        ("params", False),
        ("latency_ms", False),
    ]


# -- the mapping onto define-by-run ------------------------------------------------------------


def test_inactive_dimensions_are_never_suggested_to_optuna():
    space = conditional_space()
    strategy = make(space, 0, n_startup_trials=5)
    told = run(strategy, lambda v: float(v["depth"]) + (1.0 if v["family"] == "conv1d" else 0.0), trials=30, batch=3)
    by_key = {v.key(): v for v, _ in told}
    families = set()
    for trial in strategy.study.get_trials(states=(TrialState.COMPLETE,)):
        vector = space.canonicalize(trial.params)
        assert vector.key() in by_key
        active = [d.name for d in space.active_dimensions(vector.values)]
        assert list(trial.params) == active, (trial.params, active)  # suggested in order, active ones only
        assert trial.distributions == strategy.distributions(vector)
        if vector["family"] == "mlp":
            assert not {"kernel_size", "pool", "pool_size"} & trial.params.keys()
        elif vector["pool"] == "avg":
            assert "pool_size" not in trial.params
        families.add(vector["family"])
    assert families == {"mlp", "conv1d"}


def test_suggestions_are_canonical_with_defaults_for_inactive_dimensions():
    space = conditional_space()
    for v in make(space, 1).suggest_architectures(20):
        assert space.canonicalize(v) == v and space.contains(v)
        if v["family"] == "mlp":
            assert (v["kernel_size"], v["pool"], v["pool_size"]) == (3, "max", 2)


def test_history_it_never_suggested_is_added_with_the_distributions_ask_would_use():
    space = conditional_space()
    strategy = make(space, 0)
    mlp = ArchitectureVector({"family": "mlp", "depth": 2, "kernel_size": 3, "pool": "max", "pool_size": 2, "lr": 0.01})
    conv = ArchitectureVector({"family": "conv1d", "depth": 3, "kernel_size": 7, "pool": "avg", "pool_size": 2, "lr": 0.001})
    failed = ArchitectureVector({"family": "conv1d", "depth": 1, "kernel_size": 5, "pool": "max", "pool_size": 4, "lr": 0.05})
    strategy.update_with_results([(mlp, ok(0.5)), (conv, ok(0.7)), (failed, TrialResult.failure(ErrorClass.SHAPE, "bad"))])
    trials = strategy.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert trials[0].params == {"family": "mlp", "depth": 2, "lr": 0.01}
    assert trials[1].params == {"family": "conv1d", "depth": 3, "kernel_size": 7, "pool": "avg", "lr": 0.001}
    assert trials[2].params == {"family": "conv1d", "depth": 1, "kernel_size": 5, "pool": "max", "pool_size": 4, "lr": 0.05}
    # the same distributions as asked trials: Optuna would raise on an incompatible one
    asked = run(strategy, lambda v: 0.1, trials=12, batch=4)
    assert all(space.contains(v) for v, _ in asked)
    assert strategy.evaluated == 15
    assert strategy.best() == (conv, 0.7)


def test_results_are_told_to_their_own_pending_trial():
    strategy = make(mixed_space(), 0)
    vectors = strategy.suggest_architectures(4)
    assert strategy.pending == 4
    assert [t.state for t in strategy.study.trials] == [TrialState.RUNNING] * 4
    strategy.update_with_results(
        [
            (vectors[2], ok(0.3)),
            (vectors[0], TrialResult.failure(ErrorClass.TIMEOUT, "slow")),
            (vectors[3], TrialResult(metrics={"other": 1.0})),
            (vectors[1], ok(float("nan"))),
        ]
    )
    assert strategy.pending == 0
    states = [t.state for t in strategy.study.trials]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL]  # no metric, NaN: failed
    assert strategy.study.trials[2].value == 0.3
    assert len(strategy.study.trials) == 4  # nothing added: all four were pending


def test_foreign_vectors_are_ignored():
    strategy = make(toy_space(), 0)
    strategy.update_with_results(
        [(ArchitectureVector({"something": "else"}), ok(1.0)), (ArchitectureVector({"x": 999, "y": 0.0, "c": "a"}), ok(1.0))]
    )
    assert strategy.study.trials == [] and strategy.best() is None
    assert len(strategy.suggest_architectures(3)) == 3


def test_repeats_are_failed_in_optuna_and_never_pending_twice():
    space = SearchSpace([IntDimension("x", low=0, high=5)])  # 6 points
    strategy = make(space, 0, n_startup_trials=2)
    seen = []
    for _ in range(6):
        (v,) = strategy.suggest_architectures(1)
        seen.append(v["x"])
        strategy.update_with_results([(v, ok(-abs(v["x"] - 4)))])
    assert sorted(seen) == list(range(6))  # no repeat while unexplored points remain
    states = [t.state for t in strategy.study.trials]
    assert states.count(TrialState.COMPLETE) == 6
    assert set(states) <= {TrialState.COMPLETE, TrialState.FAIL}  # the rejected repeats
    more = strategy.suggest_architectures(4)  # exhausted: repeats of evaluated vectors, at once
    assert len(more) == 4 and strategy.pending == 4


# -- multi-objective -------------------------------------------------------------------------


def test_multi_objective_pareto_front():
    space = toy_space()
    strategy = make(space, 0, objectives="val_accuracy:max,params:min", n_startup_trials=8)
    assert strategy.multi_objective
    assert strategy.study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    told = []
    for _ in range(10):
        vectors = strategy.suggest_architectures(3)
        results = [(v, TrialResult(metrics={"val_accuracy": toy_score(v), "params": float(v["x"] * 1000)})) for v in vectors]
        strategy.update_with_results(results)
        told += results
    front = strategy.pareto_front()
    assert front and len(front) == len(strategy.study.best_trials)
    points = [(r.metrics["val_accuracy"], r.metrics["params"]) for _, r in told]
    keys = {v.key() for v, _ in told}
    for vector, values in front:
        assert set(values) == {"val_accuracy", "params"} and vector.key() in keys
        acc, params = values["val_accuracy"], values["params"]
        dominated = any(a >= acc and p <= params and (a, p) != (acc, params) for a, p in points)
        assert not dominated, (vector.values, values)
    assert any(values["params"] == min(p for _, p in points) for _, values in front)  # the smallest is on the front


def test_multi_objective_missing_metric_fails_the_trial():
    strategy = make(toy_space(), 0, objectives="val_accuracy:max,params:min")
    (v,) = strategy.suggest_architectures(1)
    strategy.update_with_results([(v, ok(0.9))])  # no "params"
    assert strategy.study.trials[0].state == TrialState.FAIL and strategy.pareto_front() == []


def test_single_objective_pareto_front_is_the_best_trial():
    strategy = make(toy_space(), 0)
    told = run(strategy, toy_score, trials=12, batch=4)
    best = max(toy_score(v) for v, _ in told)
    assert [values for _, values in strategy.pareto_front()] == [{"val_accuracy": best}]
    assert strategy.best()[1] == best


# -- behaviour -------------------------------------------------------------------------------


def test_tpe_beats_random_sampling_on_a_toy_problem():
    def best(sampler: str, seed: int) -> float:
        strategy = OptunaSearch(toy_space(), seed=seed, sampler=sampler, metric="score")
        return max(toy_score(v) for v, _ in run(strategy, toy_score, trials=40, metric="score"))

    tpe = [best("tpe", seed) for seed in range(7)]
    uniform = [best("random", seed) for seed in range(7)]
    assert statistics.median(tpe) > statistics.median(uniform), (tpe, uniform)


def test_minimises_when_asked():
    strategy = OptunaSearch(toy_space(), seed=0, metric="loss", maximize=False, n_startup_trials=5)
    told = run(strategy, lambda v: -toy_score(v), trials=30, metric="loss")
    losses = [r.metrics["loss"] for _, r in told]
    assert min(losses) < min(losses[:5])
    assert strategy.best()[1] == min(losses)


def test_deterministic_for_a_seed_after_start_up_too():
    def keys(seed: int) -> list[str]:
        strategy = make(mixed_space(), seed, n_startup_trials=4)
        return [v.key() for v, _ in run(strategy, synthetic_score, trials=24, batch=3)]

    first = keys(11)
    assert first == keys(11)
    assert first != keys(12)


def test_a_resumed_search_continues_from_the_history():
    space = toy_space()
    original = make(space, 5, n_startup_trials=5)
    history = run(original, toy_score, trials=20, batch=2)
    complete = len(original.complete_trials())

    resumed = make(space, 5, n_startup_trials=5)
    resumed.update_with_results(history)
    assert len(resumed.complete_trials()) == complete == 20
    assert resumed.best() == original.best()
    assert resumed.pending == 0 and resumed.evaluated == 20
    best_before = resumed.best()[1]

    later = run(resumed, toy_score, trials=20, batch=2)
    assert not {v.key() for v, _ in later} & {v.key() for v, _ in history}  # past the start-up: no re-runs
    assert resumed.best()[1] > best_before  # and it keeps improving
    assert len(resumed.complete_trials()) == 40


def test_all_failures_keep_it_sampling():
    strategy = make(mixed_space(), 0, n_startup_trials=2)
    for _ in range(4):
        vectors = strategy.suggest_architectures(3)
        assert len({v.key() for v in vectors}) == 3
        strategy.update_with_results([(v, TrialResult.failure(ErrorClass.NAN_LOSS, "nan")) for v in vectors])
    assert strategy.best() is None and strategy.pareto_front() == []


def test_nsga2_population_size_follows_n_startup_trials():
    assert make(mixed_space(), 0, sampler="nsga2", n_startup_trials=6).study.sampler._population_size == 6
    assert make(mixed_space(), 0, sampler="nsga2", n_startup_trials=0).study.sampler._population_size == 2


def test_gp_sampler_smoke():
    """GP on a conditional space: a few model-based suggestions (slow: GP refits on every ask)."""
    space = conditional_space()
    strategy = make(space, 0, sampler="gp", n_startup_trials=2)
    told = run(strategy, lambda v: float(v["depth"]) - abs(float(v["lr"]) - 0.01), trials=4, batch=1)
    assert all(space.contains(v) for v, _ in told)
    assert len({v.key() for v, _ in told}) == 4
    assert len(strategy.complete_trials()) == 4


def test_no_experimental_warnings_leak():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        strategy = make(conditional_space(), 0, n_startup_trials=2)  # group-decomposed TPE is experimental
        run(strategy, lambda v: float(v["depth"]), trials=6, batch=2)
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]


def test_suggest_zero_and_negative():
    strategy = make(mixed_space(), 0)
    assert strategy.suggest_architectures(0) == []
    with pytest.raises(ValueError):
        strategy.suggest_architectures(-1)


def test_does_not_touch_global_random_state():
    random.seed(99)
    expected = random.random()
    random.seed(99)
    run(make(mixed_space(), 0, n_startup_trials=2), synthetic_score, trials=10, batch=2)
    assert random.random() == expected


def test_a_marked_vector_is_a_running_trial_and_a_forgotten_one_a_failed_trial_not_evaluated():
    space = mixed_space()
    strategy = make(space, 0)
    resumed = space.canonicalize(space.sample(random.Random(1)))
    strategy.mark_pending([resumed])
    assert [t.state for t in strategy.study.trials] == [TrialState.RUNNING]
    assert space.canonicalize(strategy.study.trials[0].params) == resumed
    (suggested,) = strategy.suggest_architectures(1)
    strategy.forget([suggested, resumed])
    assert [t.state for t in strategy.study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert strategy.pending == 0 and strategy.evaluated == 0


# -- results at reduced fidelity (a trial scheduler) -------------------------------------------------


def pruned(score: float, fidelity: int, **more: float) -> TrialResult:
    """Stopped by a scheduler after ``fidelity`` epochs (of 8); the curve climbs to ``score``."""
    curve = tuple(round(score * (i + 1) / fidelity, 6) for i in range(fidelity))
    return TrialResult(metrics={"val_accuracy": score, **more}, curve=curve, fidelity=fidelity, pruned=True)


def full(score: float, **more: float) -> TrialResult:
    return TrialResult(metrics={"val_accuracy": score, **more}, curve=(score / 2,) * 4 + (score,) * 4, fidelity=8)


def test_pruned_results_reach_tpe_as_pruned_trials_and_a_promoted_ones_full_result_as_complete():
    strategy = make(toy_space(), 0, n_startup_trials=2)
    early, finished, stopped = strategy.suggest_architectures(3)
    strategy.update_with_results([(early, pruned(0.9, 2)), (finished, full(0.5)), (stopped, pruned(0.3, 4))])
    trials = strategy.study.trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.PRUNED]
    assert trials[0].intermediate_values == {1: 0.45, 2: 0.9}  # epoch by epoch, as trial.report(value, step)
    assert trials[2].intermediate_values == {1: 0.075, 2: 0.15, 3: 0.225, 4: 0.3}
    assert strategy.best() == (finished, 0.5), "a value after 2 epochs counted as a complete trial's"
    # `early` was promoted, trained to the end and told again: TPE learns its full result too
    strategy.update_with_results([(early, full(0.8))])
    trials = strategy.study.trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert strategy.space.canonicalize(trials[3].params) == early and trials[3].value == 0.8
    assert trials[3].intermediate_values == {**{e: 0.4 for e in range(1, 5)}, **{e: 0.8 for e in range(5, 9)}}
    assert strategy.best() == (early, 0.8)
    assert (strategy.pending, strategy.evaluated) == (0, 3)
    more = strategy.suggest_architectures(5)  # TPE models the mix of complete and pruned trials
    assert not {v.key() for v in more} & {early.key(), finished.key(), stopped.key()}


def test_a_replayed_history_of_pruned_and_promoted_trials_rebuilds_the_same_study():
    """A resume replays the stored results into a fresh strategy (Optuna's takes no snapshot)."""
    original = make(toy_space(), 3, n_startup_trials=2)
    early, finished = original.suggest_architectures(2)
    told = [(early, pruned(0.6, 3)), (finished, full(0.5)), (early, full(0.7))]
    for pair in told:
        original.update_with_results([pair])
    resumed = make(toy_space(), 3, n_startup_trials=2)
    resumed.update_with_results(told)
    summary = [(t.state, t.params, t.value, t.intermediate_values) for t in original.study.trials]
    assert [(t.state, t.params, t.value, t.intermediate_values) for t in resumed.study.trials] == summary
    assert resumed.best() == original.best() == (early, 0.7)
    assert original.state_dict() is None


def test_with_several_objectives_pruned_trials_carry_no_intermediate_values():
    strategy = make(toy_space(), 0, objectives="val_accuracy:max,params:min", n_startup_trials=2)
    a, b = strategy.suggest_architectures(2)
    strategy.update_with_results([(a, pruned(0.9, 2, params=10.0)), (b, full(0.5, params=20.0))])
    strategy.update_with_results([(a, full(0.8, params=10.0))])
    trials = strategy.study.trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]
    assert all(t.intermediate_values == {} for t in trials)  # Optuna's report is single-objective only
    assert [v for v, _ in strategy.pareto_front()] == [a]
