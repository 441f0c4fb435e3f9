"""The surrogate on a synthetic space where one dimension (``width``) drives the metric."""

from __future__ import annotations

import random
import statistics
import subprocess
import sys

import pytest
from neuromosaic_meta_surrogate import SurrogateSettings, factory
from neuromosaic_meta_surrogate.forest import ForestSurrogate

from neuromosaic_core.interfaces import SearchStrategy
from neuromosaic_core.model import (
    ArchitectureVector,
    CategoricalDimension,
    ErrorClass,
    IntDimension,
    SearchSpace,
    TrialResult,
)
from neuromosaic_core.plugins import PluginSystem

SPACE = SearchSpace([
    IntDimension("width", low=1, high=64),
    CategoricalDimension("op", choices=("a", "b", "c", "d")),
    CategoricalDimension("act", choices=("relu", "tanh")),
])


def score(vector: ArchitectureVector) -> float:
    return vector["width"] / 64 + (0.02 if vector["act"] == "relu" else 0.0)


def sample(n: int, seed: int) -> list[ArchitectureVector]:
    rng = random.Random(seed)
    return [SPACE.sample(rng) for _ in range(n)]


def told(vectors: list[ArchitectureVector]) -> list[tuple[ArchitectureVector, TrialResult]]:
    return [(v, TrialResult({"val_accuracy": score(v)})) for v in vectors]


def fitted(n: int = 30, **kwargs) -> ForestSurrogate:
    surrogate = ForestSurrogate(SPACE, seed=0, **kwargs)
    surrogate.observe(told(sample(n, seed=1)))
    return surrogate


@pytest.mark.parametrize("acquisition", ["ei", "ucb", "mean"])
def test_the_ranking_puts_the_good_candidates_first(acquisition):
    surrogate = fitted(acquisition=acquisition)
    candidates = sample(40, seed=2)
    kept, rejected = surrogate.screen(candidates, 5)
    assert len(kept) == 5 and len(rejected) == 35
    assert sorted(map(id, kept + rejected)) == sorted(map(id, candidates))
    # The five kept are among the ten best of the forty by the true score.
    cutoff = sorted((score(v) for v in candidates), reverse=True)[9]
    assert all(score(v) >= cutoff for v in kept), [v["width"] for v in kept]


def test_minimising_ranks_the_low_values_first():
    surrogate = ForestSurrogate(SPACE, seed=0, maximize=False, acquisition="mean")
    surrogate.observe(told(sample(30, seed=1)))
    kept, _ = surrogate.screen(sample(40, seed=2), 3)
    assert all(v["width"] <= 16 for v in kept), [v["width"] for v in kept]


def test_predictions_follow_the_driving_dimension():
    surrogate = fitted(60)
    means, stds = surrogate.predict([ArchitectureVector({"width": w, "op": "a", "act": "relu"}) for w in (4, 32, 60)])
    assert means[0] < means[1] < means[2]
    assert abs(means[2] - score(ArchitectureVector({"width": 60, "op": "a", "act": "relu"}))) < 0.1
    assert all(s >= 0 for s in stds)


def test_uncertainty_is_larger_far_from_the_data():
    rng = random.Random(0)
    near = [ArchitectureVector({"width": rng.randint(1, 16), "op": rng.choice("ab"), "act": rng.choice(["relu", "tanh"])})
            for _ in range(30)]
    far = [ArchitectureVector({"width": rng.randint(48, 64), "op": rng.choice("cd"), "act": rng.choice(["relu", "tanh"])})
           for _ in range(30)]
    surrogate = ForestSurrogate(SPACE, seed=0)
    surrogate.observe(told(near))
    assert statistics.mean(surrogate.predict(far)[1]) > 1.3 * statistics.mean(surrogate.predict(near)[1])


def test_refitting_on_new_results_changes_the_predictions():
    surrogate = fitted(20)
    probe = [ArchitectureVector({"width": 50, "op": "b", "act": "tanh"})]
    before = surrogate.predict(probe)[0][0]
    surrogate.observe([(probe[0], TrialResult({"val_accuracy": 0.0}))] * 5)  # it turns out terrible
    assert surrogate.predict(probe)[0][0] < before - 0.1


