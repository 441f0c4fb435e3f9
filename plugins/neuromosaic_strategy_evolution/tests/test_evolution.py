from __future__ import annotations

import random
import statistics

import pytest
from neuromosaic_strategy_evolution import EvolutionSettings, factory
from neuromosaic_strategy_evolution.objectives import parse_objectives
from neuromosaic_strategy_evolution.search import EvolutionSearch

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

# -- the contract, in both modes -------------------------------------------------------------


class TestAgingContract(StrategyContract):
    def make_strategy(self, space, seed):
        return EvolutionSearch(space, seed=seed)


class TestAgingShortStartViaFactoryContract(StrategyContract):
    """A small population, so the contract exercises tournaments and mutations."""

    def make_strategy(self, space, seed):
        settings = EvolutionSettings(population=4, sample_size=2)
        return factory(space=space, seed=seed, settings=settings, metric="val_accuracy", maximize=True)


class TestNsga2ViaFactoryContract(StrategyContract):
    def make_strategy(self, space, seed):
        settings = EvolutionSettings(mode="nsga2", population=4, objectives="val_accuracy:max,params:min")
        return factory(space=space, seed=seed, settings=settings, metric="val_accuracy", maximize=True)


# -- helpers ---------------------------------------------------------------------------------


def ok(score: float, metric: str = "val_accuracy", **more: float) -> TrialResult:
    return TrialResult(metrics={metric: score, **more})


def failed() -> TrialResult:
    return TrialResult.failure(ErrorClass.RUNTIME, "boom")


def flat_space() -> SearchSpace:
    return SearchSpace(
        [IntDimension("x", low=0, high=50), CategoricalDimension("c", choices=("a", "b", "c")), RealDimension("r", low=0.0, high=1.0)]
    )


def run(strategy, result_of, trials: int, batch: int = 1) -> list[tuple[ArchitectureVector, TrialResult]]:
    """Ask/tell ``trials`` times; return the history in the order it was told."""
    history: list[tuple[ArchitectureVector, TrialResult]] = []
    while len(history) < trials:
        told = [(v, result_of(v)) for v in strategy.suggest_architectures(batch)]
        strategy.update_with_results(told)
        history += told
    return history


#: Small populations in each mode, so a short run breeds.
BOTH_MODES = pytest.mark.parametrize(
    "kwargs",
    [{"population": 4, "sample_size": 2}, {"mode": "nsga2", "population": 4, "objectives": "val_accuracy:max,params:min"}],
    ids=["aging", "nsga2"],
)


def keys(individuals) -> list[str]:
    return [ind.key for ind in individuals]


# -- registration and settings -------------------------------------------------------------


def test_registered_through_the_plugin_system():
    import neuromosaic_strategy_evolution

    system = PluginSystem.load([("evolution", neuromosaic_strategy_evolution)], entry_points=False)
    component = system.get("strategy", "evolution")
    assert component.settings is EvolutionSettings
    assert component.description
    strategy = component.factory(space=mixed_space(), seed=3, settings=component.default_settings(), metric="val_accuracy", maximize=True)
    assert isinstance(strategy, EvolutionSearch)
    assert (strategy.seed, strategy.metric, strategy.maximize) == (3, "val_accuracy", True)
    assert (strategy.mode, strategy.population_size, strategy.sample_size, strategy.max_retries) == ("aging", 20, 5, 100)
    assert strategy.objectives == (("val_accuracy", True),)


def test_factory_passes_settings_metric_and_direction():
    settings = EvolutionSettings(mode="nsga2", population=8, sample_size=3, objectives="val_accuracy:max, params:min", max_retries=7)
    strategy = factory(space=mixed_space(), seed=1, settings=settings, metric="test_loss", maximize=False)
    assert (strategy.metric, strategy.maximize) == ("test_loss", False)
    assert (strategy.mode, strategy.population_size, strategy.sample_size, strategy.max_retries) == ("nsga2", 8, 3, 7)
    assert strategy.objectives == (("val_accuracy", True), ("params", False))


