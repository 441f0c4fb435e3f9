"""Contract tests for :class:`~neuromosaic_core.interfaces.TrialScheduler` plugins.

Subclass :class:`SchedulerContract` in a class whose name starts with ``Test`` and implement
:meth:`SchedulerContract.make_scheduler`::

    from neuromosaic_core.testing.scheduler import SchedulerContract

    class TestMyScheduler(SchedulerContract):
        def make_scheduler(self, max_epochs, metric, maximize):
            return MyScheduler(max_epochs, metric, maximize)

The suite drives the scheduler the way the orchestrator does, through :class:`SearchSimulation`: a
small event simulation of ``workers`` workers training synthetic learning curves
(:func:`synthetic_trials`, with known final values) in segments, asking ``first_budget`` for a new
trial, ``observe`` then ``decide`` at each milestone, and ``promote`` before starting a new trial on
a free worker. Time is counted in epochs, so a run takes milliseconds and nothing depends on the
machine. Both are exported for plugin authors' own tests.

This module imports pytest (a test dependency); ``neuromosaic_core`` itself does not.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs
import pytest

from neuromosaic_core.interfaces import Decision, TrialScheduler
from neuromosaic_core.model import ErrorClass, TrialResult

__all__ = ["SchedulerContract", "SearchSimulation", "SyntheticTrial", "synthetic_trials"]


@attrs.frozen
class SyntheticTrial:
    """One architecture's true learning curve, rising as ``final - gap * epoch ** -rate`` (a
    power law, as real validation accuracies do) plus a little seeded noise, and its size
    (``params``) for schedulers with several objectives."""

    number: int
    final: float
    gap: float
    rate: float
    params: float
    noise: tuple[float, ...]

    def accuracy(self, epoch: int) -> float:
        return self.final - self.gap * epoch**-self.rate + self.noise[epoch - 1]

    def curve(self, epochs: int, maximize: bool = True) -> tuple[float, ...]:
        """The validation scores of the first ``epochs`` epochs: an accuracy when ``maximize``,
        else an error (one minus it) that falls."""
        return tuple(self.accuracy(e) if maximize else 1.0 - self.accuracy(e) for e in range(1, epochs + 1))


def synthetic_trials(count: int, max_epochs: int, seed: int = 0, best: int | None = None) -> list[SyntheticTrial]:
    """``count`` trials numbered from 1 (as the orchestrator numbers them). Their curves cross one
    another, except trial ``best`` (default: a quarter of the way in), which is ahead of every
    other one at every epoch and ends clearly best (0.93 against at most 0.86): a scheduler that
    stops or never promotes it loses the search's winner."""
    rng = random.Random(seed)
    best = count // 4 + 1 if best is None else best
    trials = []
    for number in range(1, count + 1):
        if number == best:  # the smallest gap and the fastest rise: ahead from the first epoch
            final, gap, rate = 0.93, 0.30, 1.2
        else:
            final, gap, rate = rng.uniform(0.45, 0.86), rng.uniform(0.30, 0.55), rng.uniform(0.4, 1.2)
        noise = tuple(rng.uniform(-0.004, 0.004) for _ in range(max_epochs))
        params = float(rng.choice((1e4, 3e4, 1e5, 3e5, 1e6)))
        trials.append(SyntheticTrial(number, final, gap, rate, params, noise))
    return trials