def test_refit_every_k_results():
    surrogate = fitted(20, refit_every=3)
    probe = [ArchitectureVector({"width": 50, "op": "b", "act": "tanh"})]
    before = surrogate.predict(probe)[0][0]
    surrogate.observe([(probe[0], TrialResult({"val_accuracy": 0.0}))] * 2)
    assert surrogate.predict(probe)[0][0] == before  # two new results: not refitted yet
    surrogate.observe([(probe[0], TrialResult({"val_accuracy": 0.0}))])
    assert surrogate.predict(probe)[0][0] < before


def test_failures_do_not_poison_the_fit():
    surrogate = fitted(30)
    crash = TrialResult.failure(ErrorClass.CRASH, "killed")
    before = surrogate.n_results
    surrogate.observe([(ArchitectureVector({"width": 64, "op": "a", "act": "relu"}), crash)] * 10)
    assert surrogate.n_results == before  # a crash says nothing about the architecture: dropped
    assert surrogate.predict([ArchitectureVector({"width": 64, "op": "a", "act": "relu"})])[0][0] > 0.8


def test_a_constraint_violation_is_learnt_as_the_worst_value():
    surrogate = fitted(30)
    too_big = ArchitectureVector({"width": 64, "op": "d", "act": "relu"})
    surrogate.observe([(too_big, TrialResult.failure(ErrorClass.CONSTRAINT, "too many parameters"))] * 5)
    assert surrogate.n_results == 35
    assert surrogate.predict([too_big])[0][0] < 0.5  # it would score ~1.02 if it could be trained


def test_not_ready_until_twice_the_dimensions_then_order_is_kept():
    surrogate = ForestSurrogate(SPACE, seed=0)
    assert surrogate.min_results == 6
    surrogate.observe(told(sample(5, seed=1)))
    assert not surrogate.ready
    candidates = sample(10, seed=2)
    assert surrogate.screen(candidates, 3) == (candidates[:3], candidates[3:])
    surrogate.observe(told(sample(1, seed=3)))
    assert surrogate.ready
    with pytest.raises(RuntimeError, match="no results"):
        ForestSurrogate(SPACE).predict(candidates)


class Listing(SearchStrategy):
    """Suggests sampled vectors; records what it was told and what it was asked to forget."""

    def __init__(self):
        super().__init__(SPACE)
        self.rng, self.told, self.forgotten = random.Random(5), [], []

    def forget(self, vectors):
        self.forgotten.extend(vectors)

    def suggest_architectures(self, n):
        return [SPACE.sample(self.rng) for _ in range(n)]

    def update_with_results(self, results):
        self.told.extend(results)


def test_prescreen_asks_k_times_keeps_the_best_and_withdraws_the_others():
    surrogate, strategy = fitted(acquisition="mean"), Listing()
    kept = surrogate.prescreen(strategy, 2, 10)
    assert len(kept) == 2
    assert len(strategy.forgotten) == 18 and strategy.told == []  # the 18 not trained are forgotten, not told as failures
    assert min(v["width"] for v in kept) >= max(v["width"] for v in strategy.forgotten) - 8


def test_prescreen_before_ready_is_the_plain_strategy():
    surrogate, strategy = ForestSurrogate(SPACE), Listing()
    assert len(surrogate.prescreen(strategy, 3, 10)) == 3 and strategy.told == strategy.forgotten == []


def test_recommendations_name_the_driving_choice_and_untried_vectors():
    surrogate = fitted(60)
    tried = sample(60, seed=1)
    recommendations = surrogate.generate_recommendations(4, tried=tried, candidates=500)
    assert recommendations["metric"] == "val_accuracy"
    assert recommendations["dimensions"]["act"]["choices"][0]["value"] == "relu"
    low, high = recommendations["dimensions"]["width"]["range"]
    assert low >= 32 and high <= 64
    vectors = recommendations["vectors"]
    assert len(vectors) == 4 and all(v["vector"]["width"] >= 40 for v in vectors)
    tried_keys = {v.key() for v in tried}
    assert all(ArchitectureVector(v["vector"]).key() not in tried_keys for v in vectors)
    assert vectors == sorted(vectors, key=lambda v: -v["predicted"])
    assert ForestSurrogate(SPACE).generate_recommendations() is None  # nothing learnt yet