def test_factory_without_settings_uses_defaults_and_the_search_metric():
    strategy = factory(space=mixed_space(), seed=0, settings=None, metric="test_loss", maximize=False)
    assert (strategy.mode, strategy.population_size, strategy.sample_size) == ("aging", 20, 5)
    assert strategy.objectives == (("test_loss", False),)


def test_aging_with_one_objective_uses_it():
    strategy = EvolutionSearch(mixed_space(), objectives="test_accuracy:min")
    assert strategy.objectives == (("test_accuracy", False),)


def test_parse_objectives():
    assert parse_objectives("") == ()
    assert parse_objectives("  ") == ()
    assert parse_objectives("val_accuracy:max,params:min") == (("val_accuracy", True), ("params", False))
    assert parse_objectives(" a : MAX , b:min ") == (("a", True), ("b", False))
    assert parse_objectives("ns:name:min") == (("ns:name", False),)  # the last colon splits


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "random"}, "mode must be one of aging, nsga2, got 'random'"),
        ({"population": 0, "sample_size": 0}, "population >= 1"),
        ({"sample_size": 0}, "sample_size >= 1"),
        ({"population": 4, "sample_size": 5}, r"sample_size \(5\) must not exceed population \(4\)"),
        ({"max_retries": 0}, "max_retries >= 1"),
        ({"mode": "nsga2"}, "nsga2 needs at least two objectives"),
        ({"mode": "nsga2", "objectives": "val_accuracy:max"}, "nsga2 needs at least two objectives"),
        ({"objectives": "a:max,b:min"}, "aging optimises one objective"),
        ({"mode": "nsga2", "objectives": "val_accuracy:max,params"}, "'params' has no direction"),
        ({"mode": "nsga2", "objectives": "val_accuracy:max,params:smallest"}, "'params:smallest' has direction 'smallest'"),
        ({"mode": "nsga2", "objectives": "val_accuracy:max,,params:min"}, "empty entry"),
        ({"mode": "nsga2", "objectives": "val_accuracy:max,:min"}, "':min' has no metric name"),
        ({"mode": "nsga2", "objectives": "a:max,a:min"}, "metric 'a' appears twice"),
    ],
)
def test_settings_and_constructor_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EvolutionSettings(**kwargs)
    with pytest.raises(ValueError, match=match):
        EvolutionSearch(mixed_space(), **kwargs)


# -- aging evolution -------------------------------------------------------------------------


def test_the_first_population_suggestions_are_random_then_children():
    strategy = EvolutionSearch(mixed_space(), seed=0, population=6, sample_size=2)
    first = strategy.suggest_architectures(6)
    assert all(strategy.lineage[v.key()] is None for v in first)
    assert not strategy.warming_up
    strategy.update_with_results([(v, ok(synthetic_score(v))) for v in first])
    children = strategy.suggest_architectures(4)
    assert all(strategy.lineage[v.key()] in {v.key() for v in first} for v in children)


def test_the_oldest_member_leaves_and_failures_never_join():
    space = SearchSpace([IntDimension("x", low=0, high=1000)])
    strategy = EvolutionSearch(space, seed=0, population=5, sample_size=2)
    successes: list[str] = []
    rng = random.Random(0)
    for i in range(40):
        v = ArchitectureVector({"x": i})
        kind = rng.random()
        if kind < 0.2:
            result = failed()
        elif kind < 0.3:
            result = TrialResult(metrics={"other": 1.0})  # the objective is missing
        elif kind < 0.35:
            result = TrialResult(metrics={"val_accuracy": 0.99}, error=ExperimentError(ErrorClass.NAN_LOSS, "nan"))
        else:
            result = ok(float(1000 - i))  # older members are better: they still leave
            successes.append(v.key())
        strategy.update_with_results([(v, result)])
        population = strategy.population()
        assert len(population) <= 5
        assert keys(population) == successes[-5:]
        assert [ind.age for ind in population] == sorted(ind.age for ind in population)