class SearchSimulation:
    """The orchestrator's use of a scheduler, as an event simulation with epochs as the clock.

    ``workers`` workers each train one segment at a time. After every event each free worker asks
    ``promote()`` and, when it gets nothing, starts the next new trial, which trains to ``first_budget(number)``
    epochs. When a segment ends below ``max_epochs`` the scheduler is told ``observe`` then
    ``decide``: ``continue`` keeps the worker on that trial, ``pause`` and ``stop`` free it. Full
    results are observed, not decided. Every call is checked against the contract as it happens
    (budgets, promoting only paused trials), so a violation fails at the step that made it.

    ``log`` records every call and answer; ``stored`` holds each trial's latest result, what the
    orchestrator's storage keeps and observes again on a resume; ``trained`` the epochs each trial
    really trained (a continuation trains only the new epochs, from its checkpoint)."""

    def __init__(self, scheduler: TrialScheduler, truth: Iterable[SyntheticTrial], max_epochs: int, workers: int = 2,
                 maximize: bool = True, metric: str = "val_accuracy") -> None:
        self.scheduler = scheduler
        self.truth = {t.number: t for t in truth}
        self.max_epochs, self.workers, self.maximize, self.metric = max_epochs, workers, maximize, metric
        self.waiting = sorted(self.truth)  # new trials, in order
        self.time = 0
        #: worker -> (ends at, trial number, from epoch, to epoch)
        self.running: dict[int, tuple[int, int, int, int]] = {}
        self.state: dict[int, str] = {}  # running, paused, stopped, full
        self.stored: dict[int, TrialResult] = {}
        self.trained: Counter[int] = Counter()
        self.log: list[tuple[Any, ...]] = []
        self.accepting = True

    # -- what a trial's segment reports ------------------------------------------------------

    def result(self, number: int, epochs: int) -> TrialResult:
        curve = self.truth[number].curve(epochs, self.maximize)
        value = max(curve) if self.maximize else min(curve)
        return TrialResult(metrics={self.metric: value, "params": self.truth[number].params}, curve=curve,
                           fidelity=epochs, pruned=epochs < self.max_epochs)

    def fidelity(self, number: int) -> int:
        result = self.stored.get(number)
        return 0 if result is None or result.fidelity is None else result.fidelity

    # -- the loop ----------------------------------------------------------------------------

    def run(self, until_started: int | None = None, max_events: int = 100_000) -> SearchSimulation:
        """Run to the end of the search (every trial started, nothing running, nothing promoted);
        with ``until_started``, only until that many new trials have started."""
        self._fill_idle()
        for _ in range(max_events):
            if not self.running:
                return self
            if until_started is not None and len(self.truth) - len(self.waiting) >= until_started:
                return self
            self.step()
        pytest.fail(f"the simulated search did not end within {max_events} segments (does promote() loop?)")

    def drain(self) -> SearchSimulation:
        """Start nothing more (no new trial, no promotion); let the running segments end, trials
        told to continue included. What is then stored is all there is: the point where a resumed
        search must carry on exactly as the original would."""
        self.accepting = False
        while self.running:
            self.step()
        self.accepting = True
        return self

    def step(self) -> None:
        """The next segment to end ends; then every idle worker asks for work, as the
        orchestrator's loop does after each event."""
        worker = min(self.running, key=lambda w: (self.running[w][0], w))
        self.time, number, start, until = self.running.pop(worker)
        self.trained[number] += until - start
        result = self.result(number, until)
        self.stored[number] = result
        self.scheduler.observe(number, result)
        if until >= self.max_epochs:
            self.state[number] = "full"
            self.log.append(("full", number))
        else:
            decision = self.scheduler.decide(number, result)
            self.check_decision(decision, result)
            self.log.append(("decide", number, until, decision.action, decision.budget))
            if decision.action == "continue":
                assert decision.budget is not None
                self._start(worker, number, until, decision.budget)
            else:
                self.state[number] = "paused" if decision.action == "pause" else "stopped"
        self._fill_idle()

    def _fill_idle(self) -> None:
        for worker in range(self.workers):
            if worker not in self.running:
                self._fill(worker)

    def _fill(self, worker: int) -> None:
        if not self.accepting:
            return
        promoted = self.scheduler.promote()
        if promoted is not None:
            number, budget = promoted
            state = self.state.get(number)
            assert state == "paused", f"promote() returned trial {number}, which is {state or 'unknown'}, not paused"
            assert isinstance(budget, int), f"promote() must return an int budget, got {budget!r}"
            assert self.fidelity(number) < budget <= self.max_epochs, (
                f"promote() gave trial {number} (at {self.fidelity(number)} epochs) a budget of {budget}; "
                f"it must be above its fidelity and at most max_epochs={self.max_epochs}")
            self.log.append(("promote", number, budget))
            self._start(worker, number, self.fidelity(number), budget)
            return
        if self.waiting:
            number = self.waiting.pop(0)
            budget = self.scheduler.first_budget(number)
            assert isinstance(budget, int) and 1 <= budget <= self.max_epochs, (
                f"first_budget({number}) = {budget!r}; it must be an int in [1, max_epochs={self.max_epochs}]")
            self.log.append(("start", number, budget))
            self._start(worker, number, 0, budget)

    def _start(self, worker: int, number: int, start: int, until: int) -> None:
        self.state[number] = "running"
        self.running[worker] = (self.time + until - start, number, start, until)

    def check_decision(self, decision: Decision, result: TrialResult) -> None:
        assert isinstance(decision, Decision), f"decide() must return a Decision, got {decision!r}"
        if decision.action == "continue":
            fidelity = result.fidelity or 0
            assert isinstance(decision.budget, int), f"a continue budget must be an int, got {decision.budget!r}"
            assert fidelity < decision.budget <= self.max_epochs, (
                f"continue to {decision.budget} epochs from {fidelity}: the budget must be above the result's "
                f"fidelity and at most max_epochs={self.max_epochs}")

    # -- what came of it ---------------------------------------------------------------------

    def best_in_truth(self) -> int:
        finals = {n: t.accuracy(self.max_epochs) for n, t in self.truth.items()}
        return max(finals, key=lambda n: finals[n])

    def cut_short(self) -> list[int]:
        """The trials that ended below full fidelity (stopped or left paused)."""
        return sorted(n for n, s in self.state.items() if s in ("paused", "stopped"))

    def continued_with(self, scheduler: TrialScheduler) -> SearchSimulation:
        """A copy of this simulation's state (stored results, trials left, clock) driving
        ``scheduler`` from here on, with an empty log."""
        twin = SearchSimulation(scheduler, self.truth.values(), self.max_epochs, self.workers, self.maximize, self.metric)
        twin.waiting = list(self.waiting)
        twin.time = self.time
        twin.running = dict(self.running)
        twin.state = dict(self.state)
        twin.stored = dict(self.stored)
        twin.trained = Counter(self.trained)
        return twin


