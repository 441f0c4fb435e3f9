"""Contract tests for :class:`~neuromosaic_core.interfaces.SearchStrategy` implementations.

Subclass :class:`StrategyContract` in your plugin's tests (the class name of the subclass must
start with ``Test`` so pytest collects it) and implement :meth:`StrategyContract.make_strategy`::

    from neuromosaic_core.testing.strategy import StrategyContract
    from my_plugin.search import MySearch

    class TestMySearchContract(StrategyContract):
        def make_strategy(self, space, seed):
            return MySearch(space, seed=seed)

Every test runs the strategy under a watchdog (:attr:`StrategyContract.call_timeout_s`), so a
strategy that loops forever fails with a message instead of hanging the test session.
Override :meth:`StrategyContract.space` to run the suite on a space of your own.
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

from neuromosaic_core.interfaces import SearchStrategy
from neuromosaic_core.model import (
    ArchitectureVector,
    CategoricalDimension,
    ErrorClass,
    IntDimension,
    RealDimension,
    SearchSpace,
    TrialResult,
)

T = TypeVar("T")


def mixed_space() -> SearchSpace:
    """A small space with every dimension kind and one conditional dimension."""
    return SearchSpace(
        [
            CategoricalDimension("family", choices=("mlp", "conv1d")),
            IntDimension("depth", low=1, high=6),
            IntDimension("width", low=8, high=512, log=True),
            RealDimension("dropout", low=0.0, high=0.5),
            CategoricalDimension("activation", choices=("relu", "gelu", "tanh")),
            IntDimension("kernel_size", low=3, high=9, active_if={"family": ("conv1d",)}),
        ]
    )


def tiny_space() -> SearchSpace:
    """A space with exactly two points."""
    return SearchSpace([CategoricalDimension("only", choices=("a", "b"))])


def twelve_point_space() -> SearchSpace:
    """A space with exactly twelve points."""
    return SearchSpace([CategoricalDimension("only", choices=tuple("abcdefghijkl"))])


def synthetic_score(vector: ArchitectureVector) -> float:
    """A deterministic, smooth-ish score in [0, 1] for any vector of :func:`mixed_space`."""
    values = vector.values
    score = 0.5
    score += 0.1 if values.get("family") == "conv1d" else 0.0
    score += 0.03 * float(values.get("depth", 1))  # type: ignore[arg-type]
    score -= 0.2 * abs(float(values.get("dropout", 0.0)) - 0.2)  # type: ignore[arg-type]
    score += 0.02 * math.log(float(values.get("width", 8)))  # type: ignore[arg-type]
    return max(0.0, min(1.0, score))


def pruned_result(score: float, fidelity: int) -> TrialResult:
    """A result a trial scheduler stopped or paused after ``fidelity`` epochs (fewer than the
    training's): its value at that fidelity, a learning curve rising to ``score``."""
    curve = tuple(score * (i + 1) / fidelity for i in range(fidelity))
    return TrialResult(metrics={"val_accuracy": score, "test_accuracy": score, "params": 1000.0},
                       curve=curve, fidelity=fidelity, pruned=True)


def full_result(score: float, epochs: int = 8) -> TrialResult:
    """A result whose training ran to its end (``epochs``), as a promoted trial's last segment reports."""
    curve = tuple(score * min(1.0, (i + 1) / (epochs / 2)) for i in range(epochs))
    return TrialResult(metrics={"val_accuracy": score, "test_accuracy": score, "params": 1000.0},
                       curve=curve, fidelity=epochs)


def call_with_timeout(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``fn`` in a daemon thread; fail the test if it does not return within ``timeout_s``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name=f"contract:{what}")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(f"{what} did not return within {timeout_s:g} s (does the strategy loop forever?)")
    if "error" in box:
        raise box["error"]
    return box["value"]


class StrategyContract:
    """The behaviour every search strategy must have (see ``SearchStrategy``'s docstring)."""

    #: Seconds one ``suggest_architectures``/``update_with_results`` call may take.
    call_timeout_s: float = 30.0
    #: Ask/tell rounds of :meth:`test_library_loop`.
    rounds: int = 30
    #: Batch size of :meth:`test_library_loop`.
    batch: int = 3

    # -- to implement ------------------------------------------------------------------------

    def make_strategy(self, space: SearchSpace, seed: int) -> SearchStrategy:
        """Build the strategy under test (metric ``val_accuracy``, maximised)."""
        raise NotImplementedError("subclasses of StrategyContract implement make_strategy(space, seed)")

    # -- fixtures and helpers ----------------------------------------------------------------

    @pytest.fixture
    def space(self) -> SearchSpace:
        return mixed_space()

    def suggest(self, strategy: SearchStrategy, n: int) -> list[ArchitectureVector]:
        return call_with_timeout(lambda: strategy.suggest_architectures(n), self.call_timeout_s, f"suggest_architectures({n})")

    def update(self, strategy: SearchStrategy, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        call_with_timeout(lambda: strategy.update_with_results(list(results)), self.call_timeout_s, "update_with_results")

    def mark_pending(self, strategy: SearchStrategy, vectors: Sequence[ArchitectureVector]) -> None:
        call_with_timeout(lambda: strategy.mark_pending(list(vectors)), self.call_timeout_s, "mark_pending")

    def forget(self, strategy: SearchStrategy, vectors: Sequence[ArchitectureVector]) -> None:
        call_with_timeout(lambda: strategy.forget(list(vectors)), self.call_timeout_s, "forget")

    def check_vectors(self, space: SearchSpace, vectors: Sequence[ArchitectureVector], n: int) -> None:
        assert isinstance(vectors, list), f"suggest_architectures must return a list, got {type(vectors).__name__}"
        assert len(vectors) == n, f"asked for {n} vectors, got {len(vectors)}"
        for v in vectors:
            assert isinstance(v, ArchitectureVector), f"expected ArchitectureVector, got {type(v).__name__}"
            problems = space.violations(v)
            assert not problems, f"{v.values} is not in the space: {problems}"
            assert space.canonicalize(v) == v, f"{v.values} is not canonical (inactive dimensions must hold defaults)"

    # -- the contract ------------------------------------------------------------------------

    @pytest.mark.parametrize("n", [1, 4, 10])
    def test_suggest_returns_n_vectors_in_space(self, space: SearchSpace, n: int) -> None:
        strategy = self.make_strategy(space, 0)
        self.check_vectors(space, self.suggest(strategy, n), n)

    def test_get_search_space(self, space: SearchSpace) -> None:
        assert self.make_strategy(space, 0).get_search_space() == space

    def test_no_duplicates_among_pending(self, space: SearchSpace) -> None:
        strategy = self.make_strategy(space, 1)
        first = self.suggest(strategy, 8)
        second = self.suggest(strategy, 8)  # nothing told yet: all 16 are pending
        self.check_vectors(space, second, 8)
        keys = [v.key() for v in first + second]
        assert len(set(keys)) == len(keys), "a suggestion repeats another pending suggestion"

    def test_library_loop(self, space: SearchSpace) -> None:
        """Ask/tell like a plain library: out-of-order results, failures, one held back a round."""
        strategy = self.make_strategy(space, 2)
        held: list[tuple[ArchitectureVector, TrialResult]] = []
        told = 0
        for round_no in range(self.rounds):
            vectors = self.suggest(strategy, self.batch)
            self.check_vectors(space, vectors, self.batch)
            results: list[tuple[ArchitectureVector, TrialResult]] = []
            for i, v in enumerate(vectors):
                if (round_no * self.batch + i) % 4 == 3:
                    result = TrialResult.failure(ErrorClass.RUNTIME, "boom")
                else:
                    score = synthetic_score(v)
                    result = TrialResult(metrics={"val_accuracy": score, "test_accuracy": score, "params": 1000.0})
                results.append((v, result))
            results.reverse()  # results may arrive in any order
            now, later = results[:-1], results[-1:]  # one result arrives a round late
            self.update(strategy, held + now)
            told += len(held) + len(now)
            held = later
        self.update(strategy, held)
        told += len(held)
        assert told == self.rounds * self.batch

    def test_all_failures_do_not_stall(self, space: SearchSpace) -> None:
        strategy = self.make_strategy(space, 3)
        for _ in range(5):
            vectors = self.suggest(strategy, 4)
            self.check_vectors(space, vectors, 4)
            self.update(strategy, [(v, TrialResult.failure(ErrorClass.RUNTIME, "boom")) for v in vectors])

    def test_same_seed_same_first_suggestions(self, space: SearchSpace) -> None:
        a = self.suggest(self.make_strategy(space, 7), 5)
        b = self.suggest(self.make_strategy(space, 7), 5)
        assert [v.key() for v in a] == [v.key() for v in b], "the same seed must give the same first suggestions"

    def test_snapshot_restores_the_same_search(self, space: SearchSpace) -> None:
        """A strategy restored from ``state_dict()`` (through JSON, as storage keeps it) suggests
        what the original suggests, before and after both are told the same results. Strategies
        that take no snapshot (``state_dict()`` is None) are replayed on resume instead."""
        def scored(v: ArchitectureVector) -> TrialResult:  # every metric a multi-objective strategy may use
            score = synthetic_score(v)
            return TrialResult(metrics={"val_accuracy": score, "test_accuracy": score, "params": 1000.0 + 100 * score})

        original = self.make_strategy(space, 5)
        pending: list[ArchitectureVector] = []
        for _ in range(4):
            vectors = self.suggest(original, 3)
            pending += vectors[1:]  # one of each batch stays in flight
            self.update(original, [(vectors[0], scored(vectors[0]))])
        state = original.state_dict()
        if state is None:  # no snapshots: the orchestrator replays the history, and must be able to tell
            with pytest.raises(NotImplementedError):
                original.load_state_dict({})
            return
        restored = self.make_strategy(space, 99)  # another seed: everything must come from the state
        restored.load_state_dict(json.loads(json.dumps(state)))
        assert [v.key() for v in self.suggest(restored, 3)] == [v.key() for v in self.suggest(original, 3)]
        results = [(v, scored(v)) for v in pending]
        self.update(original, results)
        self.update(restored, results)
        assert [v.key() for v in self.suggest(restored, 4)] == [v.key() for v in self.suggest(original, 4)]

    def test_tolerates_results_it_never_suggested(self, space: SearchSpace) -> None:
        """A resumed experiment replays its stored history before asking for anything."""
        strategy = self.make_strategy(space, 4)
        rng = random.Random(12345)  # noqa: S311 - reproducible sampling, not cryptography
        history = []
        for i in range(10):
            v = space.sample(rng)
            if i % 3 == 2:
                history.append((v, TrialResult.failure(ErrorClass.SHAPE, "replayed failure")))
            else:
                history.append((v, TrialResult(metrics={"val_accuracy": synthetic_score(v)})))
        self.update(strategy, history)
        self.check_vectors(space, self.suggest(strategy, 4), 4)
        # and again once it has pending suggestions of its own
        self.update(strategy, [(space.sample(rng), TrialResult(metrics={"val_accuracy": 0.5}))])
        self.check_vectors(space, self.suggest(strategy, 2), 2)

    def test_tiny_space_does_not_hang(self) -> None:
        space = tiny_space()
        strategy = self.make_strategy(space, 5)
        vectors = self.suggest(strategy, 5)  # only 2 distinct points exist
        self.check_vectors(space, vectors, 5)
        # duplicates are allowed only once the space is exhausted, so both points must appear
        assert {v["only"] for v in vectors} == {"a", "b"}, "a duplicate was suggested before the space was exhausted"
        self.update(strategy, [(v, TrialResult(metrics={"val_accuracy": 0.5})) for v in vectors])
        self.check_vectors(space, self.suggest(strategy, 3), 3)  # exhausted and all evaluated

    # -- pending vectors it did not suggest, and vectors forgotten -------------------------------

    def test_marked_pending_vectors_are_not_suggested(self, space: SearchSpace) -> None:
        """A resume re-runs the trials a crash cut off and marks them pending; the strategy, rebuilt
        with the same seed (or restored), must not propose those architectures again."""
        in_flight = self.suggest(self.make_strategy(space, 6), 5)
        strategy = self.make_strategy(space, 6)
        self.mark_pending(strategy, in_flight)
        fresh = self.suggest(strategy, 5)
        self.check_vectors(space, fresh, 5)
        assert not {v.key() for v in in_flight} & {v.key() for v in fresh}, "a suggestion repeats a vector marked pending"
        results = [(v, TrialResult(metrics={"val_accuracy": synthetic_score(v), "params": 1000.0})) for v in in_flight + fresh]
        self.update(strategy, results[::-1])  # their results come like any other
        self.check_vectors(space, self.suggest(strategy, 3), 3)

    def test_marked_pending_in_a_tiny_space(self) -> None:
        space = tiny_space()
        for seed in range(4):  # each seed, either point: no lucky draw passes this
            for marked, other in (("a", "b"), ("b", "a")):
                strategy = self.make_strategy(space, seed)
                self.mark_pending(strategy, [ArchitectureVector({"only": marked})])
                assert [v["only"] for v in self.suggest(strategy, 1)] == [other], f"suggested {marked!r}, marked pending"

    def test_forgotten_vectors_are_not_tried(self) -> None:
        """Forgotten suggestions (screened out, rejected before training) are not tried: once the
        rest of a small space is evaluated, they are what the strategy suggests next."""
        space = twelve_point_space()
        strategy = self.make_strategy(space, 8)
        vectors = self.suggest(strategy, 12)
        assert len({v.key() for v in vectors}) == 12, "a duplicate was suggested before the space was exhausted"
        forgotten, evaluated = vectors[::2], vectors[1::2]
        self.forget(strategy, forgotten)
        self.update(strategy, [(v, TrialResult(metrics={"val_accuracy": 0.5})) for v in evaluated])
        again = self.suggest(strategy, 6)
        self.check_vectors(space, again, 6)
        assert sorted(v["only"] for v in again) == sorted(v["only"] for v in forgotten), (
            "a forgotten vector is treated as tried (the strategy preferred evaluated ones to it)"
        )

    def test_forgotten_vectors_stop_being_pending(self) -> None:
        space = tiny_space()
        strategy = self.make_strategy(space, 5)
        self.forget(strategy, self.suggest(strategy, 2))
        self.mark_pending(strategy, [ArchitectureVector({"only": "a"})])
        self.forget(strategy, [ArchitectureVector({"only": "a"})])
        again = self.suggest(strategy, 2)
        assert {v["only"] for v in again} == {"a", "b"}, "a forgotten vector is still pending"

    def test_forgetting_does_not_stall(self, space: SearchSpace) -> None:
        """Pre-screening forgets most suggestions: a strategy waiting for its suggestions (a
        generation, an optimiser's open trials) must go on."""
        strategy = self.make_strategy(space, 9)
        for _ in range(6):
            vectors = self.suggest(strategy, 6)
            self.check_vectors(space, vectors, 6)
            self.forget(strategy, vectors[2:])
            self.update(strategy, [(v, TrialResult(metrics={"val_accuracy": synthetic_score(v), "params": 1000.0}))
                                   for v in vectors[:2]])

    # -- results at reduced fidelity (a trial scheduler) ----------------------------------------

    def test_a_vector_told_again_at_a_higher_fidelity(self) -> None:
        """A scheduler stopped a trial early (``pruned``: its value at ``fidelity`` epochs), then
        promoted it: the same vector is told again with its full result. The strategy takes both,
        does not count the second as a new evaluation (nothing pending resolved, no warm-up
        counted) and does not propose the vector again while untried ones remain."""
        space = twelve_point_space()
        strategy = self.make_strategy(space, 10)
        first = self.suggest(strategy, 4)
        promoted, stopped = first[0], first[1]
        self.update(strategy, [(promoted, pruned_result(0.9, fidelity=2)), (stopped, pruned_result(0.2, fidelity=2)),
                               (first[2], full_result(0.5))])
        seen, pending = strategy._seen, Counter(strategy._pending)
        self.update(strategy, [(promoted, full_result(0.6))])  # promoted, trained on, told again
        assert (strategy._seen, Counter(strategy._pending)) == (seen, pending), (
            "the re-told vector was booked as a new result (see SearchStrategy._tell)"
        )
        self.update(strategy, [(first[3], full_result(0.4))])
        again = self.suggest(strategy, 8)
        self.check_vectors(space, again, 8)
        assert not {v.key() for v in first} & {v.key() for v in again}, (
            "a tried vector (told pruned, then full) was proposed again while untried ones remain"
        )
        assert len({v.key() for v in again}) == 8, "a suggestion repeats another pending suggestion"

    def test_snapshot_with_a_result_to_be_told_again(self, space: SearchSpace) -> None:
        """A snapshot taken while a pruned trial waits for promotion: restored, the strategy takes
        the trial's later full result as the original does and suggests what the original suggests."""
        original = self.make_strategy(space, 11)
        vectors = self.suggest(original, 4)
        self.update(original, [(vectors[0], pruned_result(synthetic_score(vectors[0]), fidelity=2)),
                               (vectors[1], pruned_result(synthetic_score(vectors[1]), fidelity=4)),
                               (vectors[2], full_result(synthetic_score(vectors[2])))])
        state = original.state_dict()
        if state is None:  # no snapshots: a resume replays the history instead
            return
        restored = self.make_strategy(space, 98)
        restored.load_state_dict(json.loads(json.dumps(state)))
        later = [(vectors[0], full_result(synthetic_score(vectors[0]))), (vectors[3], full_result(synthetic_score(vectors[3])))]
        self.update(original, later)
        self.update(restored, later)
        assert (restored._seen, Counter(restored._pending)) == (original._seen, Counter(original._pending)), (
            "the restored strategy books the re-told result differently (keep _partial in the snapshot)"
        )
        assert [v.key() for v in self.suggest(restored, 4)] == [v.key() for v in self.suggest(original, 4)]
        again = self.make_strategy(space, 97)
        again.load_state_dict(json.loads(json.dumps(original.state_dict())))
        assert [v.key() for v in self.suggest(again, 3)] == [v.key() for v in self.suggest(original, 3)]