def test_a_child_changes_exactly_one_active_dimension_of_its_parent():
    space = flat_space()
    strategy = EvolutionSearch(space, seed=4, population=3, sample_size=3)
    parents = [ArchitectureVector({"x": x, "c": "a", "r": 0.5}) for x in (10, 20, 30)]
    strategy.update_with_results([(v, ok(float(v["x"]))) for v in parents])
    children = strategy.suggest_architectures(20)
    best = parents[2]  # sample_size == population: the tournament always picks the best
    for child in children:
        assert strategy.lineage[child.key()] == best.key()
        changed = [k for k in best.values if best[k] != child[k]]
        assert len(changed) == 1, (best.values, child.values)


def test_a_child_changes_one_active_dimension_on_a_conditional_space():
    space = mixed_space()
    strategy = EvolutionSearch(space, seed=5, population=4, sample_size=2)
    run(strategy, lambda v: ok(synthetic_score(v)), trials=4)
    by_key = {ind.key: ind.vector for ind in strategy.population()}
    for _ in range(10):
        children = strategy.suggest_architectures(3)
        for child in children:
            parent = by_key[strategy.lineage[child.key()]]
            both = {d.name for d in space.active_dimensions(parent.values)} & {d.name for d in space.active_dimensions(child.values)}
            changed = [name for name in both if parent[name] != child[name]]
            assert len(changed) == 1, (parent.values, child.values)
            assert space.contains(child) and space.canonicalize(child) == child
        strategy.update_with_results([(v, ok(synthetic_score(v))) for v in children])
        by_key.update({ind.key: ind.vector for ind in strategy.population()})


def test_failed_results_never_become_parents():
    space = SearchSpace([IntDimension("x", low=0, high=1000)])
    strategy = EvolutionSearch(space, seed=0, population=4, sample_size=4)
    good = [ArchitectureVector({"x": x}) for x in (100, 200)]
    crashed_with_metrics = TrialResult(metrics={"val_accuracy": 0.99}, error=ExperimentError(ErrorClass.NAN_LOSS, "nan"))
    strategy.update_with_results(
        [
            (good[0], ok(0.1)),
            (ArchitectureVector({"x": 500}), crashed_with_metrics),
            (good[1], ok(0.2)),
            (ArchitectureVector({"x": 600}), failed()),
            (ArchitectureVector({"x": 700}), ok(float("nan"))),
        ]
    )
    assert keys(strategy.population()) == [v.key() for v in good]
    good_keys = {v.key() for v in good}
    for _ in range(10):
        vectors = strategy.suggest_architectures(3)
        assert all(strategy.lineage[v.key()] in good_keys for v in vectors)
        strategy.update_with_results([(v, failed()) for v in vectors])
    assert keys(strategy.population()) == [v.key() for v in good]


def test_only_failures_fall_back_to_random_sampling():
    strategy = EvolutionSearch(mixed_space(), seed=0, population=2, sample_size=1)
    for _ in range(4):
        vectors = strategy.suggest_architectures(3)
        assert all(strategy.lineage[v.key()] is None for v in vectors)
        strategy.update_with_results([(v, failed()) for v in vectors])
    assert strategy.population() == [] and strategy.best() is None


def test_minimises_when_asked():
    space = SearchSpace([IntDimension("x", low=0, high=1000)])
    strategy = EvolutionSearch(space, seed=0, population=3, sample_size=3, metric="loss", maximize=False)
    members = [ArchitectureVector({"x": x}) for x in (10, 500, 900)]
    strategy.update_with_results([(v, ok(float(v["x"]), "loss")) for v in members])
    assert all(strategy.lineage[v.key()] == members[0].key() for v in strategy.suggest_architectures(5))
    assert strategy.best() == (members[0], 10.0)


# A toy problem with a known optimum: 10 categorical dims, the score is how many equal a hidden target.
TARGET = {f"d{i}": "abcd"[(3 * i + 1) % 4] for i in range(10)}


