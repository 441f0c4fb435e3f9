from __future__ import annotations

import random

import pytest
from neuromosaic_strategy_hillclimb import HillClimbSettings, factory
from neuromosaic_strategy_hillclimb.search import HillClimbSearch

from neuromosaic_core.model import (
    ArchitectureVector,
    CategoricalDimension,
    ErrorClass,
    ExperimentError,
    IntDimension,
    RealDimension,
    SearchSpace,
    TrialResult,
)
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.strategy import StrategyContract, mixed_space, synthetic_score


class TestHillClimbContract(StrategyContract):
    def make_strategy(self, space, seed):
        return HillClimbSearch(space, seed=seed)


class TestHillClimbViaFactoryContract(StrategyContract):
    """Through the factory, with a short warm-up so the contract exercises the mutations."""

    def make_strategy(self, space, seed):
        return factory(space=space, seed=seed, settings=HillClimbSettings(warmup=2, top_k=2), metric="val_accuracy", maximize=True)


def ok(score: float, metric: str = "val_accuracy") -> TrialResult:
    return TrialResult(metrics={metric: score})


def toy_space() -> SearchSpace:
    return SearchSpace([IntDimension("x", low=0, high=50), CategoricalDimension("c", choices=("a", "b", "c"))])


def toy_score(v: ArchitectureVector) -> float:
    """Optimum -0.0 at x=7, c="b"."""
    return float(-((v["x"] - 7) ** 2)) - (0.0 if v["c"] == "b" else 5.0)


def run(strategy, score, trials: int = 30, batch: int = 1) -> list[float]:
    scores: list[float] = []
    while len(scores) < trials:
        vectors = strategy.suggest_architectures(batch)
        strategy.update_with_results([(v, ok(score(v))) for v in vectors])
        scores += [score(v) for v in vectors]
    return scores


# -- registration and settings -------------------------------------------------------------


def test_registered_through_the_plugin_system():
    import neuromosaic_strategy_hillclimb

    system = PluginSystem.load([("hillclimb", neuromosaic_strategy_hillclimb)], entry_points=False)
    component = system.get("strategy", "hillclimb")
    assert component.settings is HillClimbSettings
    assert component.description
    strategy = component.factory(space=mixed_space(), seed=3, settings=component.default_settings(), metric="val_accuracy", maximize=True)
    assert isinstance(strategy, HillClimbSearch)
    assert (strategy.seed, strategy.metric, strategy.maximize) == (3, "val_accuracy", True)
    assert (strategy.warmup, strategy.top_k, strategy.max_retries) == (8, 3, 100)


def test_factory_passes_settings_metric_and_direction():
    strategy = factory(
        space=mixed_space(), seed=1, settings=HillClimbSettings(warmup=2, top_k=5, max_retries=7), metric="test_loss", maximize=False
    )
    assert (strategy.metric, strategy.maximize) == ("test_loss", False)
    assert (strategy.warmup, strategy.top_k, strategy.max_retries) == (2, 5, 7)


def test_factory_without_settings_uses_defaults():
    strategy = factory(space=mixed_space(), seed=0, settings=None, metric="val_accuracy", maximize=True)
    assert (strategy.warmup, strategy.top_k, strategy.max_retries) == (8, 3, 100)