class SchedulerContract:
    """The behaviour every trial scheduler must have (see ``TrialScheduler``'s docstring)."""

    #: Full fidelity (``training.epochs``) of the simulated searches.
    max_epochs: int = 30
    #: Trials of the simulated searches, and workers training them at once.
    trials: int = 30
    workers: int = 2
    #: Trials of :meth:`test_a_long_search_stays_cheap`.
    many_trials: int = 150
    #: Whether the best trial in truth (the best score) must reach full fidelity; False for a
    #: scheduler that also ranks on other objectives, where a smaller, weaker net may take its place.
    keeps_the_best: bool = True

    # -- to implement ------------------------------------------------------------------------

    def make_scheduler(self, max_epochs: int, metric: str, maximize: bool) -> TrialScheduler:
        """Build the scheduler under test with its default settings."""
        raise NotImplementedError("subclasses of SchedulerContract implement make_scheduler(max_epochs, metric, maximize)")

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def metric_for(maximize: bool) -> str:
        return "val_accuracy" if maximize else "val_rmse"

    def simulation(self, maximize: bool = True, trials: int | None = None, workers: int | None = None,
                   seed: int = 0) -> SearchSimulation:
        scheduler = self.make_scheduler(self.max_epochs, self.metric_for(maximize), maximize)
        truth = synthetic_trials(trials or self.trials, self.max_epochs, seed=seed)
        return SearchSimulation(scheduler, truth, self.max_epochs, workers or self.workers, maximize, self.metric_for(maximize))

    def resumed(self, sim: SearchSimulation, times: int = 1) -> SearchSimulation:
        """A fresh scheduler rebuilt as the orchestrator rebuilds one on a resume: every stored
        result observed again in trial order (``times`` over), and nothing else."""
        fresh = self.make_scheduler(self.max_epochs, sim.metric, sim.maximize)
        for _ in range(times):
            for number in sorted(sim.stored):
                fresh.observe(number, sim.stored[number])
        return sim.continued_with(fresh)

    # -- the contract ------------------------------------------------------------------------

    def test_first_budget_is_within_full_fidelity(self) -> None:
        scheduler = self.make_scheduler(self.max_epochs, "val_accuracy", True)
        for number in range(1, 60):
            budget = scheduler.first_budget(number)
            assert isinstance(budget, int) and 1 <= budget <= self.max_epochs, f"first_budget({number}) = {budget!r}"
        assert scheduler.first_budget(7) == scheduler.first_budget(7), "first_budget must be a function of the trial number"

    def test_describe_is_one_line(self) -> None:
        line = self.make_scheduler(self.max_epochs, "val_accuracy", True).describe()
        assert isinstance(line, str) and line.strip() and "\n" not in line

    @pytest.mark.parametrize("maximize", [True, False], ids=["maximize", "minimize"])
    def test_decisions_are_valid(self, maximize: bool) -> None:
        """Decisions at every trial's first milestone, then at odd curves: a diverged one (NaN),
        a flat one, one that got worse."""
        scheduler = self.make_scheduler(self.max_epochs, self.metric_for(maximize), maximize)
        sim = SearchSimulation(scheduler, synthetic_trials(12, self.max_epochs), self.max_epochs, maximize=maximize,
                               metric=self.metric_for(maximize))
        for number in range(1, 13):
            budget = scheduler.first_budget(number)
            if budget >= self.max_epochs:
                continue
            result = sim.result(number, budget)
            scheduler.observe(number, result)
            sim.check_decision(scheduler.decide(number, result), result)
        for offset, curve in enumerate([(math.nan,) * 10, (0.5,) * 10, tuple(0.9 - 0.05 * e for e in range(10))]):
            number = 100 + offset
            epochs = min(len(curve), self.max_epochs - 1)
            result = TrialResult(metrics={self.metric_for(maximize): curve[0]}, curve=curve[:epochs], fidelity=epochs, pruned=True)
            scheduler.observe(number, result)
            sim.check_decision(scheduler.decide(number, result), result)

    def test_failed_results_are_accepted(self) -> None:
        """A failure (no curve, no fidelity) is observed without harm: the search goes on."""
        sim = self.simulation()
        for number in (1, 2):
            sim.scheduler.observe(number, TrialResult.failure(ErrorClass.RUNTIME, "boom"))
        sim.run()
        assert sim.state, "nothing ran"

    @pytest.mark.parametrize("maximize", [True, False], ids=["maximize", "minimize"])
    def test_a_search_saves_epochs_and_keeps_the_best(self, maximize: bool) -> None:
        sim = self.simulation(maximize).run()
        assert not sim.waiting and not sim.running
        over = {n: e for n, e in sim.trained.items() if e > self.max_epochs}
        assert not over, f"trained beyond max_epochs={self.max_epochs}: {over}"
        assert sim.cut_short(), "no trial was stopped or paused: the scheduler saved nothing"
        assert sum(sim.trained.values()) < self.trials * self.max_epochs
        best = sim.best_in_truth()
        assert not self.keeps_the_best or sim.state.get(best) == "full", (
            f"trial {best}, the best in truth (ahead at every epoch), ended {sim.state.get(best)} at "
            f"{sim.fidelity(best)}/{self.max_epochs} epochs")

    @pytest.mark.parametrize("maximize", [True, False], ids=["maximize", "minimize"])
    def test_a_resumed_scheduler_carries_on_as_the_original(self, maximize: bool) -> None:
        """Half the trials started, the running segments ended: a fresh scheduler that observed
        the stored results makes the very same decisions and promotions as the original."""
        original = self.simulation(maximize).run(until_started=self.trials // 2).drain()
        assert original.stored, "nothing was stored before the cut"
        resumed = self.resumed(original)
        original.log.clear()
        original.run()
        resumed.run()
        assert resumed.log == original.log, self._first_difference(original.log, resumed.log)

    def test_observe_is_idempotent(self) -> None:
        """Observing every stored result twice (a resume after a resume) changes nothing."""
        half = self.simulation().run(until_started=self.trials // 2).drain()
        once, twice = self.resumed(half, times=1), self.resumed(half, times=2)
        once.run()
        twice.run()
        assert twice.log == once.log, self._first_difference(once.log, twice.log)

    def test_paused_trials_can_be_decided_again_after_a_resume(self) -> None:
        """On a resume the orchestrator asks ``decide`` again for each trial left between two
        segments; a trial told to continue then must not be promoted as well."""
        half = self.simulation().run(until_started=self.trials // 2).drain()
        resumed = self.resumed(half)
        continued = set()
        for number in sorted(n for n, s in half.state.items() if s == "paused"):
            decision = resumed.scheduler.decide(number, half.stored[number])
            resumed.check_decision(decision, half.stored[number])
            if decision.action == "continue":
                continued.add(number)
        promoted = []
        while (answer := resumed.scheduler.promote()) is not None and len(promoted) <= len(half.stored):
            promoted.append(answer[0])
        assert not continued & set(promoted), f"trials {sorted(continued & set(promoted))} were continued and promoted"
        assert len(promoted) == len(set(promoted)), "promote() offered a trial twice"

    def test_a_long_search_stays_cheap(self) -> None:
        """Many trials and workers: every call stays valid (the suite's run time is the overhead
        measure; timing goals live in benchmarks, not in asserts)."""
        sim = self.simulation(trials=self.many_trials, workers=4, seed=1).run()
        assert not sim.waiting and not sim.running
        assert max(sim.trained.values()) <= self.max_epochs
        assert not self.keeps_the_best or sim.state[sim.best_in_truth()] == "full"

    @staticmethod
    def _first_difference(expected: list[tuple[Any, ...]], got: list[tuple[Any, ...]]) -> str:
        for i, (a, b) in enumerate(zip(expected, got, strict=False)):
            if a != b:
                return f"event {i}: the original did {a}, the resumed scheduler {b}"
        return f"the original made {len(expected)} calls, the resumed scheduler {len(got)}"