def matches(v: ArchitectureVector) -> float:
    return float(sum(v[name] == want for name, want in TARGET.items()))


def test_evolution_beats_random_search_on_a_toy_space():
    space = SearchSpace([CategoricalDimension(name, choices=("a", "b", "c", "d")) for name in TARGET])
    budget, seeds = 60, range(9)

    def evolution_best(seed: int) -> float:
        history = run(EvolutionSearch(space, seed=seed), lambda v: ok(matches(v)), trials=budget)
        return max(matches(v) for v, _ in history)

    def random_best(seed: int) -> float:
        rng = random.Random(seed)
        return max(matches(space.sample(rng)) for _ in range(budget))

    evolved = [evolution_best(seed) for seed in seeds]
    uniform = [random_best(seed) for seed in seeds]
    # Measured: evolution's median best is 8 of 10 dims right, random search's is 6.
    assert statistics.median(evolved) >= statistics.median(uniform) + 2, (sorted(evolved), sorted(uniform))


# -- restart, pending, determinism -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs", [{"population": 6, "sample_size": 3}, {"mode": "nsga2", "population": 6, "objectives": "val_accuracy:max,params:min"}]
)
def test_a_replayed_history_rebuilds_the_population(kwargs):
    space = mixed_space()
    rng = random.Random(3)

    def result_of(v: ArchitectureVector) -> TrialResult:
        if rng.random() < 0.2:
            return failed()
        return ok(synthetic_score(v), params=float(v["width"]) * float(v["depth"]))

    original = EvolutionSearch(space, seed=1, **kwargs)
    history = run(original, result_of, trials=30, batch=3)
    resumed = EvolutionSearch(space, seed=99, **kwargs)
    resumed.update_with_results(history)  # what the orchestrator does on resume, in creation order
    assert keys(resumed.population()) == keys(original.population())
    assert resumed.pareto_front() == original.pareto_front()
    assert not resumed.warming_up  # it continues breeding rather than starting over
    children = resumed.suggest_architectures(4)
    assert all(resumed.lineage[v.key()] is not None for v in children)
    told = {v.key() for v, _ in history}
    assert not told & {v.key() for v in children}


def test_aging_population_after_replay_is_the_last_successes_in_order():
    space = mixed_space()
    rng = random.Random(0)
    history = [(space.sample(rng), failed() if i % 4 == 0 else ok(0.5)) for i in range(40)]
    strategy = EvolutionSearch(space, seed=0, population=7, sample_size=2)
    strategy.update_with_results(history)
    assert keys(strategy.population()) == [v.key() for v, r in history if r.ok][-7:]


@BOTH_MODES
def test_batches_never_repeat_pending_or_evaluated_vectors(kwargs):
    space = SearchSpace([IntDimension("x", low=0, high=30), CategoricalDimension("c", choices=("a", "b"))])
    strategy = EvolutionSearch(space, seed=0, **kwargs)
    seen: list[str] = []
    for _ in range(6):
        vectors = strategy.suggest_architectures(5)
        seen += [v.key() for v in vectors]
        assert len(set(seen)) == len(seen)  # 62 points: 30 suggestions never need a repeat
        strategy.update_with_results([(v, ok(float(v["x"]), params=float(v["x"] ** 2))) for v in vectors[:-1]])
        strategy.update_with_results([(vectors[-1], failed())])
    assert strategy.pending == 0


def test_an_exhausted_space_repeats_instead_of_hanging():
    space = SearchSpace([IntDimension("x", low=0, high=3)])
    strategy = EvolutionSearch(space, seed=0, population=2, sample_size=1, max_retries=5)
    history = run(strategy, lambda v: ok(float(v["x"])), trials=4)
    assert sorted(v["x"] for v, _ in history) == [0, 1, 2, 3]
    assert len(strategy.suggest_architectures(6)) == 6