@pytest.mark.parametrize("kwargs", [{"warmup": -1}, {"top_k": 0}, {"max_retries": 0}])
def test_settings_and_constructor_reject_bad_values(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        HillClimbSettings(**kwargs)
    with pytest.raises(ValueError, match=name):
        HillClimbSearch(mixed_space(), **kwargs)


# -- behaviour -------------------------------------------------------------------------------


def test_hill_climbing_improves_on_its_warm_up():
    strategy = HillClimbSearch(toy_space(), seed=0, warmup=8)
    scores = run(strategy, toy_score, trials=30)
    warmup_best, final_best = max(scores[:8]), max(scores)
    assert final_best > warmup_best, f"no improvement after the warm-up: {warmup_best} -> {final_best}"
    assert final_best == 0.0  # found the optimum x=7, c="b"
    best_vector, best_score = strategy.best()
    assert (best_vector["x"], best_vector["c"], best_score) == (7, "b", 0.0)


def test_hill_climbing_beats_uniform_sampling_on_the_toy_space():
    def random_best(seed: int) -> float:
        rng = random.Random(seed)
        return max(toy_score(toy_space().sample(rng)) for _ in range(30))

    hill = sorted(max(run(HillClimbSearch(toy_space(), seed=seed), toy_score, trials=30)) for seed in range(7))
    uniform = sorted(random_best(seed) for seed in range(7))
    assert hill[3] > uniform[3], (hill, uniform)  # medians over 7 seeds


def test_minimises_when_asked():
    strategy = HillClimbSearch(toy_space(), seed=0, warmup=8, metric="loss", maximize=False)
    losses = []
    for _ in range(30):
        (v,) = strategy.suggest_architectures(1)
        loss = -toy_score(v)
        strategy.update_with_results([(v, ok(loss, "loss"))])
        losses.append(loss)
    assert min(losses) < min(losses[:8])
    assert strategy.best()[1] == min(losses)


def test_mutations_change_exactly_one_active_dimension():
    space = SearchSpace(
        [IntDimension("x", low=0, high=50), CategoricalDimension("c", choices=("a", "b", "c")), RealDimension("r", low=0.0, high=1.0)]
    )
    strategy = HillClimbSearch(space, seed=4, warmup=0, top_k=1)
    parent = ArchitectureVector({"x": 20, "c": "a", "r": 0.5})
    strategy.update_with_results([(parent, ok(1.0))])
    for v in strategy.suggest_architectures(20):
        assert strategy.lineage[v.key()] == parent.key()
        changed = [k for k in parent.values if parent[k] != v[k]]
        assert len(changed) == 1, (parent.values, v.values)


def test_activating_a_conditional_dimension_samples_it():
    space = SearchSpace(
        [CategoricalDimension("family", choices=("mlp", "conv1d")), IntDimension("kernel", low=3, high=9, active_if={"family": ("conv1d",)})]
    )
    strategy = HillClimbSearch(space, seed=0, warmup=0, top_k=1)
    strategy.update_with_results([(ArchitectureVector({"family": "mlp", "kernel": 3}), ok(1.0))])
    children = strategy.suggest_architectures(6)  # 7 conv1d kernels exist: all fresh, all mutations
    assert all(v["family"] == "conv1d" and space.contains(v) for v in children)
    assert len({v["kernel"] for v in children}) == 6


def test_failed_parents_are_never_mutated():
    space = SearchSpace([IntDimension("x", low=0, high=1000)])
    strategy = HillClimbSearch(space, seed=0, warmup=0, top_k=3)
    good = [ArchitectureVector({"x": x}) for x in (100, 200)]
    failed = [ArchitectureVector({"x": x}) for x in (500, 600, 700)]
    # A failed trial may still report metrics (e.g. a NaN loss after some epochs): never a parent.
    crashed_with_metrics = TrialResult(metrics={"val_accuracy": 0.99}, error=ExperimentError(ErrorClass.NAN_LOSS, "nan"))
    strategy.update_with_results(
        [(good[0], ok(0.1)), (failed[0], crashed_with_metrics), (good[1], ok(0.2)), (failed[1], TrialResult.failure(ErrorClass.CRASH, "died"))]
    )
    # A vector that succeeded once and failed later is remembered as failed.
    strategy.update_with_results([(failed[2], ok(0.9)), (failed[2], TrialResult.failure(ErrorClass.TIMEOUT, "slow"))])
    # ... and a later success of a failed vector does not make it a parent again.
    strategy.update_with_results([(failed[0], ok(0.95))])
    assert [v for v, _ in strategy.parents()] == [good[1], good[0]]
    good_keys = {v.key() for v in good}
    for _ in range(10):
        vectors = strategy.suggest_architectures(5)
        assert all(strategy.lineage[v.key()] in good_keys for v in vectors)
        strategy.update_with_results([(v, TrialResult.failure(ErrorClass.RUNTIME, "boom")) for v in vectors])
    assert [v for v, _ in strategy.parents()] == [good[1], good[0]]


def test_only_failures_fall_back_to_random_sampling():
    strategy = HillClimbSearch(mixed_space(), seed=0, warmup=0)
    for _ in range(4):
        vectors = strategy.suggest_architectures(3)
        assert all(strategy.lineage[v.key()] is None for v in vectors)
        strategy.update_with_results([(v, TrialResult.failure(ErrorClass.SHAPE, "bad")) for v in vectors])
    assert strategy.parents() == []


def test_results_without_the_metric_or_not_finite_are_not_parents():
    strategy = HillClimbSearch(toy_space(), seed=0, warmup=0)
    a, b, c = (ArchitectureVector({"x": x, "c": "a"}) for x in (1, 2, 3))
    strategy.update_with_results([(a, TrialResult(metrics={"other": 1.0})), (b, ok(float("nan"))), (c, ok(0.5))])
    assert [v for v, _ in strategy.parents()] == [c]


def test_replayed_history_counts_towards_the_warm_up():
    space = mixed_space()
    strategy = HillClimbSearch(space, seed=0, warmup=8)
    rng = random.Random(1)
    history = [space.sample(rng) for _ in range(8)]
    strategy.update_with_results([(v, ok(synthetic_score(v))) for v in history])
    assert not strategy.warming_up
    vectors = strategy.suggest_architectures(4)
    assert all(strategy.lineage[v.key()] is not None for v in vectors)


def test_no_duplicates_of_evaluated_vectors_while_unexplored_ones_remain():
    space = SearchSpace([IntDimension("x", low=0, high=9)])
    strategy = HillClimbSearch(space, seed=0, warmup=2, top_k=1)
    seen = []
    for _ in range(10):
        (v,) = strategy.suggest_architectures(1)
        seen.append(v["x"])
        strategy.update_with_results([(v, ok(-abs(v["x"] - 9)))])
    assert sorted(seen) == list(range(10))
    more = strategy.suggest_architectures(3)  # exhausted: repeats allowed, never hangs
    assert len(more) == 3


def test_a_space_with_nothing_to_mutate_still_answers():
    space = SearchSpace([CategoricalDimension("only", choices=("a",))])
    strategy = HillClimbSearch(space, seed=0, warmup=0, max_retries=3)
    strategy.update_with_results([(ArchitectureVector({"only": "a"}), ok(1.0))])
    assert strategy.suggest_architectures(2) == [ArchitectureVector({"only": "a"})] * 2


def test_log_and_real_dimensions_stay_in_range():
    space = SearchSpace(
        [IntDimension("w", low=8, high=512, log=True), RealDimension("lr", low=1e-5, high=1e-1, log=True), RealDimension("p", low=0.0, high=0.5)]
    )
    strategy = HillClimbSearch(space, seed=3, warmup=1, top_k=2)
    for _ in range(40):
        vectors = strategy.suggest_architectures(2)
        assert all(space.contains(v) for v in vectors)
        strategy.update_with_results([(v, ok(float(v["p"]))) for v in vectors])


def test_foreign_vectors_are_tolerated_and_never_parents():
    strategy = HillClimbSearch(toy_space(), seed=0, warmup=0)
    strategy.update_with_results([(ArchitectureVector({"something": "else"}), ok(1.0)), (ArchitectureVector({"x": 99, "c": "a"}), ok(1.0))])
    assert strategy.parents() == []
    assert len(strategy.suggest_architectures(3)) == 3


def test_deterministic_over_a_whole_run():
    def keys(seed: int) -> list[str]:
        strategy = HillClimbSearch(mixed_space(), seed=seed, warmup=4)
        out = []
        for _ in range(10):
            vectors = strategy.suggest_architectures(3)
            out += [v.key() for v in vectors]
            strategy.update_with_results([(v, ok(synthetic_score(v))) for v in vectors])
        return out

    assert keys(11) == keys(11)
    assert keys(11) != keys(12)


def test_suggest_zero_and_negative():
    strategy = HillClimbSearch(mixed_space(), seed=0)
    assert strategy.suggest_architectures(0) == []
    with pytest.raises(ValueError):
        strategy.suggest_architectures(-1)


def test_does_not_touch_global_random_state():
    random.seed(99)
    expected = random.random()
    random.seed(99)
    strategy = HillClimbSearch(mixed_space(), seed=0, warmup=2)
    run(strategy, synthetic_score, trials=10, batch=2)
    assert random.random() == expected


# -- results at reduced fidelity (a trial scheduler) -------------------------------------------------


def test_the_climb_does_not_move_to_a_pruned_result_over_a_full_one():
    space = toy_space()
    strategy = HillClimbSearch(space, seed=0, warmup=0, top_k=1)
    finished, stopped_early = ArchitectureVector({"x": 30, "c": "a"}), ArchitectureVector({"x": 10, "c": "b"})
    strategy.update_with_results([
        (finished, TrialResult(metrics={"val_accuracy": 0.5}, curve=(0.3,) * 7 + (0.5,), fidelity=8)),
        (stopped_early, TrialResult(metrics={"val_accuracy": 0.9}, curve=(0.8, 0.9), fidelity=2, pruned=True)),
    ])
    assert strategy.parents() == [(finished, 0.5)], "a value after 2 epochs outranked a full result"
    children = strategy.suggest_architectures(5)
    assert {strategy.lineage[c.key()] for c in children} == {finished.key()}
    # promoted, trained to the end and told again: now a full result, and the better one
    strategy.update_with_results([(stopped_early, TrialResult(metrics={"val_accuracy": 0.7}, curve=(0.7,) * 8, fidelity=8))])
    assert strategy.parents() == [(stopped_early, 0.7)]
    assert strategy.evaluated == 2 and strategy.pending == 5