def test_registered_through_the_plugin_system_with_checked_settings():
    import neuromosaic_meta_surrogate

    system = PluginSystem.load([("surrogate", neuromosaic_meta_surrogate)], entry_points=False)
    component = system.get("meta", "surrogate")
    assert component.settings is SurrogateSettings
    surrogate = component.factory(space=SPACE, seed=3, settings=SurrogateSettings(trees=7, min_results=4),
                                  metric="test_loss", maximize=False)
    assert (surrogate.trees, surrogate.min_results, surrogate.metric, surrogate.maximize) == (7, 4, "test_loss", False)
    assert factory(SPACE, 0, None, "val_accuracy", True).min_results == 6
    for bad in ({"trees": 0}, {"refit_every": 0}, {"kappa": -1.0}, {"warm_start_top": 0}):
        with pytest.raises(ValueError):
            SurrogateSettings(**bad)


def test_importing_the_plugin_does_not_import_scikit_learn():
    code = "import sys, neuromosaic_meta_surrogate; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- results at reduced fidelity (a trial scheduler) -------------------------------------------------


def early(vector: ArchitectureVector, epochs: int = 2) -> TrialResult:
    """Stopped by a scheduler after ``epochs`` of 8: the ranking of a full training, at a third of its level."""
    value = 0.3 * score(vector)
    return TrialResult({"val_accuracy": value}, curve=(value,) * epochs, fidelity=epochs, pruned=True)


def finished(vector: ArchitectureVector, value: float | None = None) -> TrialResult:
    value = score(vector) if value is None else value
    return TrialResult({"val_accuracy": value}, curve=(value,) * 8, fidelity=8)


def test_a_pruned_low_value_is_not_predicted_as_the_full_value():
    stopped = ArchitectureVector({"width": 60, "op": "c", "act": "relu"})  # only a value after 2 epochs: ~0.29
    twin = ArchitectureVector({"width": 60, "op": "d", "act": "relu"})  # near-identical, trained fully: ~0.96
    history = ([(v, finished(v)) for v in sample(30, seed=1)] + [(v, early(v)) for v in sample(30, seed=4)]
               + [(stopped, early(stopped)), (twin, finished(twin))])
    surrogate = ForestSurrogate(SPACE, seed=0)
    surrogate.observe(history)
    (predicted,), _ = surrogate.predict([stopped])
    assert abs(predicted - score(stopped)) < 0.15, f"predicted {predicted:.3f} at full fidelity, the full value is ~{score(stopped):.2f}"
    # the same values taken for full ones drag the prediction down towards the early value
    blind = ForestSurrogate(SPACE, seed=0)
    blind.observe([(v, TrialResult(dict(r.metrics))) for v, r in history])
    assert blind.predict([stopped])[0][0] < predicted - 0.2
    # and the ranking at full fidelity follows the driving dimension, whatever fidelity the rows had
    means, _ = surrogate.predict([ArchitectureVector({"width": w, "op": "a", "act": "tanh"}) for w in (8, 32, 60)])
    assert means[0] < means[1] < means[2]
    assert surrogate.best == max(score(v) for v, r in history if not r.pruned)


def test_a_promoted_trial_replaces_its_pruned_row():
    surrogate = ForestSurrogate(SPACE, seed=0)
    surrogate.observe([(v, finished(v)) for v in sample(20, seed=1)])
    probe = ArchitectureVector({"width": 50, "op": "b", "act": "tanh"})
    surrogate.observe([(probe, early(probe))])
    assert surrogate.n_results == 21
    surrogate.observe([(probe, finished(probe, value=0.1))])  # trained on: it turns out poor
    assert surrogate.n_results == 21, "the re-told vector was added as a second row"
    assert surrogate.predict([probe])[0][0] < 0.5
    assert not surrogate._with_fidelity  # no pruned row is left: the forest of a search without a scheduler