def test_a_space_with_nothing_to_mutate_still_answers():
    space = SearchSpace([CategoricalDimension("only", choices=("a",))])
    strategy = EvolutionSearch(space, seed=0, population=1, sample_size=1, max_retries=3)
    strategy.update_with_results([(ArchitectureVector({"only": "a"}), ok(1.0))])
    assert strategy.suggest_architectures(2) == [ArchitectureVector({"only": "a"})] * 2


def test_log_and_real_dimensions_stay_in_range():
    space = SearchSpace(
        [IntDimension("w", low=8, high=512, log=True), RealDimension("lr", low=1e-5, high=1e-1, log=True), RealDimension("p", low=0.0, high=0.5)]
    )
    strategy = EvolutionSearch(space, seed=3, population=3, sample_size=2)
    for _ in range(30):
        vectors = strategy.suggest_architectures(2)
        assert all(space.contains(v) for v in vectors)
        strategy.update_with_results([(v, ok(float(v["p"]))) for v in vectors])


def test_foreign_vectors_are_tolerated_and_never_join():
    space = SearchSpace([IntDimension("x", low=0, high=50)])
    strategy = EvolutionSearch(space, seed=0, population=2, sample_size=1)
    strategy.update_with_results([(ArchitectureVector({"something": "else"}), ok(1.0)), (ArchitectureVector({"x": 99}), ok(1.0))])
    assert strategy.population() == []
    assert len(strategy.suggest_architectures(3)) == 3


@BOTH_MODES
def test_deterministic_over_a_whole_run(kwargs):
    def suggested(seed: int) -> list[str]:
        strategy = EvolutionSearch(mixed_space(), seed=seed, **kwargs)
        history = run(strategy, lambda v: ok(synthetic_score(v), params=float(v["width"])), trials=30, batch=3)
        return [v.key() for v, _ in history]

    assert suggested(11) == suggested(11)
    assert suggested(11) != suggested(12)


@BOTH_MODES
def test_does_not_touch_global_random_state(kwargs):
    random.seed(99)
    expected = random.random()
    random.seed(99)
    strategy = EvolutionSearch(mixed_space(), seed=0, **kwargs)
    run(strategy, lambda v: ok(synthetic_score(v), params=float(v["width"])), trials=30, batch=3)
    strategy.pareto_front()
    strategy.population()
    assert random.random() == expected


def test_suggest_zero_and_negative():
    strategy = EvolutionSearch(mixed_space(), seed=0)
    assert strategy.suggest_architectures(0) == []
    with pytest.raises(ValueError):
        strategy.suggest_architectures(-1)


# -- NSGA-II ---------------------------------------------------------------------------------

# A toy two-objective problem: maximise gain = x, minimise cost = x + y0 + y1 + y2. Trading gain
# for cost is unavoidable, the y's are pure waste: the true Pareto front is every x with all y = 0.
TOY2 = SearchSpace([IntDimension("x", low=0, high=10)] + [IntDimension(f"y{i}", low=0, high=9) for i in range(3)])


def toy2(v: ArchitectureVector) -> TrialResult:
    waste = sum(int(v[f"y{i}"]) for i in range(3))
    return TrialResult(metrics={"gain": float(v["x"]), "cost": float(v["x"] + waste)})


def dominates(a: dict, b: dict) -> bool:
    return a["gain"] >= b["gain"] and a["cost"] <= b["cost"] and (a["gain"] > b["gain"] or a["cost"] < b["cost"])


def waste(front) -> float:
    return statistics.mean(m["cost"] - m["gain"] for _, m in front)


def test_pareto_front_holds_exactly_the_non_dominated_points():
    strategy = EvolutionSearch(TOY2, seed=0, mode="nsga2", population=10, objectives="gain:max,cost:min")
    history = run(strategy, toy2, trials=60, batch=4)
    front = strategy.pareto_front()
    front_metrics = [m for _, m in front]
    everything = {v.key(): dict(r.metrics) for v, r in history}
    assert front and len({v.key() for v, _ in front}) == len(front)
    for m in front_metrics:
        assert not any(dominates(other, m) for other in everything.values())
    front_keys = {v.key() for v, _ in front}
    for key, m in everything.items():
        if key not in front_keys:
            assert any(dominates(f, m) or f == m for f in front_metrics)


