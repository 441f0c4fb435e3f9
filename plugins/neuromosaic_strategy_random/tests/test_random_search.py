from __future__ import annotations

import random

import pytest
from neuromosaic_strategy_random import RandomSettings, factory
from neuromosaic_strategy_random.search import RandomSearch

from neuromosaic_core.model import (
    ArchitectureVector,
    CategoricalDimension,
    ErrorClass,
    IntDimension,
    SearchSpace,
    TrialResult,
)
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.strategy import StrategyContract, mixed_space


class TestRandomSearchContract(StrategyContract):
    def make_strategy(self, space, seed):
        return RandomSearch(space, seed=seed)


class TestRandomSearchViaFactoryContract(StrategyContract):
    def make_strategy(self, space, seed):
        return factory(space, seed, RandomSettings(), "val_accuracy", True)


def small_space(n: int) -> SearchSpace:
    return SearchSpace([IntDimension("x", low=1, high=n)])


def ok(score: float = 0.5) -> TrialResult:
    return TrialResult(metrics={"val_accuracy": score})


def test_registered_through_the_plugin_system():
    import neuromosaic_strategy_random

    system = PluginSystem.load([("random", neuromosaic_strategy_random)], entry_points=False)
    component = system.get("strategy", "random")
    assert component.settings is RandomSettings
    strategy = component.factory(mixed_space(), 3, component.default_settings(), "val_accuracy", True)
    assert isinstance(strategy, RandomSearch)
    assert (strategy.seed, strategy.metric, strategy.maximize) == (3, "val_accuracy", True)


def test_factory_passes_metric_and_direction():
    strategy = factory(mixed_space(), 1, RandomSettings(max_retries=5), "test_loss", False)
    assert (strategy.metric, strategy.maximize, strategy.max_retries) == ("test_loss", False, 5)


def test_settings_reject_non_positive_retries():
    with pytest.raises(ValueError, match="max_retries"):
        RandomSettings(max_retries=0)


def test_prefers_unevaluated_vectors():
    space = small_space(6)
    strategy = RandomSearch(space, seed=0)
    first = strategy.suggest_architectures(3)
    strategy.update_with_results([(v, ok()) for v in first])
    second = strategy.suggest_architectures(3)
    assert {v["x"] for v in first} | {v["x"] for v in second} == set(range(1, 7))


def test_exhausted_space_allows_duplicates_and_balances_them():
    strategy = RandomSearch(small_space(3), seed=0)
    vectors = strategy.suggest_architectures(7)
    assert len(vectors) == 7
    assert {v["x"] for v in vectors[:3]} == {1, 2, 3}
    assert strategy.pending == 7
    strategy.update_with_results([(v, ok()) for v in vectors])
    assert strategy.pending == 0
    assert strategy.evaluated == 3


def test_update_removes_one_pending_copy_and_accepts_failures():
    strategy = RandomSearch(small_space(2), seed=0)
    vectors = strategy.suggest_architectures(4)
    strategy.update_with_results([(vectors[0], TrialResult.failure(ErrorClass.CRASH, "died"))])
    assert strategy.pending == 3


def test_unknown_and_foreign_vectors_are_tolerated():
    strategy = RandomSearch(mixed_space(), seed=0)
    foreign = ArchitectureVector({"something": "else"})
    strategy.update_with_results([(foreign, ok()), (ArchitectureVector({"family": "mlp"}), ok())])
    assert strategy.pending == 0
    assert len(strategy.suggest_architectures(3)) == 3


def test_non_canonical_told_vector_clears_its_canonical_pending_twin():
    space = SearchSpace(
        [
            CategoricalDimension("family", choices=("mlp", "conv1d")),
            IntDimension("kernel", low=3, high=5, active_if={"family": ("conv1d",)}),
        ]
    )
    strategy = RandomSearch(space, seed=0)
    mlp = next(v for v in strategy.suggest_architectures(4) if v["family"] == "mlp")
    before = strategy.pending
    strategy.update_with_results([(ArchitectureVector({"family": "mlp", "kernel": 5}), ok())])
    assert strategy.pending == before - 1
    assert mlp["kernel"] == 3


def test_deterministic_over_a_whole_run():
    def run(seed: int) -> list[str]:
        strategy = RandomSearch(mixed_space(), seed=seed)
        keys = []
        for _ in range(10):
            vectors = strategy.suggest_architectures(4)
            keys += [v.key() for v in vectors]
            strategy.update_with_results([(v, ok()) for v in vectors])
        return keys

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_suggest_zero_and_negative():
    strategy = RandomSearch(mixed_space(), seed=0)
    assert strategy.suggest_architectures(0) == []
    with pytest.raises(ValueError):
        strategy.suggest_architectures(-1)


def test_does_not_touch_global_random_state():
    random.seed(99)
    expected = random.random()
    random.seed(99)
    RandomSearch(mixed_space(), seed=0).suggest_architectures(10)
    assert random.random() == expected