def test_nsga2_approaches_the_true_front_better_than_random_search():
    budget, seeds = 160, range(5)

    def nsga2_front(seed: int):
        strategy = EvolutionSearch(TOY2, seed=seed, mode="nsga2", population=20, objectives="gain:max,cost:min")
        run(strategy, toy2, trials=budget, batch=4)
        return strategy.pareto_front()

    def random_front(seed: int):
        rng = random.Random(seed)
        points = [dict(toy2(TOY2.sample(rng)).metrics) for _ in range(budget)]
        return [(None, p) for p in points if not any(dominates(q, p) for q in points)]

    evolved = [nsga2_front(seed) for seed in seeds]
    uniform = [random_front(seed) for seed in seeds]
    # Measured: the median of the mean waste of NSGA-II's fronts is 0 (whole fronts exactly on the true
    # front), random search's 3.7.
    assert statistics.median(waste(f) for f in evolved) + 1.5 < statistics.median(waste(f) for f in uniform)
    assert sum(any(m["cost"] == m["gain"] for _, m in f) for f in evolved) >= 3  # on the true front in most runs
    assert all(len({m["gain"] for _, m in f}) >= 5 for f in evolved)  # and spread along it


def test_pareto_front_ignores_failures_and_missing_objectives():
    space = SearchSpace([IntDimension("x", low=0, high=10)])
    strategy = EvolutionSearch(space, seed=0, mode="nsga2", population=4, objectives="a:max,b:min")
    v = [ArchitectureVector({"x": x}) for x in range(5)]
    strategy.update_with_results(
        [
            (v[0], TrialResult(metrics={"a": 1.0, "b": 1.0})),
            (v[1], TrialResult(metrics={"a": 2.0, "b": 2.0})),
            (v[2], TrialResult(metrics={"a": 0.5, "b": 3.0})),  # dominated by v[0]
            (v[3], TrialResult(metrics={"a": 9.0})),  # b missing: never joins
            (v[4], TrialResult(metrics={"a": 9.0, "b": 0.0}, error=ExperimentError(ErrorClass.NAN_LOSS, "nan"))),
        ]
    )
    assert [vector for vector, _ in strategy.pareto_front()] == [v[0], v[1]]
    assert strategy.pareto_front()[1][1] == {"a": 2.0, "b": 2.0}
    assert keys(strategy.population()) == [v[0].key(), v[1].key(), v[2].key()]  # NSGA-II order: fronts, then crowding


def test_a_missing_objective_is_reported_once():
    from loguru import logger

    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        strategy = EvolutionSearch(TOY2, seed=0, mode="nsga2", population=4, objectives="gain:max,paramz:min")
        run(strategy, toy2, trials=8, batch=4)
    finally:
        logger.remove(sink)
    assert len(messages) == 1, messages
    assert "'paramz'" in messages[0] and "reported: cost, gain" in messages[0]
    assert strategy.population() == []


def test_nsga2_parents_are_the_selected_population():
    strategy = EvolutionSearch(TOY2, seed=1, mode="nsga2", population=5, objectives="gain:max,cost:min")
    run(strategy, toy2, trials=20, batch=4)
    parents = {ind.key for ind in strategy.population()}
    assert len(parents) == 5
    children = strategy.suggest_architectures(8)
    assert all(strategy.lineage[v.key()] in parents for v in children)


# -- results at reduced fidelity (a trial scheduler) -------------------------------------------------


def pruned(score: float, fidelity: int = 2, **more: float) -> TrialResult:
    """A result a scheduler stopped after ``fidelity`` epochs (of 8)."""
    return TrialResult(metrics={"val_accuracy": score, **more}, curve=(score,) * fidelity, fidelity=fidelity, pruned=True)


def full(score: float, **more: float) -> TrialResult:
    return TrialResult(metrics={"val_accuracy": score, **more}, curve=(score,) * 8, fidelity=8)


def test_a_pruned_result_with_a_higher_value_does_not_win_the_tournament_over_a_full_one():
    space = flat_space()
    strategy = EvolutionSearch(space, seed=0, population=3, sample_size=3)  # every tournament sees all three
    stopped_early = ArchitectureVector({"x": 40, "c": "a", "r": 0.5})
    finished, low = ArchitectureVector({"x": 10, "c": "a", "r": 0.5}), ArchitectureVector({"x": 20, "c": "b", "r": 0.5})
    strategy.update_with_results([(stopped_early, pruned(0.9, fidelity=6)), (finished, full(0.5)), (low, pruned(0.8, fidelity=2))])
    children = strategy.suggest_architectures(10)
    assert {strategy.lineage[c.key()] for c in children} == {finished.key()}, "a pruned 0.9 was preferred to a full 0.5"
    assert strategy.best() == (finished, 0.5)
    # among pruned results, the higher fidelity wins, whatever the value
    only_pruned = EvolutionSearch(space, seed=0, population=2, sample_size=2)
    only_pruned.update_with_results([(stopped_early, pruned(0.6, fidelity=6)), (low, pruned(0.8, fidelity=2))])
    assert {only_pruned.lineage[c.key()] for c in only_pruned.suggest_architectures(5)} == {stopped_early.key()}


def test_nsga2_selects_full_results_before_pruned_ones_that_dominate_them():
    strategy = EvolutionSearch(TOY2, seed=1, mode="nsga2", population=2, objectives="gain:max,cost:min")
    a, b, c = (ArchitectureVector({"x": x, "y0": 1, "y1": 1, "y2": 1}) for x in (1, 2, 3))
    strategy.update_with_results([
        (a, TrialResult({"gain": 0.9, "cost": 1.0}, fidelity=2, pruned=True)),  # dominates both full ones
        (b, TrialResult({"gain": 0.5, "cost": 5.0}, fidelity=8)),
        (c, TrialResult({"gain": 0.4, "cost": 6.0}, fidelity=8)),
    ])
    assert {ind.key for ind in strategy.population()} == {b.key(), c.key()}
    assert [v.key() for v, _ in strategy.pareto_front()] == [b.key()]
    children = strategy.suggest_architectures(6)
    assert all(strategy.lineage[v.key()] in {b.key(), c.key()} for v in children)


@pytest.mark.parametrize("mode", ["aging", "nsga2"])
def test_a_vector_told_again_at_full_fidelity_replaces_its_pruned_entry(mode):
    kwargs = {"mode": "nsga2", "objectives": "val_accuracy:max,params:min"} if mode == "nsga2" else {"sample_size": 2}
    strategy = EvolutionSearch(flat_space(), seed=2, population=4, **kwargs)
    vectors = strategy.suggest_architectures(3)
    strategy.update_with_results([(v, pruned(0.3, params=10.0)) for v in vectors])
    assert strategy.warming_up  # 3 of 4 random starts
    strategy.update_with_results([(vectors[0], full(0.7, params=10.0))])  # promoted, trained on, told again
    assert strategy.warming_up, "the re-tell was counted as a new evaluation"
    assert strategy.evaluated == 3 and strategy.pending == 0
    members = strategy.population()
    assert sorted(ind.key for ind in members) == sorted(v.key() for v in vectors), "the re-told vector was added twice"
    entry = next(ind for ind in members if ind.key == vectors[0].key())
    assert (entry.metrics["val_accuracy"], entry.pruned) == (0.7, False)
    # the snapshot keeps what a later re-tell needs
    restored = EvolutionSearch(flat_space(), seed=9, population=4, **kwargs)
    restored.load_state_dict(strategy.state_dict())
    for s in (strategy, restored):
        s.update_with_results([(vectors[1], full(0.6, params=10.0))])
    assert restored.warming_up and restored.population() == strategy.population()
